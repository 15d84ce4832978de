//! crmd with complete nodes: failover, standby, failback, fencing before takeover. Every
//! resource is a heartbeat-class script that writes a shared ledger of starts and stops, from
//! which exclusivity is checked rather than assumed.

use futures_util::StreamExt;
use hb_lab::groups::{changes, wait_group, wait_status};
use hb_lab::ledger::Lab;
use hb_lab::{start_cluster, Node, PATIENCE};
use hbapi::crmd::CrmdProxy;

async fn where_runs(node: &Node, group: &str) -> String {
    let groups = CrmdProxy::new(&node.connection)
        .await
        .unwrap()
        .groups()
        .await
        .unwrap();
    groups
        .into_iter()
        .find(|g| g.group == group)
        .map(|g| g.node)
        .unwrap_or_default()
}

#[tokio::test]
async fn the_group_starts_on_its_preferred_node_and_moves_when_that_node_crashes() {
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo"], |b| lab.configure(b, "alpha Ledger::web\n")).await;
    let mut at_bravo = changes(&nodes[1]).await;
    // Subscribed after start: the start on alpha may be done already, so look at the ledger.
    lab.wait_for("alpha", "start").await;
    assert_eq!(lab.entries(), [("alpha".into(), "start".into(), "web".into())]);

    let bravo = CrmdProxy::new(&nodes[1].connection).await.unwrap();
    let mut transitions = bravo.receive_transition_completed().await.unwrap();
    nodes[0].crash().await;
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    // bravo, now the decision maker, says when the cluster is where it should be again.
    let completed = tokio::time::timeout(PATIENCE, transitions.next())
        .await
        .expect("transition completed")
        .unwrap();
    assert_eq!(completed.args().unwrap().actions, 1);
    assert_eq!(where_runs(&nodes[1], "Ledger::web").await, "bravo");
    lab.assert_never_twice(&["alpha"]);
    let history = CrmdProxy::new(&nodes[1].connection)
        .await
        .unwrap()
        .history()
        .await
        .unwrap();
    let takeover = history
        .iter()
        .find(|d| d.decision == "start Ledger::web bravo")
        .expect("decision recorded");
    assert_eq!(takeover.trigger, "node alpha is dead", "{history:?}");
}

#[tokio::test]
async fn standby_moves_the_group_and_auto_failback_on_brings_it_back() {
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        lab.configure(b, "alpha Ledger::web\n").ha_cf("auto_failback on")
    })
    .await;
    let mut at_alpha = changes(&nodes[0]).await;
    let mut at_bravo = changes(&nodes[1]).await;
    if where_runs(&nodes[0], "Ledger::web").await != "alpha" {
        wait_group(&mut at_alpha, "Ledger::web", "started").await;
    }
    // Through Heartbeat's commands, as an admin would.
    let command = |program: &str| {
        let output = std::process::Command::new(hb_lab::bin(program))
            .env(hbapi::names::env::BUS_ADDRESS, &nodes[0].address)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(command("hb_standby"), "Going standby [all].\n");
    wait_group(&mut at_alpha, "Ledger::web", "stopped").await;
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    assert_eq!(command("hb_takeover"), "Taking over [all].\n");
    wait_group(&mut at_bravo, "Ledger::web", "stopped").await;
    wait_group(&mut at_alpha, "Ledger::web", "started").await;
    lab.assert_never_twice(&[]);
    let events = lab.events();
    assert_eq!(
        events,
        [
            "alpha start",
            "alpha stop",
            "bravo start",
            "bravo stop",
            "alpha start"
        ]
    );
}

