//! Mixed clusters: Debian's Heartbeat 3.0.6 (package `heartbeat`, installed by `.ci/run`) and
//! heartbeat-rs nodes, each in its own network namespace, wired through a bridge in a third
//! one — the way ../shared/reference/heartbeat-3.0.6 was captured. Both kinds read the same
//! ha.cf, haresources and authkeys, and run the lab's `Ledger` script, so that one ledger
//! records every start and stop. Needs root.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::ledger::{ledger_script, Lab};
use crate::{NodeBuilder, PATIENCE};

/// Debian's Heartbeat daemon.
pub const HEARTBEAT_306: &str = "/usr/libexec/heartbeat/heartbeat";

/// The authkeys both kinds read (Heartbeat-compatible sha1).
pub const AUTHKEYS: &str = "auth 1\n1 sha1 anchor-secret-0123456789\n";

fn run(args: &[&str]) {
    crate::container::host(args);
}

static WIRES: AtomicU32 = AtomicU32::new(0);

/// A bridge and one namespace per node, removed on drop. Node `i` (in the order given) has
/// the address 10.213.77.`i+1` on its `eth0`.
pub struct Wire {
    switch: String,
    nodes: Vec<(String, String)>,
}

impl Wire {
    /// The namespaces and their wiring.
    pub fn new(nodes: &[&str]) -> Wire {
        let tag = format!("{}{}", std::process::id(), WIRES.fetch_add(1, Ordering::Relaxed));
        let switch = format!("hbrs-sw-{tag}");
        run(&["ip", "netns", "add", &switch]);
        let mut wire = Wire {
            switch,
            nodes: Vec::new(),
        };
        run(&["ip", "-n", &wire.switch, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &wire.switch, "link", "set", "br0", "up"]);
        for (index, node) in nodes.iter().enumerate() {
            let namespace = format!("hbrs-{node}-{tag}");
            run(&["ip", "netns", "add", &namespace]);
            wire.nodes.push((node.to_string(), namespace.clone()));
            let (inside, port) = (format!("i{index}x{tag}"), format!("p{index}x{tag}"));
            run(&[
                "ip", "link", "add", &inside, "type", "veth", "peer", "name", &port,
            ]);
            run(&["ip", "link", "set", &inside, "netns", &namespace]);
            run(&["ip", "link", "set", &port, "netns", &wire.switch]);
            run(&[
                "ip",
                "-n",
                &wire.switch,
                "link",
                "set",
                &port,
                "name",
                &format!("port-{node}"),
            ]);
            run(&[
                "ip",
                "-n",
                &wire.switch,
                "link",
                "set",
                &format!("port-{node}"),
                "master",
                "br0",
                "up",
            ]);
            run(&["ip", "-n", &namespace, "link", "set", &inside, "name", "eth0"]);
            let address = format!("10.213.77.{}/24", index + 1);
            run(&["ip", "-n", &namespace, "addr", "add", &address, "dev", "eth0"]);
            run(&["ip", "-n", &namespace, "link", "set", "eth0", "up"]);
            run(&["ip", "-n", &namespace, "link", "set", "lo", "up"]);
        }
        wire
    }

    /// The namespace of `node`.
    pub fn namespace(&self, node: &str) -> &str {
        &self
            .nodes
            .iter()
            .find(|(n, _)| n == node)
            .unwrap_or_else(|| panic!("no node {node} on the wire"))
            .1
    }

    /// The ucast lines every node's ha.cf has.
    pub fn links(&self) -> Vec<String> {
        let mut lines = vec!["udpport 694".to_owned()];
        for index in 0..self.nodes.len() {
            lines.push(format!("ucast eth0 10.213.77.{}", index + 1));
        }
        lines
    }

    /// Gives the bridge itself an address, 10.213.77.254, which answers pings: a ping node.
    pub fn ping_node(&self) -> &'static str {
        run(&[
            "ip",
            "-n",
            &self.switch,
            "addr",
            "add",
            "10.213.77.254/24",
            "dev",
            "br0",
        ]);
        "10.213.77.254"
    }

    /// Cuts `node` off the bridge (`cut`) or joins it again.
    pub fn cut(&self, node: &str, cut: bool) {
        let port = format!("port-{node}");
        run(&[
            "ip",
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            if cut { "down" } else { "up" },
        ]);
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        for namespace in self.nodes.iter().map(|(_, ns)| ns).chain([&self.switch]) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
    }
}

