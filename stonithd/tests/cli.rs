//! The `stonithd` binary refuses to run with a fencing device it cannot use, naming the line.

use std::process::Command;

const STONITHD: &str = env!("CARGO_BIN_EXE_stonithd");

#[test]
fn an_unusable_device_stops_it_with_the_line_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ha.cf"),
        "node alpha bravo\nucast lo 127.0.0.1\nstonith_host * no_such_plugin a b\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("haresources"), "").unwrap();
    let authkeys = dir.path().join("authkeys");
    std::fs::write(&authkeys, "auth 1\n1 sha256 k\n").unwrap();
    std::fs::set_permissions(&authkeys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let output = Command::new(STONITHD)
        .env(hbapi::names::env::CONFIG_DIR, dir.path())
        .env(hbapi::names::env::NODE_NAME, "alpha")
        .env(hbapi::names::env::BUS_ADDRESS, "unix:path=/nonexistent/bus")
        .env("HB_LOG_STDERR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(100), "{stderr}");
    assert!(
        stderr.contains("stonith_host * no_such_plugin") && stderr.contains("unknown stonith device type"),
        "{stderr}"
    );
}

#[test]
fn help() {
    let output = Command::new(STONITHD).arg("--help").output().unwrap();
    assert!(output.status.success());
}
