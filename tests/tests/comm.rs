//! hbcomm nodes on one host (each on its own loopback address): membership, death detection,
//! and hostile packets.

use hb_lab::{start_cluster, wait_peer_status};
use hbapi::comm::CommProxy;

#[tokio::test]
async fn two_nodes_see_each_other_and_a_crash_is_detected() {
    let nodes = start_cluster(&["alpha", "bravo"], |b| b).await;
    wait_peer_status(&nodes[0], "bravo", "active").await;
    wait_peer_status(&nodes[1], "alpha", "active").await;
    let comm = CommProxy::new(&nodes[0].connection).await.unwrap();
    let listed = comm.list_nodes().await.unwrap();
    let bravo = listed.iter().find(|n| n.name == "bravo").unwrap();
    assert_eq!(
        bravo.links,
        [hbapi::comm::LinkInfo {
            name: "lo".into(),
            up: true
        }]
    );
    assert_eq!(comm.local_node().await.unwrap(), "alpha");

    nodes[1].crash().await;
    wait_peer_status(&nodes[0], "bravo", "dead").await;
}

#[tokio::test]
async fn three_nodes_and_one_dies() {
    let nodes = start_cluster(&["alpha", "bravo", "charlie"], |b| b).await;
    for (node, peers) in [
        (0, ["bravo", "charlie"]),
        (1, ["alpha", "charlie"]),
        (2, ["alpha", "bravo"]),
    ] {
        for peer in peers {
            wait_peer_status(&nodes[node], peer, "active").await;
        }
    }
    nodes[2].crash().await;
    wait_peer_status(&nodes[0], "charlie", "dead").await;
    wait_peer_status(&nodes[1], "charlie", "dead").await;
    let bravo = nodes[0].peer("bravo").await;
    assert_eq!(bravo.status, "active", "the survivors still see each other");
}

