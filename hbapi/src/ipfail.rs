//! ipfail's interface: how many ping nodes each node sees, and what ipfail last did.

use serde::{Deserialize, Serialize};
use zbus::{proxy, Type};

/// One node's ping count as this node's ipfail knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct PingCount {
    /// Node name.
    pub node: String,
    /// Ping nodes it reaches.
    pub count: u32,
}

/// ipfail's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct IpfailState {
    /// Ping nodes configured.
    pub ping_nodes: u32,
    /// Every active node's count (this node's included).
    pub counts: Vec<PingCount>,
    /// Whether this node has given up its groups for lack of connectivity.
    pub gave_up: bool,
    /// Whether a change of counts is waiting out the hysteresis (a decision may follow).
    pub pending: bool,
    /// The last give-up or take-back, with the counts that caused it ("" before the first).
    pub last_decision: String,
}

/// Client side of ipfail's interface.
#[proxy(
    interface = "org.heartbeatrs.Ipfail1",
    default_service = "org.heartbeatrs.Ipfail",
    default_path = "/org/heartbeatrs/Ipfail"
)]
pub trait Ipfail {
    /// The current state.
    fn state(&self) -> zbus::Result<IpfailState>;

    /// This node gave up its groups (`true`) or took them back (`false`); `reason` names
    /// the counts.
    #[zbus(signal)]
    fn decided(&self, gave_up: bool, reason: &str) -> zbus::Result<()>;
}
