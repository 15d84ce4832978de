//! crmd's D-Bus interface (`org.heartbeatrs.Crmd1`).

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection};

use hbapi::crmd::GroupInfo;
use hbapi::error::HbError;

/// What the daemon's loop keeps current for the interface.
#[derive(Debug, Default)]
pub struct Shared {
    /// Groups and where they run.
    pub groups: Vec<GroupInfo>,
    /// The partition's decision maker.
    pub decision_maker: String,
}

/// Operator commands for the loop.
#[derive(Debug)]
pub enum Command {
    /// Give up this node's groups.
    Standby,
    /// Take groups again.
    Takeover,
}

/// The served object.
pub struct CrmdInterface {
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
}

fn check_mode(mode: &str) -> Result<(), HbError> {
    match mode {
        "" | "all" | "local" | "foreign" | "failback" => Ok(()),
        other => Err(HbError::InvalidArgument(format!(
            "mode {other:?}: expected all, local, foreign or failback"
        ))),
    }
}

#[interface(name = "org.heartbeatrs.Crmd1")]
impl CrmdInterface {
    /// The decision maker of this partition (empty while there is none).
    #[zbus(property)]
    fn decision_maker(&self) -> String {
        self.shared
            .lock()
            .map(|s| s.decision_maker.clone())
            .unwrap_or_default()
    }

    /// Every group with where it runs.
    fn groups(&self) -> Vec<GroupInfo> {
        self.shared.lock().map(|s| s.groups.clone()).unwrap_or_default()
    }

    /// hb_standby: this node gives up its groups (every mode gives up all of them for now).
    /// Cluster users only.
    async fn standby(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        mode: &str,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        check_mode(mode)?;
        tracing::warn!(uid, mode, "standby requested by uid {uid}");
        self.commands
            .send(Command::Standby)
            .map_err(|_| HbError::Failed("crmd is stopping".into()))
    }

    /// hb_takeover: this node takes groups again. Cluster users only.
    async fn takeover(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        mode: &str,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        check_mode(mode)?;
        tracing::warn!(uid, mode, "takeover requested by uid {uid}");
        self.commands
            .send(Command::Takeover)
            .map_err(|_| HbError::Failed("crmd is stopping".into()))
    }

    /// A group started or stopped on this node (`started`, `stopped`, `failed`).
    #[zbus(signal)]
    pub async fn group_changed(
        emitter: &SignalEmitter<'_>,
        group: &str,
        node: &str,
        state: &str,
    ) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use zbus::object_server::Interface;

    #[test]
    fn interface_name_matches_the_contract() {
        assert_eq!(
            super::CrmdInterface::name().as_str(),
            hbapi::names::crmd::INTERFACE
        );
    }
}
