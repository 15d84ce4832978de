//! Serial links (FAQ 9 and 13) on pseudo-terminals joined back to back: a cluster whose only
//! path is the serial line, a cluster whose network is cut while the serial line holds it
//! together, and a mangled packet on the line counted and logged once, harmlessly.

use futures_util::StreamExt;
use hb_lab::serial::NullModem;
use hb_lab::{start_cluster, wait_peer_status, Node};
use hbapi::comm::CommProxy;

async fn links_of(node: &Node, peer: &str) -> Vec<(String, bool)> {
    node.peer(peer)
        .await
        .links
        .into_iter()
        .map(|l| (l.name, l.up))
        .collect()
}

/// Waits for hbcomm's signal that `node`'s `link` went down.
async fn wait_link_down(changes: &mut hbapi::comm::LinkStatusChangedStream, node: &str, link: &str) {
    let down = tokio::time::timeout(hb_lab::PATIENCE, async {
        while let Some(signal) = changes.next().await {
            let args = signal.args().unwrap();
            if args.node == node && args.link == link && !args.up {
                return;
            }
        }
    })
    .await;
    assert!(down.is_ok(), "link {node}:{link} never went down");
}

#[tokio::test]
async fn a_cluster_whose_only_path_is_a_serial_line() {
    let cable = NullModem::new();
    let ends = cable.ends.clone();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        let end = if b.name() == "alpha" { &ends[0] } else { &ends[1] };
        b.links(vec![format!("serial {}", end.display()), "baud 115200".into()])
    })
    .await;
    wait_peer_status(&nodes[0], "bravo", "active").await;
    wait_peer_status(&nodes[1], "alpha", "active").await;
    let alpha_end = ends[0].display().to_string();
    assert_eq!(links_of(&nodes[0], "bravo").await, [(alpha_end, true)]);
    // Cluster messages cross it too: crmd's exchange put the nodes' states in the status file.
    hb_lab::groups::wait_status(&nodes[0], &["alpha IDLE", "bravo IDLE"]).await;

    // The line goes quiet (cable pulled): bravo is dead after deadtime, then back.
    cable.cut(true);
    wait_peer_status(&nodes[0], "bravo", "dead").await;
    cable.cut(false);
    wait_peer_status(&nodes[0], "bravo", "active").await;
}

/// Drops the lab's heartbeat port on loopback while it lives (the network path cut).
struct NetworkCut {
    rule: Vec<String>,
}

impl NetworkCut {
    fn new(port: u16) -> NetworkCut {
        let rule: Vec<String> = [
            "INPUT",
            "-i",
            "lo",
            "-p",
            "udp",
            "--dport",
            &port.to_string(),
            "-j",
            "DROP",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut add = vec!["iptables".to_owned(), "-I".into()];
        add.extend(rule.iter().cloned());
        let args: Vec<&str> = add.iter().map(String::as_str).collect();
        hb_lab::container::host(&args);
        NetworkCut { rule }
    }
}

impl Drop for NetworkCut {
    fn drop(&mut self) {
        let _ = std::process::Command::new("iptables")
            .arg("-D")
            .args(&self.rule)
            .status();
    }
}

#[tokio::test]
async fn the_network_cut_but_the_serial_line_up_is_no_failover() {
    let cable = NullModem::new();
    let ends = cable.ends.clone();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        let end = if b.name() == "alpha" { &ends[0] } else { &ends[1] };
        b.ha_cf(format!("serial {}", end.display()))
            .haresources("alpha Demo::web\n")
            .resource_script("Demo", "case \"$2\" in status) echo stopped;; esac\nexit 0\n")
    })
    .await;
    wait_peer_status(&nodes[0], "bravo", "active").await;
    hb_lab::groups::wait_status(&nodes[1], &["alpha ACTIVE Demo::web", "bravo IDLE"]).await;
    let alpha_end = ends[0].display().to_string();
    let mut bravo_links: Vec<(String, bool)> = links_of(&nodes[0], "bravo").await;
    bravo_links.sort();
    assert_eq!(bravo_links, [(alpha_end.clone(), true), ("lo".to_owned(), true)]);

    let comm = CommProxy::new(&nodes[0].connection).await.unwrap();
    let mut link_changes = comm.receive_link_status_changed().await.unwrap();
    let mut node_changes = comm.receive_node_status_changed().await.unwrap();
    let _cut = NetworkCut::new(nodes[0].udp_port());
    // The network link dies after deadtime; the node does not, and nothing moves.
    wait_link_down(&mut link_changes, "bravo", "lo").await;
    assert!(
        futures_util::FutureExt::now_or_never(node_changes.next()).is_none(),
        "a node status changed while the serial line held"
    );
    assert_eq!(nodes[0].peer("bravo").await.status, "active");
    assert_eq!(
        links_of(&nodes[0], "bravo")
            .await
            .into_iter()
            .find(|(name, _)| *name == alpha_end),
        Some((alpha_end, true))
    );
    hb_lab::groups::wait_status(&nodes[1], &["alpha ACTIVE Demo::web", "bravo IDLE"]).await;
}

