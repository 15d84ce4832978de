//! crmd's interface: resource groups, where they run, and the operator's commands.

use serde::{Deserialize, Serialize};
use zbus::{proxy, Type};

/// A resource group as this node's crmd sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct GroupInfo {
    /// Group id (haresources: its first resource).
    pub group: String,
    /// Its preferred node.
    pub preferred_node: String,
    /// The node reporting it running (empty when none).
    pub node: String,
    /// Nodes where it failed.
    pub failed_on: Vec<String>,
}

/// One decision of a decision maker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DecisionInfo {
    /// Sequence number on the node that decided.
    pub id: u64,
    /// When (seconds since the epoch).
    pub time: u64,
    /// `start GROUP NODE`, `stop GROUP NODE` or `fence NODE`.
    pub decision: String,
    /// What set it off: a node's death, a report, a monitor failure, an operator command with
    /// the caller's uid, a fence's outcome.
    pub trigger: String,
}

/// One node's state as crmd sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct NodeState {
    /// Node name.
    pub node: String,
    /// `ACTIVE`, `IDLE`, `STANDBY`, `STOPPING`, `ERRORED`, `DEAD` or `UNKNOWN`.
    pub state: String,
    /// Groups it runs.
    pub groups: Vec<String>,
}

/// Groups held back from starting elsewhere while a node may still run them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct HoldInfo {
    /// The node whose groups are held.
    pub node: String,
    /// `lost-node-stop` (a node lost without fencing: its own stop is waited out) or
    /// `oops-window` (FreeHA: its daemon was stopped).
    pub kind: String,
    /// The groups.
    pub groups: Vec<String>,
    /// Milliseconds until they may start elsewhere.
    pub remaining_ms: u64,
}

/// Client side of crmd's interface.
#[proxy(
    interface = "org.heartbeatrs.Crmd1",
    default_service = "org.heartbeatrs.Crmd",
    default_path = "/org/heartbeatrs/Crmd"
)]
pub trait Crmd {
    /// The decision maker of this partition (empty while there is none).
    #[zbus(property)]
    fn decision_maker(&self) -> zbus::Result<String>;

    /// Whether this node's resources are in transition (Heartbeat's rscstatus
    /// `transition`): work under way here, or a decision or negotiation not yet settled.
    #[zbus(property)]
    fn in_transition(&self) -> zbus::Result<bool>;

    /// Every group with where it runs.
    fn groups(&self) -> zbus::Result<Vec<GroupInfo>>;

    /// The decisions this node made, with what set each off, oldest first.
    fn history(&self) -> zbus::Result<Vec<DecisionInfo>>;

    /// hb_standby: this node gives up its groups. Cluster users only.
    fn standby(&self, mode: &str) -> zbus::Result<()>;

    /// ipfail: this node gives up every group for lack of connectivity (`true`), or becomes
    /// eligible again (`false`; the failback policy decides whether groups come back);
    /// `reason` (the ping counts) is recorded with the decisions. Cluster users only.
    fn connectivity(&self, give_up: bool, reason: &str) -> zbus::Result<()>;

    /// hb_takeover: this node takes groups again. Cluster users only.
    fn takeover(&self, mode: &str) -> zbus::Result<()>;

    /// Moves a group to `node` ("" clears the move). Cluster users only.
    fn move_group(&self, group: &str, node: &str) -> zbus::Result<()>;

    /// Forgets a group's (or a resource's group's) failures on every node, "" every group's.
    /// Cluster users only.
    fn cleanup(&self, resource: &str) -> zbus::Result<()>;

    /// Groups held back from starting elsewhere while a node may still run them, and how
    /// long each hold lasts.
    fn holds(&self) -> zbus::Result<Vec<HoldInfo>>;

    /// Every node's state, FreeHA's way: `ACTIVE` (runs groups), `IDLE`, `STANDBY`,
    /// `STOPPING` (its services are being or were stopped; after its daemon stopped, until
    /// the oops window ends), `ERRORED`, `DEAD`, `UNKNOWN` (not heard from yet). Also written
    /// to RUN_DIR/status.
    fn node_states(&self) -> zbus::Result<Vec<NodeState>>;

    /// FreeHA's SIGHUP: this node stops its services and stays STOPPING, running, until
    /// `force_start` or a restart. Cluster users only.
    fn stop_services(&self) -> zbus::Result<()>;

    /// FreeHA's SIGUSR1 and `-m`: clears this node's error flag and failures and brings every
    /// group here (through the decision maker, which stops them elsewhere first — unlike
    /// FreeHA, which started them without asking). Cluster users only.
    fn force_start(&self) -> zbus::Result<()>;

    /// FreeHA's SIGUSR2: clears this node's error flag and its groups' failures here.
    /// Cluster users only.
    fn clear_error(&self) -> zbus::Result<()>;

    /// Monitor failures per resource on this node that have not expired.
    fn fail_counts(&self) -> zbus::Result<Vec<(String, u32)>>;

    /// The decision maker's transition is over: every group is where it should be, after
    /// `actions` orders and fences.
    #[zbus(signal)]
    fn transition_completed(&self, actions: u32) -> zbus::Result<()>;

    /// A group started or stopped on this node (`started`, `stopped`, `failed`, `blocked`,
    /// `restarting`).
    #[zbus(signal)]
    fn group_changed(&self, group: &str, node: &str, state: &str) -> zbus::Result<()>;
}
