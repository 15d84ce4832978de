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
}
