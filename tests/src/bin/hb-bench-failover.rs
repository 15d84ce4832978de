//! crmd figures with the configuration Heartbeat 3.0.6 was measured with (keepalive 200 ms,
//! deadtime 1 s, ucast, auto_failback off): crash failover (kill -9 of the whole active node →
//! the group started on the survivor), clean standby, cold start of both nodes to the group
//! running, hb_standby then a crash of the node that took the group (it comes back), and a
//! planned stop (`heartbeat -k`) of the node that runs the group and decides, with two and
//! three nodes.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hb_lab::{start_cluster, Node};
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

/// Subscribes to `node`'s group changes.
async fn changes(node: &Node) -> zbus::proxy::SignalStream<'static> {
    let proxy = CrmdProxy::new(&node.connection).await.expect("crmd");
    proxy
        .inner()
        .receive_signal("GroupChanged")
        .await
        .expect("subscribe")
}

/// Waits for a `started` among `stream`'s group changes.
async fn started(stream: &mut zbus::proxy::SignalStream<'static>) {
    while let Some(message) = stream.next().await {
        let (_group, _node, state): (String, String, String) = message.body().deserialize().expect("args");
        if state == "started" {
            return;
        }
    }
}

/// Waits until the ledger has `line`.
async fn wait_ledger(ledger: &Path, line: &str) {
    while !std::fs::read_to_string(ledger).unwrap_or_default().contains(line) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A cluster of `names` running the ledger group on alpha, once alpha started it.
async fn cluster(names: &[&str], root: &Path) -> Vec<Node> {
    let (ledger, state) = (root.join("ledger"), root.join("state"));
    std::fs::create_dir_all(&state).expect("state");
    let body = script(&ledger, &state);
    let nodes = start_cluster(names, |b| {
        b.haresources("alpha Ledger::web\n")
            .resource_script("Ledger", &body)
    })
    .await;
    wait_ledger(&ledger, "alpha start").await;
    nodes
}

/// What the agent itself takes for a stop and a start (two runs of the script).
fn agent_time(root: &Path) -> Duration {
    let (ledger, state) = (root.join("agent-ledger"), root.join("agent-state"));
    std::fs::create_dir_all(&state).expect("state");
    let path = root.join("agent");
    std::fs::write(&path, script(&ledger, &state).replace("{node}", "alpha")).expect("script");
    let begun = Instant::now();
    for action in ["stop", "start"] {
        let status = std::process::Command::new("/bin/sh")
            .arg(&path)
            .args(["web", action])
            .status()
            .expect("sh");
        assert!(status.success());
    }
    begun.elapsed()
}

/// `heartbeat -k` on alpha (running the group, deciding) → the group started on bravo.
async fn planned_stop(names: &[&str]) -> Duration {
    let root = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(names, root.path()).await;
    let mut at_bravo = changes(&nodes[1]).await;
    let begun = Instant::now();
    // Timed to the start on bravo; alpha's master may exit after it.
    let start_seen = async {
        started(&mut at_bravo).await;
        begun.elapsed()
    };
    let (status, took) = tokio::join!(nodes[0].terminate(), start_seen);
    assert!(status.success(), "heartbeat -k: {status:?}");
    took
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (mut crash, mut standby, mut cold) = (Vec::new(), Vec::new(), Vec::new());
    let (mut standby_crash, mut stop2, mut stop3, mut agent) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
        drop(nodes);

        // hb_standby, then the node that took the group crashes: it comes back (Heartbeat's
        // one-time standby).
        let root = tempfile::tempdir().expect("tempdir");
        let nodes = cluster(&["alpha", "bravo"], root.path()).await;
        let mut at_alpha = changes(&nodes[0]).await;
        let mut at_bravo = changes(&nodes[1]).await;
        CrmdProxy::new(&nodes[0].connection)
            .await
            .expect("crmd")
            .standby("all")
            .await
            .expect("standby");
        started(&mut at_bravo).await;
        let begun = Instant::now();
        nodes[1].crash().await;
        started(&mut at_alpha).await;
        standby_crash.push(begun.elapsed());
        drop(nodes);

        stop2.push(planned_stop(&["alpha", "bravo"]).await);
        stop3.push(planned_stop(&["alpha", "bravo", "charlie"]).await);
        agent.push(agent_time(root.path()));
    }
    let agent_ms = median_ms(&agent);
    use hb_lab::report::{record, Target};
    let figures = [
        (
            "crash failover, kill -9 → started on the survivor (2 nodes, median)",
            &crash,
            1050.0,
            Some(1210.0),
        ),
        (
            "clean standby → started on the other node (median)",
            &standby,
            30.0,
            Some(310.0),
        ),
        (
            "cold start of both nodes → group running (median)",
            &cold,
            1000.0,
            Some(11000.0),
        ),
        (
            "hb_standby, then the taker crashes → started again (median)",
            &standby_crash,
            1050.0,
            Some(1200.0),
        ),
        (
            "planned stop of the deciding node → started on the peer, 2 nodes (median)",
            &stop2,
            30.0 + agent_ms,
            Some(170.0),
        ),
        (
            "planned stop of the deciding node → started on a peer, 3 nodes (median)",
            &stop3,
            30.0 + agent_ms,
            None,
        ),
    ];
    for (name, samples, target, heartbeat) in figures {
        record(
            name,
            median_ms(samples),
            "ms",
            Target::AtMost(target),
            heartbeat.map(|ms| ("Heartbeat 3.0.6", ms)),
        );
    }
    println!("crmd: hb_standby, then the taker crashes → started again (n={RUNS}): {}; target <= deadtime + 50 ms = 1050 ms (Heartbeat 3.0.6: 1.0-1.4 s)", stats(standby_crash));
    println!("crmd: planned stop of the deciding node → started on the peer, 2 nodes (n={RUNS}): {}; target <= 30 ms + agent stop and start ({agent_ms:.1} ms) (Heartbeat 3.0.6: 170 ms)", stats(stop2));
    println!("crmd: planned stop of the deciding node → started on a peer, 3 nodes (n={RUNS}): {}; target <= 30 ms + agent stop and start ({agent_ms:.1} ms)", stats(stop3));
    println!("crmd: crash failover, kill -9 of the active node → group started on the survivor (n={RUNS}): {}; target median <= 1050 ms (Heartbeat 3.0.6: 1210 ms)", stats(crash));
    println!("crmd: clean standby → started on the other node (n={RUNS}): {}; target <= 30 ms + agent time (Heartbeat: 310 ms)", stats(standby));
    println!("crmd: cold start of both nodes → group running (n={RUNS}): {}; target <= 1000 ms (Heartbeat: about 11 s)", stats(cold));
}
