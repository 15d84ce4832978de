//! `cl_status` against a running two-node lab: Heartbeat's output and exit codes, `--json`
//! that parses, and Heartbeat's wording once the suite is stopped.

use hb_lab::{start_cluster, Node};

fn cl_status(node: &Node, args: &[&str]) -> (String, i32) {
    let output = std::process::Command::new(hb_lab::bin("cl_status"))
        .args(args)
        .env(hbapi::names::env::RUN_DIR, &node.run_dir)
        .env(hbapi::names::env::CONFIG_DIR, &node.config_dir)
        .env_remove(hbapi::names::env::BUS_ADDRESS)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        output.status.code().unwrap_or(-1),
    )
}

#[tokio::test]
async fn heartbeats_sub_commands_on_a_running_cluster_and_after_it_stops() {
    let mut nodes = start_cluster(&["alpha", "bravo"], |b| b).await;
    let alpha = &nodes[0];
    assert_eq!(
        cl_status(alpha, &["hbstatus"]),
        ("Heartbeat is running on this machine.\n".into(), 0)
    );
    assert_eq!(cl_status(alpha, &["listnodes"]), ("alpha\nbravo\n".into(), 0));
    assert_eq!(cl_status(alpha, &["listnodes", "-p"]), (String::new(), 0));
    assert_eq!(cl_status(alpha, &["nodestatus", "bravo"]), ("active\n".into(), 0));
    assert_eq!(cl_status(alpha, &["nodetype", "bravo"]), ("normal\n".into(), 0));
    assert_eq!(cl_status(alpha, &["nodestatus", "nosuchnode"]).1, 11);
    assert_eq!(
        cl_status(alpha, &["hbparameter", "-p", "deadtime"]),
        ("1\n".into(), 0)
    );
    assert_eq!(
        cl_status(alpha, &["hbparameter", "-p", "keepalive"]),
        ("200ms\n".into(), 0)
    );
    assert_eq!(cl_status(alpha, &["rscstatus"]), ("none\n".into(), 0));
    assert_eq!(
        cl_status(alpha, &["clientstatus", "alpha", "crmd"]),
        ("online\n".into(), 0)
    );
    assert_eq!(cl_status(alpha, &["frobnicate"]).1, 11);
    // Links: whatever hbcomm names them, listhblinks and hblinkstatus agree.
    let (links, code) = cl_status(alpha, &["listhblinks", "bravo"]);
    assert_eq!(code, 0);
    let link = links.trim().to_owned();
    assert!(!link.is_empty() && links.starts_with('\t'), "{links:?}");
    assert_eq!(
        cl_status(alpha, &["hblinkstatus", "bravo", &link]),
        ("up\n".into(), 0)
    );
    // --json parses and says the same.
    let (json, code) = cl_status(alpha, &["listnodes", "-v", "--json"]);
    assert_eq!(code, 0);
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed[1]["node"], "bravo");
    assert_eq!(parsed[1]["status"], "active");
    assert_eq!(parsed[1]["links"][0]["up"], true);
    let parsed: serde_json::Value =
        serde_json::from_str(&cl_status(alpha, &["hbstatus", "--json"]).0).unwrap();
    assert_eq!(parsed["running"], true);

    // Heartbeat's wording and exit code once the suite is stopped.
    let status = nodes[0].terminate().await;
    assert!(status.success(), "{status:?}");
    let alpha = &nodes[0];
    assert_eq!(
        cl_status(alpha, &["hbstatus"]),
        ("Heartbeat is stopped on this machine.\n".into(), 1)
    );
    assert_eq!(cl_status(alpha, &["listnodes"]).1, 1);
}

