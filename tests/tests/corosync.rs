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
    let mut corosync = CorosyncLab::new(&NAMES, tag);
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
