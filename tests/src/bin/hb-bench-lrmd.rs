//! lrmd figures (issue #4): the overhead of one operation through the bus against a plain
//! fork/exec of the same agent, and operations per second with 100 resources monitored at 1 s
//! intervals.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hb_lab::{process_usage, start_cluster};
use hbapi::lrmd::{AgentId, LrmdProxy};

const SAMPLES: usize = 200;
const RESOURCES: usize = 100;
const MONITORED: Duration = Duration::from_secs(20);

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let nodes = start_cluster(&["alpha", "bravo"], |b| b).await;
    let node = &nodes[0];
    let resource_d = node.config_dir.join("resource.d");
    std::fs::create_dir_all(&resource_d).expect("resource.d");
    let noop = resource_d.join("Noop");
    std::fs::write(&noop, "#!/bin/sh\nexit 0\n").expect("Noop");
    let counter_file = node.path("monitors");
    let count = resource_d.join("Count");
    std::fs::write(
        &count,
        format!(
            "#!/bin/sh\necho \"$1\" >> {}\necho running\n",
            counter_file.display()
        ),
    )
    .expect("Count");
    for script in [&noop, &count] {
        std::fs::set_permissions(script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    let lrmd = LrmdProxy::new(&node.connection).await.expect("lrmd");
    let mut results = lrmd.receive_operation_completed().await.expect("subscribe");
    let agent = |name: &str| AgentId {
        class: "heartbeat".into(),
        provider: String::new(),
        agent: name.into(),
    };

    let mut direct = Vec::new();
    for _ in 0..SAMPLES {
        let begun = Instant::now();
        let status = tokio::process::Command::new(&noop)
            .arg("start")
            .status()
            .await
            .expect("spawn");
        assert!(status.success());
        direct.push(begun.elapsed());
    }
    let mut through_bus = Vec::new();
    for _ in 0..SAMPLES {
        let begun = Instant::now();
        let op_id = lrmd
            .execute("noop", &agent("Noop"), "start", HashMap::new(), 10_000)
            .await
            .expect("execute");
        loop {
            let signal = results.next().await.expect("signal");
            if signal.args().expect("args").result.op_id == op_id {
                break;
            }
        }
        through_bus.push(begun.elapsed());
    }
    let (direct, bus) = (median(direct), median(through_bus));
    let overhead = bus.saturating_sub(direct);
    hb_lab::report::record(
        "lrmd: bus overhead of one operation (median)",
        overhead.as_secs_f64() * 1000.0,
        "ms",
        hb_lab::report::Target::AtMost(2.0),
        None,
    );
    println!(
        "lrmd: one operation through the bus (n={SAMPLES}) median {:.2} ms, plain fork/exec {:.2} ms: overhead {:.2} ms; target <= 2 ms: {}",
        bus.as_secs_f64() * 1000.0,
        direct.as_secs_f64() * 1000.0,
        overhead.as_secs_f64() * 1000.0,
        if overhead <= Duration::from_millis(2) { "met" } else { "NOT met" }
    );

    // An unread signal stream holds up the connection (zbus applies back-pressure).
    drop(results);
    for index in 0..RESOURCES {
        let params = HashMap::from([("1".to_owned(), index.to_string())]);
        lrmd.start_monitor(&format!("r{index}"), &agent("Count"), params, 1000, 10_000)
            .await
            .expect("start_monitor");
    }
    let lrmd_pid = node.child_pid("lrmd").await;
    // Let every monitor run once before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = || {
        std::fs::read_to_string(&counter_file)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let (before, cpu_before) = (lines(), process_usage(lrmd_pid).0);
    let begun = Instant::now();
    tokio::time::sleep(MONITORED).await;
    let elapsed = begun.elapsed().as_secs_f64();
    let (after, (cpu_after, rss)) = (lines(), process_usage(lrmd_pid));
    hb_lab::report::record(
        &format!("lrmd: monitors run per second, {RESOURCES} resources every 1 s"),
        (after - before) as f64 / elapsed,
        "/s",
        hb_lab::report::Target::AtLeast(RESOURCES as f64 * 0.95),
        None,
    );
    println!(
        "lrmd: {RESOURCES} resources monitored every 1 s: {:.1} operations/s (ideal {RESOURCES}); lrmd CPU {:.1} % of one core, RSS {:.1} MB",
        (after - before) as f64 / elapsed,
        (cpu_after - cpu_before) * 100.0 / elapsed,
        rss as f64 / 1024.0
    );
}
