//! The `ipfail` binary refuses, as Heartbeat's does, to run where it cannot work — with an
//! exit code (100) that keeps the master from respawning it.

use std::process::Command;

const IPFAIL: &str = env!("CARGO_BIN_EXE_ipfail");

fn run_with(ha_cf: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ha.cf"), ha_cf).unwrap();
    std::fs::write(dir.path().join("haresources"), "").unwrap();
    let authkeys = dir.path().join("authkeys");
    std::fs::write(&authkeys, "auth 1\n1 sha256 k\n").unwrap();
    std::fs::set_permissions(&authkeys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let output = Command::new(IPFAIL)
        .env(hbapi::names::env::CONFIG_DIR, dir.path())
        .env(hbapi::names::env::NODE_NAME, "alpha")
        .env(hbapi::names::env::BUS_ADDRESS, "unix:path=/nonexistent/bus")
        .env("HB_LOG_STDERR", "1")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn auto_failback_legacy_is_refused_and_not_respawned() {
    let (code, stderr) =
        run_with("node alpha bravo\nucast lo 127.0.0.1\nping 127.0.0.9\nauto_failback legacy\n");
    assert_eq!(code, Some(100), "{stderr}");
    assert!(stderr.contains("auto_failback legacy"), "{stderr}");
}

#[test]
fn without_ping_nodes_there_is_nothing_to_judge() {
    let (code, stderr) = run_with("node alpha bravo\nucast lo 127.0.0.1\nauto_failback off\n");
    assert_eq!(code, Some(100), "{stderr}");
    assert!(stderr.contains("ping nodes"), "{stderr}");
}

#[test]
fn help_names_the_respawn_line() {
    let output = Command::new(IPFAIL).arg("--help").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("respawn hacluster /usr/lib/heartbeat/ipfail"));
}
