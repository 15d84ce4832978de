//! Cluster messages through hbcomm: each client gets each message once, in its sender's order,
//! only where it is addressed — also when the network loses packets.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use hb_lab::netns::Namespace;
use hb_lab::{start_cluster, wait_peer_status, Node, PATIENCE};
use hbapi::comm::CommProxy;

/// Collects `count` messages of type `msg_type` arriving at `node`, as (from, n) pairs.
async fn collect(
    mut stream: hbapi::comm::MessageReceivedStream,
    msg_type: &'static str,
    count: usize,
    node: String,
) -> Vec<(String, u32)> {
    let mut got = Vec::new();
    let done = tokio::time::timeout(PATIENCE, async {
        while got.len() < count {
            let Some(signal) = stream.next().await else { break };
            let args = signal.args().expect("args");
            if args.msg_type == msg_type {
                let n = args.body.get("n").and_then(|n| n.parse().ok()).expect("n");
                got.push((args.from.to_owned(), n));
            }
        }
    })
    .await;
    assert!(done.is_ok(), "{node} got only {} of {count}: {got:?}", got.len());
    got
}

async fn subscribe(node: &Node) -> hbapi::comm::MessageReceivedStream {
    CommProxy::new(&node.connection)
        .await
        .unwrap()
        .receive_message_received()
        .await
        .unwrap()
}

fn body(n: u32) -> HashMap<String, String> {
    HashMap::from([
        ("n".to_owned(), n.to_string()),
        ("text".to_owned(), "a;b $(c) `d`\t\"e\"".to_owned()),
    ])
}

async fn wait_all_active(nodes: &[Node]) {
    for node in nodes {
        for peer in nodes.iter().filter(|p| p.node != node.node) {
            wait_peer_status(node, &peer.node, "active").await;
        }
    }
}

#[tokio::test]
async fn messages_arrive_once_in_order_and_only_where_addressed() {
    let nodes = start_cluster(&["alpha", "bravo", "charlie"], |b| b).await;
    wait_all_active(&nodes).await;
    let streams = [
        subscribe(&nodes[0]).await,
        subscribe(&nodes[1]).await,
        subscribe(&nodes[2]).await,
    ];
    let comm = CommProxy::new(&nodes[0].connection).await.unwrap();
    let mut last_seq = 0;
    for n in 0..60 {
        let to = if n % 6 == 5 { "bravo" } else { "" };
        let seq = comm.send_message(to, "lab", body(n)).await.unwrap();
        assert!(seq > last_seq, "sequence numbers grow");
        last_seq = seq;
    }
    let [at_alpha, at_bravo, at_charlie] = streams;
    let broadcast: Vec<u32> = (0..60).filter(|n| n % 6 != 5).collect();
    let (alpha, bravo, charlie) = tokio::join!(
        collect(at_alpha, "lab", 50, "alpha".into()),
        collect(at_bravo, "lab", 60, "bravo".into()),
        collect(at_charlie, "lab", 50, "charlie".into()),
    );
    assert!(alpha
        .iter()
        .chain(&bravo)
        .chain(&charlie)
        .all(|(from, _)| from == "alpha"));
    let numbers = |got: &[(String, u32)]| got.iter().map(|(_, n)| *n).collect::<Vec<_>>();
    assert_eq!(
        numbers(&alpha),
        broadcast,
        "the sender's own clients get broadcasts"
    );
    assert_eq!(numbers(&bravo), (0..60).collect::<Vec<_>>());
    assert_eq!(numbers(&charlie), broadcast, "nothing addressed to bravo");

    let refused = comm.send_message("mallory", "lab", body(1)).await.unwrap_err();
    assert!(refused.to_string().contains("not a node"), "{refused}");
    let refused = comm.send_message("", "NS_rexmit", body(1)).await.unwrap_err();
    assert!(refused.to_string().contains("message type"), "{refused}");
    let huge = HashMap::from([("n".to_owned(), "x".repeat(70_000))]);
    let refused = comm.send_message("", "lab", huge).await.unwrap_err();
    assert!(refused.to_string().contains("bytes"), "{refused}");

    // The body reaches the other side byte for byte.
    let mut stream = subscribe(&nodes[2]).await;
    comm.send_message("charlie", "exact", body(7)).await.unwrap();
    let signal = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .unwrap()
        .unwrap();
    let args = signal.args().unwrap();
    assert_eq!(args.msg_type, "exact");
    assert_eq!(args.body, body(7));
}

#[tokio::test]
async fn lost_packets_are_retransmitted_and_clients_see_no_gap() {
    let namespace = Namespace::new("loss");
    let nodes = start_cluster(&["alpha", "bravo", "charlie"], |b| {
        b.wrapper(&namespace.wrapper())
            .timing("200ms", "5", "10")
            .ha_cf("max_rexmit_delay 100")
    })
    .await;
    wait_all_active(&nodes).await;
    namespace.drop_udp(nodes[0].udp_port(), 0.2);
    let streams = [subscribe(&nodes[1]).await, subscribe(&nodes[2]).await];
    let comm = CommProxy::new(&nodes[0].connection).await.unwrap();
    const COUNT: u32 = 200;
    for n in 0..COUNT {
        comm.send_message("", "lab", body(n)).await.unwrap();
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let [at_bravo, at_charlie] = streams;
    let (bravo, charlie) = tokio::join!(
        collect(at_bravo, "lab", COUNT as usize, "bravo".into()),
        collect(at_charlie, "lab", COUNT as usize, "charlie".into()),
    );
    let expected: Vec<u32> = (0..COUNT).collect();
    for got in [&bravo, &charlie] {
        assert_eq!(got.iter().map(|(_, n)| *n).collect::<Vec<_>>(), expected);
    }
    let counters = |node: &Node| {
        let connection = node.connection.clone();
        async move {
            CommProxy::new(&connection)
                .await
                .unwrap()
                .counters()
                .await
                .unwrap()
        }
    };
    let sender = counters(&nodes[0]).await;
    let receiver = counters(&nodes[1]).await;
    assert!(
        sender.get("rexmit_answered").copied().unwrap_or(0) > 0,
        "{sender:?}"
    );
    assert!(
        receiver.get("rexmit_requested").copied().unwrap_or(0) > 0,
        "{receiver:?}"
    );
    assert_eq!(receiver.get("messages_lost"), None, "{receiver:?}");
}

#[tokio::test]
async fn only_the_cluster_users_may_send() {
    let nodes = start_cluster(&["alpha", "bravo"], |b| b.bus(hb_lab::BusKind::DbusDaemon)).await;
    let node = &nodes[0];
    let (ok, stderr) = node
        .call_as_nobody(&[
            hbapi::names::comm::BUS_NAME,
            hbapi::names::comm::OBJECT_PATH,
            hbapi::names::comm::INTERFACE,
            "SendMessage",
            "ssa{ss}",
            "",
            "lab",
            "0",
        ])
        .await;
    assert!(!ok);
    assert!(stderr.contains("may not do this"), "{stderr}");
}
