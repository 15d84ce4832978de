//! hbcomm's D-Bus interface (`org.heartbeatrs.Comm1`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection};

use hbapi::comm::{HeartbeatTiming, NodeInfo};
use hbapi::error::HbError;

use crate::wire::RESERVED_FIELDS;

/// Longest message type and field name.
const MAX_NAME: usize = 64;

/// Leaving and joining the cluster, for the daemon's loop.
#[derive(Debug)]
pub enum Control {
    /// Send Heartbeat's shutdown notice and stop heartbeats; answered once sent.
    Leave(oneshot::Sender<()>),
    /// Heartbeats again, as a new generation, after a leave.
    Join(oneshot::Sender<()>),
    /// crmd's word to the watchdog ([`crate::watchdog::Guard::crmd_says`]).
    WatchdogState {
        /// Whether groups run here.
        groups_here: bool,
        /// Why this node must not be kept alive while they do ("": no reason).
        hold: String,
        /// Answered once taken.
        reply: oneshot::Sender<()>,
    },
}

/// A cluster message a client asked to send, for the daemon's loop.
#[derive(Debug)]
pub struct Outgoing {
    /// One node, or `None` for every node.
    pub to: Option<String>,
    /// Message type (Heartbeat's `t`).
    pub msg_type: String,
    /// Body fields, sorted by name.
    pub body: Vec<(String, String)>,
    /// Gets the message's sequence number, or why it was refused.
    pub reply: oneshot::Sender<Result<u64, HbError>>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks a client's message before it reaches the wire.
pub fn check_outgoing(
    to: &str,
    msg_type: &str,
    body: &HashMap<String, String>,
    nodes: &[String],
) -> Result<(), HbError> {
    if !to.is_empty() && !nodes.iter().any(|n| n == to) {
        return Err(HbError::NotFound(format!("{to:?} is not a node of this cluster")));
    }
    if !valid_name(msg_type) || msg_type == "status" || msg_type.starts_with("NS_") {
        return Err(HbError::InvalidArgument(format!(
            "message type {msg_type:?}: expected 1-{MAX_NAME} of A-Z a-z 0-9 _ - ., not \"status\" and not starting with NS_ (the messaging layer's own types)"
        )));
    }
    for name in body.keys() {
        if !valid_name(name) || RESERVED_FIELDS.contains(&name.as_str()) {
            return Err(HbError::InvalidArgument(format!(
                "field {name:?}: expected 1-{MAX_NAME} of A-Z a-z 0-9 _ - . and none of the messaging layer's own fields ({})",
                RESERVED_FIELDS.join(" ")
            )));
        }
    }
    Ok(())
}

/// What the interface shows, kept current by the daemon's loop.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Members.
    pub nodes: Vec<NodeInfo>,
    /// Counters.
    pub counters: HashMap<String, u64>,
    /// Timers and peers' gaps.
    pub timing: HeartbeatTiming,
    /// The engine's quorum verdict (`None`: Heartbeat's engine, crmd counts).
    pub quorum: Option<bool>,
}

/// The served object.
pub struct CommInterface {
    pub(crate) local_node: String,
    pub(crate) generation: u32,
    pub(crate) snapshot: Arc<Mutex<Snapshot>>,
    pub(crate) nodes: Vec<String>,
    pub(crate) outgoing: mpsc::Sender<Outgoing>,
    pub(crate) control: mpsc::Sender<Control>,
}

