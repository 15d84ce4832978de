//! `heartbeat --check`, `--to-toml` and `-s` against configuration directories.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const HEARTBEAT: &str = env!("CARGO_BIN_EXE_heartbeat");

const HA_CF: &str = "\
# two nodes, Heartbeat 3.0.6's timing from the reference captures
node alpha bravo
ucast eth0 10.213.77.1
ucast eth0 10.213.77.2
keepalive 200ms
deadtime 1
initdead 10
auto_failback off
ping 10.213.77.254
respawn root /bin/true
env ROLE=test
";

fn config_dir(ha_cf: &str, haresources: &str, authkeys_mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ha.cf"), ha_cf).expect("ha.cf");
    std::fs::write(dir.path().join("haresources"), haresources).expect("haresources");
    let authkeys = dir.path().join("authkeys");
    std::fs::write(&authkeys, "auth 1\n1 sha1 anchor-secret-0123456789\n").expect("authkeys");
    std::fs::set_permissions(&authkeys, std::fs::Permissions::from_mode(authkeys_mode)).expect("chmod");
    dir
}

fn heartbeat(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(HEARTBEAT)
        .arg("--config-dir")
        .arg(dir)
        .args(["--node", "alpha"])
        .args(args)
        .output()
        .expect("run heartbeat");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_a_good_configuration() {
    let dir = config_dir(
        HA_CF,
        "alpha 10.213.77.100 Filesystem::/dev/sdb1::/srv::ext4 apache\n",
        0o600,
    );
    let (code, stdout, stderr) = heartbeat(dir.path(), &["--check"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "configuration OK: 2 nodes, 2 links, 1 resource groups, 1 respawn lines\n"
    );
}

#[test]
fn check_refuses_readable_authkeys_and_says_how_to_fix_it() {
    let dir = config_dir(HA_CF, "", 0o644);
    let (code, _, stderr) = heartbeat(dir.path(), &["--check"]);
    assert_eq!(code, 6);
    let authkeys = dir.path().join("authkeys");
    assert!(
        stderr.contains(&format!("error: {}: bad permissions 0644", authkeys.display()))
            && stderr.contains(&format!("fix with: chmod 600 {}", authkeys.display())),
        "{stderr}"
    );
}

#[test]
fn check_reports_every_problem_with_file_line_and_directive() {
    let broken = format!("{HA_CF}deadtime 300ms\nmcast eth0 10.0.0.1 694 1 0\nbogus 1\n");
    let dir = config_dir(&broken, "charlie 10.0.0.9\n", 0o600);
    let (code, _, stderr) = heartbeat(dir.path(), &["--check"]);
    assert_eq!(code, 6);
    let ha_cf = dir.path().join("ha.cf").display().to_string();
    let haresources = dir.path().join("haresources").display().to_string();
    for expected in [
        format!("{ha_cf}:13:12: mcast: \"10.0.0.1\" is not an IPv4 multicast group"),
        format!("{ha_cf}:14:1: bogus: unknown directive"),
        format!("{ha_cf}:12: deadtime: deadtime (300ms) must be more than twice keepalive (200ms)"),
        format!("{haresources}:1:1: node: bad node name \"charlie\""),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn check_refuses_a_node_that_is_not_a_member() {
    let dir = config_dir(HA_CF, "", 0o600);
    let output = Command::new(HEARTBEAT)
        .arg("--config-dir")
        .arg(dir.path())
        .args(["--node", "zulu", "--check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(6));
    assert!(
        stderr.contains("this node, \"zulu\", is not in the configuration (nodes: alpha, bravo)"),
        "{stderr}"
    );
}

#[test]
fn check_refuses_a_respawn_line_that_cannot_run() {
    let dir = config_dir(
        &format!("{HA_CF}respawn nosuchuser /bin/true\nrespawn root /nonexistent/ipfail\n"),
        "",
        0o600,
    );
    let (code, _, stderr) = heartbeat(dir.path(), &["--check"]);
    assert_eq!(code, 6);
    assert!(stderr.contains("user nosuchuser does not exist"), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/ipfail is not executable"),
        "{stderr}"
    );
}

#[test]
fn toml_conversion_reads_back_to_the_same_model() {
    let classic = config_dir(HA_CF, "alpha 10.213.77.100 apache\nbravo Dummy::x\n", 0o600);
    let (code, toml, stderr) = heartbeat(classic.path(), &["--to-toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        toml.contains("file = \"authkeys\""),
        "no secrets are written out:\n{toml}"
    );
    assert!(!toml.contains("anchor-secret"), "{toml}");

    let modern = tempfile::tempdir().unwrap();
    std::fs::write(modern.path().join("ha.toml"), &toml).unwrap();
    std::fs::copy(classic.path().join("authkeys"), modern.path().join("authkeys")).unwrap();
    let (code, again, stderr) = heartbeat(modern.path(), &["--to-toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(again, toml);
    let (code, stdout, stderr) = heartbeat(modern.path(), &["--check"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "configuration OK: 2 nodes, 2 links, 2 resource groups, 1 respawn lines\n"
    );
}

#[test]
fn toml_errors_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[cluster]\nnodes = [\"alpha\"]\nkeepalive = \"2min\"\n\n[auth]\nfile = \"authkeys\"\n";
    std::fs::write(dir.path().join("ha.toml"), text).unwrap();
    let (code, _, stderr) = heartbeat(dir.path(), &["--check"]);
    assert_eq!(code, 6);
    let path = dir.path().join("ha.toml").display().to_string();
    assert!(
        stderr.contains(&format!("error: {path}:3:13: unknown time unit \"min\"")),
        "{stderr}"
    );
}

#[test]
fn toml_with_inline_keys_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[cluster]\nnodes = [\"alpha\", \"bravo\"]\nauto_failback = \"on\"\n\n[[link]]\ntype = \"bcast\"\ndevice = \"eth0\"\n\n[auth]\nactive = 1\nkeys = [{ id = 1, method = \"sha256\", secret = \"s3cret\" }]\n";
    let path = dir.path().join("ha.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, stderr) = heartbeat(dir.path(), &["--check"]);
    assert_eq!(code, 6);
    assert!(stderr.contains("bad permissions 0644"), "{stderr}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, stderr) = heartbeat(dir.path(), &["--check"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn status_of_a_stopped_node() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(HEARTBEAT)
        .arg("--run-dir")
        .arg(dir.path())
        .arg("-s")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "heartbeat is stopped. No process\n"
    );
    std::fs::write(dir.path().join("heartbeat.pid"), "999999999\n").unwrap();
    let output = Command::new(HEARTBEAT)
        .arg("--run-dir")
        .arg(dir.path())
        .arg("-s")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn the_shipped_samples_are_valid_and_equivalent() {
    let etc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc");
    let classic = tempfile::tempdir().unwrap();
    for file in ["ha.cf", "haresources", "authkeys"] {
        std::fs::copy(etc.join(file), classic.path().join(file)).unwrap();
    }
    std::fs::set_permissions(
        classic.path().join("authkeys"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (code, stdout, stderr) = heartbeat(classic.path(), &["--check"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "configuration OK: 2 nodes, 2 links, 1 resource groups, 0 respawn lines\n"
    );

    let modern = tempfile::tempdir().unwrap();
    std::fs::copy(etc.join("ha.toml"), modern.path().join("ha.toml")).unwrap();
    std::fs::copy(classic.path().join("authkeys"), modern.path().join("authkeys")).unwrap();
    let (_, from_classic, _) = heartbeat(classic.path(), &["--to-toml"]);
    let (code, from_modern, stderr) = heartbeat(modern.path(), &["--to-toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        from_modern, from_classic,
        "etc/ha.toml must say what etc/ha.cf + haresources say"
    );
}

#[test]
fn check_refuses_ipfail_with_auto_failback_legacy() {
    let legacy = HA_CF.replace("auto_failback off", "auto_failback legacy")
        + "respawn hacluster /usr/lib/heartbeat/ipfail\n";
    let dir = config_dir(&legacy, "", 0o600);
    let (code, _, stderr) = heartbeat(dir.path(), &["--check"]);
    assert_eq!(code, 6, "{stderr}");
    let ha_cf = dir.path().join("ha.cf").display().to_string();
    assert!(
        stderr.contains(&format!(
            "{ha_cf}:12: respawn: ipfail does not work with auto_failback legacy"
        )),
        "{stderr}"
    );
}