#[tokio::test]
async fn with_a_fence_device_takeover_waits_for_the_fence() {
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        lab.configure(b, "alpha Ledger::web\n")
            .ha_cf("stonith_host * null hostlist=alpha,bravo")
    })
    .await;
    lab.wait_for("alpha", "start").await;
    let stonith = hbapi::stonith::StonithProxy::new(&nodes[1].connection)
        .await
        .unwrap();
    let mut fenced = stonith.receive_fence_finished().await.unwrap();
    let mut at_bravo = changes(&nodes[1]).await;
    nodes[0].crash().await;
    let record = tokio::time::timeout(PATIENCE, fenced.next())
        .await
        .unwrap()
        .unwrap()
        .args()
        .unwrap()
        .record;
    assert!(record.ok && record.target == "alpha", "{record:?}");
    assert!(
        !lab.entries().iter().any(|(n, _, _)| n == "bravo"),
        "bravo started before alpha was fenced: {:?}",
        lab.entries()
    );
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    lab.assert_never_twice(&["alpha"]);
    let history = stonith.history().await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
}

#[tokio::test]
async fn with_three_nodes_the_minority_side_of_a_partition_stops_and_the_majority_takes_over_after() {
    let namespace = hb_lab::netns::Namespace::new("split");
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo", "charlie"], |b| {
        lab.configure(b.wrapper(&namespace.wrapper()), "charlie Ledger::web\n")
    })
    .await;
    lab.wait_for("charlie", "start").await;
    let mut at_charlie = changes(&nodes[2]).await;
    let mut at_alpha = changes(&nodes[0]).await;
    let port = nodes[0].udp_port().to_string();
    for direction in ["-s", "-d"] {
        namespace.drop_input(true, &["-p", "udp", "--dport", &port, direction, "127.0.0.3"]);
    }
    wait_group(&mut at_charlie, "Ledger::web", "stopped").await;
    // The majority waits out charlie's stop timeout (20 s by default) before it takes over.
    wait_group(&mut at_alpha, "Ledger::web", "started").await;
    lab.assert_never_twice(&[]);
    let events = lab.events();
    assert_eq!(events, ["charlie start", "charlie stop", "alpha start"]);
}

#[tokio::test]
async fn a_failed_monitor_restarts_the_group_in_place_then_moves_it() {
    let lab = Lab::new();
    let ops = hbapi::config::OpSettings {
        monitor_interval: Some(std::time::Duration::from_millis(300)),
        migration_threshold: 2,
        ..Default::default()
    };
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        lab.configure(b, "alpha Ledger::web\n")
            .resource_ops("Ledger::web", ops)
    })
    .await;
    let mut at_alpha = changes(&nodes[0]).await;
    let mut at_bravo = changes(&nodes[1]).await;
    if where_runs(&nodes[0], "Ledger::web").await != "alpha" {
        wait_group(&mut at_alpha, "Ledger::web", "started").await;
    }
    // The service dies behind the cluster's back: the ledger says so, the state file goes.
    let crash = || {
        std::fs::remove_file(lab.state.join("alpha.web.on")).unwrap();
        let mut ledger = std::fs::OpenOptions::new()
            .append(true)
            .open(&lab.ledger)
            .unwrap();
        std::io::Write::write_all(&mut ledger, b"alpha crash web\n").unwrap();
    };
    crash();
    wait_group(&mut at_alpha, "Ledger::web", "restarting").await;
    wait_group(&mut at_alpha, "Ledger::web", "started").await;
    let fail_counts = CrmdProxy::new(&nodes[0].connection)
        .await
        .unwrap()
        .fail_counts()
        .await
        .unwrap();
    assert_eq!(fail_counts, [("Ledger::web".to_owned(), 1)]);
    crash();
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    lab.assert_never_twice(&[]);
    let events = lab.events();
    assert_eq!(
        events,
        [
            "alpha start",
            "alpha crash",
            "alpha start",
            "alpha crash",
            "bravo start"
        ]
    );
    let crmd = CrmdProxy::new(&nodes[1].connection).await.unwrap();
    assert_eq!(crmd.groups().await.unwrap()[0].failed_on, ["alpha"]);

    // The operator cleans up and moves it back; the move is recorded with who asked.
    assert!(
        crmd.move_group("Ledger::web", "zulu").await.is_err(),
        "not a node"
    );
    assert!(crmd.cleanup("Ledger::nothing").await.is_err(), "not a resource");
    crmd.cleanup("Ledger::web").await.unwrap();
    crmd.move_group("Ledger::web", "alpha").await.unwrap();
    wait_group(&mut at_alpha, "Ledger::web", "started").await;
    lab.assert_never_twice(&[]);
    assert_eq!(lab.events().last().map(String::as_str), Some("alpha start"));
    let history = CrmdProxy::new(&nodes[0].connection)
        .await
        .unwrap()
        .history()
        .await
        .unwrap();
    assert!(
        history.iter().any(|d| d.decision == "stop Ledger::web bravo"
            && d.trigger.contains("move Ledger::web to alpha by uid 0")),
        "{history:?}"
    );
}

