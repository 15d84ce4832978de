//! heartbeat-rs on Corosync 3 (`engine corosync`): three Corosync instances in network
//! namespaces ([`hb_lab::corosync`]) with a heartbeat-rs node beside each. Needs root, Debian's
//! corosync and a build with the `corosync` feature (`cargo test -p hb-lab --features corosync
//! --test corosync`).
#![cfg(feature = "corosync")]

use std::time::Duration;

use hb_lab::corosync::CorosyncLab;
use hb_lab::ledger::Lab;
use hb_lab::{start_cluster, wait_peer_status, Node};

const NAMES: [&str; 3] = ["alpha", "bravo", "charlie"];

/// A three-node cluster on Corosync with web preferring alpha and db bravo (the fault
/// harness's ledger agent).
async fn cluster(tag: &str) -> (CorosyncLab, Vec<Node>, Lab) {
    let corosync = CorosyncLab::new(&NAMES, tag);
    for index in 0..NAMES.len() {
        corosync.start(index, &[]);
    }
    for index in 0..NAMES.len() {
        corosync
            .wait_quorate(index, Duration::from_secs(20))
            .expect("quorate");
    }
    let lab = Lab::new();
    let script = hb_lab::faults::ledger_agent(&lab);
    let wrappers: Vec<Vec<String>> = (0..NAMES.len()).map(|i| corosync.wrapper(i)).collect();
    let index = std::cell::Cell::new(0usize);
    let nodes = start_cluster(&NAMES, |builder| {
        let me = index.get();
        index.set(me + 1);
        let wrapper: Vec<&str> = wrappers[me].iter().map(String::as_str).collect();
        builder
            .wrapper(&wrapper)
            .links(Vec::new())
            .ha_cf("engine corosync")
            .haresources("alpha Ledger::web\nbravo Ledger::db\n")
            .resource_script("Ledger", &script)
    })
    .await;
    (corosync, nodes, lab)
}

async fn wait_running(lab: &Lab, resource: &str, node: &str) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while lab.running().get(resource).map(String::as_str) != Some(node) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{resource} never ran on {node}: {:?}", lab.events()));
}

#[tokio::test]
async fn three_nodes_form_a_cluster_and_a_crash_moves_its_group() {
    let (corosync, nodes, lab) = cluster("cs1").await;
    for node in &nodes {
        for peer in NAMES {
            if peer != node.node {
                wait_peer_status(node, peer, "active").await;
            }
        }
        let comm = hbapi::comm::CommProxy::new(&node.connection).await.unwrap();
        assert_eq!(comm.quorum().await.unwrap(), (true, true), "{}", node.node);
    }
    wait_running(&lab, "web", "alpha").await;
    wait_running(&lab, "db", "bravo").await;
    drop(corosync);
    drop(nodes);
    assert!(lab.double_starts().is_empty(), "{:?}", lab.double_starts());
}

/// The fault harness on Corosync: a node's crash, its partition and killed daemons (Corosync
/// among them), each on a fresh cluster, judged by the same invariants as on heartbeats. The
/// table is printed and kept in target/fault-table-corosync.txt.
#[tokio::test]
async fn the_fault_harness_on_corosync_breaks_no_invariant() {
    use hb_lab::faults::{corosync_faults, passed, play, record, table};
    let mut rows = Vec::new();
    let only = std::env::var("HB_FAULT").ok();
    for fault in corosync_faults() {
        if only.as_deref().is_some_and(|name| name != fault.name()) {
            continue;
        }
        let outcome = play(fault).await;
        record(&mut rows, fault, outcome);
    }
    let table = table(&rows);
    println!("{table}");
    let kept = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fault-table-corosync.txt");
    let _ = std::fs::write(kept, &table);
    assert!(passed(&rows), "{table}");
}

