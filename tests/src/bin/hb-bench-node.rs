//! A node's footprint (issue #9): RSS and idle CPU of all its processes — the master with its
//! embedded bus, hbcomm, lrmd, stonithd, crmd — at keepalive 200 ms, in a two-node cluster
//! running one group with a monitor every 10 s. `--seconds N` (default 60) sets the idle run.

use std::time::{Duration, Instant};

use hb_lab::report::{record, Target};
use hb_lab::{process_usage, start_cluster, wait_peer_status, Node};

async fn pids(node: &Node) -> Vec<u32> {
    let children = node.master().await.list_children().await.expect("children");
    std::iter::once(node.master_pid())
        .chain(children.iter().map(|c| c.pid))
        .filter(|pid| *pid != 0)
        .collect()
}

/// Resident kB of `pids` with each shared library (a mapping under /usr/lib or /lib) counted
/// once, at its largest, where a sum of RSS counts it once per process.
fn resident_libraries_once(pids: &[u32]) -> u64 {
    let mut own = 0;
    let mut libraries: std::collections::BTreeMap<String, u64> = Default::default();
    for pid in pids {
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        let mut per_library: std::collections::BTreeMap<String, u64> = Default::default();
        let mut mapping = String::new();
        for line in smaps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields
                .first()
                .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
            {
                mapping = fields.get(5).copied().unwrap_or("").to_owned();
            } else if fields.first() == Some(&"Rss:") {
                let kb: u64 = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
                if mapping.starts_with("/usr/lib") || mapping.starts_with("/lib") {
                    *per_library.entry(mapping.clone()).or_default() += kb;
                } else {
                    own += kb;
                }
            }
        }
        for (library, kb) in per_library {
            let largest = libraries.entry(library).or_default();
            *largest = (*largest).max(kb);
        }
    }
    own + libraries.values().sum::<u64>()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let seconds = hb_lab::report::option("seconds", 60);
    let lab = hb_lab::ledger::Lab::new();
    let ops = hbapi::config::OpSettings {
        monitor_interval: Some(Duration::from_secs(10)),
        ..hbapi::config::OpSettings::default()
    };
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        lab.configure(b, "alpha Ledger::web\n")
            .resource_ops("Ledger::web", ops)
    })
    .await;
    wait_peer_status(&nodes[0], "bravo", "active").await;
    lab.wait_for("alpha", "start").await;
    let alpha = pids(&nodes[0]).await;
    let usage = |pids: &[u32]| {
        pids.iter()
            .map(|p| process_usage(*p))
            .fold((0.0, 0u64), |(cpu, rss), (c, r)| (cpu + c, rss + r))
    };
    let (cpu_before, _) = usage(&alpha);
    let begun = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = begun.elapsed().as_secs_f64();
    let (cpu_after, rss) = usage(&alpha);
    let per_minute = (cpu_after - cpu_before) * 60.0 / elapsed;
    let megabytes = rss as f64 / 1024.0;
    let once = resident_libraries_once(&alpha) as f64 / 1024.0;
    println!(
        "node: all {} processes of one node (master and bus, hbcomm, lrmd, stonithd, crmd) over {elapsed:.0} s at keepalive 200 ms: idle CPU {per_minute:.3} s/min (target <= 0.1), RSS {megabytes:.1} MB (target <= 25); {once:.1} MB with each shared library counted once",
        alpha.len()
    );
    record(
        "node: idle CPU of all daemons, keepalive 200 ms",
        per_minute,
        "s/min",
        Target::AtMost(0.1),
        Some(("Heartbeat 3.0.6, 6 processes", 0.26)),
    );
    record(
        "node: RSS of all daemons (sum)",
        megabytes,
        "MB",
        Target::AtMost(25.0),
        Some(("Heartbeat 3.0.6, 6 processes", 40.0)),
    );
    record(
        "node: resident memory, shared libraries counted once",
        once,
        "MB",
        Target::None,
        None,
    );
}
