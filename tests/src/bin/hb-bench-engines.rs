//! Heartbeat's engine against Corosync's, on the same machine in one run (issue #23): the
//! membership formed after a cold start, a planned stop's handover and a crash's failover on
//! three nodes (heartbeats: keepalive 200 ms, deadtime 1 s; Corosync: knet with crypto, token
//! 1000 ms), then the largest cluster each holds for `--minutes N` (default 10) with no false
//! membership change — `--heartbeat-nodes` (default 32) and `--corosync-nodes` (default 64) —
//! with CPU and memory per node. `--skip-large` leaves the long runs out, `--large-only` the
//! rest.

use std::time::{Duration, Instant};

use hb_lab::faults::{play, Fault, Kind, Shape};
use hb_lab::groups::{changes, wait_group};
use hb_lab::ledger::Lab;
use hb_lab::report::{record, Target};
use hb_lab::{hold, start_cluster, start_corosync_cluster, Node, NodeBuilder};
use hbapi::comm::CommProxy;

const RUNS: usize = 3;

#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Heartbeat,
    Corosync,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Heartbeat => "heartbeat",
            Engine::Corosync => "corosync",
        }
    }

    async fn cluster(self, names: &[&str], configure: impl Fn(NodeBuilder) -> NodeBuilder) -> Vec<Node> {
        match self {
            Engine::Heartbeat => start_cluster(names, configure).await,
            Engine::Corosync => start_corosync_cluster(names, configure).await,
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn active_members(node: &Node) -> usize {
    let Ok(comm) = CommProxy::new(&node.connection).await else {
        return 0;
    };
    comm.list_nodes().await.map_or(0, |nodes| {
        nodes
            .iter()
            .filter(|n| n.kind == "normal" && n.status == "active")
            .count()
    })
}

/// Until every node sees every node active.
async fn formed(nodes: &[Node], within: Duration) -> bool {
    tokio::time::timeout(within, async {
        for node in nodes {
            while active_members(node).await < nodes.len() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await
    .is_ok()
}

/// Three nodes from nothing (Corosync included on its engine) to full membership everywhere.
async fn cold_start(engine: Engine) -> Duration {
    let began = Instant::now();
    let nodes = engine.cluster(&["alpha", "bravo", "charlie"], |b| b).await;
    assert!(
        formed(&nodes, Duration::from_secs(60)).await,
        "{} never formed",
        engine.name()
    );
    let took = began.elapsed();
    tokio::task::spawn_blocking(move || drop(nodes))
        .await
        .expect("stop");
    took
}

/// `heartbeat -k` on alpha, which runs web: until web is started on another node.
async fn planned_stop(engine: Engine) -> Duration {
    let lab = Lab::new();
    let mut nodes = engine
        .cluster(&["alpha", "bravo", "charlie"], |b| {
            lab.configure(b, "alpha Ledger::web\n")
        })
        .await;
    lab.wait_for("alpha", "start").await;
    let mut at_bravo = changes(&nodes[1]).await;
    let began = Instant::now();
    let pid = nodes[0].master_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    let took = began.elapsed();
    let _ = nodes[0].wait_exit().await;
    tokio::task::spawn_blocking(move || drop(nodes))
        .await
        .expect("stop");
    took
}

/// The whole of alpha killed (its Corosync too): from the kill to the first survivor saying
/// alpha is dead, and to web started elsewhere (the fault harness's crash, three nodes,
/// quorum, no fencing: the survivors wait out alpha's own stop, deadtime + 2 s).
async fn crash(engine: Engine) -> (Option<Duration>, Option<Duration>) {
    let shape = match engine {
        Engine::Heartbeat => Shape::Quorum3,
        Engine::Corosync => Shape::Corosync3,
    };
    let outcome = play(Fault {
        kind: Kind::Crash,
        shape,
    })
    .await;
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    (outcome.detection, outcome.recovery)
}

/// `count` nodes held for `minutes`: formation, nodes declared dead (nothing is killed, so
/// any is false), and CPU and memory per node.
async fn large(engine: Engine, count: usize, minutes: u64) {
    let names: Vec<String> = (1..=count).map(|i| format!("node{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let began = Instant::now();
    let nodes = engine.cluster(&names, |b| b).await;
    let label = format!("{} nodes on {}", count, engine.name());
    if !formed(&nodes, Duration::from_secs(300)).await {
        println!("{label}: membership never formed within 300 s");
        record(
            &format!("{label}: membership formed"),
            0.0,
            "",
            Target::AtLeast(1.0),
            None,
        );
        return;
    }
    let formed_after = began.elapsed();
    let corosyncs: Vec<u32> = nodes
        .iter()
        .filter_map(|n| n.corosync.as_ref().and_then(|(lab, index)| lab.pid(*index)))
        .collect();
    let held = hold(&nodes, &corosyncs, Duration::from_secs(minutes * 60)).await;
    let deaths = held.deaths;
    let stack_cpu = held.stack_cpu_per_minute / count as f64;
    let corosync_cpu = held.others_cpu_per_minute / count as f64;
    let stack_rss = held.stack_rss_kib as f64 / 1024.0 / count as f64;
    let corosync_rss = held.others_rss_kib as f64 / 1024.0 / count as f64;
    println!(
        "{label}: full membership everywhere {:.1} s after the start; over {minutes} min {deaths} nodes declared dead (target 0); per node heartbeat-rs {stack_cpu:.3} CPU s/min and {stack_rss:.1} MB{}",
        formed_after.as_secs_f64(),
        if engine == Engine::Corosync {
            format!(", Corosync {corosync_cpu:.3} CPU s/min and {corosync_rss:.1} MB")
        } else {
            String::new()
        }
    );
    record(
        &format!("{label}: membership formed after start"),
        formed_after.as_secs_f64(),
        "s",
        Target::None,
        None,
    );
    record(
        &format!("{label}: false deaths in {minutes} min"),
        f64::from(deaths),
        "",
        Target::AtMost(0.0),
        None,
    );
    record(
        &format!("{label}: heartbeat-rs CPU per node"),
        stack_cpu,
        "s/min",
        Target::None,
        None,
    );
    record(
        &format!("{label}: heartbeat-rs memory per node"),
        stack_rss,
        "MB",
        Target::None,
        None,
    );
    if engine == Engine::Corosync {
        record(
            &format!("{label}: Corosync CPU per node"),
            corosync_cpu,
            "s/min",
            Target::None,
            None,
        );
        record(
            &format!("{label}: Corosync memory per node"),
            corosync_rss,
            "MB",
            Target::None,
            None,
        );
    }
    tokio::task::spawn_blocking(move || drop(nodes))
        .await
        .expect("stop");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let minutes = hb_lab::report::option("minutes", 10);
    let heartbeat_nodes = hb_lab::report::option("heartbeat-nodes", 32) as usize;
    let corosync_nodes = hb_lab::report::option("corosync-nodes", 64) as usize;
    let small_runs = if args.iter().any(|a| a == "--large-only") {
        0
    } else {
        1
    };
    for engine in [Engine::Heartbeat, Engine::Corosync]
        .into_iter()
        .take(2 * small_runs)
    {
        let name = engine.name();
        let mut starts = Vec::new();
        let mut stops = Vec::new();
        let mut detections = Vec::new();
        let mut recoveries = Vec::new();
        for _ in 0..RUNS {
            starts.push(ms(cold_start(engine).await));
            stops.push(ms(planned_stop(engine).await));
            let (detection, recovery) = crash(engine).await;
            detections.extend(detection.map(ms));
            recoveries.extend(recovery.map(ms));
        }
        println!(
            "{name}: 3 nodes formed after a cold start in {starts:.0?} ms; planned stop handed over in {stops:.0?} ms; a crash detected in {detections:.0?} ms and its group started elsewhere in {recoveries:.0?} ms"
        );
        record(
            &format!("{name}: 3-node membership after cold start"),
            median(starts),
            "ms",
            Target::None,
            None,
        );
        record(
            &format!("{name}: planned stop handover"),
            median(stops),
            "ms",
            Target::None,
            None,
        );
        record(
            &format!("{name}: crash detected"),
            median(detections),
            "ms",
            Target::None,
            None,
        );
        record(
            &format!("{name}: crash failover (3 nodes, quorum)"),
            median(recoveries),
            "ms",
            Target::None,
            None,
        );
    }
    if !args.iter().any(|a| a == "--skip-large") {
        // A count of 0 leaves that engine's long run out.
        for (engine, count) in [
            (Engine::Heartbeat, heartbeat_nodes),
            (Engine::Corosync, corosync_nodes),
        ] {
            if count > 0 {
                large(engine, count, minutes).await;
            }
        }
    }
}
