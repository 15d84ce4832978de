//! ha.cf's `watchdog` (FAQ 11) on the lab's stand-in device (`hb_lab::watchdog`): fed with
//! every heartbeat, disarmed by a planned stop and not by a stop that leaves a group running,
//! refused when it cannot be opened, spoken to by crmd only; and Debian's Heartbeat 3.0.6 on
//! the same stand-in, for the timeout and the magic close it uses. The faults that reset a
//! node (a frozen node, a killed stack, a partition) are in the fault harness's `watchdog3`
//! rows (tests/tests/faults.rs).

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hb_lab::watchdog::StandIn;
use hb_lab::{start_cluster, NodeBuilder, PATIENCE};

/// The lab's deadtime (NodeBuilder's default timing), hence the devices' timeout.
const DEADTIME: Duration = Duration::from_secs(1);

/// Waits (within the patience) until `condition` holds; it is a device's state, which tells
/// no one when it changes.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A stand-in for `node` in `dir` that counts its resets in `resets`.
fn stand_in(dir: &Path, node: &str, resets: &Arc<AtomicU32>) -> StandIn {
    let resets = resets.clone();
    StandIn::new(dir, node, hbapi::config::watchdog_timeout(DEADTIME), move || {
        resets.fetch_add(1, Ordering::SeqCst);
    })
}

#[tokio::test]
async fn every_heartbeat_feeds_the_watchdog_and_a_planned_stop_disarms_it() {
    let dir = tempfile::tempdir().unwrap();
    let resets = Arc::new(AtomicU32::new(0));
    let alpha_dog = stand_in(dir.path(), "alpha", &resets);
    let bravo_dog = stand_in(dir.path(), "bravo", &resets);
    let log = dir.path().join("alpha.log");
    let mut nodes = start_cluster(&["alpha", "bravo"], |b| {
        let dog = if b.name() == "alpha" {
            &alpha_dog
        } else {
            &bravo_dog
        };
        let mut b = b.ha_cf(format!("watchdog {}", dog.path.display()));
        if b.name() == "alpha" {
            b = b.ha_cf(format!("logfile {}", log.display()));
        }
        b
    })
    .await;
    // Fed at every keepalive (200 ms): ten writes within a few seconds, none missed.
    wait_until("ten writes to each watchdog", || {
        alpha_dog.tickles() >= 10 && bravo_dog.tickles() >= 10
    })
    .await;
    assert!(alpha_dog.armed() && bravo_dog.armed());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("Using watchdog device: {}", alpha_dog.path.display()))
            && text.contains("it must reset this node 2 s after the last write"),
        "{text}"
    );
    let (code, timing, stderr) = nodes[0].tool("cl_status", &["hbtiming"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        timing.contains(&format!(
            "watchdog {} (timeout 2 s): fed with every heartbeat",
            alpha_dog.path.display()
        )),
        "{timing}"
    );
    // A planned stop: disarmed with the magic character, never reset.
    // The stand-in reads what was written a moment after the writer closed: waited for. A
    // device left armed would reset instead, which the count of resets tells.
    nodes[1].terminate().await;
    wait_until("bravo's watchdog disarmed", || !bravo_dog.armed()).await;
    nodes[0].terminate().await;
    wait_until("alpha's watchdog disarmed", || !alpha_dog.armed()).await;
    assert_eq!(resets.load(Ordering::SeqCst), 0);
}

