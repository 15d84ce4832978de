//! The administrator's lifecycle on complete nodes, after Heartbeat's CTS (StopTest,
//! StandbyTest, SimulStop, ResourceRecover): planned stops, one-time standby, cleanup. Every
//! verdict comes from the ledger of starts and stops the resource script writes, and from
//! what the nodes say on the bus — no timing is assumed.

use hb_lab::groups::{changes, wait_group};
use hb_lab::ledger::Lab;
use hb_lab::{start_cluster, wait_peer_status};
use hbapi::crmd::CrmdProxy;

/// The survivor's ledger lines after the first `skip` (a crashed node's own lines are left
/// out: its lrmd may or may not log a stop as its master dies).
fn survivor_events(lab: &Lab, survivor: &str, skip: usize) -> Vec<String> {
    lab.entries()
        .into_iter()
        .skip(skip)
        .filter(|(node, _, _)| node == survivor)
        .map(|(node, event, resource)| {
            if resource == "web" {
                format!("{node} {event}")
            } else {
                format!("{node} {event} {resource}")
            }
        })
        .collect()
}

/// StopTest: `heartbeat -k` on the node that runs the group and decides. With a deadtime of
/// a minute, the peer can only take over within the test's patience (30 s) if it acts on the
/// leaving node's own word: its reports and Heartbeat's shutdown notice.
#[tokio::test]
async fn a_planned_stop_hands_the_group_over_without_waiting_for_deadtime() {
    let lab = Lab::new();
    let mut nodes = start_cluster(&["alpha", "bravo"], |b| {
        lab.configure(b, "alpha Ledger::web\n")
            .timing("200ms", "60", "60")
    })
    .await;
    lab.wait_for("alpha", "start").await;
    let mut at_bravo = changes(&nodes[1]).await;
    let status = nodes[0].terminate().await;
    assert!(status.success(), "{status:?}");
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    // The shutdown notice took alpha out of bravo's membership at once.
    wait_peer_status(&nodes[1], "alpha", "dead").await;
    lab.assert_never_twice(&[]);
    assert_eq!(lab.events(), ["alpha start", "alpha stop", "bravo start"]);
    let history = CrmdProxy::new(&nodes[1].connection)
        .await
        .unwrap()
        .history()
        .await
        .unwrap();
    let stop = history
        .iter()
        .find(|d| d.decision == "stop Ledger::web alpha")
        .expect("bravo decided alpha's stop");
    assert_eq!(stop.trigger, "alpha is leaving", "{history:?}");
    assert!(
        history.iter().any(|d| d.decision == "start Ledger::web bravo"),
        "{history:?}"
    );
}

/// StandbyTest: hb_standby is Heartbeat's one-time handover. When the node that took the
/// group crashes, the node that gave it away runs it again.
#[tokio::test]
async fn after_hb_standby_the_group_comes_back_when_the_taker_crashes() {
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo"], |b| lab.configure(b, "alpha Ledger::web\n")).await;
    lab.wait_for("alpha", "start").await;
    let mut at_alpha = changes(&nodes[0]).await;
    let mut at_bravo = changes(&nodes[1]).await;
    assert_eq!(nodes[0].tool("hb_standby", &[]).await.0, 0);
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    assert_eq!(lab.events(), ["alpha start", "alpha stop", "bravo start"]);
    nodes[1].crash().await;
    wait_group(&mut at_alpha, "Ledger::web", "started").await;
    // bravo's copy ended with bravo (its lrmd may log the stop as its master dies).
    lab.assert_never_twice(&["bravo"]);
    assert_eq!(survivor_events(&lab, "alpha", 3), ["alpha start"]);
    let history = CrmdProxy::new(&nodes[0].connection)
        .await
        .unwrap()
        .history()
        .await
        .unwrap();
    let back = history.last().expect("a decision");
    assert_eq!(
        (back.decision.as_str(), back.trigger.as_str()),
        ("start Ledger::web alpha", "node bravo is dead"),
        "{history:?}"
    );
}

