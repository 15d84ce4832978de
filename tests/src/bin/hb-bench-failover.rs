//! crmd figures (issue #6) with the configuration Heartbeat 3.0.6 was measured with
//! (keepalive 200 ms, deadtime 1 s, ucast, two nodes, auto_failback off): crash failover
//! (kill -9 of the whole active node → the group started on the survivor), clean standby, and
//! cold start of both nodes to the group running.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hb_lab::start_cluster;
use hbapi::crmd::CrmdProxy;

const RUNS: usize = 10;

fn script(ledger: &Path, state: &Path) -> String {
    format!(
        "s={state}/{{node}}.on\ncase \"$2\" in\nstart) touch $s; echo \"{{node}} start\" >> {ledger};;\nstop) rm -f $s; echo \"{{node}} stop\" >> {ledger};;\nstatus) [ -e $s ] && echo running || echo stopped;;\nesac\nexit 0\n",
        state = state.display(),
        ledger = ledger.display()
    )
}

fn median_ms(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2].as_secs_f64() * 1000.0
}

fn stats(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:.0} ms, median {:.0} ms, max {:.0} ms",
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (mut crash, mut standby, mut cold) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let root = tempfile::tempdir().expect("tempdir");
        let (ledger, state) = (root.path().join("ledger"), root.path().join("state"));
        std::fs::create_dir_all(&state).expect("state");
        let body = script(&ledger, &state);
        let begun = Instant::now();
        let nodes = start_cluster(&["alpha", "bravo"], |b| {
            b.haresources("alpha Ledger::web\n")
                .resource_script("Ledger", &body)
        })
        .await;
        loop {
            if std::fs::read_to_string(&ledger)
                .unwrap_or_default()
                .contains("alpha start")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        cold.push(begun.elapsed());

        // Clean standby: alpha gives the group to bravo.
        let mut at_bravo = CrmdProxy::new(&nodes[1].connection)
            .await
            .expect("crmd")
            .receive_group_changed()
            .await
            .expect("subscribe");
        let begun = Instant::now();
        CrmdProxy::new(&nodes[0].connection)
            .await
            .expect("crmd")
            .standby("all")
            .await
            .expect("standby");
        while let Some(signal) = at_bravo.next().await {
            if signal.args().expect("args").state == "started" {
                break;
            }
        }
        standby.push(begun.elapsed());

        // Crash: bravo (now active) dies; alpha, out of standby, takes over.
        CrmdProxy::new(&nodes[0].connection)
            .await
            .expect("crmd")
            .takeover("all")
            .await
            .expect("takeover");
        let mut at_alpha = CrmdProxy::new(&nodes[0].connection)
            .await
            .expect("crmd")
            .receive_group_changed()
            .await
            .expect("subscribe");
        let begun = Instant::now();
        nodes[1].crash().await;
        while let Some(signal) = at_alpha.next().await {
            if signal.args().expect("args").state == "started" {
                break;
            }
        }
        crash.push(begun.elapsed());
    }
    use hb_lab::report::{record, Target};
    record(
        "crash failover, kill -9 → started on the survivor (2 nodes, median)",
        median_ms(&crash),
        "ms",
        Target::AtMost(1050.0),
        Some(("Heartbeat 3.0.6", 1210.0)),
    );
    record(
        "clean standby → started on the other node (median)",
        median_ms(&standby),
        "ms",
        Target::AtMost(30.0),
        Some(("Heartbeat 3.0.6", 310.0)),
    );
    record(
        "cold start of both nodes → group running (median)",
        median_ms(&cold),
        "ms",
        Target::AtMost(1000.0),
        Some(("Heartbeat 3.0.6", 11000.0)),
    );
    println!("crmd: crash failover, kill -9 of the active node → group started on the survivor (n={RUNS}): {}; target median <= 1050 ms (Heartbeat 3.0.6: 1210 ms)", stats(crash));
    println!("crmd: clean standby → started on the other node (n={RUNS}): {}; target <= 30 ms + agent time (Heartbeat: 310 ms)", stats(standby));
    println!("crmd: cold start of both nodes → group running (n={RUNS}): {}; target <= 1000 ms (Heartbeat: about 11 s)", stats(cold));
}