#[tokio::test]
async fn forged_replayed_truncated_and_oversized_packets_are_dropped_and_counted() {
    use hbcomm::wire::{encode, Authenticator, Format, Message};
    let logs = tempfile::tempdir().unwrap();
    let logfile = |node: &str| logs.path().join(format!("{node}.log"));
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        let path = logfile(b.name());
        b.ha_cf(format!("logfile {}", path.display()))
    })
    .await;
    wait_peer_status(&nodes[0], "bravo", "active").await;
    let comm = CommProxy::new(&nodes[0].connection).await.unwrap();
    let port = nodes[0].udp_port();
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    let lab_key = Authenticator::new(1, hbapi::config::AuthMethod::Sha256, b"hb-lab-test-key");
    let wrong_key = Authenticator::new(1, hbapi::config::AuthMethod::Sha256, b"guessed");
    let heartbeat_from = |src: &str, generation: u32, seq: u64| {
        Message::new()
            .with("t", "status")
            .with("st", "active")
            .with("src", src)
            .with("seq", format!("{seq:x}"))
            .with("hg", format!("{generation:x}"))
    };
    let heartbeat = |generation: u32, seq: u64| heartbeat_from("bravo", generation, seq);
    let forged = encode(&heartbeat(u32::MAX, 1), Format::Netstring, &wrong_key);
    // A validly signed packet of an old generation: what a replay of a captured packet is.
    let replayed = encode(&heartbeat(1, 1), Format::Netstring, &lab_key);
    let mut truncated = replayed.clone();
    truncated.truncate(replayed.len() / 2);
    let oversized = vec![b'#'; 65_000];
    let garbage = b"###\n999999999:(0)t=x,%%%\n".to_vec();

    let before = comm.counters().await.unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.9:0").await.unwrap();
    for packet in [&forged, &replayed, &truncated, &oversized, &garbage] {
        for _ in 0..10 {
            socket.send_to(packet, target).await.unwrap();
        }
    }
    // FAQ 15: a node of another cluster with the same key and port, heard 10 times.
    for seq in 1..=10 {
        let foreign = encode(&heartbeat_from("zulu", 7, seq), Format::Netstring, &lab_key);
        socket.send_to(&foreign, target).await.unwrap();
    }
    // Counters move with packets; wait for all 50 to be judged.
    let count = |counters: &std::collections::HashMap<String, u64>, key: &str| {
        counters.get(key).copied().unwrap_or(0)
    };
    let mut after = comm.counters().await.unwrap();
    let judged = |after: &std::collections::HashMap<String, u64>| {
        [
            "dropped_forged",
            "dropped_replay",
            "dropped_malformed",
            "dropped_oversized",
            "dropped_unknown_node",
        ]
        .iter()
        .map(|key| count(after, key) - count(&before, key))
        .sum::<u64>()
    };
    let mut changes = comm.receive_node_status_changed().await.unwrap();
    let deadline = tokio::time::Instant::now() + hb_lab::PATIENCE;
    while judged(&after) < 60 && tokio::time::Instant::now() < deadline {
        // Each keepalive from bravo is a chance to look again; a status change would end the
        // test anyway.
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(250),
            futures_util::StreamExt::next(&mut changes),
        )
        .await;
        after = comm.counters().await.unwrap();
    }
    assert_eq!(
        count(&after, "dropped_forged") - count(&before, "dropped_forged"),
        10,
        "{after:?}"
    );
    assert_eq!(
        count(&after, "dropped_replay") - count(&before, "dropped_replay"),
        10,
        "{after:?}"
    );
    assert_eq!(
        count(&after, "dropped_oversized") - count(&before, "dropped_oversized"),
        10,
        "{after:?}"
    );
    assert_eq!(
        count(&after, "dropped_malformed") - count(&before, "dropped_malformed"),
        20,
        "{after:?}"
    );
    let bravo = nodes[0].peer("bravo").await;
    assert_eq!(bravo.status, "active", "hostile packets change nothing");
    // FAQ 12/13: the administrator is told once, with who sent it and whom it claimed to be,
    // not 50 times.
    let log = std::fs::read_to_string(logfile("alpha")).unwrap();
    let foreign: Vec<&str> = log.lines().filter(|l| l.contains("zulu")).collect();
    assert_eq!(foreign.len(), 1, "{foreign:?}");
    assert!(foreign[0].contains("not a configured node"), "{foreign:?}");
    assert_eq!(
        count(&after, "dropped_unknown_node") - count(&before, "dropped_unknown_node"),
        10,
        "{after:?}"
    );
    let told: Vec<&str> = log.lines().filter(|l| l.contains("127.0.0.9")).collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("WARN")
            && told[0].contains("failed authentication")
            && told[0].contains("claiming to be bravo"),
        "{told:?}"
    );
}

#[tokio::test]
async fn crc_is_refused_without_the_insecure_override() {
    let mut nodes = start_cluster(&["alpha", "bravo"], |b| b).await;
    // The master's hbcomm takes the key at start: rewrite authkeys and restart it.
    let authkeys = nodes[0].config_dir.join("authkeys");
    std::fs::write(&authkeys, "auth 1\n1 crc\n").unwrap();
    nodes[0].master().await.restart_child("hbcomm").await.unwrap();
    let child = nodes[0].wait_child("hbcomm", |c| c.state == "exited").await;
    assert_eq!(
        child.last_exit, "exit 100",
        "configuration errors are not respawned"
    );
    nodes[0].terminate().await;
}