/// FAQ 23: both groups on alpha after bravo's absence, `hb_standby foreign` gives B back; when
/// bravo then crashes, B returns to alpha.
#[tokio::test]
async fn hb_standby_foreign_fails_back_into_active_active_and_a_crash_brings_it_back() {
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        lab.configure(b, "alpha Ledger::A\nbravo Ledger::B\n")
    })
    .await;
    lab.wait_for("bravo", "start").await;
    let mut at_alpha = changes(&nodes[0]).await;
    let mut at_bravo = changes(&nodes[1]).await;
    // B comes to alpha by hb_takeover foreign (as after a failover with auto_failback off).
    assert_eq!(nodes[0].tool("hb_takeover", &["foreign"]).await.0, 0);
    wait_group(&mut at_alpha, "Ledger::B", "started").await;
    assert_eq!(nodes[0].tool("hb_standby", &["foreign"]).await.0, 0);
    wait_group(&mut at_bravo, "Ledger::B", "started").await;
    let b_events = || -> Vec<String> {
        lab.entries()
            .into_iter()
            .filter(|(_, _, resource)| resource == "B")
            .map(|(node, event, _)| format!("{node} {event}"))
            .collect()
    };
    assert_eq!(
        b_events(),
        [
            "bravo start",
            "bravo stop",
            "alpha start",
            "alpha stop",
            "bravo start"
        ]
    );
    let before_crash = lab.entries().len();
    nodes[1].crash().await;
    wait_group(&mut at_alpha, "Ledger::B", "started").await;
    lab.assert_never_twice(&["bravo"]);
    assert_eq!(survivor_events(&lab, "alpha", before_crash), ["alpha start B"]);
}

/// ResourceRecover: a group that failed on every node stays down until `hb_cleanup`.
#[tokio::test]
async fn hb_cleanup_brings_back_a_group_that_failed_everywhere() {
    let lab = Lab::new();
    let broken = lab.state.join("broken");
    std::fs::write(&broken, "").unwrap();
    // Starts like the ledger script, but fails to start while the marker file exists.
    let script = format!(
        "if [ \"$2\" = start ] && [ -e {broken} ]; then exit 1; fi\n{}",
        hb_lab::ledger::ledger_script(&lab.ledger, &lab.state),
        broken = broken.display()
    );
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        b.haresources("alpha Flaky::web\n")
            .resource_script("Flaky", &script)
    })
    .await;
    let groups = || async {
        CrmdProxy::new(&nodes[0].connection)
            .await
            .unwrap()
            .groups()
            .await
            .unwrap()
    };
    let mut at_alpha = changes(&nodes[0]).await;
    // Failed on both nodes: nothing runs.
    tokio::time::timeout(hb_lab::PATIENCE, async {
        loop {
            let web = groups().await.into_iter().find(|g| g.group == "Flaky::web");
            if web.is_some_and(|g| g.failed_on.len() == 2) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("web failed on both nodes");
    std::fs::remove_file(&broken).unwrap();
    let (status, out, err) = nodes[1].tool("hb_cleanup", &["Flaky::web", "--json"]).await;
    assert_eq!(status, 0, "{err}");
    assert_eq!(out, "{\"ok\":true,\"cleaned\":\"Flaky::web\"}\n");
    wait_group(&mut at_alpha, "Flaky::web", "started").await;
    lab.assert_never_twice(&[]);
    assert_eq!(lab.events(), ["alpha start"]);
    let (status, _, err) = nodes[1].tool("hb_cleanup", &["no-such-group"]).await;
    assert_eq!(status, 1);
    assert!(err.contains("no group or resource"), "{err}");
}

/// auto_failback legacy has no standby in Heartbeat; here the command says so and nothing
/// moves. And a standby with nobody to take over is refused, as Heartbeat cancels it.
#[tokio::test]
async fn hb_standby_is_refused_with_auto_failback_legacy_and_with_no_peer() {
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        lab.configure(b, "alpha Ledger::web\n")
            .ha_cf("auto_failback legacy")
    })
    .await;
    lab.wait_for("alpha", "start").await;
    let (status, _, err) = nodes[0].tool("hb_standby", &[]).await;
    assert_eq!(status, 1);
    assert!(err.contains("auto_failback legacy"), "{err}");
    drop(nodes);

    let lab = Lab::new();
    let mut nodes = start_cluster(&["alpha", "bravo"], |b| lab.configure(b, "alpha Ledger::web\n")).await;
    lab.wait_for("alpha", "start").await;
    let status = nodes[1].terminate().await;
    assert!(status.success(), "{status:?}");
    wait_peer_status(&nodes[0], "bravo", "dead").await;
    let (status, _, err) = nodes[0].tool("hb_standby", &[]).await;
    assert_eq!(status, 1);
    assert!(err.contains("no other node"), "{err}");
    assert_eq!(lab.events(), ["alpha start"]);
}

