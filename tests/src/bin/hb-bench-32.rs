//! A 32-node cluster on one machine (issue #9): complete nodes on 127.0.0.1–32, keepalive
//! 200 ms and deadtime 1 s, every node hearing every other; how long membership took to form,
//! and whether it stays whole for `--minutes N` (default 10): any node declared dead is a
//! failure, since nothing is killed.

use std::time::{Duration, Instant};

use hb_lab::report::{record, Target};
use hb_lab::{hold, start_cluster, Node};
use hbapi::comm::CommProxy;

const NODES: usize = 32;

async fn sees_everyone(node: &Node) -> bool {
    let Ok(comm) = CommProxy::new(&node.connection).await else {
        return false;
    };
    comm.list_nodes().await.is_ok_and(|nodes| {
        nodes
            .iter()
            .filter(|n| n.kind == "normal" && n.status == "active")
            .count()
            == NODES
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let minutes = hb_lab::report::option("minutes", 10);
    let names: Vec<String> = (1..=NODES).map(|i| format!("node{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let begun = Instant::now();
    let nodes = start_cluster(&names, |b| b).await;
    let started = begun.elapsed();
    let formed = tokio::time::timeout(Duration::from_secs(120), async {
        for node in &nodes {
            while !sees_everyone(node).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    if formed.is_err() {
        println!("32 nodes: membership never formed within 120 s");
        record("32 nodes: membership formed", 0.0, "", Target::AtLeast(1.0), None);
        return;
    }
    let formed = begun.elapsed();
    let held = hold(&nodes, &[], Duration::from_secs(minutes * 60)).await;
    let (deaths, per_minute) = (held.deaths, held.stack_cpu_per_minute);
    println!(
        "32 nodes: started in {:.1} s, full membership everywhere after {:.1} s; over {minutes} min: {deaths} nodes declared dead (target 0); all {} processes together {per_minute:.1} CPU s/min",
        started.as_secs_f64(),
        formed.as_secs_f64(),
        held.stack_processes
    );
    record(
        "32 nodes: full membership formed after start",
        formed.as_secs_f64(),
        "s",
        Target::None,
        None,
    );
    record(
        &format!("32 nodes: nodes declared dead over {minutes} min"),
        f64::from(deaths),
        "",
        Target::AtMost(0.0),
        None,
    );
    record(
        "32 nodes: CPU of all 160 processes",
        per_minute,
        "s/min",
        Target::None,
        None,
    );
}
