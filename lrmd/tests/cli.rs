//! The `lrmd` binary's own arguments and its refusal to run without the master's bus.

use std::process::Command;

const LRMD: &str = env!("CARGO_BIN_EXE_lrmd");

#[test]
fn arguments_are_checked() {
    let help = Command::new(LRMD).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("usage: lrmd"));
    for bad in [&["--max-parallel", "0"][..], &["--bogus"]] {
        let output = Command::new(LRMD).args(bad).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad:?}");
        assert!(!output.stderr.is_empty());
    }
}

#[test]
fn without_a_bus_it_exits_100_so_it_is_not_respawned() {
    let run_dir = tempfile::tempdir().unwrap();
    let output = Command::new(LRMD)
        .env_remove(hbapi::names::env::BUS_ADDRESS)
        .env(hbapi::names::env::RUN_DIR, run_dir.path())
        .env("HB_LOG_STDERR", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no bus address"));
}
