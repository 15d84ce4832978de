//! What etc/ installs for running heartbeat-rs for real: the systemd units pass
//! `systemd-analyze verify`, and the D-Bus policy — every allow rule with its destination —
//! makes a real dbus-daemon refuse an unprivileged caller's operator methods while it lets
//! read-only ones through.

use std::path::{Path, PathBuf};
use std::process::Command;

use hb_lab::{busctl_as_nobody, NodeBuilder};

fn etc(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../etc")
        .join(path)
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let units: Vec<PathBuf> = std::fs::read_dir(etc("systemd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    assert_eq!(units.len(), 5, "{units:?}");
    let mut copies = Vec::new();
    for unit in &units {
        // The programs where the build put them instead of where a package installs them.
        let text = std::fs::read_to_string(unit)
            .unwrap()
            .replace(
                "/usr/sbin/heartbeat",
                &hb_lab::bin("heartbeat").display().to_string(),
            )
            .replace(
                "/usr/lib/heartbeat-rs/",
                &format!("{}/", hb_lab::bin("hbcomm").parent().unwrap().display()),
            );
        let copy = dir.path().join(unit.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        copies.push(copy);
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&copies)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify complains:\n{stderr}"
    );
}

fn policy_file() -> PathBuf {
    etc("dbus-1/system.d/org.heartbeatrs.conf")
}

#[test]
fn every_allow_rule_of_the_policy_names_its_destination() {
    let text = std::fs::read_to_string(policy_file()).unwrap();
    let rules: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("<allow"))
        .collect();
    assert!(rules.len() > 20, "{rules:?}");
    for rule in rules {
        assert!(
            rule.contains("send_destination=\"org.heartbeatrs.")
                || rule.contains("own_prefix=\"org.heartbeatrs\"")
                || rule == "<allow own=\"org.heartbeatrs.Ipfail\"/>",
            "{rule}"
        );
    }
    // Root owns every name; the cluster user (ipfail's respawn line) ipfail's alone.
    let owns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("<allow own"))
        .collect();
    assert_eq!(
        owns,
        [
            "<allow own_prefix=\"org.heartbeatrs\"/>",
            "<allow own=\"org.heartbeatrs.Ipfail\"/>"
        ]
    );
}

/// A dbus-daemon configured like Debian's system bus, with the policy file included.
fn start_dbus_daemon(dir: &Path) -> (std::process::Child, String) {
    let socket = dir.join("bus.sock");
    let config = dir.join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"#,
            socket = socket.display(),
            policy = policy_file().display()
        ),
    )
    .unwrap();
    let mut child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--print-address"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dbus-daemon");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(!line.trim().is_empty(), "dbus-daemon refused the configuration");
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    (child, line.trim().to_owned())
}

#[tokio::test]
async fn under_the_policy_an_unprivileged_caller_may_read_but_not_operate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (bus, address) = start_dbus_daemon(dir.path());
    let _bus = KillOnDrop(bus);
    // One node of two (its peer never comes): hbcomm needs a link that is not its own address.
    // ipfail from FAQ 6's line, as hacluster: the policy lets it own its name.
    let node = NodeBuilder::new("alpha")
        .core_daemons()
        .bind("127.0.0.1")
        .links(vec!["ucast lo 127.0.0.2".into()])
        .ha_cf("ping 127.0.0.1")
        .ha_cf("respawn hacluster /usr/lib/heartbeat/ipfail")
        .bus_address(&address)
        .start()
        .await;
    hb_lab::wait_name_owner(
        &node.connection,
        hbapi::names::crmd::BUS_NAME,
        node.child_pid("crmd").await,
    )
    .await;
    hb_lab::wait_name_owner(
        &node.connection,
        hbapi::names::ipfail::BUS_NAME,
        node.child_pid("ipfail").await,
    )
    .await;
    let crmd = [
        "org.heartbeatrs.Crmd",
        "/org/heartbeatrs/Crmd",
        "org.heartbeatrs.Crmd1",
    ];

    let (ok, stderr) = busctl_as_nobody(&address, &[crmd[0], crmd[1], crmd[2], "Groups"]).await;
    assert!(ok, "a read-only method is refused: {stderr}");
    let (ok, stderr) = busctl_as_nobody(&address, &[crmd[0], crmd[1], crmd[2], "Standby", "s", "all"]).await;
    assert!(!ok, "an operator method went through for nobody");
    // Refused by the bus policy itself, before crmd's own uid check.
    assert!(
        stderr.contains("Rejected send message") || stderr.contains("Access denied"),
        "{stderr}"
    );
    assert!(!stderr.contains("may not do this"), "reached crmd: {stderr}");
    let comm = [
        "org.heartbeatrs.Comm",
        "/org/heartbeatrs/Comm",
        "org.heartbeatrs.Comm1",
    ];
    let (ok, stderr) = busctl_as_nobody(&address, &[comm[0], comm[1], comm[2], "ListNodes"]).await;
    assert!(ok, "{stderr}");
    let (ok, _) = busctl_as_nobody(
        &address,
        &[comm[0], comm[1], comm[2], "SendMessage", "ssa{ss}", "", "x", "0"],
    )
    .await;
    assert!(!ok);
    drop(node);
}

