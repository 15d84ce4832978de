//! The master's interface: supervision of the daemons and respawn lines.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use zbus::{proxy, Type};

/// Where a supervised child is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildState {
    /// Spawned, not yet known to be up.
    Starting,
    /// Running.
    Running,
    /// Died; waiting for its back-off delay before the next start.
    Backoff,
    /// Being stopped on request.
    Stopping,
    /// Stopped on request (shutdown or removed from the configuration).
    Stopped,
    /// Exited with status 100 ("do not respawn"), so it stays down.
    Exited,
    /// Died too often too soon after its start: the master gave up on it.
    GaveUp,
}

impl ChildState {
    /// The bus spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildState::Starting => "starting",
            ChildState::Running => "running",
            ChildState::Backoff => "backoff",
            ChildState::Stopping => "stopping",
            ChildState::Stopped => "stopped",
            ChildState::Exited => "exited",
            ChildState::GaveUp => "gave-up",
        }
    }

    /// Whether the child has a live process.
    pub fn is_alive(self) -> bool {
        matches!(
            self,
            ChildState::Starting | ChildState::Running | ChildState::Stopping
        )
    }
}

impl fmt::Display for ChildState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChildState {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            ChildState::Starting,
            ChildState::Running,
            ChildState::Backoff,
            ChildState::Stopping,
            ChildState::Stopped,
            ChildState::Exited,
            ChildState::GaveUp,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| format!("unknown child state {text:?}"))
    }
}

/// One supervised child, as the master reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ChildInfo {
    /// Unique name: a core daemon's name, or a respawn program's file name.
    pub name: String,
    /// Current pid, 0 when not running.
    pub pid: u32,
    /// A [`ChildState`] spelling.
    pub state: String,
    /// How many times it was restarted.
    pub restarts: u32,
    /// How the last process ended ("" before the first exit), e.g. `exit 1`, `signal SIGKILL`.
    pub last_exit: String,
    /// The command line.
    pub command: String,
    /// Whether it is a core daemon (hbcomm, crmd, lrmd, stonithd) rather than a respawn line.
    pub core: bool,
}

/// Client side of the master's interface.
#[proxy(
    interface = "org.heartbeatrs.Heartbeat1",
    default_service = "org.heartbeatrs.Heartbeat",
    default_path = "/org/heartbeatrs/Heartbeat"
)]
pub trait Heartbeat {
    /// The node this master runs.
    #[zbus(property)]
    fn node_name(&self) -> zbus::Result<String>;

    /// heartbeat-rs version.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;

    /// The master's pid.
    #[zbus(property)]
    fn pid(&self) -> zbus::Result<u32>;

    /// Every supervised child.
    fn list_children(&self) -> zbus::Result<Vec<ChildInfo>>;

    /// Heartbeat's cluster parameters of the running configuration, by their ha.cf names.
    fn parameters(&self) -> zbus::Result<Vec<(String, String)>>;

    /// Rereads the configuration (as SIGHUP and `heartbeat -r`).
    fn reload(&self) -> zbus::Result<()>;

    /// Stops every child, in reverse start order, then the master (as SIGTERM).
    fn shutdown(&self) -> zbus::Result<()>;

    /// Stops and starts one child, clearing a give-up.
    fn restart_child(&self, name: &str) -> zbus::Result<()>;

    /// A child changed state.
    #[zbus(signal)]
    fn child_state_changed(&self, child: ChildInfo) -> zbus::Result<()>;
}