/// What every node of a mixed cluster is configured with.
#[derive(Clone)]
pub struct Setup {
    /// The nodes, in ha.cf order.
    pub nodes: Vec<String>,
    /// haresources' text (the lab's `Ledger` script).
    pub haresources: String,
    /// `on`, `off` or `legacy`.
    pub auto_failback: String,
}

impl Setup {
    /// Two nodes, alpha and bravo, with `haresources`.
    pub fn pair(haresources: &str, auto_failback: &str) -> Setup {
        Setup {
            nodes: vec!["alpha".into(), "bravo".into()],
            haresources: haresources.to_owned(),
            auto_failback: auto_failback.to_owned(),
        }
    }

    /// The ha.cf both kinds read.
    pub fn ha_cf(&self, wire: &Wire) -> String {
        let mut text = String::from("logfile /var/log/ha-log\nkeepalive 200ms\ndeadtime 1\ninitdead 2\n");
        for line in wire.links() {
            text.push_str(&line);
            text.push('\n');
        }
        text.push_str(&format!("auto_failback {}\n", self.auto_failback));
        for node in &self.nodes {
            text.push_str(&format!("node {node}\n"));
        }
        text.push_str("crm off\n");
        text
    }
}

/// One of our nodes on the wire, with `setup`.
pub async fn start_ours(wire: &Wire, lab: &Lab, setup: &Setup, node: &str) -> crate::Node {
    let nodes: Vec<&str> = setup.nodes.iter().map(String::as_str).collect();
    lab.configure(
        NodeBuilder::new(node)
            .nodes(&nodes)
            .core_daemons()
            .wrapper(&["ip", "netns", "exec", wire.namespace(node)])
            .links(wire.links())
            .timing("200ms", "1", "2")
            .ha_cf(format!("auto_failback {}", setup.auto_failback)),
        &setup.haresources,
    )
    .start_with_authkeys(AUTHKEYS)
    .await
}

/// Debian's Heartbeat as one node, in its own namespaces (uts, ipc, mount, pid) inside the
/// node's network namespace, with private /etc/ha.d, /var/log, /var/lib/heartbeat and /run.
/// Its directories survive a stop or crash, so that it can start again as the same node.
pub struct Heartbeat306 {
    /// Node name.
    pub node: String,
    root: tempfile::TempDir,
    namespace: String,
    process: Option<tokio::process::Child>,
}