/// On the system bus anyone may send a signal, to anyone. A stranger (`nobody`) sends crmd
/// forged NameOwnerChanged, NodeStatusChanged, MessageReceived, FenceFinished and
/// OperationCompleted signals (a failed monitor among them): crmd acts on none. The real
/// failure that follows is the positive control — the one restart the ledger must show.
#[tokio::test]
async fn forged_signals_from_an_unprivileged_user_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (bus, address) = start_dbus_daemon(dir.path());
    let _bus = KillOnDrop(bus);
    let lab = hb_lab::ledger::Lab::new();
    let ops = hbapi::config::OpSettings {
        monitor_interval: Some(std::time::Duration::from_millis(300)),
        migration_threshold: 3,
        ..Default::default()
    };
    let node = lab
        .configure(
            NodeBuilder::new("alpha")
                .core_daemons()
                .bind("127.0.0.1")
                .links(vec!["ucast lo 127.0.0.2".into()])
                .timing("100ms", "1", "1")
                .bus_address(&address),
            "alpha Ledger::web\n",
        )
        .resource_ops("Ledger::web", ops)
        .start()
        .await;
    lab.wait_for_running("web", "alpha").await;
    let crmd_pid = node.child_pid("crmd").await;
    hb_lab::wait_name_owner(&node.connection, hbapi::names::crmd::BUS_NAME, crmd_pid).await;
    let dbus = zbus::fdo::DBusProxy::new(&node.connection).await.unwrap();
    let crmd_unique = dbus
        .get_name_owner(hbapi::names::crmd::BUS_NAME.try_into().unwrap())
        .await
        .unwrap()
        .to_string();

    let output = tokio::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(hb_lab::bin("hb-forge"))
        .args([&address, &crmd_unique, "bravo", "Ledger::web"])
        .output()
        .await
        .expect("setpriv hb-forge");
    assert!(
        output.status.success(),
        "the stranger could not send: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let forged: u64 = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap();
    assert!(forged > 100, "{forged}");

    // A real failure, seen by a real monitor at least 300 ms after the forgeries.
    std::fs::remove_file(lab.state.join("alpha.web.on")).unwrap();
    let mut ledger = std::fs::OpenOptions::new()
        .append(true)
        .open(&lab.ledger)
        .unwrap();
    std::io::Write::write_all(&mut ledger, b"alpha crash web\n").unwrap();
    drop(ledger);
    lab.wait_for_running("web", "alpha").await;
    assert_eq!(lab.events(), ["alpha start", "alpha crash", "alpha start"]);
    let crmd = hbapi::crmd::CrmdProxy::new(&node.connection).await.unwrap();
    let bravo = crmd
        .node_states()
        .await
        .unwrap()
        .into_iter()
        .find(|state| state.node == "bravo")
        .map(|state| state.state);
    assert_ne!(
        bravo.as_deref(),
        Some("active"),
        "a forged NodeStatusChanged counted"
    );
    assert_eq!(crmd.fail_counts().await.unwrap(), [("Ledger::web".to_owned(), 1)]);
    assert_eq!(node.child_pid("crmd").await, crmd_pid, "crmd restarted");
    drop(node);
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn manual_pages_and_completions_are_generated_from_the_clap_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(hb_lab::bin("hb-gen-docs"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (name, option) in [
        ("heartbeat", "no\\-core\\-daemons"),
        ("hb_mon", "\\-\\-why"),
        ("stonith", "\\-L"),
        ("meatclient", "\\-c"),
        ("cl_status", "hblinkstatus"),
        ("hb_standby", "failback"),
        ("hb_takeover", "foreign"),
    ] {
        let page = std::fs::read_to_string(dir.path().join(format!("man/{name}.1"))).unwrap();
        assert!(page.contains(&format!(".TH {name} 1")), "{page}");
        assert!(page.contains(option), "{name}: {option} missing:\n{page}");
        let bash = dir.path().join(format!("completions/bash/{name}.bash"));
        let check = Command::new("bash").arg("-n").arg(&bash).output().unwrap();
        assert!(
            check.status.success(),
            "{}: {}",
            bash.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(dir.path().join(format!("completions/zsh/_{name}")).exists());
        assert!(dir.path().join(format!("completions/fish/{name}.fish")).exists());
    }
}
