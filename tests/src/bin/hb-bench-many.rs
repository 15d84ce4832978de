//! crmd figure (issue #6): 1,000 `ocf:heartbeat:Dummy` resources (one group each, half
//! preferring each node) placed, started and first monitored on 2 nodes of one machine —
//! from the start of both nodes to the last first-monitor result in lrmd's history.

use std::time::{Duration, Instant};

use hb_lab::{process_usage, start_cluster};
use hbapi::config::{AgentClass, OpSettings, Resource, ResourceGroup};
use hbapi::lrmd::LrmdProxy;

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

/// Resources whose recurring monitor has reported on this node.
async fn monitored(lrmd: &LrmdProxy<'_>) -> usize {
    lrmd.resources()
        .await
        .map(|all| {
            all.iter()
                .filter(|r| {
                    r.last
                        .iter()
                        .any(|op| op.action == "monitor" && op.interval_ms > 0 && op.rc == 0)
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let begun = Instant::now();
    let nodes = start_cluster(&["alpha", "bravo"], |b| b.groups(groups())).await;
    let proxies = [
        LrmdProxy::new(&nodes[0].connection).await.expect("lrmd"),
        LrmdProxy::new(&nodes[1].connection).await.expect("lrmd"),
    ];
    let deadline = begun + Duration::from_secs(300);
    let mut done = 0;
    while Instant::now() < deadline {
        done = monitored(&proxies[0]).await + monitored(&proxies[1]).await;
        if done >= RESOURCES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = begun.elapsed();
    let crmd_cpu: f64 = {
        let mut total = 0.0;
        for node in &nodes {
            total += process_usage(node.child_pid("crmd").await).0;
        }
        total
    };
    println!(
        "crmd: {done} of {RESOURCES} ocf:heartbeat:Dummy resources placed, started and first monitored on 2 nodes in {:.1} s (both crmds {:.1} CPU s); target <= 10 s (Pacemaker 2.1.5: 287 s)",
        elapsed.as_secs_f64(),
        crmd_cpu
    );
}