/// SimulStop: both nodes stop at once; each stops its own group, nothing starts meanwhile.
#[tokio::test]
async fn both_nodes_stopping_at_once_stop_everything_and_start_nothing() {
    let lab = Lab::new();
    let mut nodes = start_cluster(&["alpha", "bravo"], |b| {
        lab.configure(b, "alpha Ledger::A\nbravo Ledger::B\n")
    })
    .await;
    lab.wait_for("bravo", "start").await;
    lab.wait_for("alpha", "start").await;
    let (first, second) = nodes.split_at_mut(1);
    let (alpha, bravo) = tokio::join!(first[0].terminate(), second[0].terminate());
    assert!(alpha.success() && bravo.success(), "{alpha:?} {bravo:?}");
    lab.assert_never_twice(&[]);
    let mut events = lab.events();
    events.sort();
    assert_eq!(events, ["alpha start", "alpha stop", "bravo start", "bravo stop"]);
}

/// The wait for a lost node's own stop, as an administrator sees it: three nodes with quorum
/// and no fencing, the node running the group crashes; while its groups are held back,
/// `cl_status rscstatus -m` (and `--json`) on the decision maker says what is held, why and for
/// how long; then the group starts there.
#[tokio::test]
async fn a_lost_nodes_held_groups_are_shown_by_cl_status_until_they_start() {
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo", "charlie"], |b| {
        lab.configure(b, "alpha Ledger::web\n").ha_cf("lost_node_wait 3")
    })
    .await;
    lab.wait_for("alpha", "start").await;
    let mut at_bravo = changes(&nodes[1]).await;
    nodes[0].crash().await;
    let held = tokio::time::timeout(hb_lab::PATIENCE, async {
        loop {
            let (code, stdout, _) = nodes[1].tool("cl_status", &["rscstatus", "-m"]).await;
            if stdout.contains("Held back:") {
                return (code, stdout);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("bravo never showed the hold");
    assert_eq!(held.0, 0);
    assert!(
        held.1
            .contains("Held back: Ledger::web held: alpha was lost while it ran them")
            && held.1.contains("lost_node_wait"),
        "{}",
        held.1
    );
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    let (_, json, _) = nodes[1].tool("cl_status", &["rscstatus", "--json"]).await;
    assert_eq!(
        json, "{\"status\":\"foreign\",\"groups\":[\"Ledger::web\"],\"holds\":[]}\n",
        "the hold is over once the group started"
    );
    // alpha's stack was killed with the resource still running: only its crash clears it.
    lab.assert_never_twice(&["alpha"]);
}

/// StopTest with a stop that fails (supervisor issue, item 6): `heartbeat -k` says what may
/// still run and exits non-zero; the node never announces a clean departure, so its peer keeps
/// the group where it is blocked instead of starting a second copy.
#[tokio::test]
async fn a_stop_that_fails_at_heartbeat_k_is_reported_and_nothing_starts_twice() {
    let lab = Lab::new();
    let stuck = format!(
        "state={state}/{{node}}.$1.on\ncase \"$2\" in\nstart) touch \"$state\"; echo \"{{node}} start $1\" >> {ledger};;\nstop) exit 1;;\nstatus) if [ -e \"$state\" ]; then echo running; else echo stopped; fi;;\nesac\nexit 0\n",
        state = lab.state.display(),
        ledger = lab.ledger.display()
    );
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        b.haresources("alpha Stuck::web\n")
            .resource_script("Stuck", &stuck)
    })
    .await;
    lab.wait_for("alpha", "start").await;
    let (code, _, stderr) = nodes[0].heartbeat_cli(&["-k"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("may still run here") && stderr.contains("Stuck::web"),
        "{stderr}"
    );
    // alpha is gone without a shutdown notice: bravo declares it dead after deadtime and takes
    // the decision role — and keeps the group blocked on alpha rather than start it.
    wait_peer_status(&nodes[1], "alpha", "dead").await;
    let crmd = CrmdProxy::new(&nodes[1].connection).await.unwrap();
    let decides = tokio::time::timeout(hb_lab::PATIENCE, async {
        while crmd.decision_maker().await.unwrap() != "bravo" {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(decides.is_ok(), "bravo never took the decision role");
    let states = crmd.node_states().await.unwrap();
    assert_eq!(
        (states[0].state.as_str(), states[0].groups.as_slice()),
        ("BLOCKED", &["Stuck::web".to_owned()][..]),
        "{states:?}"
    );
    let history = crmd.history().await.unwrap();
    assert!(
        !history.iter().any(|d| d.decision == "start Stuck::web bravo"),
        "{history:?}"
    );
    assert_eq!(lab.events(), ["alpha start"]);
}

/// Item 6 with crmd hung (SIGSTOP) at `heartbeat -k`: the master kills it after its stop
/// budget and has lrmd stop the group itself before hbcomm goes; only then may the peer —
/// which got no shutdown notice — start it.
#[tokio::test]
async fn a_hung_crmd_at_heartbeat_k_still_leaves_nothing_running() {
    let lab = Lab::new();
    let quick_stop = hbapi::config::OpSettings {
        stop_timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        lab.configure(b, "alpha Ledger::web\n")
            .resource_ops("Ledger::web", quick_stop)
    })
    .await;
    lab.wait_for("alpha", "start").await;
    let crmd = nodes[0].child_pid("crmd").await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(crmd as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let mut at_bravo = changes(&nodes[1]).await;
    let (code, _, stderr) = nodes[0].heartbeat_cli(&["-k"]).await;
    assert_eq!(code, 0, "everything was stopped in the end: {stderr}");
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    lab.assert_never_twice(&[]);
    assert_eq!(lab.events(), ["alpha start", "alpha stop", "bravo start"]);
}

/// ComponentFail with a hang instead of a death (supervisor issue, item 5): hbcomm, then crmd,
/// stopped with SIGSTOP on the node that runs the group. The master finds each hung (no answer
/// on the bus), kills it and a fresh one takes over — hbcomm fast enough that the peer never
/// declares the node dead, so the group never runs twice; crmd so that the node decides again.
#[tokio::test]
async fn hung_hbcomm_and_crmd_are_killed_and_replaced() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo"], |b| lab.configure(b, "alpha Ledger::web\n")).await;
    lab.wait_for("alpha", "start").await;
    for daemon in ["hbcomm", "crmd"] {
        let hung = nodes[0].wait_child(daemon, |c| c.state == "running").await;
        kill(Pid::from_raw(hung.pid as i32), Signal::SIGSTOP).unwrap();
        let fresh = nodes[0]
            .wait_child(daemon, |c| c.state == "running" && c.pid != hung.pid)
            .await;
        assert_eq!(fresh.last_exit, "signal SIGKILL", "{daemon}: {fresh:?}");
        hb_lab::wait_name_owner(
            &nodes[0].connection,
            &format!(
                "org.heartbeatrs.{}",
                if daemon == "hbcomm" { "Comm" } else { "Crmd" }
            ),
            fresh.pid,
        )
        .await;
    }
    // The node decides again: a standby moves the group to bravo.
    let mut at_bravo = changes(&nodes[1]).await;
    CrmdProxy::new(&nodes[0].connection)
        .await
        .unwrap()
        .standby("all")
        .await
        .unwrap();
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    lab.assert_never_twice(&[]);
    assert_eq!(lab.events(), ["alpha start", "alpha stop", "bravo start"]);
}