impl CommInterface {
    async fn control(&self, request: impl FnOnce(oneshot::Sender<()>) -> Control) -> Result<(), HbError> {
        let (reply, answer) = oneshot::channel();
        let gone = || HbError::Failed("hbcomm is shutting down".into());
        self.control.send(request(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }
}

#[interface(name = "org.heartbeatrs.Comm1")]
impl CommInterface {
    /// This node's name.
    #[zbus(property(emits_changed_signal = "const"))]
    fn local_node(&self) -> String {
        self.local_node.clone()
    }

    /// The heartbeat generation of this run.
    #[zbus(property(emits_changed_signal = "const"))]
    fn generation(&self) -> u32 {
        self.generation
    }

    /// Every member, this node included: name, kind, status, links.
    fn list_nodes(&self) -> Vec<NodeInfo> {
        self.snapshot.lock().map(|s| s.nodes.clone()).unwrap_or_default()
    }

    /// Packet counters: received, sent, dropped by reason.
    fn counters(&self) -> HashMap<String, u64> {
        self.snapshot
            .lock()
            .map(|s| s.counters.clone())
            .unwrap_or_default()
    }

    /// The timers in force and how late each peer's heartbeats have been since start, over
    /// all links and per link (FAQ 12: deadtime should be 1.5–2 times the longest gap).
    fn heartbeat_timing(&self) -> HeartbeatTiming {
        self.snapshot.lock().map(|s| s.timing.clone()).unwrap_or_default()
    }

    /// Who decides quorum, and its verdict: (false, _) with Heartbeat's engine, where crmd
    /// counts the members itself; (true, quorate) with Corosync's, whose quorum API decides.
    fn quorum(&self) -> (bool, bool) {
        let quorum = self.snapshot.lock().map(|s| s.quorum).unwrap_or_default();
        (quorum.is_some(), quorum.unwrap_or(false))
    }

    /// Sends a cluster message to `to` (a node, or "" for every node, this one included) and
    /// returns its sequence number. Each receiver's clients get it once, in this node's order.
    /// Only root, the cluster user and the daemon's own user may send.
    async fn send_message(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        to: &str,
        msg_type: &str,
        body: HashMap<String, String>,
    ) -> Result<u64, HbError> {
        hbapi::bus::authorise_operator(connection, &header).await?;
        check_outgoing(to, msg_type, &body, &self.nodes)?;
        let mut body: Vec<(String, String)> = body.into_iter().collect();
        body.sort();
        let (reply, answer) = oneshot::channel();
        let request = Outgoing {
            to: (!to.is_empty()).then(|| to.to_owned()),
            msg_type: msg_type.to_owned(),
            body,
            reply,
        };
        let gone = || HbError::Failed("hbcomm is shutting down".into());
        self.outgoing.send(request).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// This node leaves the cluster: Heartbeat's shutdown notice (`t=shutdone`, `st=dead`)
    /// goes to every node, which drops this one from its membership at once, and heartbeats
    /// stop until `Join`. crmd calls it once every group here is stopped. Operators only.
    async fn leave(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), HbError> {
        hbapi::bus::authorise_operator(connection, &header).await?;
        self.control(Control::Leave).await
    }

    /// Back in the cluster after `Leave`, as a new generation (peers ignore the old one once
    /// it said it left); nothing while this node has not left. Operators only.
    async fn join(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), HbError> {
        hbapi::bus::authorise_operator(connection, &header).await?;
        self.control(Control::Join).await
    }

    /// crmd's word to the watchdog, when one is configured: whether groups run here, and why
    /// this node must not be kept alive while they do ("" when nothing holds: quorum). Root
    /// (or hbcomm's own user) only: starving the watchdog resets the machine.
    async fn set_watchdog_state(
        &self,
        groups_here: bool,
        hold: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::caller_uid(connection, &header).await?;
        if uid != 0 && uid != nix::unistd::geteuid().as_raw() {
            return Err(HbError::AccessDenied(format!(
                "uid {uid} may not speak for crmd to the watchdog: only root may"
            )));
        }
        if hold.len() > 512 {
            return Err(HbError::InvalidArgument("hold: more than 512 bytes".into()));
        }
        let hold = hold.to_owned();
        self.control(|reply| Control::WatchdogState {
            groups_here,
            hold,
            reply,
        })
        .await
    }

    /// A cluster message for this node arrived (or this node sent one to all).
    #[zbus(signal)]
    pub async fn message_received(
        emitter: &SignalEmitter<'_>,
        from: &str,
        msg_type: &str,
        body: HashMap<String, String>,
    ) -> zbus::Result<()>;

    /// A node changed status.
    #[zbus(signal)]
    pub async fn node_status_changed(
        emitter: &SignalEmitter<'_>,
        node: &str,
        old: &str,
        new: &str,
    ) -> zbus::Result<()>;

    /// A link to a node went up or down.
    #[zbus(signal)]
    pub async fn link_status_changed(
        emitter: &SignalEmitter<'_>,
        node: &str,
        link: &str,
        up: bool,
    ) -> zbus::Result<()>;

    /// A node advertises another resource configuration or key than ours.
    #[zbus(signal)]
    pub async fn config_mismatch(
        emitter: &SignalEmitter<'_>,
        node: &str,
        theirs: &str,
        ours: &str,
    ) -> zbus::Result<()>;

    /// No local heartbeat: this node sent none for `silent_ms`, longer than deadtime.
    #[zbus(signal)]
    pub async fn no_local_heartbeat(
        emitter: &SignalEmitter<'_>,
        silent_ms: u64,
        deadtime_ms: u64,
    ) -> zbus::Result<()>;

    /// The engine's quorum verdict changed (Corosync's engine only).
    #[zbus(signal)]
    pub async fn quorum_changed(emitter: &SignalEmitter<'_>, quorate: bool) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use zbus::object_server::Interface;

    use std::collections::HashMap;

    use super::check_outgoing;

    #[test]
    fn outgoing_messages_are_checked() {
        let nodes = ["alpha".to_owned(), "bravo".to_owned()];
        let body = |k: &str| HashMap::from([(k.to_owned(), "v".to_owned())]);
        assert!(check_outgoing("", "crmd", &body("op"), &nodes).is_ok());
        assert!(check_outgoing("bravo", "ip-request", &HashMap::new(), &nodes).is_ok());
        assert!(check_outgoing("mallory", "crmd", &body("op"), &nodes).is_err());
        for bad_type in ["status", "NS_rexmit", "", "a b", "x\n"] {
            assert!(
                check_outgoing("", bad_type, &body("op"), &nodes).is_err(),
                "{bad_type:?}"
            );
        }
        for bad_field in ["seq", "src", "auth", "", "a=b"] {
            assert!(
                check_outgoing("", "crmd", &body(bad_field), &nodes).is_err(),
                "{bad_field:?}"
            );
        }
    }

    #[test]
    fn interface_name_matches_the_contract() {
        assert_eq!(
            super::CommInterface::name().as_str(),
            hbapi::names::comm::INTERFACE
        );
    }

    /// The served interface and the hbapi proxy both match the checked-in XML.
    #[tokio::test]
    async fn served_and_proxy_match_the_checked_in_xml() {
        use futures_util::StreamExt;
        use hbapi::comm::CommProxy;
        use hbapi::contract::{self, Calls};
        use hbapi::names::comm::{INTERFACE, OBJECT_PATH};
        use std::sync::{Arc, Mutex};
        use zbus::object_server::SignalEmitter;

        let (outgoing, mut sent) = tokio::sync::mpsc::channel(4);
        let (control, mut controlled) = tokio::sync::mpsc::channel(4);
        let interface = super::CommInterface {
            local_node: "alpha".into(),
            generation: 5,
            snapshot: Arc::new(Mutex::new(super::Snapshot::default())),
            nodes: vec!["alpha".into(), "bravo".into()],
            outgoing,
            control,
        };
        let (server, client) = contract::serve_p2p(OBJECT_PATH, interface).await.unwrap();
        contract::check_served(&client, OBJECT_PATH, INTERFACE)
            .await
            .unwrap();

        let proxy = CommProxy::new(&client).await.unwrap();
        let mut calls = Calls::new();
        assert_eq!(
            calls
                .call("property LocalNode", proxy.local_node().await)
                .unwrap(),
            "alpha"
        );
        assert_eq!(
            calls
                .call("property Generation", proxy.generation().await)
                .unwrap(),
            5
        );
        calls.call("method ListNodes", proxy.list_nodes().await);
        calls.call("method Counters", proxy.counters().await);
        calls.call("method HeartbeatTiming", proxy.heartbeat_timing().await);
        assert_eq!(
            calls.call("method Quorum", proxy.quorum().await).unwrap(),
            (false, false),
            "Heartbeat's engine leaves quorum to crmd"
        );
        // The operator's methods are refused (no caller uid on a bus-less connection).
        let body = HashMap::from([("k".to_owned(), "v".to_owned())]);
        calls.call(
            "method SendMessage",
            proxy.send_message("", "contract", body.clone()).await,
        );
        calls.call("method Leave", proxy.leave().await);
        calls.call("method Join", proxy.join().await);
        calls.call(
            "method SetWatchdogState",
            proxy.set_watchdog_state(true, "").await,
        );
        assert!(
            sent.try_recv().is_err() && controlled.try_recv().is_err(),
            "a refused call reached the loop"
        );

        let mut received = proxy.receive_message_received().await.unwrap();
        let mut status = proxy.receive_node_status_changed().await.unwrap();
        let mut link = proxy.receive_link_status_changed().await.unwrap();
        let mut mismatch = proxy.receive_config_mismatch().await.unwrap();
        let mut stalled = proxy.receive_no_local_heartbeat().await.unwrap();
        let mut quorum = proxy.receive_quorum_changed().await.unwrap();
        let emitter = SignalEmitter::new(&server, OBJECT_PATH).unwrap();
        type Iface = super::CommInterface;
        Iface::message_received(&emitter, "bravo", "contract", body)
            .await
            .unwrap();
        Iface::node_status_changed(&emitter, "bravo", "up", "active")
            .await
            .unwrap();
        Iface::link_status_changed(&emitter, "bravo", "eth0", true)
            .await
            .unwrap();
        Iface::config_mismatch(&emitter, "bravo", "ab", "cd")
            .await
            .unwrap();
        Iface::no_local_heartbeat(&emitter, 1500, 1000).await.unwrap();
        Iface::quorum_changed(&emitter, true).await.unwrap();
        let signal = received.next().await.unwrap();
        calls.signal(
            "signal MessageReceived",
            signal.args().map(|a| assert_eq!(a.body()["k"], "v")),
        );
        let signal = status.next().await.unwrap();
        calls.signal(
            "signal NodeStatusChanged",
            signal.args().map(|a| assert_eq!(*a.new(), "active")),
        );
        let signal = link.next().await.unwrap();
        calls.signal(
            "signal LinkStatusChanged",
            signal.args().map(|a| assert!(*a.up())),
        );
        let signal = mismatch.next().await.unwrap();
        calls.signal(
            "signal ConfigMismatch",
            signal.args().map(|a| assert_eq!(*a.ours(), "cd")),
        );
        let signal = stalled.next().await.unwrap();
        calls.signal(
            "signal NoLocalHeartbeat",
            signal.args().map(|a| assert_eq!(*a.silent_ms(), 1500)),
        );
        let signal = quorum.next().await.unwrap();
        calls.signal(
            "signal QuorumChanged",
            signal.args().map(|a| assert!(*a.quorate())),
        );
        calls.verdict(INTERFACE).unwrap();
    }
}