#[tokio::test]
async fn ping_nodes_and_groups_follow_icmp_reachability() {
    let namespace = hb_lab::netns::Namespace::new("ping");
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        b.wrapper(&namespace.wrapper())
            .ha_cf("ping 127.0.0.9")
            .ha_cf("ping_group far 127.0.0.10 127.0.0.11")
            .ha_cf("deadping 1")
    })
    .await;
    let alpha = &nodes[0];
    wait_peer_status(alpha, "127.0.0.9", "ping").await;
    wait_peer_status(alpha, "far", "ping").await;
    assert_eq!(alpha.peer("far").await.kind, "ping");

    let drop_from = |address: &str, action: &str| {
        namespace.drop_input(action == "-A", &["-p", "icmp", "-s", address]);
    };
    drop_from("127.0.0.9", "-A");
    drop_from("127.0.0.10", "-A");
    wait_peer_status(alpha, "127.0.0.9", "dead").await;
    assert_eq!(
        alpha.peer("far").await.status,
        "ping",
        "one member of the group still answers"
    );
    assert_eq!(alpha.peer("bravo").await.status, "active");
    drop_from("127.0.0.11", "-A");
    wait_peer_status(alpha, "far", "dead").await;
    drop_from("127.0.0.9", "-D");
    wait_peer_status(alpha, "127.0.0.9", "ping").await;
}

/// Two nodes started at different moments send their heartbeats in step after a few rounds
/// (hbcomm::cadence), each still once per keepalive. A listener on a third address, named by
/// one more ucast line, sees every heartbeat of both as it leaves.
#[tokio::test]
async fn heartbeats_fall_into_step_and_keep_their_pace() {
    use std::time::{Duration, Instant};
    const KEEPALIVE: Duration = Duration::from_millis(200);
    let nodes = start_cluster(&["alpha", "bravo"], |b| b.ha_cf("ucast lo 127.0.0.9")).await;
    let listener = tokio::net::UdpSocket::bind(("127.0.0.9", nodes[0].udp_port()))
        .await
        .unwrap();
    wait_peer_status(&nodes[0], "bravo", "active").await;
    wait_peer_status(&nodes[1], "alpha", "active").await;

    // Heartbeats of each node, as they arrive, until each has sent 25 more.
    let mut seen: std::collections::HashMap<String, Vec<Instant>> = Default::default();
    let mut buffer = vec![0u8; 65_536];
    let wait_until = tokio::time::Instant::now() + hb_lab::PATIENCE;
    while seen.len() < 2 || seen.values().any(|times| times.len() < 25) {
        let (length, _) = tokio::time::timeout_at(wait_until, listener.recv_from(&mut buffer))
            .await
            .expect("heartbeats keep coming")
            .unwrap();
        let text = String::from_utf8_lossy(&buffer[..length]);
        if !text.contains("t=status,") {
            continue;
        }
        let src = ["alpha", "bravo"]
            .into_iter()
            .find(|name| text.contains(&format!("src={name},")));
        if let Some(src) = src {
            seen.entry(src.to_owned()).or_default().push(Instant::now());
        }
    }
    let alpha = &seen["alpha"];
    let bravo = &seen["bravo"];
    // In step: each of alpha's last ten heartbeats has one of bravo's within 10 ms (out of
    // step they are on average 50 ms apart; scheduling on a busy machine stays well within).
    for at in &alpha[alpha.len() - 10..] {
        let nearest = bravo
            .iter()
            .map(|other| if other > at { *other - *at } else { *at - *other })
            .min()
            .unwrap();
        assert!(
            nearest < Duration::from_millis(10),
            "alpha {alpha:?}\nbravo {bravo:?}"
        );
    }
    // Pace: over the last twenty rounds, one heartbeat per keepalive each, not more (the
    // nodes must not pull each other ahead).
    for times in [alpha, bravo] {
        let last = &times[times.len() - 21..];
        let average = (last[20] - last[0]) / 20;
        assert!(
            average > KEEPALIVE * 9 / 10 && average < KEEPALIVE * 11 / 10,
            "average interval {average:?}: {times:?}"
        );
    }
}

/// A node that starts after its peer hears the peer at once, not a keepalive later: the peer
/// answers a node it hears for the first time with its heartbeat (what it sent before the
/// newcomer listened was lost). With a keepalive longer than the test's patience, only that
/// answer can make the newcomer see its peer.
#[tokio::test]
async fn a_node_heard_for_the_first_time_gets_a_heartbeat_at_once() {
    let nodes = start_cluster(&["alpha", "bravo"], |b| b.timing("40", "100", "100")).await;
    wait_peer_status(&nodes[0], "bravo", "active").await;
    wait_peer_status(&nodes[1], "alpha", "active").await;
    let counters = CommProxy::new(&nodes[0].connection)
        .await
        .unwrap()
        .counters()
        .await
        .unwrap();
    assert!(
        counters.get("heartbeats_early").copied().unwrap_or(0) >= 1,
        "{counters:?}"
    );
}

