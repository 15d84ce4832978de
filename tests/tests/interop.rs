//! A mixed cluster: a heartbeat-rs node and Debian's Heartbeat 3.0.6 (package `heartbeat`,
//! installed by `.ci/run`), each in its own network namespace joined by a veth pair, set up the
//! way ../shared/reference/heartbeat-3.0.6 was captured. Needs root.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hb_lab::{wait_peer_status, NodeBuilder, PATIENCE};

const HEARTBEAT_306: &str = "/usr/libexec/heartbeat/heartbeat";

/// Two namespaces and a veth pair, removed on drop.
struct Network {
    ours: String,
    theirs: String,
}

fn run(args: &[&str]) {
    let status = std::process::Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect(args[0]);
    assert!(status.success(), "{args:?} failed");
}

impl Network {
    fn new() -> Network {
        let suffix = std::process::id();
        let network = Network {
            ours: format!("hbrs-a-{suffix}"),
            theirs: format!("hbrs-b-{suffix}"),
        };
        let (veth_ours, veth_theirs) = (format!("ra{suffix}"), format!("rb{suffix}"));
        run(&["ip", "netns", "add", &network.ours]);
        run(&["ip", "netns", "add", &network.theirs]);
        run(&[
            "ip",
            "link",
            "add",
            &veth_ours,
            "type",
            "veth",
            "peer",
            "name",
            &veth_theirs,
        ]);
        for (ns, veth, address) in [
            (&network.ours, &veth_ours, "10.213.77.1/24"),
            (&network.theirs, &veth_theirs, "10.213.77.2/24"),
        ] {
            run(&["ip", "link", "set", veth, "netns", ns]);
            run(&["ip", "-n", ns, "link", "set", veth, "name", "eth0"]);
            run(&["ip", "-n", ns, "addr", "add", address, "dev", "eth0"]);
            run(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        network
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in [&self.ours, &self.theirs] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

const HA_CF: &str = "logfile /var/log/ha-log\nudpport 694\nkeepalive 200ms\ndeadtime 1\ninitdead 2\nucast eth0 10.213.77.1\nucast eth0 10.213.77.2\nauto_failback off\nnode alpha\nnode bravo\ncrm off\n";

/// Debian's Heartbeat as node bravo, in its own namespaces with private /etc/ha.d, /var/log,
/// /var/lib/heartbeat and /run.
struct Heartbeat306 {
    root: tempfile::TempDir,
    process: tokio::process::Child,
}

impl Heartbeat306 {
    async fn start(network: &Network) -> Heartbeat306 {
        assert!(
            Path::new(HEARTBEAT_306).exists(),
            "{HEARTBEAT_306} missing: install Debian's heartbeat package (.ci/run does)"
        );
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        run(&["cp", "-a", "/etc/ha.d/.", etc.to_str().unwrap()]);
        std::fs::write(etc.join("ha.cf"), HA_CF).unwrap();
        std::fs::write(etc.join("haresources"), "").unwrap();
        std::fs::write(etc.join("authkeys"), "auth 1\n1 sha1 anchor-secret-0123456789\n").unwrap();
        std::fs::set_permissions(
            etc.join("authkeys"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        for dir in ["log", "lib"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        run(&[
            "cp",
            "-a",
            "/var/lib/heartbeat/.",
            root.path().join("lib").to_str().unwrap(),
        ]);
        let script = root.path().join("start.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nset -e\nhostname bravo\nmount --bind {etc} /etc/ha.d\nmount --bind {log} /var/log\nmount --bind {lib} /var/lib/heartbeat\nmount -t tmpfs tmpfs /run\nmkdir -p /run/heartbeat/ccm /run/heartbeat/dopd /run/heartbeat/rsctmp\nchown -R hacluster:haclient /run/heartbeat /var/lib/heartbeat\n{HEARTBEAT_306}\nexec sleep infinity\n",
                etc = etc.display(),
                log = root.path().join("log").display(),
                lib = root.path().join("lib").display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let process = tokio::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &network.theirs,
                "unshare",
                "--uts",
                "--ipc",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
            ])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Heartbeat306 { root, process }
    }

    fn log(&self) -> PathBuf {
        self.root.path().join("log/ha-log")
    }

    /// Waits until Heartbeat's log has a line containing `text` after `from` bytes.
    async fn wait_log(&self, text: &str, from: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            if log.get(from..).is_some_and(|tail| tail.contains(text)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Heartbeat 3.0.6 never logged {text:?}; its log:\n{log}"
            );
            // Heartbeat writes its log with no other notice to wait on.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_len(&self) -> usize {
        std::fs::metadata(self.log())
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// `cl_status nodestatus NODE` inside Heartbeat's namespaces.
    async fn cl_status(&self, node: &str) -> String {
        self.cl_status_run(&["nodestatus", node])
            .await
            .1
            .trim()
            .to_owned()
    }

    /// Heartbeat's `cl_status ARGS` inside its namespaces: exit code, stdout and stderr.
    async fn cl_status_run(&self, args: &[&str]) -> (i32, String, String) {
        let pid = self.process.id().unwrap();
        // unshare's child is the namespace's init; its namespaces are the ones to enter.
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let init = children
            .split_whitespace()
            .next()
            .expect("Heartbeat's namespace init")
            .to_owned();
        let output = tokio::process::Command::new("nsenter")
            .args(["-t", &init, "-m", "-u", "-n", "-p", "cl_status"])
            .args(args)
            .output()
            .await
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn kill(mut self) {
        let _ = self.process.start_kill();
        let _ = self.process.wait().await;
    }
}

/// Our node alpha in its namespace, with the reference key (Heartbeat-compatible sha1).
async fn start_ours(network: &Network) -> hb_lab::Node {
    NodeBuilder::new("alpha")
        .nodes(&["alpha", "bravo"])
        .core_daemons()
        .wrapper(&["ip", "netns", "exec", &network.ours])
        .links(vec![
            "udpport 694".into(),
            "ucast eth0 10.213.77.1".into(),
            "ucast eth0 10.213.77.2".into(),
        ])
        .timing("200ms", "1", "2")
        .start_with_authkeys("auth 1\n1 sha1 anchor-secret-0123456789\n")
        .await
}

#[tokio::test]
async fn mixed_cluster_with_heartbeat_3_0_6() {
    let network = Network::new();
    let heartbeat = Heartbeat306::start(&network).await;
    heartbeat
        .wait_log("Configuration validated. Starting heartbeat 3.0.6", 0)
        .await;
    // Heartbeat stays "up", not "active", while its v1 resource manager negotiates with a
    // peer; that negotiation (ask_resources, rsc_hold…) is crmd's part of the protocol. Let it
    // finish alone first (alpha is dead to it after initdead).
    heartbeat.wait_log("local resource transition completed", 0).await;

    let mut ours = start_ours(&network).await;

    // Each side reports the other active.
    wait_peer_status(&ours, "bravo", "active").await;
    let mark = heartbeat.log_len();
    heartbeat
        .wait_log("Status update for node alpha: status active", 0)
        .await;
    assert_eq!(heartbeat.cl_status("alpha").await, "active");

    // cl_status: ours on alpha answers as Heartbeat's own does on bravo, each asked about its
    // peer where the question is about the other node (the peer's name then reads PEER).
    let ours_cl_status = |args: Vec<String>| {
        let output = std::process::Command::new(hb_lab::bin("cl_status"))
            .args(&args)
            .env(hbapi::names::env::RUN_DIR, &ours.run_dir)
            .env_remove(hbapi::names::env::BUS_ADDRESS)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let sorted = |text: &str| {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        lines.join("\n")
    };
    for question in [
        "hbstatus",
        "listnodes",
        "listnodes -n",
        "listnodes -p",
        "nodestatus PEER",
        "nodestatus -m PEER",
        "nodetype PEER",
        "nodetype -m PEER",
        "listhblinks PEER",
        "hblinkstatus PEER eth0",
        "hblinkstatus -m PEER eth0",
        "nodestatus nosuchnode",
        "hblinkstatus PEER eth9",
        "nosuchcommand",
        "hbparameter -p udpport",
        "hbparameter -p nosuchparameter",
    ] {
        let ask = |peer: &str| {
            question
                .split(' ')
                .map(|w| w.replace("PEER", peer))
                .collect::<Vec<_>>()
        };
        let theirs_args = ask("alpha");
        let theirs_args: Vec<&str> = theirs_args.iter().map(String::as_str).collect();
        let theirs = heartbeat.cl_status_run(&theirs_args).await;
        let mine = ours_cl_status(ask("bravo"));
        let normalize = |text: &str, peer: &str| {
            if question.contains("PEER") {
                sorted(&text.replace(peer, "PEER"))
            } else {
                sorted(text)
            }
        };
        assert_eq!(
            (mine.0, normalize(&mine.1, "bravo")),
            (theirs.0, normalize(&theirs.1, "alpha")),
            "cl_status {question}: ours {mine:?}, Heartbeat's {theirs:?}"
        );
    }

    // Our packets are all accepted: Heartbeat sees no gaps in our sequence numbers.
    let comm = hbapi::comm::CommProxy::new(&ours.connection).await.unwrap();
    let counters = comm.counters().await.unwrap();
    assert_eq!(
        counters.get("dropped_forged").copied().unwrap_or(0),
        0,
        "{counters:?}"
    );
    let log = std::fs::read_to_string(heartbeat.log()).unwrap();
    assert!(!log[mark..].contains("lost packet"), "{log}");

    // Heartbeat notices our death.
    let mark = heartbeat.log_len();
    ours.crash().await;
    heartbeat.wait_log("node alpha: is dead", mark).await;
    let _ = ours.wait_exit().await;

    // A planned stop: Heartbeat takes our shutdown notice (t=shutdone) as its own nodes'.
    let mut ours = start_ours(&network).await;
    wait_peer_status(&ours, "bravo", "active").await;
    heartbeat
        .wait_log("Status update for node alpha: status active", mark)
        .await;
    let mark = heartbeat.log_len();
    let status = ours.terminate().await;
    assert!(status.success(), "{status:?}");
    heartbeat
        .wait_log("Received shutdown notice from 'alpha'", mark)
        .await;

    // And we notice Heartbeat's.
    let ours = start_ours(&network).await;
    wait_peer_status(&ours, "bravo", "active").await;
    heartbeat.kill().await;
    wait_peer_status(&ours, "bravo", "dead").await;
}