/// A group whose stop fails at a planned stop may still run: the device is closed armed, and
/// the machine resets (sbd's answer to a failed stop, where Pacemaker would fence).
#[tokio::test]
async fn a_planned_stop_that_leaves_a_group_running_leaves_the_watchdog_armed() {
    let dir = tempfile::tempdir().unwrap();
    let resets = Arc::new(AtomicU32::new(0));
    let dog = stand_in(dir.path(), "alpha", &resets);
    // An agent whose stop fails once `stuck` exists, leaving the resource running.
    let state = dir.path().join("web.on");
    let stuck = dir.path().join("stuck");
    let agent = format!(
        "case \"$2\" in\nstart) touch {state};;\nstop) [ -e {stuck} ] && exit 1; rm -f {state};;\nstatus) if [ -e {state} ]; then echo running; else echo stopped; fi;;\nesac\nexit 0\n",
        state = state.display(),
        stuck = stuck.display()
    );
    let mut node = NodeBuilder::new("alpha")
        .nodes(&["alpha", "bravo"])
        .bind("127.0.0.1")
        .links(vec!["ucast lo 127.0.0.2".into()])
        .timing("200ms", "1", "2")
        .core_daemons()
        .haresources("alpha Stuck::web\n")
        .resource_script("Stuck", &agent)
        .ha_cf(format!("watchdog {}", dog.path.display()))
        .start()
        .await;
    wait_until("web running on alpha", || state.exists()).await;
    std::fs::write(&stuck, "").unwrap();
    node.terminate().await;
    assert!(dog.armed(), "closed disarmed although web may still run");
    wait_until("the watchdog's reset", || resets.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test]
async fn a_watchdog_that_cannot_be_opened_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ha-log");
    let missing = dir.path().join("no-such-watchdog");
    let mut master = NodeBuilder::new("alpha")
        .nodes(&["alpha", "bravo"])
        .bind("127.0.0.1")
        .links(vec!["ucast lo 127.0.0.2".into()])
        .core_daemons()
        .ha_cf(format!("watchdog {}", missing.display()))
        .ha_cf(format!("logfile {}", log.display()))
        .spawn_unready()
        .await;
    let status = master.wait_exit().await;
    assert_eq!(status.code(), Some(6), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("watchdog {}: cannot open", missing.display())),
        "{text}"
    );
}

#[tokio::test]
async fn only_root_speaks_for_crmd_to_the_watchdog() {
    let nodes = start_cluster(&["alpha", "bravo"], |b| b.bus(hb_lab::BusKind::DbusDaemon)).await;
    let (ok, stderr) = nodes[0]
        .call_as_nobody(&[
            hbapi::names::comm::BUS_NAME,
            hbapi::names::comm::OBJECT_PATH,
            hbapi::names::comm::INTERFACE,
            "SetWatchdogState",
            "bs",
            "true",
            "no quorum",
        ])
        .await;
    assert!(!ok);
    assert!(stderr.contains("may not speak for crmd"), "{stderr}");
}

/// Heartbeat 3.0.6 on the same stand-in: it asks for the same timeout (its WDIOC_SETTIMEOUT
/// fails on a FIFO and its log names the seconds), writes as it hears its own heartbeats,
/// and disarms at a planned stop — as ours does beside it.
#[tokio::test]
async fn heartbeat_3_0_6_uses_the_watchdog_as_we_do() {
    use hb_lab::ledger::Lab;
    use hb_lab::mixed::{Heartbeat306, Setup, Wire};
    let dir = tempfile::tempdir().unwrap();
    let resets = Arc::new(AtomicU32::new(0));
    let theirs = stand_in(dir.path(), "alpha", &resets);
    let ours_dog = stand_in(dir.path(), "bravo", &resets);
    let wire = Wire::new(&["alpha", "bravo"]);
    let lab = Lab::new();
    let setup = Setup::pair("alpha Ledger::web\n", "off");
    let mut heartbeat = Heartbeat306::new(&wire, &lab, &setup, "alpha");
    heartbeat.add_ha_cf(&format!("watchdog {}", theirs.path.display()));
    heartbeat.start().await;
    let seconds = hbapi::config::watchdog_timeout(DEADTIME).as_secs();
    heartbeat
        .wait_log(&format!("Failed to set watchdog timer to {seconds} seconds"), 0)
        .await;
    let mut ours = lab
        .configure(
            NodeBuilder::new("bravo")
                .nodes(&["alpha", "bravo"])
                .core_daemons()
                .wrapper(&["ip", "netns", "exec", wire.namespace("bravo")])
                .links(wire.links())
                .timing("200ms", "1", "2")
                .ha_cf("auto_failback off")
                .ha_cf(format!("watchdog {}", ours_dog.path.display())),
            &setup.haresources,
        )
        .start_with_authkeys(hb_lab::mixed::AUTHKEYS)
        .await;
    hb_lab::wait_peer_status(&ours, "alpha", "active").await;
    wait_until("ten writes to each watchdog", || {
        theirs.tickles() >= 10 && ours_dog.tickles() >= 10
    })
    .await;
    ours.terminate().await;
    wait_until("our watchdog disarmed", || !ours_dog.armed()).await;
    heartbeat.stop().await;
    wait_until("Heartbeat's watchdog disarmed", || !theirs.armed()).await;
    assert_eq!(resets.load(Ordering::SeqCst), 0);
}
