//! `stonith` and `meatclient` without a running cluster.

use std::process::Command;

const STONITH: &str = env!("CARGO_BIN_EXE_stonith");
const MEATCLIENT: &str = env!("CARGO_BIN_EXE_meatclient");

#[test]
fn stonith_lists_and_describes_without_a_daemon() {
    let output = Command::new(STONITH).arg("-L").output().unwrap();
    assert!(output.status.success());
    let listed = String::from_utf8_lossy(&output.stdout);
    for built_in in ["meatware", "null", "ssh", "suicide"] {
        assert!(listed.lines().any(|l| l == built_in), "{built_in}: {listed}");
    }
    let output = Command::new(STONITH).args(["-t", "null", "-n"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hostlist  \n");
    let output = Command::new(STONITH)
        .args(["-t", "no_such", "-n"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(8), "cluster-glue's S_OOPS");
    assert!(!output.stderr.is_empty(), "errors go to stderr");
}

#[test]
fn meatclient_without_a_cluster_says_so() {
    let run_dir = tempfile::tempdir().unwrap();
    let output = Command::new(MEATCLIENT)
        .args(["-c", "bravo", "--yes"])
        .env_remove(hbapi::names::env::BUS_ADDRESS)
        .env(hbapi::names::env::RUN_DIR, run_dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not running"));
    let refused = Command::new(MEATCLIENT)
        .args(["-c", "bravo"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "no confirmation, no release");
}

#[test]
fn hb_standby_and_hb_takeover_check_their_argument_as_heartbeat_does() {
    for program in [
        env!("CARGO_BIN_EXE_hb_standby"),
        env!("CARGO_BIN_EXE_hb_takeover"),
    ] {
        let output = Command::new(program).arg("sideways").output().unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&output.stderr).contains("wrong resources(sideways)"));
        let output = Command::new(program).args(["all", "local"]).output().unwrap();
        assert_eq!(output.status.code(), Some(1));
        let run_dir = tempfile::tempdir().unwrap();
        let output = Command::new(program)
            .arg("local")
            .env_remove(hbapi::names::env::BUS_ADDRESS)
            .env(hbapi::names::env::RUN_DIR, run_dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&output.stderr).contains("not running"));
    }
}
