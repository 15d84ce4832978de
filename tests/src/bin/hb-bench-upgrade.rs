//! The seed's FAQ 26 against Debian's Heartbeat 3.0.6 (issue #19): two Heartbeat nodes
//! upgraded to heartbeat-rs one at a time with the service up (hb_lab::mixed::rolling_upgrade,
//! keepalive 200 ms, deadtime 1 s, auto_failback on, the lab's Ledger script as the agent).
//! Prints the longest time a group ran nowhere over the whole procedure, per run and the
//! worst of the runs. Needs root and Debian's `heartbeat` package.

use hb_lab::report::{record, Target};

const RUNS: usize = 3;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut worst = std::time::Duration::ZERO;
    let mut worst_ours = std::time::Duration::ZERO;
    for run in 1..=RUNS {
        let upgrade = runtime.block_on(hb_lab::mixed::rolling_upgrade());
        assert!(
            upgrade.double_starts.is_empty(),
            "run {run}: {:?}",
            upgrade.double_starts
        );
        println!(
            "FAQ 26 rolling upgrade, run {run}: longest outage {:.0} ms (ended by: {}); of a handover with heartbeat-rs {:.0} ms (ended by: {}); Heartbeat complaints: {}",
            upgrade.longest_outage.as_secs_f64() * 1000.0,
            upgrade.ended_by,
            upgrade.longest_ours.0.as_secs_f64() * 1000.0,
            upgrade.longest_ours.1,
            upgrade.complaints.len()
        );
        for line in &upgrade.complaints {
            println!("  Heartbeat 3.0.6 complained: {line}");
        }
        worst = worst.max(upgrade.longest_outage);
        worst_ours = worst_ours.max(upgrade.longest_ours.0);
    }
    let worst_ms = worst.as_secs_f64() * 1000.0;
    let worst_ours_ms = worst_ours.as_secs_f64() * 1000.0;
    println!(
        "FAQ 26 rolling upgrade, worst of {RUNS} runs: longest outage {worst_ms:.0} ms; of a handover with heartbeat-rs {worst_ours_ms:.0} ms (target ≤ 200 ms plus agent time)"
    );
    record(
        "FAQ 26 rolling upgrade: longest outage, whole procedure (worst of 3)",
        worst_ms,
        "ms",
        Target::None,
        None,
    );
    record(
        "FAQ 26 rolling upgrade: longest outage of a handover with heartbeat-rs (worst of 3)",
        worst_ours_ms,
        "ms",
        Target::AtMost(200.0),
        None,
    );
}
