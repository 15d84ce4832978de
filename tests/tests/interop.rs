//! A mixed cluster: a heartbeat-rs node and Debian's Heartbeat 3.0.6 (package `heartbeat`,
//! installed by `.ci/run`), each in its own network namespace (hb_lab::mixed), set up the
//! way ../shared/reference/heartbeat-3.0.6 was captured. Needs root. The resource protocol
//! between them is tests/tests/mixed.rs.

use hb_lab::ledger::Lab;
use hb_lab::mixed::{start_ours, Heartbeat306, Setup, Wire};
use hb_lab::wait_peer_status;

#[tokio::test]
async fn mixed_cluster_with_heartbeat_3_0_6() {
    let wire = Wire::new(&["alpha", "bravo"]);
    let lab = Lab::new();
    let setup = Setup::pair("", "off");
    let mut heartbeat = Heartbeat306::new(&wire, &lab, &setup, "bravo");
    heartbeat.start().await;
    // Heartbeat stays "up", not "active", while its v1 resource manager negotiates with a
    // peer; that negotiation (ask_resources, rsc_hold…) is crmd's part of the protocol. Let it
    // finish alone first (alpha is dead to it after initdead).
    heartbeat.wait_log("local resource transition completed", 0).await;

    let mut ours = start_ours(&wire, &lab, &setup, "alpha").await;

    // Each side reports the other active.
    wait_peer_status(&ours, "bravo", "active").await;
    let mark = heartbeat.log_len();
    heartbeat
        .wait_log("Status update for node alpha: status active", 0)
        .await;
    assert_eq!(
        heartbeat.cl_status(&["nodestatus", "alpha"]).await.1.trim(),
        "active"
    );

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
        let theirs = heartbeat.cl_status(&theirs_args).await;
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
    let mut ours = start_ours(&wire, &lab, &setup, "alpha").await;
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
    let ours = start_ours(&wire, &lab, &setup, "alpha").await;
    wait_peer_status(&ours, "bravo", "active").await;
    heartbeat.crash(&lab).await;
    wait_peer_status(&ours, "bravo", "dead").await;
    // Nothing we sent made Heartbeat complain (it logs an ERROR for every message it cannot
    // take, e.g. an NS_ackmsg without ts).
    let complaints = heartbeat.complaints();
    assert!(
        complaints.is_empty(),
        "Heartbeat 3.0.6 complained:\n{}",
        complaints.join("\n")
    );
}
