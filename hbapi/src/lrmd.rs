//! lrmd's interface: running resource agents on this node.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use zbus::{proxy, Type};

/// OCF result codes, which every class is mapped to.
pub mod rc {
    /// Success; for monitor: running.
    pub const OK: i32 = 0;
    /// Generic error.
    pub const ERR_GENERIC: i32 = 1;
    /// Invalid arguments.
    pub const ERR_ARGS: i32 = 2;
    /// Action not implemented by the agent.
    pub const ERR_UNIMPLEMENTED: i32 = 3;
    /// Insufficient privileges.
    pub const ERR_PERM: i32 = 4;
    /// The agent or what it needs is not installed.
    pub const ERR_INSTALLED: i32 = 5;
    /// The resource's configuration is invalid.
    pub const ERR_CONFIGURED: i32 = 6;
    /// Cleanly not running.
    pub const NOT_RUNNING: i32 = 7;
    /// Running as promoted (master).
    pub const RUNNING_PROMOTED: i32 = 8;
    /// Failed as promoted (master).
    pub const FAILED_PROMOTED: i32 = 9;
    /// Running but degraded.
    pub const DEGRADED: i32 = 190;
    /// Running as promoted but degraded.
    pub const DEGRADED_PROMOTED: i32 = 191;

    /// The OCF name of a code.
    pub fn name(code: i32) -> &'static str {
        match code {
            OK => "ok",
            ERR_GENERIC => "generic error",
            ERR_ARGS => "invalid argument",
            ERR_UNIMPLEMENTED => "unimplemented",
            ERR_PERM => "insufficient privileges",
            ERR_INSTALLED => "not installed",
            ERR_CONFIGURED => "not configured",
            NOT_RUNNING => "not running",
            RUNNING_PROMOTED => "running (promoted)",
            FAILED_PROMOTED => "failed (promoted)",
            DEGRADED => "degraded",
            DEGRADED_PROMOTED => "degraded (promoted)",
            _ => "unknown",
        }
    }
}

/// How an operation ended, beside its result code.
pub mod status {
    /// The agent ran and exited; its result code is meaningful.
    pub const DONE: &str = "done";
    /// The agent did not finish within its timeout and was killed.
    pub const TIMEOUT: &str = "timeout";
    /// Cancelled before or while it ran.
    pub const CANCELLED: &str = "cancelled";
    /// The agent could not be run (missing, not executable).
    pub const NOT_INSTALLED: &str = "not-installed";
    /// lrmd stopped (or died) while it ran; the outcome is unknown and was probed again.
    pub const LOST: &str = "lost";
}

/// An agent: class (`ocf`, `lsb`, `heartbeat`), provider (OCF only) and type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Type)]
pub struct AgentId {
    /// `ocf`, `lsb` or `heartbeat`.
    pub class: String,
    /// OCF provider (empty for other classes).
    pub provider: String,
    /// Agent name.
    pub agent: String,
}

/// The outcome of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct OpResult {
    /// Operation id (recurring monitors keep theirs).
    pub op_id: u64,
    /// Resource id.
    pub resource: String,
    /// Action: start, stop, monitor, …
    pub action: String,
    /// Interval for recurring monitors, 0 otherwise.
    pub interval_ms: u32,
    /// [`status`] value.
    pub status: String,
    /// OCF result code ([`rc`]); meaningful when status is `done`.
    pub rc: i32,
    /// Tail of the agent's output (stdout and stderr).
    pub output: String,
    /// How long it ran.
    pub duration_ms: u32,
    /// When it finished (seconds since the epoch).
    pub finished: u64,
}

/// A resource lrmd knows, with its last results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ResourceInfo {
    /// Resource id.
    pub resource: String,
    /// Its agent.
    pub agent: AgentId,
    /// Recurring monitor interval (0: none).
    pub monitor_interval_ms: u32,
    /// Last result of each action.
    pub last: Vec<OpResult>,
}

/// Client side of lrmd's interface.
#[proxy(
    interface = "org.heartbeatrs.Lrmd1",
    default_service = "org.heartbeatrs.Lrmd",
    default_path = "/org/heartbeatrs/Lrmd"
)]
pub trait Lrmd {
    /// Queues one operation; returns its id. Operations of one resource run one at a time,
    /// in order. Cluster users only.
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &self,
        resource: &str,
        agent: &AgentId,
        action: &str,
        params: HashMap<String, String>,
        timeout_ms: u32,
    ) -> zbus::Result<u64>;

    /// Starts (or replaces) the recurring monitor of a resource; returns its id. Its result
    /// is signalled the first time and whenever it changes. Cluster users only.
    fn start_monitor(
        &self,
        resource: &str,
        agent: &AgentId,
        params: HashMap<String, String>,
        interval_ms: u32,
        timeout_ms: u32,
    ) -> zbus::Result<u64>;

    /// Stops a resource's recurring monitor; whether there was one. Cluster users only.
    fn stop_monitor(&self, resource: &str) -> zbus::Result<bool>;

    /// Cancels a queued or running operation; whether it was found. Cluster users only.
    fn cancel(&self, op_id: u64) -> zbus::Result<bool>;

    /// Agents of a class (`ocf` ones as `provider:type`).
    fn list_agents(&self, class: &str) -> zbus::Result<Vec<String>>;

    /// An agent's meta-data XML.
    fn meta_data(&self, agent: &AgentId) -> zbus::Result<String>;

    /// One resource's last results, as persisted.
    fn history(&self, resource: &str) -> zbus::Result<ResourceInfo>;

    /// Every resource lrmd knows.
    fn resources(&self) -> zbus::Result<Vec<ResourceInfo>>;

    /// Stops every resource that runs here, newest start first; returns those whose stop
    /// failed. Operators only (the master, when crmd could not stop them at shutdown).
    fn stop_all(&self) -> zbus::Result<Vec<String>>;

    /// An operation finished (recurring monitors: the first result and each change).
    #[zbus(signal)]
    fn operation_completed(&self, result: OpResult) -> zbus::Result<()>;
}
