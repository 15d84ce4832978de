//! hbcomm's D-Bus interface (`org.heartbeatrs.Comm1`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zbus::interface;
use zbus::object_server::SignalEmitter;

use hbapi::comm::NodeInfo;

/// What the interface shows, kept current by the daemon's loop.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Members.
    pub nodes: Vec<NodeInfo>,
    /// Counters.
    pub counters: HashMap<String, u64>,
}

/// The served object.
pub struct CommInterface {
    pub(crate) local_node: String,
    pub(crate) generation: u32,
    pub(crate) snapshot: Arc<Mutex<Snapshot>>,
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
}

#[cfg(test)]
mod tests {
    use zbus::object_server::Interface;

    #[test]
    fn interface_name_matches_the_contract() {
        assert_eq!(
            super::CommInterface::name().as_str(),
            hbapi::names::comm::INTERFACE
        );
    }
}
