//! ipfail in a network namespace: three nodes and two ping targets on the namespace's
//! loopback, ICMP replies to one node dropped with iptables. Exclusivity is checked from the
//! ledger the test agent writes.

use std::time::Duration;

use hb_lab::groups::{changes, wait_group, wait_status};
use hb_lab::ledger::Lab;
use hb_lab::netns::Namespace;
use hb_lab::{start_cluster, Node, NodeBuilder, PATIENCE};
use hbapi::ipfail::{IpfailProxy, IpfailState};

const HYSTERESIS: &str = "2s";

fn configure(builder: NodeBuilder, namespace: &Namespace) -> NodeBuilder {
    builder
        .wrapper(&namespace.wrapper())
        .ha_cf("ping 127.0.0.9")
        .ha_cf("ping 127.0.0.10")
        .ha_cf("deadping 1")
        // Heartbeat's line, unchanged: the master runs our ipfail for it.
        .ha_cf(format!(
            "respawn hacluster /usr/lib/heartbeat/ipfail --hysteresis {HYSTERESIS}"
        ))
}

async fn ipfail_state(node: &Node) -> Option<IpfailState> {
    let proxy = IpfailProxy::new(&node.connection).await.ok()?;
    proxy.state().await.ok()
}

/// Waits until `node`'s ipfail state satisfies `condition`.
async fn wait_ipfail(node: &Node, what: &str, condition: impl Fn(&IpfailState) -> bool) -> IpfailState {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(state) = ipfail_state(node).await.filter(|s| condition(s)) {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    match found {
        Ok(state) => state,
        Err(_) => panic!(
            "ipfail on {}: never {what}: {:?}",
            node.node,
            ipfail_state(node).await
        ),
    }
}

fn counts(state: &IpfailState) -> Vec<(String, u32)> {
    state.counts.iter().map(|c| (c.node.clone(), c.count)).collect()
}

#[tokio::test]
async fn the_node_that_loses_its_ping_nodes_gives_up_and_nothing_flaps() {
    let namespace = Namespace::new("ipfail");
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo", "charlie"], |b| {
        configure(lab.configure(b, "alpha Ledger::web\n"), &namespace)
    })
    .await;
    let all_see_both = |s: &IpfailState| s.counts.len() == 3 && s.counts.iter().all(|c| c.count == 2);
    for node in &nodes {
        wait_ipfail(node, "seeing both ping nodes everywhere", all_see_both).await;
    }
    wait_status(
        &nodes[0],
        &["alpha ACTIVE Ledger::web", "bravo IDLE", "charlie IDLE"],
    )
    .await;

    // alpha loses its ping nodes: after deadping and the hysteresis it gives up, and the
    // group goes to a node that still sees them.
    let mut at_bravo = changes(&nodes[1]).await;
    namespace.cut_pings(Some("127.0.0.1"), true);
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    let state = wait_ipfail(&nodes[0], "giving up", |s| s.gave_up).await;
    assert!(state.last_decision.contains("alpha gives up"), "{state:?}");
    let history = hbapi::crmd::CrmdProxy::new(&nodes[0].connection)
        .await
        .unwrap()
        .history()
        .await
        .unwrap();
    let moved = history
        .iter()
        .find(|d| d.decision == "stop Ledger::web alpha")
        .unwrap_or_else(|| panic!("{history:?}"));
    assert!(
        moved
            .trigger
            .contains("ipfail: ping nodes reached (of 2): alpha 0, bravo 2, charlie 2"),
        "{moved:?}"
    );

    // ipfail killed: the master respawns it, it carries on given up, and nothing moves.
    let old = nodes[0].wait_child("ipfail", |c| c.state == "running").await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    nodes[0]
        .wait_child("ipfail", |c| c.state == "running" && c.pid != old.pid)
        .await;
    let state = wait_ipfail(&nodes[0], "back, still given up, counts known", |s| {
        s.gave_up && s.counts.len() == 3 && !s.pending
    })
    .await;
    // It ran as the FAQ's line says, and kept its decision where the master let it write.
    let new = nodes[0].wait_child("ipfail", |c| c.state == "running").await;
    let hacluster = nix::unistd::User::from_name("hacluster")
        .unwrap()
        .expect("user hacluster");
    let status = std::fs::read_to_string(format!("/proc/{}/status", new.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_owned();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|uid| uid == hacluster.uid.to_string()),
        "{uid_line}"
    );
    let kept = std::fs::read_to_string(nodes[0].path("state/users/hacluster/ipfail.state")).unwrap();
    assert_eq!(kept.trim(), "gave-up");
    assert_eq!(
        counts(&state),
        [("alpha".into(), 0), ("bravo".into(), 2), ("charlie".into(), 2)]
    );

    // Connectivity back: alpha may run groups again, but with auto_failback off the group
    // stays on bravo.
    namespace.cut_pings(Some("127.0.0.1"), false);
    wait_ipfail(&nodes[0], "taking back", |s| !s.gave_up).await;
    wait_status(
        &nodes[0],
        &["alpha IDLE", "bravo ACTIVE Ledger::web", "charlie IDLE"],
    )
    .await;

    // bravo's link flaps faster than the hysteresis: its count dips and comes back, and
    // nothing is decided.
    namespace.cut_pings(Some("127.0.0.2"), true);
    wait_ipfail(&nodes[1], "seeing the dip", |s| {
        s.counts.iter().any(|c| c.node == "bravo" && c.count < 2)
    })
    .await;
    namespace.cut_pings(Some("127.0.0.2"), false);
    let state = wait_ipfail(&nodes[1], "settled after the flap", |s| {
        all_see_both(s) && !s.pending
    })
    .await;
    assert!(!state.gave_up && state.last_decision.is_empty(), "{state:?}");
    wait_status(
        &nodes[0],
        &["alpha IDLE", "bravo ACTIVE Ledger::web", "charlie IDLE"],
    )
    .await;

    lab.assert_never_twice(&[]);
    assert_eq!(lab.events(), ["alpha start", "alpha stop", "bravo start"]);
}

