//! The Debian package on booted systemd: three Debian 12 containers (systemd-nspawn) on one
//! bridge, the .deb installed with dpkg in each, heartbeat.service started with systemctl,
//! the daemons on the system bus under the shipped policy. alpha and bravo run the default
//! layout (the master supervises the daemons); charlie the `--no-core-daemons` one (systemd
//! supervises them). Judged from what systemd, the bus, the journal and the ledger show.
//!
//! Needs root, debootstrap, systemd-container and the package: `scripts/package` builds it
//! into target/debian (`scripts/test` does both). Without them this test fails and says why.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use hb_lab::container::{Container, DebianRoot};
use hb_lab::ledger::{ledger_script, Lab};
use hb_lab::mixed::Wire;
use hb_lab::{name_owner_pid, PATIENCE};
use hbapi::crmd::CrmdProxy;
use hbapi::names;

const NODES: [&str; 3] = ["alpha", "bravo", "charlie"];

/// The daemons' bus names, with the object path and interface of each.
const DAEMONS: [(&str, &str, &str); 6] = [
    (
        names::master::BUS_NAME,
        names::master::OBJECT_PATH,
        names::master::INTERFACE,
    ),
    (
        names::comm::BUS_NAME,
        names::comm::OBJECT_PATH,
        names::comm::INTERFACE,
    ),
    (
        names::lrmd::BUS_NAME,
        names::lrmd::OBJECT_PATH,
        names::lrmd::INTERFACE,
    ),
    (
        names::stonithd::BUS_NAME,
        names::stonithd::OBJECT_PATH,
        names::stonithd::INTERFACE,
    ),
    (
        names::crmd::BUS_NAME,
        names::crmd::OBJECT_PATH,
        names::crmd::INTERFACE,
    ),
    (
        names::ipfail::BUS_NAME,
        names::ipfail::OBJECT_PATH,
        names::ipfail::INTERFACE,
    ),
];

fn target_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    dir.canonicalize().unwrap_or(dir)
}

/// The newest package scripts/package built.
fn package() -> PathBuf {
    let dir = target_dir().join("debian");
    let newest = std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("heartbeat-rs_") && n.ends_with(".deb"))
        })
        .max_by_key(|path| path.metadata().and_then(|m| m.modified()).ok());
    newest.unwrap_or_else(|| {
        panic!(
            "no heartbeat-rs .deb in {}: run scripts/package first (scripts/test does)",
            dir.display()
        )
    })
}

fn ha_cf(ping_node: &str) -> String {
    format!(
        "# written by the package test\n\
         logfile /var/log/ha-log\n\
         keepalive 200ms\n\
         deadtime 2\n\
         warntime 1\n\
         initdead 10\n\
         udpport 694\n\
         bcast eth0\n\
         auto_failback off\n\
         node {}\n\
         ping {ping_node}\n\
         respawn hacluster /usr/lib/heartbeat/ipfail\n",
        NODES.join(" ")
    )
}

/// `args` run as user `nobody` (inside a container).
fn as_nobody<'a>(args: &[&'a str]) -> Vec<&'a str> {
    ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        .into_iter()
        .chain(args.iter().copied())
        .collect()
}

/// Waits until `name` on `bus` is owned by a process other than `old` (by NameOwnerChanged).
async fn wait_new_owner(bus: &zbus::Connection, name: &str, old: Option<u32>) -> u32 {
    let dbus = zbus::fdo::DBusProxy::new(bus).await.expect("dbus proxy");
    let mut changes = dbus
        .receive_name_owner_changed_with_args(&[(0, name)])
        .await
        .expect("subscribe");
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(pid) = name_owner_pid(bus, name).await.filter(|pid| Some(*pid) != old) {
                return pid;
            }
            changes.next().await.expect("NameOwnerChanged stream");
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{name}: no new owner within {PATIENCE:?} (old {old:?})"))
}

fn unit_property(node: &Container, unit: &str, property: &str) -> String {
    node.ok(&["systemctl", "show", "--value", "-p", property, unit])
        .trim()
        .to_owned()
}

/// Waits until `node`'s crmd status file reads `expected` (lines "NODE STATE [GROUPS]").
async fn wait_status(node: &Container, expected: &[&str]) {
    hb_lab::groups::wait_status_file(&node.file("/run/heartbeat/status"), expected).await;
}

