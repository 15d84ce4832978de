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
