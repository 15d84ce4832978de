//! hbcomm's interface: membership, links and counters.

use serde::{Deserialize, Serialize};
use zbus::{proxy, Type};

/// A link to a node and whether it is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct LinkInfo {
    /// Heartbeat's link name (the device).
    pub name: String,
    /// Whether packets from the node arrive on it.
    pub up: bool,
}

/// A member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct NodeInfo {
    /// Node name (ping nodes: the address or group name).
    pub name: String,
    /// `normal` or `ping` (Heartbeat's node types).
    pub kind: String,
    /// `init`, `up`, `active` or `dead`.
    pub status: String,
    /// Its links.
    pub links: Vec<LinkInfo>,
}

/// Node states as Heartbeat names them (on the bus: [`NodeInfo::status`] and
/// `NodeStatusChanged`, spelled by [`NodeStatus::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeStatus {
    /// Not heard since start-up.
    Init,
    /// Heard, its heartbeat says it is up but not yet active.
    Up,
    /// Heard and active.
    Active,
    /// Silent for longer than deadtime (or initdead).
    Dead,
    /// A ping pseudo-node that answers (Heartbeat's PINGSTATUS).
    Ping,
}

impl NodeStatus {
    /// Heartbeat's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Init => "init",
            NodeStatus::Up => "up",
            NodeStatus::Active => "active",
            NodeStatus::Dead => "dead",
            NodeStatus::Ping => "ping",
        }
    }

    /// What a heartbeat's `st` field says (unknown values count as up).
    pub fn from_heartbeat(st: &str) -> Self {
        match st {
            "active" => NodeStatus::Active,
            "init" => NodeStatus::Init,
            "dead" => NodeStatus::Dead,
            _ => NodeStatus::Up,
        }
    }

    /// A status as the bus spells it; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        [
            NodeStatus::Init,
            NodeStatus::Up,
            NodeStatus::Active,
            NodeStatus::Dead,
            NodeStatus::Ping,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    /// A cluster node that is heard (up or active).
    pub fn is_alive(self) -> bool {
        matches!(self, NodeStatus::Up | NodeStatus::Active)
    }
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a member is a cluster node or a ping pseudo-node (on the bus: [`NodeInfo::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A node running heartbeat.
    Normal,
    /// A ping target (judged with deadping).
    Ping,
}

impl NodeKind {
    /// Heartbeat's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Normal => "normal",
            NodeKind::Ping => "ping",
        }
    }
}

impl NodeInfo {
    /// Its status, typed (a status this version does not know reads as dead).
    pub fn node_status(&self) -> NodeStatus {
        NodeStatus::parse(&self.status).unwrap_or(NodeStatus::Dead)
    }

    /// Whether it is a ping node.
    pub fn is_ping(&self) -> bool {
        self.kind == NodeKind::Ping.as_str()
    }
}

/// hbcomm's packet counters, served by `Counters` under [`Counter::as_str`]'s names (a
/// counter appears once it is first counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// Packets sent, one per destination.
    Sent,
    /// Sends that failed.
    SendErrors,
    /// Datagrams received, before any check.
    Received,
    /// Receives that failed.
    ReceiveErrors,
    /// Failed authentication (or none).
    DroppedForged,
    /// Larger than a packet may be.
    DroppedOversized,
    /// Not a packet of the protocol.
    DroppedMalformed,
    /// Authentic, but seen before (a replay).
    DroppedReplay,
    /// A protocol request from a node that is not a member.
    DroppedNotMember,
    /// From a node not in the configuration.
    DroppedUnknownNode,
    /// A message received twice (over two links, or retransmitted).
    Duplicates,
    /// Cluster messages sent.
    MessagesSent,
    /// Cluster messages handed to the bus, in order.
    MessagesDelivered,
    /// Cluster messages lost for good (not retransmitted in time).
    MessagesLost,
    /// Retransmissions this node asked for.
    RexmitRequested,
    /// Retransmission requests answered.
    RexmitAnswered,
    /// Retransmission requests for what this node no longer has.
    RexmitRefused,
    /// Retransmission requests over the rate limit.
    RexmitLimited,
    /// Heartbeats sent early to keep in step with a peer's.
    HeartbeatsEarly,
    /// ICMP echo requests that could not be sent.
    PingSendErrors,
    /// No local heartbeat: hbcomm was not scheduled for longer than deadtime.
    LocalStalls,
    /// Heartbeat's retransmission requests received (`NS_rexmit`).
    ReceivedRexmit,
    /// Heartbeat's "cannot retransmit" answers received (`NS_nak_rexmit`).
    ReceivedNakRexmit,
    /// Heartbeat's acknowledgements received (`NS_ackmsg`).
    ReceivedAck,
    /// Other messages without a sequence number.
    ReceivedOther,
}

impl Counter {
    /// Its name in `Counters` (and `cl_status counters`).
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Sent => "sent",
            Counter::SendErrors => "send_errors",
            Counter::Received => "received",
            Counter::ReceiveErrors => "receive_errors",
            Counter::DroppedForged => "dropped_forged",
            Counter::DroppedOversized => "dropped_oversized",
            Counter::DroppedMalformed => "dropped_malformed",
            Counter::DroppedReplay => "dropped_replay",
            Counter::DroppedNotMember => "dropped_not_member",
            Counter::DroppedUnknownNode => "dropped_unknown_node",
            Counter::Duplicates => "duplicates",
            Counter::MessagesSent => "messages_sent",
            Counter::MessagesDelivered => "messages_delivered",
            Counter::MessagesLost => "messages_lost",
            Counter::RexmitRequested => "rexmit_requested",
            Counter::RexmitAnswered => "rexmit_answered",
            Counter::RexmitRefused => "rexmit_refused",
            Counter::RexmitLimited => "rexmit_limited",
            Counter::HeartbeatsEarly => "heartbeats_early",
            Counter::PingSendErrors => "ping_send_errors",
            Counter::LocalStalls => "local_stalls",
            Counter::ReceivedRexmit => "received_NS_rexmit",
            Counter::ReceivedNakRexmit => "received_NS_nak_rexmit",
            Counter::ReceivedAck => "received_NS_ackmsg",
            Counter::ReceivedOther => "received_other",
        }
    }

    /// The counter of a message without a sequence number, by its type (`t`).
    pub fn received(message_type: &str) -> Counter {
        match message_type {
            "NS_rexmit" => Counter::ReceivedRexmit,
            "NS_nak_rexmit" => Counter::ReceivedNakRexmit,
            "NS_ackmsg" => Counter::ReceivedAck,
            _ => Counter::ReceivedOther,
        }
    }
}

/// How late one link carried a peer's heartbeats since hbcomm started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct LinkGap {
    /// The link.
    pub link: String,
    /// The longest gap between two heartbeats on it while it was up, in milliseconds.
    pub longest_gap_ms: u64,
    /// Heartbeats that came on it after more than warntime.
    pub late: u64,
}

/// How late a peer's heartbeats have been since hbcomm started (FAQ 12's measure); gaps
/// across the peer's death or a link's are not counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct NodeGaps {
    /// The peer.
    pub node: String,
    /// The longest gap between two of its heartbeats on any link, in milliseconds: what
    /// deadtime must exceed.
    pub longest_gap_ms: u64,
    /// Heartbeats that came after more than warntime.
    pub late: u64,
    /// Per link.
    pub links: Vec<LinkGap>,
}

/// The heartbeat timers in force and every peer's gaps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct HeartbeatTiming {
    /// `keepalive`, in milliseconds.
    pub keepalive_ms: u64,
    /// `warntime`, in milliseconds.
    pub warntime_ms: u64,
    /// `deadtime`, in milliseconds.
    pub deadtime_ms: u64,
    /// The peers (ping nodes aside).
    pub nodes: Vec<NodeGaps>,
    /// ha.cf's watchdog device ("" when there is none).
    pub watchdog: String,
    /// Its timeout, in milliseconds.
    pub watchdog_timeout_ms: u64,
    /// Why it is not written now ("" while it is fed with every heartbeat).
    pub watchdog_starving: String,
}

/// FAQ 12's rule for tuning deadtime: 1.5 to 2 times the longest gap seen under real load.
/// Returns that range.
pub fn suggested_deadtime(longest_gap: std::time::Duration) -> (std::time::Duration, std::time::Duration) {
    (longest_gap.mul_f64(1.5), longest_gap * 2)
}

/// Client side of hbcomm's interface.
#[proxy(
    interface = "org.heartbeatrs.Comm1",
    default_service = "org.heartbeatrs.Comm",
    default_path = "/org/heartbeatrs/Comm"
)]
pub trait Comm {
    /// This node's name.
    #[zbus(property)]
    fn local_node(&self) -> zbus::Result<String>;

    /// The heartbeat generation of this run.
    #[zbus(property)]
    fn generation(&self) -> zbus::Result<u32>;

    /// Every member, this node included.
    fn list_nodes(&self) -> zbus::Result<Vec<NodeInfo>>;

    /// Packet counters: received, sent, dropped by reason.
    fn counters(&self) -> zbus::Result<std::collections::HashMap<String, u64>>;

    /// The timers in force and how late each peer's heartbeats have been since start.
    fn heartbeat_timing(&self) -> zbus::Result<HeartbeatTiming>;

    /// Sends a cluster message to `to` (a node, or "" for every node, this one included);
    /// returns its sequence number. Operators only.
    fn send_message(
        &self,
        to: &str,
        msg_type: &str,
        body: std::collections::HashMap<String, String>,
    ) -> zbus::Result<u64>;

    /// This node leaves the cluster: Heartbeat's shutdown notice (`t=shutdone`) goes to
    /// every node, which drops it from the membership at once, and heartbeats stop until
    /// [`CommProxy::join`]. Sent by crmd once every group here is stopped. Operators only.
    fn leave(&self) -> zbus::Result<()>;

    /// This node (back) in the cluster after a [`CommProxy::leave`], as a new generation; does
    /// nothing while it has not left. Operators only.
    fn join(&self) -> zbus::Result<()>;

    /// crmd's word to the watchdog, when one is configured: whether groups run (or are being
    /// started or stopped) here, and why this node must not be kept alive while they do
    /// (`hold`; empty when there is no such reason: it has quorum). The device is fed only
    /// while no group runs here or no reason holds, and crmd is on the bus. Root only.
    fn set_watchdog_state(&self, groups_here: bool, hold: &str) -> zbus::Result<()>;

    /// Who decides quorum, and its verdict: `(false, _)` with Heartbeat's engine, where
    /// crmd counts the members itself; `(true, quorate)` with Corosync's, whose quorum API
    /// decides.
    fn quorum(&self) -> zbus::Result<(bool, bool)>;

    /// A cluster message for this node: each once, in its sender's order.
    #[zbus(signal)]
    fn message_received(
        &self,
        from: &str,
        msg_type: &str,
        body: std::collections::HashMap<String, String>,
    ) -> zbus::Result<()>;

    /// A node changed status.
    #[zbus(signal)]
    fn node_status_changed(&self, node: &str, old: &str, new: &str) -> zbus::Result<()>;

    /// A link to a node went up or down.
    #[zbus(signal)]
    fn link_status_changed(&self, node: &str, link: &str, up: bool) -> zbus::Result<()>;

    /// A node advertises another resource configuration or key than ours.
    #[zbus(signal)]
    fn config_mismatch(&self, node: &str, theirs: &str, ours: &str) -> zbus::Result<()>;

    /// No local heartbeat (Heartbeat's name): this node sent none for `silent_ms`, longer
    /// than deadtime — hbcomm was not scheduled. Its peers may have declared it dead and
    /// taken its groups over; crmd gives them up.
    #[zbus(signal)]
    fn no_local_heartbeat(&self, silent_ms: u64, deadtime_ms: u64) -> zbus::Result<()>;

    /// The engine's quorum verdict changed (Corosync's engine only).
    #[zbus(signal)]
    fn quorum_changed(&self, quorate: bool) -> zbus::Result<()>;
}