#[tokio::test]
async fn with_auto_failback_on_the_group_comes_back_when_connectivity_does() {
    let namespace = Namespace::new("ipfailback");
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo", "charlie"], |b| {
        configure(lab.configure(b, "alpha Ledger::web\n"), &namespace).ha_cf("auto_failback on")
    })
    .await;
    for node in &nodes {
        wait_ipfail(node, "seeing both ping nodes everywhere", |s| {
            s.counts.len() == 3 && s.counts.iter().all(|c| c.count == 2)
        })
        .await;
    }
    wait_status(
        &nodes[0],
        &["alpha ACTIVE Ledger::web", "bravo IDLE", "charlie IDLE"],
    )
    .await;
    let mut at_bravo = changes(&nodes[1]).await;
    namespace.cut_pings(Some("127.0.0.1"), true);
    wait_group(&mut at_bravo, "Ledger::web", "started").await;
    let mut at_alpha = changes(&nodes[0]).await;
    namespace.cut_pings(Some("127.0.0.1"), false);
    wait_group(&mut at_alpha, "Ledger::web", "started").await;
    lab.assert_never_twice(&[]);
    assert_eq!(
        lab.events(),
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
async fn when_both_nodes_lose_the_ping_nodes_nothing_moves() {
    let namespace = Namespace::new("ipfailboth");
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        configure(lab.configure(b, "alpha Ledger::web\n"), &namespace)
    })
    .await;
    for node in &nodes {
        wait_ipfail(node, "seeing both ping nodes on both nodes", |s| {
            s.counts.len() == 2 && s.counts.iter().all(|c| c.count == 2)
        })
        .await;
    }
    wait_status(&nodes[0], &["alpha ACTIVE Ledger::web", "bravo IDLE"]).await;
    namespace.cut_pings(None, true);
    for node in &nodes {
        let state = wait_ipfail(node, "seeing no ping node on either node, settled", |s| {
            s.counts.len() == 2 && s.counts.iter().all(|c| c.count == 0) && !s.pending
        })
        .await;
        assert!(!state.gave_up, "{state:?}");
    }
    wait_status(&nodes[0], &["alpha ACTIVE Ledger::web", "bravo IDLE"]).await;
    assert_eq!(lab.events(), ["alpha start"]);
}

/// FAQ 6's line without a ping node: ipfail says why in ha.cf's logfile (it runs as
/// hacluster, which cannot open that file: the master writes it) and is not respawned.
#[tokio::test]
async fn a_refusing_ipfail_says_why_in_the_logfile_and_stays_down() {
    let logs = tempfile::tempdir().unwrap();
    let logfile = logs.path().join("ha-log");
    let namespace = Namespace::new("ipfailno");
    let node = NodeBuilder::new("alpha")
        .core_daemons()
        .wrapper(&namespace.wrapper())
        .links(vec!["ucast lo 127.0.0.2".into()])
        .ha_cf("respawn hacluster /usr/lib/heartbeat/ipfail")
        .ha_cf(format!("logfile {}", logfile.display()))
        .start()
        .await;
    let child = node.wait_child("ipfail", |c| c.last_exit == "exit 100").await;
    assert_eq!(child.restarts, 0, "{child:?}");
    let log = std::fs::read_to_string(&logfile).unwrap();
    assert!(
        log.lines()
            .any(|line| line.contains("ipfail") && line.contains("ipfail needs ping nodes")),
        "{log}"
    );
    assert!(!log.contains("authkeys"), "{log}");
}