#[tokio::test]
async fn a_mangled_packet_on_the_line_at_start_up_is_counted_and_logged_once() {
    let cable = NullModem::new();
    let ends = cable.ends.clone();
    let logs = tempfile::tempdir().unwrap();
    let alpha_log = logs.path().join("alpha.log");
    let alpha = start_cluster(&["alpha"], |b| {
        b.nodes(&["alpha", "bravo"])
            .links(vec![format!("serial {}", ends[0].display())])
            .ha_cf(format!("logfile {}", alpha_log.display()))
    })
    .await
    .remove(0);
    // What a half-started peer leaves on the line: noise, then a packet whose bits were hit.
    cable.inject(
        0,
        b"\x00\x13garbage\n>>>\nt=status\nst=active\nsrc=bravo\nhg=1\nseq=1\nauth=1 0000\n<<<\n",
    );
    let comm = CommProxy::new(&alpha.connection).await.unwrap();
    let deadline = tokio::time::Instant::now() + hb_lab::PATIENCE;
    let forged = loop {
        let counters = comm.counters().await.unwrap();
        if let Some(count) = counters.get("dropped_forged").copied().filter(|c| *c > 0) {
            break count;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mangled packet was never counted: {counters:?}"
        );
        // hbcomm counts without a signal: read again shortly.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(forged, 1);
    let log = std::fs::read_to_string(&alpha_log).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("failed authentication"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains(&ends[0].display().to_string()), "{}", lines[0]);

    // Harmless: bravo comes up on the same line and is a member at once.
    let bravo = start_cluster(&["bravo"], |b| {
        b.nodes(&["alpha", "bravo"])
            .links(vec![format!("serial {}", ends[1].display())])
    })
    .await
    .remove(0);
    wait_peer_status(&alpha, "bravo", "active").await;
    wait_peer_status(&bravo, "alpha", "active").await;
}

/// A null-modem cable to Debian's Heartbeat 3.0.6 (its serial plugin on a pty) as the only
/// path between the nodes (their network is cut before either starts): each side finds the
/// other active over the line.
#[tokio::test]
async fn a_serial_line_to_heartbeat_3_0_6_carries_the_heartbeats_both_ways() {
    use hb_lab::ledger::Lab;
    use hb_lab::mixed::{Heartbeat306, Setup, Wire};
    let cable = NullModem::new();
    let wire = Wire::new(&["alpha", "bravo"]);
    wire.cut("alpha", true);
    let lab = Lab::new();
    let setup = Setup::pair("alpha Ledger::web\n", "off");
    let mut heartbeat = Heartbeat306::new(&wire, &lab, &setup, "alpha");
    heartbeat.add_ha_cf(&format!("serial {}", cable.ends[0].display()));
    heartbeat.add_ha_cf("baud 19200");
    heartbeat.start().await;
    let ours = lab
        .configure(
            hb_lab::NodeBuilder::new("bravo")
                .nodes(&["alpha", "bravo"])
                .core_daemons()
                .wrapper(&["ip", "netns", "exec", wire.namespace("bravo")])
                .links(wire.links())
                .ha_cf(format!("serial {}", cable.ends[1].display()))
                .ha_cf("baud 19200")
                .timing("200ms", "1", "2"),
            &setup.haresources,
        )
        .start_with_authkeys(hb_lab::mixed::AUTHKEYS)
        .await;
    // Ours hears Heartbeat on the line, and only there.
    wait_peer_status(&ours, "alpha", "active").await;
    let tty = cable.ends[1].display().to_string();
    let links = links_of(&ours, "alpha").await;
    assert!(links.contains(&(tty, true)), "{links:?}");
    assert!(links.contains(&("eth0".to_owned(), false)), "{links:?}");
    // Heartbeat hears ours on the line.
    let deadline = tokio::time::Instant::now() + hb_lab::PATIENCE;
    loop {
        let (_, status, _) = heartbeat.cl_status(&["nodestatus", "bravo"]).await;
        if status.trim() == "active" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Heartbeat never heard bravo over the line ({}):\n{}",
            status.trim(),
            heartbeat.log_tail(30)
        );
        // Heartbeat tells no one; ask it again shortly.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ours.peer("alpha").await.status, "active");
}
