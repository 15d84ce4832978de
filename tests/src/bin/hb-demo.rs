//! The one-command demonstration: a local three-node cluster (private buses, loopback
//! addresses), the live monitor's view, a kill -9 of the node running the demo service, how
//! long the failover took, and the clean-up. `scripts/demo` builds and runs it.

use std::time::Instant;

use futures_util::StreamExt;
use hb_lab::{bin, start_cluster, Node, PATIENCE};
use hbapi::crmd::CrmdProxy;

/// The demo service, called Heartbeat's way (`Demo NAME start|stop|status`): a marker file
/// per node says it runs there.
const DEMO: &str = "state={state}/{node}.$1.on\ncase \"$2\" in\nstart) touch \"$state\"; echo \"Demo $1 started on {node}\";;\nstop) rm -f \"$state\";;\nstatus) if [ -e \"$state\" ]; then echo running; else echo stopped; fi;;\nesac\nexit 0\n";

/// The demo service's stop timeout.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn monitor(node: &Node) -> String {
    std::process::Command::new(bin("hb_mon"))
        .arg("-1")
        .env(hbapi::names::env::RUN_DIR, &node.run_dir)
        .env_remove(hbapi::names::env::BUS_ADDRESS)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("(hb_mon: {e})\n"))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let state = tempfile::tempdir().expect("temporary directory");
    let script = DEMO.replace("{state}", &state.path().display().to_string());
    println!(
        "Starting three nodes on this machine: alpha (127.0.0.1), bravo (127.0.0.2), charlie (127.0.0.3)"
    );
    println!("each with its own private bus and directories; keepalive 200 ms, deadtime 1 s, no fencing.");
    let begun = Instant::now();
    // Three nodes and no fencing: a node that vanishes while running a group is waited for
    // until its own stop must be over (it has lost quorum and stops by itself) — the stop
    // timeout plus deadtime. The demo's service stops fast, so its stop timeout is 2 s.
    let ops = hbapi::config::OpSettings {
        stop_timeout: STOP_TIMEOUT,
        ..hbapi::config::OpSettings::default()
    };
    let nodes = start_cluster(&["alpha", "bravo", "charlie"], |b| {
        b.haresources("alpha Demo::web\n")
            .resource_script("Demo", &script)
            .resource_ops("Demo::web", ops)
    })
    .await;
    let alpha_runs = state.path().join("alpha.web.on");
    let started = tokio::time::timeout(PATIENCE, async {
        while !alpha_runs.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    if started.is_err() {
        eprintln!("hb-demo: Demo::web never started on alpha");
        return std::process::ExitCode::FAILURE;
    }
    println!(
        "Cluster up and Demo::web running on alpha after {} ms. The monitor on alpha (hb_mon -1):\n",
        begun.elapsed().as_millis()
    );
    print!("{}", indent(&monitor(&nodes[0])));

    let crmd = CrmdProxy::new(&nodes[1].connection).await.expect("crmd on bravo");
    let mut changes = crmd.receive_group_changed().await.expect("subscribe");
    println!("\nKilling every process of alpha with SIGKILL (its master, hbcomm, crmd, lrmd, stonithd)…");
    let killed = Instant::now();
    nodes[0].crash().await;
    let moved = tokio::time::timeout(PATIENCE, async {
        while let Some(signal) = changes.next().await {
            let Ok(args) = signal.args() else { continue };
            if args.group == "Demo::web" && args.state == "started" {
                return true;
            }
        }
        false
    })
    .await;
    let took = killed.elapsed();
    if !matches!(moved, Ok(true)) {
        eprintln!("hb-demo: Demo::web did not start on bravo");
        return std::process::ExitCode::FAILURE;
    }
    println!("The monitor on bravo now:\n");
    print!("{}", indent(&monitor(&nodes[1])));
    println!(
        "\nFailover: Demo::web started on bravo {} ms after alpha was killed.",
        took.as_millis()
    );
    println!("bravo declared alpha dead after deadtime (1 s) without a heartbeat. With three nodes and no");
    println!("fencing it then waited until alpha's own stop must be over (alpha, alone, has no quorum and");
    println!(
        "stops what it runs): the stop timeout ({} s) plus deadtime. With a fence device configured",
        STOP_TIMEOUT.as_secs()
    );
    println!(
        "(stonith_host in ha.cf) it fences alpha instead and starts the group as soon as that succeeds."
    );
    println!("Stopping bravo and charlie and removing their directories.");
    drop(nodes);
    println!("Done in {:.1} s.", begun.elapsed().as_secs_f64());
    std::process::ExitCode::SUCCESS
}
