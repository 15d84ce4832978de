//! The `ipfail` binary: it reads no configuration file (FAQ 6's line runs it as hacluster,
//! which cannot read authkeys), so what stops it is the bus — a failure the master retries —
//! or what the master and hbcomm tell it (see `refusal`, exit 100: not respawned).

use std::process::Command;

const IPFAIL: &str = env!("CARGO_BIN_EXE_ipfail");

#[test]
fn an_unreachable_bus_is_not_a_refusal_and_no_file_is_read() {
    // An empty configuration directory: ipfail must not need it (it once read the whole of
    // it, authkeys included, and refused with exit 100).
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(IPFAIL)
        .env(hbapi::names::env::CONFIG_DIR, dir.path())
        .env(hbapi::names::env::NODE_NAME, "alpha")
        .env(hbapi::names::env::BUS_ADDRESS, "unix:path=/nonexistent/bus")
        .env("HB_LOG_STDERR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("authkeys") && !stderr.contains("configuration"),
        "{stderr}"
    );
}

#[test]
fn help_names_the_respawn_line() {
    let output = Command::new(IPFAIL).arg("--help").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("respawn hacluster /usr/lib/heartbeat/ipfail"));
}
