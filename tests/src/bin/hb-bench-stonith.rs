//! stonithd figure (issue #5): the overhead of a fence through the bus (queue, device lookup,
//! history, signals) against running the same fence agent directly.

use std::io::Write;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hb_lab::start_cluster;
use hbapi::stonith::StonithProxy;

const SAMPLES: usize = 20;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let root = tempfile::tempdir().expect("tempdir");
    let status_file = root.path().join("power");
    let line = format!(
        "stonith_host * fence_dummy status_file={} pcmk_host_list=bravo",
        status_file.display()
    );
    let nodes = start_cluster(&["alpha", "bravo"], |b| b.ha_cf(line.clone())).await;
    let proxy = StonithProxy::new(&nodes[0].connection).await.expect("stonithd");
    let mut finished = proxy.receive_fence_finished().await.expect("subscribe");

    let mut direct = Vec::new();
    for _ in 0..SAMPLES {
        let begun = Instant::now();
        let mut agent = std::process::Command::new("/usr/sbin/fence_dummy")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("fence_dummy (Debian's fence-agents)");
        if let Some(mut input) = agent.stdin.take() {
            let _ = write!(input, "action=off\nstatus_file={}\n", status_file.display());
        }
        assert!(agent.wait().expect("wait").success());
        direct.push(begun.elapsed());
    }
    let mut through_bus = Vec::new();
    for _ in 0..SAMPLES {
        let begun = Instant::now();
        let op_id = proxy.fence("bravo", "off", "benchmark").await.expect("fence");
        loop {
            let record = finished
                .next()
                .await
                .expect("signal")
                .args()
                .expect("args")
                .record;
            if record.op_id == op_id {
                assert!(record.ok, "{record:?}");
                break;
            }
        }
        through_bus.push(begun.elapsed());
    }
    let (direct, bus) = (median(direct), median(through_bus));
    hb_lab::report::record(
        "stonithd: bus overhead of fence_dummy off (median)",
        bus.saturating_sub(direct).as_secs_f64() * 1000.0,
        "ms",
        hb_lab::report::Target::None,
        None,
    );
    println!(
        "stonithd: fence_dummy off through the bus (n={SAMPLES}) median {:.1} ms, run directly {:.1} ms: overhead {:.1} ms",
        bus.as_secs_f64() * 1000.0,
        direct.as_secs_f64() * 1000.0,
        bus.saturating_sub(direct).as_secs_f64() * 1000.0
    );
}
