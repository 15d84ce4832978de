//! stonithd's interface: fencing requests, devices and their history.

use serde::{Deserialize, Serialize};
use zbus::{proxy, Type};

/// A configured fencing device as anyone may see it (no parameters: they hold secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DeviceInfo {
    /// Device id.
    pub id: String,
    /// Type (`external/ssh`, `fence_ipmilan`, `meatware`, …).
    pub device_type: String,
    /// Nodes it can fence.
    pub hosts: Vec<String>,
}

/// One fencing operation, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct FenceRecord {
    /// Operation id.
    pub op_id: u64,
    /// The node fenced.
    pub target: String,
    /// `reboot`, `off` or `on`.
    pub action: String,
    /// Why it was asked for.
    pub reason: String,
    /// Uid of the caller who asked.
    pub requested_by: u32,
    /// The device that acted last (empty if none could).
    pub device: String,
    /// Whether the node is fenced.
    pub ok: bool,
    /// What the device said, or why it failed.
    pub message: String,
    /// When it started (seconds since the epoch).
    pub started: u64,
    /// How long it took.
    pub duration_ms: u32,
    /// For meatware: the uid of the operator who confirmed (-1 if none).
    pub confirmed_by: i64,
}

/// Client side of stonithd's interface.
#[proxy(
    interface = "org.heartbeatrs.Stonith1",
    default_service = "org.heartbeatrs.Stonith",
    default_path = "/org/heartbeatrs/Stonith"
)]
pub trait Stonith {
    /// Every device type available on this node.
    fn list_types(&self) -> zbus::Result<Vec<String>>;

    /// The configured devices.
    fn list_devices(&self) -> zbus::Result<Vec<DeviceInfo>>;

    /// Asks for `target` to be fenced (`reboot`, `off`, `on`); returns the operation id.
    /// FenceFinished tells the outcome. Cluster users only.
    fn fence(&self, target: &str, action: &str, reason: &str) -> zbus::Result<u64>;

    /// Confirms that an operator power-cycled `target` (meatware). Cluster users only.
    fn confirm_meatware(&self, target: &str) -> zbus::Result<bool>;

    /// Every fencing operation recorded on this node, oldest first.
    fn history(&self) -> zbus::Result<Vec<FenceRecord>>;

    /// A fencing operation started.
    #[zbus(signal)]
    fn fence_started(&self, op_id: u64, target: &str, action: &str, reason: &str) -> zbus::Result<()>;

    /// A fencing operation ended.
    #[zbus(signal)]
    fn fence_finished(&self, record: FenceRecord) -> zbus::Result<()>;
}
