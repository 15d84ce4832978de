//! crmd figure (issue #6): 1,000 `ocf:heartbeat:Dummy` resources (one group each, half
//! preferring each node) placed, started and first monitored on 2 nodes of one machine —
//! from the start of both nodes to the last first-monitor result in lrmd's history.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use hb_lab::{process_usage, start_cluster};
use hbapi::config::{AgentClass, OpSettings, Resource, ResourceGroup};
use hbapi::lrmd::{LrmdProxy, OpResult};

const RESOURCES: usize = 1000;

fn groups() -> Vec<ResourceGroup> {
    (0..RESOURCES)
        .map(|index| ResourceGroup {
            id: format!("dummy-{index:04}"),
            preferred_node: if index % 2 == 0 { "alpha" } else { "bravo" }.into(),
            resources: vec![Resource {
                id: format!("dummy-{index:04}"),
                class: AgentClass::Ocf {
                    provider: "heartbeat".into(),
                },
                agent: "Dummy".into(),
                args: Vec::new(),
                params: Default::default(),
                ops: OpSettings {
                    monitor_interval: Some(Duration::from_secs(60)),
                    ..OpSettings::default()
                },
            }],
        })
        .collect()
}

/// Whether a result is a recurring monitor's success.
fn is_first_monitor(op: &OpResult) -> bool {
    op.action == "monitor" && op.interval_ms > 0 && op.rc == 0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let begun = Instant::now();
    let nodes = start_cluster(&["alpha", "bravo"], |b| b.groups(groups())).await;
    // Counted from lrmd's signals (a recurring monitor signals its first result); what came
    // before the subscription is caught up from lrmd's listing once.
    let mut monitored: BTreeSet<(usize, String)> = BTreeSet::new();
    let mut streams = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let lrmd = LrmdProxy::new(&node.connection).await.expect("lrmd");
        let results = lrmd.receive_operation_completed().await.expect("subscribe");
        streams.push(results.map(move |signal| (index, signal)));
        for resource in lrmd.resources().await.expect("resources") {
            if resource.last.iter().any(is_first_monitor) {
                monitored.insert((index, resource.resource));
            }
        }
    }
    let mut results = futures_util::stream::select_all(streams);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while monitored.len() < RESOURCES {
        let Ok(Some((index, signal))) = tokio::time::timeout_at(deadline, results.next()).await else {
            break;
        };
        let Ok(args) = signal.args() else { continue };
        if is_first_monitor(&args.result) {
            monitored.insert((index, args.result.resource.clone()));
        }
    }
    let done = monitored.len();
    let elapsed = begun.elapsed();
    hb_lab::report::record(
        &format!("crmd: {done} of {RESOURCES} Dummy resources probed, started, first monitored (2 nodes)"),
        elapsed.as_secs_f64(),
        "s",
        hb_lab::report::Target::AtMost(10.0),
        Some(("Pacemaker 2.1.5", 287.0)),
    );
    // Where the CPU went: the agents' cost is the floor (about 5 ms per Dummy run here).
    let mut usage = Vec::new();
    for daemon in ["crmd", "lrmd", "hbcomm"] {
        let mut total = 0.0;
        for node in &nodes {
            total += process_usage(node.child_pid(daemon).await).0;
        }
        usage.push(format!("{daemon} {total:.1}"));
    }
    let master: f64 = nodes.iter().map(|n| process_usage(n.master_pid()).0).sum();
    usage.push(format!("master and bus {master:.1}"));
    println!(
        "crmd: {done} of {RESOURCES} ocf:heartbeat:Dummy resources probed on both nodes, placed, started and first monitored on 2 nodes in {:.1} s; target <= 10 s (Pacemaker 2.1.5: 287 s)",
        elapsed.as_secs_f64(),
    );
    println!("      CPU seconds of both nodes' daemons: {}", usage.join(", "));
}