/// ipfail on Corosync, unchanged: the node that loses its ping node (the bridge's address)
/// gives its group up to one that still reaches it.
#[tokio::test]
async fn ipfail_moves_the_group_off_the_node_that_lost_its_ping_node() {
    let lab = Lab::new();
    let script = hb_lab::faults::ledger_agent(&lab);
    let nodes = hb_lab::start_corosync_cluster(&NAMES, |builder| {
        builder
            .haresources("alpha Ledger::web\n")
            .resource_script("Ledger", &script)
            .ha_cf(format!("ping {}", hb_lab::corosync::PING_NODE))
            .ha_cf("deadping 1")
            .ha_cf("respawn hacluster /usr/lib/heartbeat/ipfail --hysteresis 1s")
    })
    .await;
    wait_running(&lab, "web", "alpha").await;
    let ipfail = hbapi::ipfail::IpfailProxy::new(&nodes[0].connection)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(state) = ipfail.state().await {
                if state.counts.len() == 3 && state.counts.iter().all(|c| c.count == 1) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every ipfail counts the ping node");
    let (corosync, _) = nodes[0].corosync.clone().unwrap();
    corosync.cut_pings(0, true);
    tokio::time::timeout(Duration::from_secs(30), async {
        while lab.running().get("web").is_none_or(|node| node == "alpha") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("web never left alpha: {:?}", lab.events()));
    assert!(ipfail.state().await.unwrap().gave_up);
    drop(nodes);
    assert!(lab.double_starts().is_empty(), "{:?}", lab.double_starts());
}

/// `corosync-cfgtool -H` on bravo: Corosync asks heartbeat-rs first, bravo's stack stops and
/// hands db over, and only then does Corosync stop.
#[tokio::test]
async fn corosync_cfgtool_shutdown_waits_until_the_groups_are_handed_over() {
    let lab = Lab::new();
    let script = hb_lab::faults::ledger_agent(&lab);
    let mut nodes = hb_lab::start_corosync_cluster(&NAMES, |builder| {
        builder
            .haresources("alpha Ledger::web\nbravo Ledger::db\n")
            .resource_script("Ledger", &script)
    })
    .await;
    wait_running(&lab, "db", "bravo").await;
    let (corosync, _) = nodes[1].corosync.clone().unwrap();
    let shutdown = tokio::task::spawn_blocking(move || {
        let answer = corosync.exec(1, &["corosync-cfgtool", "-H"]);
        (answer, std::time::Instant::now())
    });
    let status = tokio::time::timeout(Duration::from_secs(30), nodes[1].wait_exit())
        .await
        .expect("bravo's heartbeat-rs stopped");
    let stack_stopped = std::time::Instant::now();
    assert!(status.success(), "{status:?}");
    let (answered, corosync_stopped) = shutdown.await.unwrap();
    assert!(answered.is_ok(), "corosync-cfgtool -H: {answered:?}");
    // Corosync stopped after bravo's stack had (hbcomm says yes last, as it exits); the
    // margin is the time this test takes to see the master's exit.
    assert!(
        corosync_stopped + Duration::from_millis(50) >= stack_stopped,
        "Corosync stopped {:?} before bravo's heartbeat-rs",
        stack_stopped - corosync_stopped
    );
    wait_running(&lab, "db", "alpha").await;
    let events: Vec<String> = lab
        .entries()
        .into_iter()
        .map(|(node, event, resource)| format!("{node} {event} {resource}"))
        .collect();
    let stopped = events
        .iter()
        .position(|e| e == "bravo stop db")
        .unwrap_or_else(|| panic!("bravo never stopped db: {events:?}"));
    let started = events
        .iter()
        .position(|e| e.ends_with(" start db") && !e.starts_with("bravo"))
        .unwrap_or_else(|| panic!("db never started elsewhere: {events:?}"));
    assert!(stopped < started, "{events:?}");
    drop(nodes);
    assert!(lab.double_starts().is_empty(), "{:?}", lab.double_starts());
}