#[tokio::test]
async fn the_package_on_three_booted_debian_nodes() {
    let deb = package();
    let work = target_dir().join("package-test");
    let root = DebianRoot::ensure(&work);
    let wire = Wire::new(&NODES);
    let ping_node = wire.ping_node();
    let lab = Lab::new();
    let shared = lab.ledger.parent().expect("lab root").to_path_buf();
    let deb_dir = deb.parent().expect("deb dir").to_path_buf();
    let nodes: Vec<Container> = std::thread::scope(|scope| {
        let booting: Vec<_> = NODES
            .iter()
            .map(|name| {
                let (root, work, wire, shared, deb_dir) = (&root, &work, &wire, &shared, &deb_dir);
                scope.spawn(move || {
                    Container::boot(
                        root,
                        &work.join("nodes"),
                        name,
                        wire.namespace(name),
                        &[shared.as_path(), deb_dir.as_path()],
                    )
                })
            })
            .collect();
        booting.into_iter().map(|b| b.join().expect("boot")).collect()
    });
    let (alpha, bravo, charlie) = (&nodes[0], &nodes[1], &nodes[2]);
    let deb_text = deb.display().to_string();

    // Installed: units present, nothing enabled or started, the cluster user made, a key of
    // this node's own generated (0600).
    for node in &nodes {
        node.ok(&["dpkg", "-i", &deb_text]);
        assert_eq!(
            unit_property(node, "heartbeat.service", "UnitFileState"),
            "disabled"
        );
        assert_eq!(
            unit_property(node, "heartbeat.service", "ActiveState"),
            "inactive"
        );
        node.ok(&["getent", "passwd", "hacluster"]);
        assert_eq!(node.ok(&["stat", "-c", "%a", "/etc/ha.d/authkeys"]).trim(), "600");
    }
    let authkeys = std::fs::read(alpha.file("/etc/ha.d/authkeys")).expect("alpha's authkeys");
    assert_ne!(
        authkeys,
        std::fs::read(bravo.file("/etc/ha.d/authkeys")).expect("bravo's authkeys"),
        "every installation must generate its own key"
    );

    // The administrator's part: ha.cf, haresources, the resource script, alpha's key on every
    // node; charlie has systemd supervise the daemons.
    for node in &nodes {
        std::fs::write(node.file("/etc/ha.d/ha.cf"), ha_cf(ping_node)).expect("ha.cf");
        std::fs::write(node.file("/etc/ha.d/haresources"), "alpha Ledger::web\n").expect("haresources");
        let script = format!(
            "#!/bin/sh\n{}",
            ledger_script(&lab.ledger, &lab.state).replace("{node}", &node.name)
        );
        std::fs::write(node.file("/etc/ha.d/resource.d/Ledger"), script).expect("Ledger");
        node.ok(&["chmod", "755", "/etc/ha.d/resource.d/Ledger"]);
        std::fs::write(node.file("/etc/ha.d/authkeys"), &authkeys).expect("authkeys");
        // A hung master is found by systemd's watchdog in 4 s rather than 30.
        node.sh("mkdir -p /etc/systemd/system/heartbeat.service.d && printf '[Service]\\nWatchdogSec=4s\\n' > /etc/systemd/system/heartbeat.service.d/test-watchdog.conf");
    }
    charlie.sh(
        "printf '[Service]\\nExecStart=\\nExecStart=/usr/sbin/heartbeat --bus system --daemon-dir /usr/lib/heartbeat-rs --no-core-daemons\\n' \
           > /etc/systemd/system/heartbeat.service.d/no-core-daemons.conf
         systemctl enable heartbeat-hbcomm heartbeat-lrmd heartbeat-stonithd heartbeat-crmd",
    );

    // systemctl enable --now on every node at once; it returns when the master said READY.
    std::thread::scope(|scope| {
        for node in &nodes {
            scope.spawn(move || {
                node.ok(&["systemctl", "daemon-reload"]);
                node.ok(&["systemctl", "enable", "--now", "heartbeat"]);
            });
        }
    });
    let buses = [
        alpha.system_bus().await,
        bravo.system_bus().await,
        charlie.system_bus().await,
    ];
    wait_status(alpha, &["alpha ACTIVE Ledger::web", "bravo IDLE", "charlie IDLE"]).await;

    // Units active; every daemon on the system bus, each its layout's way.
    for node in &nodes {
        assert_eq!(unit_property(node, "heartbeat.service", "ActiveState"), "active");
    }
    for unit in [
        "heartbeat-hbcomm",
        "heartbeat-lrmd",
        "heartbeat-stonithd",
        "heartbeat-crmd",
    ] {
        assert_eq!(unit_property(charlie, unit, "ActiveState"), "active", "{unit}");
        assert_eq!(unit_property(alpha, unit, "ActiveState"), "inactive", "{unit}");
    }
    for (node, bus) in nodes.iter().zip(&buses) {
        for (name, _, _) in DAEMONS {
            let pid = wait_new_owner(bus, name, None).await;
            assert!(pid > 0, "{}: {name}", node.name);
        }
    }
    let crmd_unit_pid: u32 = unit_property(charlie, "heartbeat-crmd", "MainPID")
        .parse()
        .expect("pid");
    assert_eq!(
        name_owner_pid(&buses[2], names::crmd::BUS_NAME).await,
        Some(crmd_unit_pid)
    );

    // Introspection for root and for an unprivileged user; an operator method refused for
    // the latter by the policy itself, before the daemon's own check.
    for (name, path, interface) in DAEMONS {
        let root_view = bravo.ok(&["busctl", "--system", "introspect", name, path]);
        assert!(root_view.contains(interface), "{name}: {root_view}");
        let nobody = bravo.ok(&as_nobody(&["busctl", "--system", "introspect", name, path]));
        assert!(nobody.contains(interface), "{name} as nobody: {nobody}");
    }
    let refused = bravo.run(&as_nobody(&[
        "busctl",
        "--system",
        "call",
        names::crmd::BUS_NAME,
        names::crmd::OBJECT_PATH,
        names::crmd::INTERFACE,
        "Standby",
        "s",
        "all",
    ]));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "nobody put bravo in standby");
    assert!(
        stderr.contains("Access denied") || stderr.contains("Rejected send message"),
        "{stderr}"
    );

    // ipfail from the FAQ's respawn line: it runs as hacluster and owns its name.
    for (node, bus) in nodes.iter().zip(&buses) {
        let dbus = zbus::fdo::DBusProxy::new(bus).await.expect("dbus");
        let uid = dbus
            .get_connection_unix_user(names::ipfail::BUS_NAME.try_into().expect("name"))
            .await
            .expect("ipfail's uid");
        let hacluster = node.ok(&["id", "-u", "hacluster"]);
        assert_eq!(uid.to_string(), hacluster.trim(), "{}", node.name);
    }

    // kill -9 of crmd: the master respawns it on bravo, systemd on charlie.
    let old = name_owner_pid(&buses[1], names::crmd::BUS_NAME).await;
    bravo.kill("KILL", old.expect("bravo's crmd"));
    wait_new_owner(&buses[1], names::crmd::BUS_NAME, old).await;
    let old = Some(crmd_unit_pid);
    charlie.kill("KILL", crmd_unit_pid);
    let new = wait_new_owner(&buses[2], names::crmd::BUS_NAME, old).await;
    assert_eq!(unit_property(charlie, "heartbeat-crmd", "NRestarts"), "1");
    assert_eq!(
        unit_property(charlie, "heartbeat-crmd", "MainPID"),
        new.to_string()
    );

    // A hung daemon: the master finds crmd not answering, kills and respawns it.
    let old = name_owner_pid(&buses[1], names::crmd::BUS_NAME).await;
    bravo.kill("STOP", old.expect("bravo's crmd"));
    wait_new_owner(&buses[1], names::crmd::BUS_NAME, old).await;

    // The journal carries each operation's fields.
    let journal = alpha.ok(&[
        "journalctl",
        "--no-pager",
        "-o",
        "json",
        "-u",
        "heartbeat.service",
        "SYSLOG_IDENTIFIER=lrmd",
        "OP=start",
    ]);
    let entry: serde_json::Value =
        serde_json::from_str(journal.lines().next().unwrap_or("{}")).expect("json");
    let journal = if entry["NODE"].is_null() {
        alpha.ok(&["journalctl", "--no-pager", "-o", "json", "SYSLOG_IDENTIFIER=lrmd"])
    } else {
        journal
    };
    assert_eq!(entry["NODE"], "alpha", "{journal}");
    assert_eq!(entry["RC"], "0", "{journal}");
    assert!(
        entry["RESOURCE"].as_str().is_some_and(|r| r.contains("web")),
        "{journal}"
    );

    // systemctl reload rereads the configuration: the master serves the new deadtime.
    std::fs::write(
        alpha.file("/etc/ha.d/ha.cf"),
        ha_cf(ping_node).replace("deadtime 2", "deadtime 3"),
    )
    .expect("ha.cf");
    alpha.ok(&["systemctl", "reload", "heartbeat"]);
    let master = hbapi::master::HeartbeatProxy::new(&buses[0])
        .await
        .expect("master proxy");
    let deadtime = hbapi::config::format_time(std::time::Duration::from_secs(3));
    let reread = tokio::time::timeout(PATIENCE, async {
        loop {
            let parameters = master.parameters().await.expect("parameters");
            if parameters.iter().any(|(k, v)| k == "deadtime" && *v == deadtime) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(reread.is_ok(), "deadtime 3 not served after systemctl reload");

    // A hung master: systemd's watchdog kills it and systemd starts it again.
    let master_pid = unit_property(bravo, "heartbeat.service", "MainPID");
    bravo.kill("STOP", master_pid.parse().expect("MainPID"));
    let new_master = wait_new_owner(&buses[1], names::master::BUS_NAME, master_pid.parse().ok()).await;
    assert_ne!(new_master.to_string(), master_pid);
    assert_eq!(unit_property(bravo, "heartbeat.service", "NRestarts"), "1");
    let watchdog = bravo.ok(&[
        "journalctl",
        "--no-pager",
        "-u",
        "heartbeat.service",
        "-g",
        "[Ww]atchdog timeout",
    ]);
    assert!(
        !watchdog.trim().is_empty(),
        "no watchdog timeout in bravo's journal"
    );
    wait_status(alpha, &["alpha ACTIVE Ledger::web", "bravo IDLE", "charlie IDLE"]).await;

    // systemctl stop on the node running the group hands it over and completes.
    let bravo_crmd = CrmdProxy::new(&buses[1]).await.expect("crmd");
    let charlie_crmd = CrmdProxy::new(&buses[2]).await.expect("crmd");
    let mut at_bravo = bravo_crmd.receive_group_changed().await.expect("subscribe");
    let mut at_charlie = charlie_crmd.receive_group_changed().await.expect("subscribe");
    let mut stop = alpha.command(&["systemctl", "stop", "heartbeat"]);
    let stop = tokio::task::spawn_blocking(move || stop.output());
    let taken = tokio::time::timeout(PATIENCE, async {
        loop {
            tokio::select! {
                Some(signal) = at_bravo.next() => {
                    let args = signal.args().expect("args");
                    if args.group == "Ledger::web" && args.state == "started" { return "bravo"; }
                }
                Some(signal) = at_charlie.next() => {
                    let args = signal.args().expect("args");
                    if args.group == "Ledger::web" && args.state == "started" { return "charlie"; }
                }
            }
        }
    })
    .await
    .expect("nobody took Ledger::web over after systemctl stop on alpha");
    let stopped = tokio::time::timeout(PATIENCE, stop)
        .await
        .expect("systemctl stop hangs");
    assert!(stopped.expect("join").expect("nsenter").status.success());
    assert_eq!(
        unit_property(alpha, "heartbeat.service", "ActiveState"),
        "inactive"
    );
    assert_eq!(
        lab.events(),
        ["alpha start", "alpha stop", &format!("{taken} start")],
        "{:?}",
        lab.entries()
    );
    lab.assert_never_twice(&[]);

    // Purge leaves nothing of the package behind on alpha, judged from what the container's
    // overlay recorded since it booted. What the administrator added (the Ledger script, the
    // drop-ins, the log) is theirs and stays, as dpkg leaves any file it does not own.
    alpha.ok(&["dpkg", "--purge", "heartbeat-rs"]);
    let left = alpha.ok(&[
        "sh",
        "-c",
        "ls -d /etc/ha.d/ha.cf /etc/ha.d/haresources /etc/ha.d/authkeys /etc/ha.d/resource.d/Demo /usr/lib/heartbeat-rs /var/lib/heartbeat /run/heartbeat /usr/sbin/heartbeat \
         /usr/lib/systemd/system/heartbeat.service /usr/share/dbus-1/system.d/org.heartbeatrs.conf \
         /etc/systemd/system/multi-user.target.wants/heartbeat.service 2>/dev/null; true",
    ]);
    assert_eq!(left.trim(), "", "left behind by the purge");
    let upper_left: Vec<String> = walk(&alpha.upper)
        .into_iter()
        .filter(|path| {
            let text = path.to_string_lossy();
            let administrators = ["etc/ha.d", "etc/ha.d/resource.d", "etc/ha.d/resource.d/Ledger"];
            (text.contains("heartbeat") || text.contains("ha.d") || text.contains("heartbeatrs"))
                && !text.contains("heartbeat.service.d")
                && !administrators.contains(&text.as_ref())
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(upper_left.is_empty(), "files left after purge: {upper_left:?}");
    drop(nodes);
}

/// Every path under `dir` (overlay whiteouts included: they are character devices).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path.clone());
            }
            found.push(path.strip_prefix(dir).unwrap_or(&path).to_path_buf());
        }
    }
    found
}
