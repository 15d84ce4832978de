//! The lowest deadtime with no false death while both CPU cores are saturated (issue #9):
//! one busy loop per core at normal priority, and beside it one two-node cluster per candidate
//! deadtime (keepalive a quarter of it), all watched together for `--minutes N` (default 10).
//! A false death is any node declared dead: nobody is killed here.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hb_lab::report::{record, Target};
use hb_lab::{start_cluster, wait_peer_status};
use hbapi::comm::CommProxy;

const CANDIDATES_MS: [u64; 5] = [100, 150, 200, 300, 500];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let minutes = hb_lab::report::option("minutes", 10);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut load = hb_lab::report::busy_loops(cores, 0);
    let mut clusters = Vec::new();
    let mut deaths = Vec::new();
    for deadtime in CANDIDATES_MS {
        let keepalive = format!("{}ms", deadtime / 4);
        let nodes = start_cluster(&["alpha", "bravo"], |b| {
            b.timing(&keepalive, &format!("{deadtime}ms"), "10")
        })
        .await;
        wait_peer_status(&nodes[0], "bravo", "active").await;
        wait_peer_status(&nodes[1], "alpha", "active").await;
        let mut streams = Vec::new();
        for node in &nodes {
            let proxy = CommProxy::new(&node.connection).await.expect("proxy");
            streams.push(proxy.receive_node_status_changed().await.expect("subscribe"));
        }
        deaths.push(futures_util::stream::select_all(streams));
        clusters.push(nodes);
    }
    let window = Duration::from_secs(minutes * 60);
    let begun = Instant::now();
    let mut counts = vec![0u32; CANDIDATES_MS.len()];
    let mut merged = futures_util::stream::select_all(
        deaths
            .into_iter()
            .enumerate()
            .map(|(index, stream)| stream.map(move |signal| (index, signal))),
    );
    while begun.elapsed() < window {
        if let Ok(Some((index, signal))) =
            tokio::time::timeout(window.saturating_sub(begun.elapsed()), merged.next()).await
        {
            if signal.args().is_ok_and(|a| a.new == "dead") {
                counts[index] += 1;
            }
        }
    }
    for child in &mut load {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(clusters);
    for (deadtime, count) in CANDIDATES_MS.iter().zip(&counts) {
        println!("load: deadtime {deadtime} ms (keepalive {} ms), {cores} busy loops, {minutes} min: {count} false deaths", deadtime / 4);
    }
    let lowest = CANDIDATES_MS
        .iter()
        .zip(&counts)
        .find(|(_, count)| **count == 0)
        .map(|(d, _)| *d);
    match lowest {
        Some(deadtime) => {
            println!("load: lowest deadtime without a false death: {deadtime} ms (target <= 300 ms)");
            record(
                &format!("lowest deadtime with no false death over {minutes} min, both cores saturated"),
                deadtime as f64,
                "ms",
                Target::AtMost(300.0),
                None,
            );
        }
        None => {
            println!("load: every candidate deadtime had false deaths (target <= 300 ms: NOT met)");
            record(&format!("lowest deadtime with no false death over {minutes} min, both cores saturated (none of 100–500)"), 1000.0, "ms", Target::AtMost(300.0), None);
        }
    }
}