#[tokio::test]
async fn hb_takeover_local_brings_back_only_the_nodes_own_groups() {
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        lab.configure(b, "alpha Ledger::web\nbravo Ledger::db\n")
            .ha_cf("auto_failback off")
    })
    .await;
    let mut at_bravo = changes(&nodes[1]).await;
    let settled = tokio::time::timeout(PATIENCE, async {
        while lab.entries().len() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "{:?}", lab.entries());
    let alpha = CrmdProxy::new(&nodes[0].connection).await.unwrap();
    assert!(
        alpha.standby("sideways").await.is_err(),
        "unknown modes are refused"
    );
    alpha.standby("all").await.unwrap();
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    // Subscribed only now, so that alpha's first start cannot be mistaken for the takeover.
    let mut at_alpha = changes(&nodes[0]).await;
    alpha.takeover("local").await.unwrap();
    wait_group(&mut at_alpha, "Ledger::web", "started").await;
    assert_eq!(
        where_runs(&nodes[0], "Ledger::db").await,
        "bravo",
        "bravo's own group stays"
    );
    lab.assert_never_twice(&[]);
    let history = alpha.history().await.unwrap();
    assert!(
        history
            .iter()
            .any(|d| d.decision == "stop Ledger::web bravo"
                && d.trigger.starts_with("hb_takeover local by uid 0")),
        "{history:?}"
    );
}

#[tokio::test]
async fn stopping_heartbeat_on_the_active_node_hands_the_group_over_cleanly() {
    let lab = Lab::new();
    let mut nodes = start_cluster(&["alpha", "bravo"], |b| lab.configure(b, "alpha Ledger::web\n")).await;
    lab.wait_for("alpha", "start").await;
    let mut at_bravo = changes(&nodes[1]).await;
    // heartbeat -k / SIGTERM on alpha: it stops the group before it goes, bravo takes it.
    let status = nodes[0].terminate().await;
    assert!(status.success(), "{status:?}");
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    lab.assert_never_twice(&[]);
    let events = lab.events();
    assert_eq!(events, ["alpha start", "alpha stop", "bravo start"]);
}

#[tokio::test]
async fn a_respawned_crmd_finds_its_group_running_and_starts_nothing_twice() {
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo"], |b| lab.configure(b, "alpha Ledger::web\n")).await;
    lab.wait_for("alpha", "start").await;
    // The decision maker's crmd dies; the master respawns it.
    let old = nodes[0].wait_child("crmd", |c| c.state == "running").await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let new = nodes[0]
        .wait_child("crmd", |c| c.state == "running" && c.pid != old.pid)
        .await;
    hb_lab::wait_name_owner(&nodes[0].connection, hbapi::names::crmd::BUS_NAME, new.pid).await;
    // It still decides: a standby now moves the group, which it can only do knowing where the
    // group runs — from its probe and bravo's answer to its hello.
    let mut at_bravo = changes(&nodes[1]).await;
    CrmdProxy::new(&nodes[0].connection)
        .await
        .unwrap()
        .standby("all")
        .await
        .unwrap();
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    lab.assert_never_twice(&[]);
    let events = lab.events();
    assert_eq!(
        events,
        ["alpha start", "alpha stop", "bravo start"],
        "nothing started twice"
    );
}

