//! The fault-injection harness: each fault is played on a fresh cluster of complete nodes in a
//! network namespace of its own (so iptables rules touch nothing else), every node in a cgroup
//! of its own (so that a crash, a hang or a fence is the whole node at once, agents included),
//! and judged afterwards from the start/stop ledger the test agent writes and from what the
//! nodes said on their buses while it happened.
//!
//! The resources are two heartbeat-class groups, `Ledger::web` (alpha's) and `Ledger::db`
//! (bravo's). The agent fails, or hangs in, an operation when a marker file tells it to. The
//! lab's fence device is a cluster-glue external plugin that kills a node's cgroup — what
//! pulling its power does — and which can be told to fail, hang or lie.
//!
//! The invariants, checked for every fault:
//! - no resource ever starts on a node while the ledger has it running on another (a node's
//!   resources end when it stops them or when it is powered off: fenced, or crashed by the
//!   harness);
//! - `web` runs again within its budget when the fault takes it away (the node's death, its
//!   lost network, a failed agent), and stays where it is when the fault should not move it;
//! - after the fault heals, every live node reports the same members and decision maker;
//! - when the cluster is stopped, no process of any node is left and nothing runs.
//!
//! Needs root (namespaces, iptables, cgroups, mounts, the clock).

mod catalogue;
mod cgroup;
mod cluster;
mod play;
mod table;

use std::time::Duration;

pub use catalogue::{corosync_faults, default_faults, Fault, Kind, Shape};
pub use cgroup::{enter_cgroup, Cgroup, CgroupMount};
pub use cluster::Cluster;
pub use play::{play, Outcome};
pub use table::{passed, record, table, Row, Seeded};

use catalogue::Expect;
use cluster::{jump_clock, marker};

/// ha.cf's deadtime in every fault cluster (keepalive 200 ms).
pub const DEADTIME: Duration = Duration::from_secs(1);
/// Start, stop and monitor timeouts of the test agent.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a move may take: deadtime, then (three nodes, no fencing) the lost node's stop
/// timeout and deadtime again, then the start — with room for a loaded machine.
const MOVE_BUDGET: Duration = Duration::from_secs(8);
/// How long "nothing should happen" is watched. Waiting for an event that must not come is the
/// one place a window is the test.
const QUIET_WINDOW: Duration = Duration::from_secs(3);

/// The test agent: the ledger script, plus markers in the state directory that make an
/// operation on one resource fail (`fail-start.NODE.RESOURCE`, `fail-stop.…`), hang
/// (`hang-start.…`, `hang-stop.…`) or the resource die behind the cluster's back
/// (`die.NODE.RESOURCE`: the next status finds it stopped and the ledger says "crash").
pub fn ledger_agent(lab: &crate::ledger::Lab) -> String {
    include_str!("../../data/faults/ledger-agent.sh")
        .replace("@STATE@", &lab.state.display().to_string())
        .replace("@LEDGER@", &lab.ledger.display().to_string())
}

/// The lab's power switch, in cluster-glue's external plugin protocol: off and reset kill the
/// node's cgroup and write "NODE off all" to the ledger once it is empty. The file `mode` in
/// its directory says how it behaves: works (absent), fails, hangs or lies.
fn power_switch_script(device: &std::path::Path, ledger: &std::path::Path) -> String {
    include_str!("../../data/faults/power-switch.sh")
        .replace("@DEVICE@", &device.display().to_string())
        .replace("@LEDGER@", &ledger.display().to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_are_stable_and_unique() {
        let faults = default_faults();
        let names: BTreeSet<String> = faults.iter().map(Fault::name).collect();
        assert_eq!(names.len(), faults.len());
        assert!(names.contains("asymmetric-partition/quorum3"), "{names:?}");
        assert!(names.contains("loss-40%/quorum3"));
        assert!(names.contains("clock-1h/quorum3"));
    }

    /// A lying fence (the checker's own test) and a killed stack with neither fencing nor a
    /// watchdog (the gap the watchdog closes) are the only faults expected to break the rules.
    #[test]
    fn only_a_lying_fence_and_an_unguarded_stack_kill_are_expected_to_break_the_rules() {
        let expected: Vec<String> = default_faults()
            .into_iter()
            .filter(|f| f.expect() == Expect::DoubleStart)
            .map(|f| f.name())
            .collect();
        assert_eq!(expected, ["stack-kill/quorum3", "fence-lies/fencing3"]);
    }

    #[test]
    fn a_violation_fails_the_run_unless_it_was_the_point() {
        let fault = Fault {
            kind: Kind::Crash,
            shape: Shape::Quorum3,
        };
        let mut rows = Vec::new();
        record(&mut rows, fault, Outcome::default());
        assert!(passed(&rows));
        record(
            &mut rows,
            fault,
            Outcome {
                violations: vec!["x".into()],
                ..Outcome::default()
            },
        );
        assert!(!passed(&rows));
        assert!(table(&rows).contains("crash/quorum3: x"));
        let lies = Fault {
            kind: Kind::FenceLies,
            shape: Shape::Fencing3,
        };
        let mut rows = Vec::new();
        record(
            &mut rows,
            lies,
            Outcome {
                violations_expected: true,
                ..Outcome::default()
            },
        );
        assert!(
            !passed(&rows),
            "a lying fence the checker did not catch is a failure"
        );
    }
}
