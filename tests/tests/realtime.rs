//! ha.cf's `realtime` and `rtprio` (FAQ 11 and 12): hbcomm runs SCHED_RR and locked in memory,
//! every thread of it; the other daemons do not; `realtime off` leaves it alone; and a limit
//! on locked memory that cannot be lifted is logged, bounds what is locked, and does not stop
//! the node.

use hb_lab::{start_cluster, wait_peer_status, NodeBuilder};

const SCHED_OTHER: i32 = 0;
const SCHED_RR: i32 = 2;

/// Every thread's (policy, priority).
fn thread_policies(pid: u32) -> Vec<(i32, i32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    tasks
        .flatten()
        .filter_map(|task| task.file_name().to_str()?.parse::<i32>().ok())
        .map(|tid| hbapi::realtime::policy_of(tid).expect("policy of a live thread"))
        .collect()
}

/// /proc/PID/status's VmLck, in KiB.
fn locked_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|line| line.strip_prefix("VmLck:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmLck line")
}

fn with_log(builder: NodeBuilder, logs: &std::path::Path) -> NodeBuilder {
    let path = logs.join(format!("{}.log", builder.name()));
    builder.ha_cf(format!("logfile {}", path.display()))
}

#[tokio::test]
async fn hbcomm_runs_round_robin_and_locked_and_the_other_daemons_do_not() {
    let logs = tempfile::tempdir().unwrap();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        let b = with_log(b, logs.path());
        if b.name() == "alpha" {
            b.ha_cf("rtprio 7")
        } else {
            b
        }
    })
    .await;
    wait_peer_status(&nodes[0], "bravo", "active").await;
    wait_peer_status(&nodes[1], "alpha", "active").await;

    let alpha_comm = nodes[0].child_pid("hbcomm").await;
    let threads = thread_policies(alpha_comm);
    assert!(!threads.is_empty());
    assert!(
        threads.iter().all(|p| *p == (SCHED_RR, 7)),
        "alpha's hbcomm threads: {threads:?}"
    );
    let log = std::fs::read_to_string(logs.path().join("alpha.log")).unwrap();
    assert!(locked_kib(alpha_comm) > 0, "alpha's hbcomm locks nothing: {log}");
    // Without rtprio: the lowest realtime priority, as Heartbeat.
    let bravo_comm = nodes[1].child_pid("hbcomm").await;
    assert!(thread_policies(bravo_comm).iter().all(|p| *p == (SCHED_RR, 1)));

    for daemon in ["crmd", "lrmd"] {
        let pid = nodes[0].child_pid(daemon).await;
        assert_eq!(
            thread_policies(pid)[0].0,
            SCHED_OTHER,
            "{daemon} is not a realtime process"
        );
        assert_eq!(locked_kib(pid), 0, "{daemon} locks no memory");
    }
    assert_eq!(thread_policies(nodes[0].master_pid())[0].0, SCHED_OTHER);

    assert!(log.contains("hbcomm: scheduled SCHED_RR, priority 7"), "{log}");
    // Everything where the limit can be lifted; else what fits (containers without
    // CAP_SYS_RESOURCE, such as this suite's CI, keep systemd's 8 MiB).
    assert!(log.contains("hbcomm: locked "), "{log}");
}

#[tokio::test]
async fn realtime_off_leaves_hbcomm_an_ordinary_process() {
    let nodes = start_cluster(&["alpha", "bravo"], |b| b.ha_cf("realtime off")).await;
    let comm = nodes[0].child_pid("hbcomm").await;
    assert!(thread_policies(comm).iter().all(|p| p.0 == SCHED_OTHER));
    assert_eq!(locked_kib(comm), 0);
}

#[tokio::test]
async fn a_memlock_limit_that_cannot_be_lifted_is_logged_and_bounds_what_is_locked() {
    let logs = tempfile::tempdir().unwrap();
    // Heartbeat's case: a small RLIMIT_MEMLOCK and no CAP_SYS_RESOURCE to raise it.
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        let b = with_log(b, logs.path());
        if b.name() == "alpha" {
            b.wrapper(&[
                "setpriv",
                "--bounding-set",
                "-sys_resource",
                "--inh-caps",
                "-sys_resource",
                "--",
                "prlimit",
                "--memlock=65536:65536",
                "--",
            ])
        } else {
            b
        }
    })
    .await;
    wait_peer_status(&nodes[0], "bravo", "active").await;
    wait_peer_status(&nodes[1], "alpha", "active").await;
    let comm = nodes[0].child_pid("hbcomm").await;
    assert!(locked_kib(comm) <= 64);
    assert!(thread_policies(comm).iter().all(|p| p.0 == SCHED_RR));
    let log = std::fs::read_to_string(logs.path().join("alpha.log")).unwrap();
    assert!(
        log.contains("of its stack, heap and code in memory, not all of it: RLIMIT_MEMLOCK is 64 KiB"),
        "{log}"
    );
}