impl Heartbeat306 {
    /// Writes the node's configuration (the lab's Ledger script included).
    pub fn new(wire: &Wire, lab: &Lab, setup: &Setup, node: &str) -> Heartbeat306 {
        assert!(
            Path::new(HEARTBEAT_306).exists(),
            "{HEARTBEAT_306} missing: install Debian's heartbeat package (.ci/run does)"
        );
        let root = tempfile::Builder::new()
            .prefix(&format!("hb306-{node}-"))
            .tempdir()
            .expect("tempdir");
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&etc).expect("etc");
        run(&["cp", "-a", "/etc/ha.d/.", etc.to_str().expect("utf-8 path")]);
        std::fs::write(etc.join("ha.cf"), setup.ha_cf(wire)).expect("ha.cf");
        // Debian's shellfuncs sends a script's cluster message to Heartbeat's FIFO in pieces
        // (`(echo ">>>"; cat -; echo "<<<") | cat - >> $HA_FIFO`): two scripts sending at
        // once (mach_down and req_resource, whenever a node takes over from a dead peer that
        // held its groups) interleave, Heartbeat logs "NV failure (msgfromsteam)", drops the
        // message and stays in transition for good — between two Heartbeat nodes too. The
        // lab's copy writes each message in one write, so that the tests judge our side.
        let shellfuncs = etc.join("shellfuncs");
        let text = std::fs::read_to_string(&shellfuncs).expect("shellfuncs");
        let racy = "\t(echo \">>>\"; cat -; echo \"<<<\")\t| cat - >> $HA_FIFO";
        assert!(
            text.contains(racy),
            "Debian's shellfuncs changed: {}",
            shellfuncs.display()
        );
        let atomic = "\tha_message=$( (echo \">>>\"; cat -; echo \"<<<\") )\n\tprintf '%s\\n' \"$ha_message\" >> $HA_FIFO";
        std::fs::write(&shellfuncs, text.replace(racy, atomic)).expect("shellfuncs");
        std::fs::write(etc.join("haresources"), &setup.haresources).expect("haresources");
        std::fs::write(etc.join("authkeys"), AUTHKEYS).expect("authkeys");
        let script = etc.join("resource.d/Ledger");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n{}",
                ledger_script(&lab.ledger, &lab.state).replace("{node}", node)
            ),
        )
        .expect("Ledger");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(etc.join("authkeys"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        for dir in ["log", "lib"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("dir");
        }
        run(&[
            "cp",
            "-a",
            "/var/lib/heartbeat/.",
            root.path().join("lib").to_str().expect("utf-8 path"),
        ]);
        // PID 1 of the node's pid namespace reaps the orphans Heartbeat leaves (its
        // daemonized master among them), so that a stopped node leaves no zombies behind.
        let reaper = root.path().join("reap.py");
        std::fs::write(
            &reaper,
            "import os, time\nwhile True:\n    try:\n        os.wait()\n    except ChildProcessError:\n        time.sleep(0.2)\n",
        )
        .expect("reap.py");
        let start = root.path().join("start.sh");
        std::fs::write(
            &start,
            format!(
                "#!/bin/sh\nset -e\nhostname {node}\nmount --bind {etc} /etc/ha.d\nmount --bind {log} /var/log\nmount --bind {lib} /var/lib/heartbeat\nmount -t tmpfs tmpfs /run\nmkdir -p /run/heartbeat/ccm /run/heartbeat/dopd /run/heartbeat/rsctmp /run/lock\nchown -R hacluster:haclient /run/heartbeat /var/lib/heartbeat\n{HEARTBEAT_306}\nexec python3 {reaper}\n",
                etc = etc.display(),
                reaper = reaper.display(),
                log = root.path().join("log").display(),
                lib = root.path().join("lib").display(),
            ),
        )
        .expect("start.sh");
        std::fs::set_permissions(&start, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Heartbeat306 {
            node: node.to_owned(),
            root,
            namespace: wire.namespace(node).to_owned(),
            process: None,
        }
    }

    /// Adds a line to its ha.cf (before it starts).
    pub fn add_ha_cf(&self, line: &str) {
        let path = self.root.path().join("etc/ha.cf");
        let mut text = std::fs::read_to_string(&path).expect("ha.cf");
        text.push_str(line);
        text.push('\n');
        std::fs::write(&path, text).expect("ha.cf");
    }

    /// Starts Heartbeat; returns once it validated its configuration.
    pub async fn start(&mut self) {
        assert!(self.process.is_none(), "{} is running", self.node);
        let mark = self.log_len();
        let process = tokio::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.namespace,
                "unshare",
                "--uts",
                "--ipc",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
            ])
            .arg(self.root.path().join("start.sh"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("unshare");
        self.process = Some(process);
        self.wait_log("Configuration validated. Starting heartbeat 3.0.6", mark)
            .await;
    }

    /// Heartbeat's log file.
    pub fn log(&self) -> PathBuf {
        self.root.path().join("log/ha-log")
    }

    /// The last `lines` lines of the log, for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The log's length now, to wait for lines written after it.
    pub fn log_len(&self) -> usize {
        std::fs::metadata(self.log())
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// Waits until the log has a line containing `text` after `from` bytes.
    pub async fn wait_log(&self, text: &str, from: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            if log.get(from..).is_some_and(|tail| tail.contains(text)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Heartbeat 3.0.6 on {} never logged {text:?}; its log:\n{log}",
                self.node
            );
            // Heartbeat writes its log with no other notice to wait on.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// ERROR and WARN lines Heartbeat logged, except those it writes on any start in a
    /// container (memory locking, core dump advice, initdead, no logging daemon, a fresh
    /// generation, its main loop running late) and those about a peer it saw die or a
    /// missing fencing device — the
    /// lines two Heartbeat nodes log on the same configuration (see
    /// tests/data/heartbeat-3.0.6/v1-auto-failback-*.txt) — and its answers to a local
    /// client's bad API request (`api_process_request`, with the request dumped after it).
    pub fn complaints(&self) -> Vec<String> {
        self.complaints_since(0)
    }

    /// [`Heartbeat306::complaints`] in the log after `from` bytes.
    pub fn complaints_since(&self, from: usize) -> Vec<String> {
        let mut in_api_dump = false;
        const EXPECTED: &[&str] = &[
            "Cannot lock ourselves into memory",
            "core_uses_pid",
            "core_pattern",
            "Core dumps could be lost",
            "Initial dead time",
            "Logging daemon is disabled",
            "No Previous generation",
            "No STONITH device configured",
            "Shared disks are not protected",
            ": is dead",
            "Late heartbeat",
            // Its own main loop running late on a loaded machine.
            "Dispatch function for",
        ];
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        log.get(from..)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("ERROR") || line.contains("WARN"))
            .filter(|line| {
                if line.contains("api_process_request") {
                    in_api_dump = true;
                    return false;
                }
                in_api_dump &= line.contains("MSG");
                !in_api_dump
            })
            .filter(|line| !EXPECTED.iter().any(|expected| line.contains(expected)))
            .map(str::to_owned)
            .collect()
    }

    /// The namespace init's pid (the node's processes are its descendants).
    fn init_pid(&self) -> String {
        let pid = self
            .process
            .as_ref()
            .and_then(tokio::process::Child::id)
            .expect("Heartbeat node running");
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .expect("Heartbeat's namespace init")
            .to_owned()
    }

    /// Runs `program ARGS` inside the node's namespaces: exit code, stdout and stderr.
    pub async fn exec(&self, program: &str, args: &[&str]) -> (i32, String, String) {
        let output = tokio::process::Command::new("nsenter")
            .args(["-t", &self.init_pid(), "-m", "-u", "-n", "-p", program])
            .args(args)
            .output()
            .await
            .expect("nsenter");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// `cl_status ARGS` inside the node's namespaces.
    pub async fn cl_status(&self, args: &[&str]) -> (i32, String, String) {
        self.exec("cl_status", args).await
    }

    /// Heartbeat's hb_standby (`all`, `local`, `foreign`).
    pub async fn hb_standby(&self, which: &str) {
        let (code, out, err) = self.exec("/usr/share/heartbeat/hb_standby", &[which]).await;
        assert_eq!(code, 0, "hb_standby: {out}{err}");
    }

    /// A planned stop (SIGTERM to the master, as `/etc/init.d/heartbeat stop` does); returns
    /// once Heartbeat says its shutdown is complete.
    pub async fn stop(&mut self) {
        let mark = self.log_len();
        let (code, out, err) = self.exec("pkill", &["-TERM", "-f", "heartbeat: master"]).await;
        assert_eq!(code, 0, "pkill: {out}{err}");
        self.wait_log("Heartbeat shutdown complete", mark).await;
        self.kill().await;
    }

    /// Every process of the node killed at once (SIGKILL), as a power loss would; its
    /// resources are written off in the ledger ("NODE off all").
    pub async fn crash(&mut self, lab: &Lab) {
        let namespace = self.kill_now().await;
        lab.power_off(&self.node);
        self.wait_gone(namespace).await;
    }

    /// Kills the node's pid namespace and waits until every process in it is gone: the
    /// namespace's processes die after unshare does, and one still sending heartbeats when
    /// the node's successor starts would be taken for a replay of the old generation.
    async fn kill(&mut self) {
        let namespace = self.kill_now().await;
        self.wait_gone(namespace).await;
    }

    /// SIGKILL to the node's namespace; returns the namespace (its `ns/pid` link).
    async fn kill_now(&mut self) -> Option<PathBuf> {
        let mut process = self.process.take()?;
        let namespace = process.id().and_then(|pid| {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
            let init = children.split_whitespace().next()?.to_owned();
            std::fs::read_link(format!("/proc/{init}/ns/pid")).ok()
        });
        let _ = process.start_kill();
        let _ = process.wait().await;
        namespace
    }

    /// Waits until no live process is left in `namespace`.
    async fn wait_gone(&self, namespace: Option<PathBuf>) {
        let Some(namespace) = namespace else { return };
        let in_namespace = |entry: &std::fs::DirEntry| {
            let path = entry.path();
            let live = std::fs::read_to_string(path.join("stat")).is_ok_and(|stat| {
                stat.rsplit(") ")
                    .next()
                    .is_some_and(|rest| !rest.starts_with('Z'))
            });
            live && std::fs::read_link(path.join("ns/pid")).is_ok_and(|ns| ns == namespace)
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::time::Instant::now() < deadline {
            let alive = std::fs::read_dir("/proc")
                .map(|entries| {
                    entries.flatten().any(|entry| {
                        entry
                            .file_name()
                            .to_string_lossy()
                            .chars()
                            .all(|c| c.is_ascii_digit())
                            && in_namespace(&entry)
                    })
                })
                .unwrap_or(false);
            if !alive {
                return;
            }
            // The kernel ends them with no notice to wait on.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("Heartbeat's processes on {} outlived their namespace", self.node);
    }
}

/// What the FAQ 26 procedure came to.
pub struct Upgrade {
    /// The longest time a group ran nowhere.
    pub longest_outage: Duration,
    /// The ledger line that ended it.
    pub ended_by: String,
    /// The longest outage of a handover heartbeat-rs took part in (every one after the first,
    /// which is between the two Heartbeat nodes), and the line that ended it.
    pub longest_ours: (Duration, String),
    /// Double starts found in the ledger.
    pub double_starts: Vec<String>,
    /// What Heartbeat logged about our packets.
    pub complaints: Vec<String>,
    /// The whole ledger ("node event").
    pub ledger: Vec<String>,
}

/// The seed's FAQ 26, scripted: two Heartbeat 3.0.6 nodes serve web (alpha) and db (bravo)
/// with auto_failback on; bravo is upgraded (Heartbeat stopped, heartbeat-rs started with the
/// same /etc/ha.d), then alpha; each group moves once to the other node and back. Returns
/// once both groups are home on heartbeat-rs.
pub async fn rolling_upgrade() -> Upgrade {
    let wire = Wire::new(&["alpha", "bravo"]);
    let lab = Lab::new();
    let setup = Setup::pair("alpha Ledger::web\nbravo Ledger::db\n", "on");
    let mut alpha = Heartbeat306::new(&wire, &lab, &setup, "alpha");
    let mut bravo = Heartbeat306::new(&wire, &lab, &setup, "bravo");
    alpha.start().await;
    bravo.start().await;
    lab.wait_for_running("web", "alpha").await;
    lab.wait_for_running("db", "bravo").await;

    // bravo: Heartbeat stops (db moves to alpha), heartbeat-rs starts (db comes back).
    let alpha_mark = alpha.log_len();
    bravo.stop().await;
    lab.wait_for_running("db", "alpha").await;
    let heartbeat_only = lab.line_count();
    let ours_bravo = start_ours(&wire, &lab, &setup, "bravo").await;
    lab.wait_for_running("db", "bravo").await;
    // alpha: the same; web moves to bravo and back, now between two heartbeat-rs nodes.
    // (Heartbeat would delay its stop until the failback is over anyway.)
    alpha
        .wait_log("Other node completed standby takeover", alpha_mark)
        .await;
    alpha.stop().await;
    lab.wait_for_running("web", "bravo").await;
    let ours_alpha = start_ours(&wire, &lab, &setup, "alpha").await;
    lab.wait_for_running("web", "alpha").await;

    // Heartbeat's own lost-packet warnings between two Heartbeat nodes are not ours (the
    // capture of two Heartbeat nodes has them too): bravo's Heartbeat only ever heard
    // Heartbeat; alpha's is judged from the moment bravo was upgraded.
    let complaints = bravo
        .complaints()
        .into_iter()
        .filter(|line| !line.contains("lost packet(s) for [alpha]"))
        .chain(alpha.complaints_since(alpha_mark))
        .collect();
    let mut longest = (Duration::ZERO, String::new());
    let mut longest_ours = (Duration::ZERO, String::new());
    for resource in ["web", "db"] {
        let outage = lab.longest_outage(resource);
        if outage.0 > longest.0 {
            longest = outage;
        }
        let outage = lab.longest_outage_since(resource, heartbeat_only);
        if outage.0 > longest_ours.0 {
            longest_ours = outage;
        }
    }
    let upgrade = Upgrade {
        longest_outage: longest.0,
        ended_by: longest.1,
        longest_ours,
        double_starts: lab.double_starts(),
        complaints,
        ledger: lab.events(),
    };
    drop((ours_alpha, ours_bravo));
    upgrade
}
