//! stonithd's D-Bus interface (`org.heartbeatrs.Stonith1`).

use std::sync::Arc;

use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection};

use hbapi::error::HbError;
use hbapi::stonith::{DeviceInfo, FenceRecord};

use crate::fencer::Fencer;
use fencing::PluginDirs;

/// The served object.
pub struct StonithInterface {
    pub(crate) fencer: Arc<Fencer>,
    pub(crate) dirs: PluginDirs,
}

#[interface(name = "org.heartbeatrs.Stonith1")]
impl StonithInterface {
    /// Every device type available on this node.
    fn list_types(&self) -> Vec<String> {
        fencing::list_types(&self.dirs)
    }

    /// The configured devices (without their parameters, which hold secrets).
    async fn list_devices(&self) -> Vec<DeviceInfo> {
        self.fencer.devices().await
    }

    /// Asks for `target` to be fenced (`reboot`, `off`, `on`); returns the operation id at
    /// once, FenceFinished tells the outcome. Cluster users only.
    async fn fence(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        target: &str,
        action: &str,
        reason: &str,
    ) -> Result<u64, HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        if !matches!(action, "reboot" | "reset" | "off" | "on") {
            return Err(HbError::InvalidArgument(format!(
                "action {action:?}: expected reboot, off or on"
            )));
        }
        hbapi::config::check_node_name(target).map_err(HbError::InvalidArgument)?;
        Ok(self.fencer.request(target, action, reason, uid))
    }

    /// Confirms that an operator power-cycled `target` (meatware); whether a fence waited
    /// for it. The caller's uid is recorded. Cluster users only.
    async fn confirm_meatware(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        target: &str,
    ) -> Result<bool, HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        Ok(self.fencer.confirm_meatware(target, uid))
    }

    /// Every fencing operation recorded on this node, oldest first.
    fn history(&self) -> Vec<FenceRecord> {
        self.fencer.history()
    }

    /// A fencing operation started.
    #[zbus(signal)]
    pub async fn fence_started(
        emitter: &SignalEmitter<'_>,
        op_id: u64,
        target: &str,
        action: &str,
        reason: &str,
    ) -> zbus::Result<()>;

    /// A fencing operation ended.
    #[zbus(signal)]
    pub async fn fence_finished(emitter: &SignalEmitter<'_>, record: FenceRecord) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use zbus::object_server::Interface;

    #[test]
    fn interface_name_matches_the_contract() {
        assert_eq!(
            super::StonithInterface::name().as_str(),
            hbapi::names::stonithd::INTERFACE
        );
    }

    /// The served interface and the hbapi proxy both match the checked-in XML.
    #[tokio::test]
    async fn served_and_proxy_match_the_checked_in_xml() {
        use futures_util::StreamExt;
        use hbapi::contract::{self, Calls};
        use hbapi::names::stonithd::{INTERFACE, OBJECT_PATH};
        use hbapi::stonith::{FenceRecord, StonithProxy};
        use zbus::object_server::SignalEmitter;

        let state = tempfile::tempdir().unwrap();
        let (fencer, _events) = crate::fencer::Fencer::new("alpha", Vec::new(), state.path());
        let dirs = fencing::PluginDirs {
            external: state.path().join("external"),
            fence_agents: state.path().join("sbin"),
        };
        let interface = super::StonithInterface { fencer, dirs };
        let (server, client) = contract::serve_p2p(OBJECT_PATH, interface).await.unwrap();
        contract::check_served(&client, OBJECT_PATH, INTERFACE)
            .await
            .unwrap();

        let proxy = StonithProxy::new(&client).await.unwrap();
        let mut calls = Calls::new();
        let types = calls.call("method ListTypes", proxy.list_types().await).unwrap();
        assert!(types.iter().any(|t| t == "meatware"), "{types:?}");
        calls.call("method ListDevices", proxy.list_devices().await);
        calls.call("method History", proxy.history().await);
        // Refused (no caller uid on a bus-less connection): reached, and nothing fenced.
        assert!(calls
            .call("method Fence", proxy.fence("bravo", "reboot", "contract").await)
            .is_none());
        assert!(calls
            .call("method ConfirmMeatware", proxy.confirm_meatware("bravo").await)
            .is_none());

        let mut started = proxy.receive_fence_started().await.unwrap();
        let mut finished = proxy.receive_fence_finished().await.unwrap();
        let emitter = SignalEmitter::new(&server, OBJECT_PATH).unwrap();
        super::StonithInterface::fence_started(&emitter, 7, "bravo", "reboot", "contract")
            .await
            .unwrap();
        let record = FenceRecord {
            op_id: 7,
            target: "bravo".into(),
            action: "reboot".into(),
            reason: "contract".into(),
            requested_by: 0,
            device: "meatware".into(),
            ok: true,
            message: String::new(),
            started: 1,
            duration_ms: 2,
            confirmed_by: -1,
        };
        super::StonithInterface::fence_finished(&emitter, record)
            .await
            .unwrap();
        let signal = started.next().await.unwrap();
        calls.signal(
            "signal FenceStarted",
            signal.args().map(|a| assert_eq!(*a.op_id(), 7)),
        );
        let signal = finished.next().await.unwrap();
        calls.signal(
            "signal FenceFinished",
            signal.args().map(|a| assert_eq!(a.record().target, "bravo")),
        );
        calls.verdict(INTERFACE).unwrap();
    }
}