fn signal(node: &Node, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(node.master_pid() as i32), signal).unwrap();
}

#[tokio::test]
async fn freeha_style_sighup_sigusr1_and_the_oops_window_after_sigterm() {
    use nix::sys::signal::Signal;
    let oops = std::time::Duration::from_secs(3);
    let lab = Lab::new();
    let mut nodes = start_cluster(&["alpha", "bravo"], |b| {
        lab.configure(b, "alpha Ledger::web\n").freeha(oops)
    })
    .await;
    wait_status(&nodes[1], &["alpha ACTIVE Ledger::web", "bravo IDLE"]).await;

    // SIGHUP: alpha stops its services but keeps running, STOPPING; bravo takes over at once.
    let mut at_bravo = changes(&nodes[1]).await;
    signal(&nodes[0], Signal::SIGHUP);
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    wait_status(&nodes[1], &["alpha STOPPING", "bravo ACTIVE Ledger::web"]).await;
    let states = CrmdProxy::new(&nodes[1].connection)
        .await
        .unwrap()
        .node_states()
        .await
        .unwrap();
    assert_eq!(states[0].state, "STOPPING", "{states:?}");

    // SIGUSR1: alpha forces a start; the group comes back (stopped on bravo first).
    let mut at_alpha = changes(&nodes[0]).await;
    signal(&nodes[0], Signal::SIGUSR1);
    wait_group(&mut at_alpha, "Ledger::web", "started").await;
    wait_status(&nodes[1], &["alpha ACTIVE Ledger::web", "bravo IDLE"]).await;

    // SIGTERM: alpha stops its services and leaves; bravo sees it STOPPING and waits out
    // the oops window before it starts the group.
    let mut at_bravo = changes(&nodes[1]).await;
    let stopped_at = std::time::Instant::now();
    let status = nodes[0].terminate().await;
    assert!(status.success(), "{status:?}");
    wait_status(&nodes[1], &["alpha STOPPING", "bravo IDLE"]).await;
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    assert!(
        stopped_at.elapsed() >= oops,
        "started on bravo {:?} after alpha's daemon stopped, within the oops window of {oops:?}",
        stopped_at.elapsed()
    );
    wait_status(&nodes[1], &["alpha DEAD", "bravo ACTIVE Ledger::web"]).await;
    lab.assert_never_twice(&[]);
    let events = lab.events();
    assert_eq!(
        events,
        [
            "alpha start",
            "alpha stop",
            "bravo start",
            "bravo stop",
            "alpha start",
            "alpha stop",
            "bravo start"
        ]
    );
}

#[tokio::test]
async fn a_stop_that_fails_blocks_the_group_where_it_is_and_never_starts_it_elsewhere() {
    let lab = Lab::new();
    // Starts like the ledger script; its stop fails and leaves the resource running.
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
    wait_status(&nodes[0], &["alpha ACTIVE Stuck::web", "bravo IDLE"]).await;
    let mut at_alpha = changes(&nodes[0]).await;
    let crmd = CrmdProxy::new(&nodes[0].connection).await.unwrap();
    crmd.standby("all").await.unwrap();
    wait_group(&mut at_alpha, "Stuck::web", "blocked").await;
    // alpha decides (it is the decision maker) in the same pass that writes its status file.
    wait_status(&nodes[0], &["alpha BLOCKED Stuck::web", "bravo IDLE"]).await;
    let history = crmd.history().await.unwrap();
    assert!(
        history.iter().any(|d| d.decision == "stop Stuck::web alpha"),
        "{history:?}"
    );
    assert!(
        !history.iter().any(|d| d.decision == "start Stuck::web bravo"),
        "started elsewhere after a failed stop: {history:?}"
    );
    lab.assert_never_twice(&[]);
    let events = lab.events();
    assert_eq!(events, ["alpha start"]);
}