#[tokio::test]
async fn hb_mon_prints_once_as_text_and_json_and_redraws_on_changes() {
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        b.haresources("alpha Demo::web\n")
            .resource_script("Demo", "case \"$2\" in status) echo stopped;; esac\nexit 0\n")
    })
    .await;
    let run = |args: &[&str]| {
        let output = std::process::Command::new(hb_lab::bin("hb_mon"))
            .args(args)
            .env(hbapi::names::env::RUN_DIR, &nodes[0].run_dir)
            .env_remove(hbapi::names::env::BUS_ADDRESS)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    hb_lab::groups::wait_status(&nodes[0], &["alpha ACTIVE Demo::web", "bravo IDLE"]).await;
    let text = run(&["-1"]);
    assert!(text.contains("heartbeat-rs on alpha"), "{text}");
    assert!(text.contains("bravo"), "{text}");
    assert!(text.contains("Demo::web"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&run(&["--json"])).unwrap();
    assert_eq!(json["node"], "alpha");
    assert_eq!(json["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(json["groups"][0]["group"], "Demo::web");
    let why = run(&["--why", "Demo::web"]);
    assert!(
        why.starts_with("Demo::web runs on alpha, its preferred node.\n"),
        "{why}"
    );
    assert!(why.contains("start Demo::web alpha  because: "), "{why}");

    // Live: one JSON line at start, another when bravo dies (a node status signal).
    let mut live = tokio::process::Command::new(hb_lab::bin("hb_mon"))
        .args(["--json", "--live"])
        .env(hbapi::names::env::RUN_DIR, &nodes[0].run_dir)
        .env_remove(hbapi::names::env::BUS_ADDRESS)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(live.stdout.take().unwrap()));
    let first: serde_json::Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(first["nodes"][1]["status"], "active");
    nodes[1].crash().await;
    let changed = tokio::time::timeout(hb_lab::PATIENCE, async {
        loop {
            let line = lines.next_line().await.unwrap().unwrap();
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            if value["nodes"][1]["status"] == "dead" {
                return value;
            }
        }
    })
    .await
    .expect("a redraw when bravo died");
    assert_eq!(changed["nodes"][1]["node"], "bravo");
}

/// Waits until the file at `path` has a line containing `text` after `from` bytes. hbcomm
/// writes its log with no other notice to wait on.
async fn wait_log(path: &std::path::Path, text: &str, from: usize) {
    let deadline = tokio::time::Instant::now() + hb_lab::PATIENCE;
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.get(from..).is_some_and(|tail| tail.contains(text)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never logged {text:?}:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn faq_12_tuning_late_heartbeats_are_measured_and_a_deadtime_suggested() {
    let logs = tempfile::tempdir().unwrap();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        let log = logs.path().join(format!("{}.log", b.name()));
        b.timing("100ms", "5", "10")
            .ha_cf("warntime 300ms")
            .ha_cf(format!("logfile {}", log.display()))
    })
    .await;
    hb_lab::wait_peer_status(&nodes[0], "bravo", "active").await;
    let alpha_log = logs.path().join("alpha.log");
    let (before, code) = cl_status(&nodes[0], &["hbtiming", "bravo"]);
    assert_eq!(code, 0);
    assert!(
        before.starts_with("keepalive 100 ms, warntime 300 ms, deadtime 5000 ms\n"),
        "{before}"
    );

    // bravo's hbcomm stalls past warntime (well short of deadtime), then goes on.
    let bravo_comm = nix::unistd::Pid::from_raw(nodes[1].child_pid("hbcomm").await as i32);
    let from = std::fs::metadata(&alpha_log)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    nix::sys::signal::kill(bravo_comm, nix::sys::signal::Signal::SIGSTOP).unwrap();
    wait_log(&alpha_log, "Late heartbeat: node bravo", from).await;
    nix::sys::signal::kill(bravo_comm, nix::sys::signal::Signal::SIGCONT).unwrap();
    wait_log(&alpha_log, "heartbeat from bravo on lo", from).await;

    let (json, code) = cl_status(&nodes[0], &["hbtiming", "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let bravo = &json["nodes"][0];
    assert_eq!(bravo["node"], "bravo");
    let longest = bravo["longest_gap_ms"].as_u64().unwrap();
    assert!((300..5000).contains(&longest), "{json}");
    assert!(bravo["late"].as_u64().unwrap() >= 1, "{json}");
    assert_eq!(bravo["suggested_deadtime_ms"][1].as_u64().unwrap(), 2 * longest);
    assert_eq!(bravo["links"][0]["link"], "lo");
    let (text, _) = cl_status(&nodes[0], &["hbtiming", "-v", "bravo"]);
    assert!(
        text.contains(&format!("bravo: longest gap {longest} ms, ")),
        "{text}"
    );
    assert!(
        text.contains("(FAQ 12: 1.5–2 × the longest gap)\n  lo: longest gap "),
        "{text}"
    );

    let (counters, code) = cl_status(&nodes[0], &["counters"]);
    assert_eq!(code, 0);
    let sent: u64 = counters
        .lines()
        .find_map(|l| l.strip_prefix("sent "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sent counter: {counters}"));
    assert!(sent > 0);

    let screen = std::process::Command::new(hb_lab::bin("hb_mon"))
        .arg("-1")
        .env(hbapi::names::env::RUN_DIR, &nodes[0].run_dir)
        .env_remove(hbapi::names::env::BUS_ADDRESS)
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&screen.stdout);
    assert!(
        screen.contains(&format!("Heartbeats:\n  keepalive 100 ms, warntime 300 ms, deadtime 5000 ms\n  bravo: longest gap {longest} ms")),
        "{screen}"
    );
    assert_eq!(
        cl_status(&nodes[0], &["nodestatus", "bravo"]).0,
        "active\n",
        "a late heartbeat is no death"
    );
}