/// bcast and mcast links between two nodes, each in a network namespace of its own joined by a
/// veth pair: no bind address, the links bound to the device as on a real cluster. Each side
/// sees the other active on that link.
#[tokio::test]
async fn broadcast_and_multicast_links_between_namespaces() {
    use hb_lab::netns::Namespace;
    use hb_lab::NodeBuilder;
    for medium in ["bcast", "mcast"] {
        let sides = [Namespace::new("bca"), Namespace::new("bcb")];
        let tag = std::process::id() % 10_000;
        let devices = [format!("hba{tag}"), format!("hbb{tag}")];
        let status = std::process::Command::new("ip")
            .args([
                "link",
                "add",
                &devices[0],
                "netns",
                &sides[0].name,
                "type",
                "veth",
            ])
            .args(["peer", "name", &devices[1], "netns", &sides[1].name])
            .status()
            .unwrap();
        assert!(status.success(), "veth pair");
        for (index, side) in sides.iter().enumerate() {
            let address = format!("10.77.0.{}/24", index + 1);
            side.exec(&["ip", "addr", "add", &address, "brd", "+", "dev", &devices[index]]);
            side.exec(&["ip", "link", "set", &devices[index], "up"]);
            side.exec(&["ip", "route", "add", "239.0.0.0/8", "dev", &devices[index]]);
        }
        let mut nodes = Vec::new();
        for (index, name) in ["alpha", "bravo"].into_iter().enumerate() {
            let line = match medium {
                "bcast" => format!("bcast {}", devices[index]),
                _ => format!("mcast {} 239.0.0.77 6977 1 0", devices[index]),
            };
            let wrapper = sides[index].wrapper();
            nodes.push(
                NodeBuilder::new(name)
                    .nodes(&["alpha", "bravo"])
                    .core_daemons()
                    .links(vec!["udpport 6976".into(), line])
                    .wrapper(&wrapper)
                    .start()
                    .await,
            );
        }
        for (node, peer, device) in [(0, "bravo", &devices[0]), (1, "alpha", &devices[1])] {
            wait_peer_status(&nodes[node], peer, "active").await;
            let seen = nodes[node].peer(peer).await;
            assert_eq!(
                seen.links,
                [hbapi::comm::LinkInfo {
                    name: device.clone(),
                    up: true
                }],
                "{medium}"
            );
        }
        drop(nodes);
    }
}

/// hbcomm's counters on `node`.
async fn counters(node: &hb_lab::Node) -> std::collections::HashMap<String, u64> {
    CommProxy::new(&node.connection)
        .await
        .unwrap()
        .counters()
        .await
        .unwrap()
}

/// Two clusters with the same key on one segment (FAQ 15) must not hear each other: neither
/// a membership change nor a dropped packet from the other. Watched until every node has
/// received 25 more heartbeats from its own peer after all four were up — long enough for
/// the other cluster's to have arrived many times over had they been let through.
async fn two_clusters_stay_apart(clusters: [[&hb_lab::Node; 2]; 2]) {
    for [first, second] in clusters {
        wait_peer_status(first, second.node.as_str(), "active").await;
        wait_peer_status(second, first.node.as_str(), "active").await;
    }
    let every = clusters.concat();
    let mut start = Vec::new();
    for node in &every {
        start.push(counters(node).await.get("received").copied().unwrap_or(0));
    }
    let deadline = tokio::time::Instant::now() + hb_lab::PATIENCE;
    for (node, before) in every.iter().zip(start) {
        loop {
            let now = counters(node).await;
            if now.get("received").copied().unwrap_or(0) >= before + 25 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} stopped hearing its peer",
                node.node.as_str()
            );
            // hbcomm counts without telling anyone: read again after a keepalive.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    for cluster in clusters {
        for node in cluster {
            let seen = counters(node).await;
            let dropped: Vec<(&String, &u64)> = seen
                .iter()
                .filter(|(k, v)| k.starts_with("dropped_") && **v > 0)
                .collect();
            assert!(
                dropped.is_empty(),
                "{} dropped packets: {dropped:?}",
                node.node.as_str()
            );
            let members: Vec<String> = CommProxy::new(&node.connection)
                .await
                .unwrap()
                .list_nodes()
                .await
                .unwrap()
                .into_iter()
                .map(|n| format!("{} {}", n.name, n.status))
                .collect();
            let mut expected: Vec<String> = cluster
                .iter()
                .map(|n| format!("{} active", n.node.as_str()))
                .collect();
            expected.sort();
            let mut members = members;
            members.sort();
            assert_eq!(members, expected, "{}'s membership", node.node.as_str());
        }
    }
}

#[tokio::test]
async fn two_clusters_on_one_segment_with_different_multicast_groups_on_one_port() {
    use hb_lab::mixed::Wire;
    use hb_lab::NodeBuilder;
    // Two hosts, each running a node of each cluster: each host has joined both groups, so a
    // socket bound to the wildcard address would get the other cluster's heartbeats too.
    let wire = Wire::new(&["alpha", "bravo"]);
    for (host, second) in [("alpha", "10.213.77.11/24"), ("bravo", "10.213.77.12/24")] {
        hb_lab::container::host(&[
            "ip",
            "-n",
            wire.namespace(host),
            "addr",
            "add",
            second,
            "dev",
            "eth0",
        ]);
    }
    let mut nodes = Vec::new();
    for (name, host, address, cluster, group) in [
        ("alpha", "alpha", "10.213.77.1", ["alpha", "bravo"], "239.0.0.1"),
        ("bravo", "bravo", "10.213.77.2", ["alpha", "bravo"], "239.0.0.1"),
        (
            "charlie",
            "alpha",
            "10.213.77.11",
            ["charlie", "delta"],
            "239.0.0.2",
        ),
        (
            "delta",
            "bravo",
            "10.213.77.12",
            ["charlie", "delta"],
            "239.0.0.2",
        ),
    ] {
        nodes.push(
            NodeBuilder::new(name)
                .nodes(&cluster)
                .core_daemons()
                .bind(address)
                .links(vec!["udpport 694".into(), format!("mcast eth0 {group} 694 1 1")])
                .timing("100ms", "2", "4")
                .wrapper(&["ip", "netns", "exec", wire.namespace(host)])
                .start()
                .await,
        );
    }
    two_clusters_stay_apart([[&nodes[0], &nodes[1]], [&nodes[2], &nodes[3]]]).await;
}

#[tokio::test]
async fn two_clusters_on_one_segment_broadcasting_on_different_ports() {
    use hb_lab::mixed::Wire;
    use hb_lab::NodeBuilder;
    let wire = Wire::new(&["alpha", "bravo", "charlie", "delta"]);
    let mut nodes = Vec::new();
    for (name, cluster, port) in [
        ("alpha", ["alpha", "bravo"], 694),
        ("bravo", ["alpha", "bravo"], 694),
        ("charlie", ["charlie", "delta"], 695),
        ("delta", ["charlie", "delta"], 695),
    ] {
        nodes.push(
            NodeBuilder::new(name)
                .nodes(&cluster)
                .core_daemons()
                .links(vec![format!("udpport {port}"), "bcast eth0".into()])
                .timing("100ms", "2", "4")
                .wrapper(&["ip", "netns", "exec", wire.namespace(name)])
                .start()
                .await,
        );
    }
    two_clusters_stay_apart([[&nodes[0], &nodes[1]], [&nodes[2], &nodes[3]]]).await;
}
