//! The master's D-Bus interface (`org.heartbeatrs.Heartbeat1`).

use tokio::sync::{mpsc, oneshot, watch};
use zbus::message::Header;
use zbus::object_server::{ResponseDispatchNotifier, SignalEmitter};
use zbus::{interface, Connection};

use hbapi::error::HbError;
use hbapi::master::ChildInfo;

/// What the interface (and signal handlers) ask the supervisor to do.
#[derive(Debug)]
pub enum Command {
    /// Reread the configuration; the reply says whether it was accepted.
    Reload(Option<oneshot::Sender<Result<(), String>>>),
    /// Stop everything and exit.
    Shutdown,
    /// Restart one child.
    RestartChild(String, oneshot::Sender<Result<(), String>>),
    /// SIGHUP: rereads the configuration (Heartbeat style) or stops this node's services
    /// (FreeHA style).
    Hangup,
    /// SIGUSR1 (FreeHA style: force start; Heartbeat raised its debug level).
    UserSignal1,
    /// SIGUSR2 (FreeHA style: clear the error flag; Heartbeat lowered its debug level).
    UserSignal2,
    /// `-m`: force start (FreeHA's flag), once crmd is up.
    ForceStart,
}

/// The served object.
pub struct MasterInterface {
    pub(crate) node_name: String,
    pub(crate) children: watch::Receiver<Vec<ChildInfo>>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    /// Heartbeat's parameters of the running configuration.
    pub(crate) parameters: watch::Receiver<Vec<(String, String)>>,
}

fn gone() -> HbError {
    HbError::Failed("the master is shutting down".into())
}

#[interface(name = "org.heartbeatrs.Heartbeat1")]
impl MasterInterface {
    /// The node this master runs.
    #[zbus(property(emits_changed_signal = "const"))]
    fn node_name(&self) -> String {
        self.node_name.clone()
    }

    /// heartbeat-rs version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        hbapi::VERSION.to_owned()
    }

    /// The master's pid.
    #[zbus(property(emits_changed_signal = "const"))]
    fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Every supervised child: name, pid, state, restarts, last exit, command line, core.
    fn list_children(&self) -> Vec<ChildInfo> {
        self.children.borrow().clone()
    }

    /// Heartbeat's cluster parameters of the running configuration, by their ha.cf names
    /// (what `cl_status hbparameter` answers): keepalive, deadtime, udpport, auto_failback…
    fn parameters(&self) -> Vec<(String, String)> {
        self.parameters.borrow().clone()
    }

    /// Rereads the configuration (operators only).
    async fn reload(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        tracing::info!(uid, "reload requested over the bus");
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Reload(Some(reply)))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(HbError::BadConfig)
    }

    /// Stops every child in reverse start order, then the master (operators only).
    async fn shutdown(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<ResponseDispatchNotifier<()>, HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        tracing::info!(uid, "shutdown requested over the bus");
        // The caller must get its reply before the bus goes away with the master. Once the reply
        // is written, a Ping to the caller comes back only after the bus delivered the reply
        // (it keeps each sender's messages in order); a caller that does not answer pings gets a
        // second's grace.
        let (reply, sent) = ResponseDispatchNotifier::new(());
        let commands = self.commands.clone();
        let caller = header.sender().map(|sender| sender.to_owned());
        let connection = connection.clone();
        tokio::spawn(async move {
            sent.await;
            if let Some(caller) = caller {
                let ping =
                    connection.call_method(Some(caller), "/", Some("org.freedesktop.DBus.Peer"), "Ping", &());
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ping).await;
            }
            let _ = commands.send(Command::Shutdown);
        });
        Ok(reply)
    }

    /// Stops (if running) and starts one child, clearing a give-up (operators only).
    async fn restart_child(
        &self,
        name: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        tracing::info!(uid, child = %name, "restart requested over the bus");
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::RestartChild(name, reply))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(HbError::NotFound)
    }

    /// A child changed state.
    #[zbus(signal)]
    pub async fn child_state_changed(emitter: &SignalEmitter<'_>, child: ChildInfo) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use zbus::object_server::Interface;

    #[test]
    fn interface_name_matches_the_contract() {
        assert_eq!(
            super::MasterInterface::name().as_str(),
            hbapi::names::master::INTERFACE
        );
    }

    /// The served interface and the hbapi proxy both match the checked-in XML.
    #[tokio::test]
    async fn served_and_proxy_match_the_checked_in_xml() {
        use futures_util::StreamExt;
        use hbapi::contract::{self, Calls};
        use hbapi::master::{ChildInfo, HeartbeatProxy};
        use hbapi::names::master::{INTERFACE, OBJECT_PATH};
        use zbus::object_server::SignalEmitter;

        let child = ChildInfo {
            name: "hbcomm".into(),
            pid: 42,
            state: "running".into(),
            restarts: 0,
            last_exit: String::new(),
            command: "/usr/lib/heartbeat-rs/hbcomm".into(),
            core: true,
        };
        let (_children_tx, children) = tokio::sync::watch::channel(vec![child.clone()]);
        let (_parameters_tx, parameters) =
            tokio::sync::watch::channel(vec![("deadtime".to_owned(), "30".to_owned())]);
        let (commands, mut received) = tokio::sync::mpsc::unbounded_channel();
        let interface = super::MasterInterface {
            node_name: "alpha".into(),
            children,
            commands,
            parameters,
        };
        let (server, client) = contract::serve_p2p(OBJECT_PATH, interface).await.unwrap();
        contract::check_served(&client, OBJECT_PATH, INTERFACE)
            .await
            .unwrap();

        let proxy = HeartbeatProxy::new(&client).await.unwrap();
        let mut calls = Calls::new();
        assert_eq!(
            calls.call("property NodeName", proxy.node_name().await).unwrap(),
            "alpha"
        );
        calls.call("property Version", proxy.version().await);
        calls.call("property Pid", proxy.pid().await);
        assert_eq!(
            calls
                .call("method ListChildren", proxy.list_children().await)
                .unwrap(),
            std::slice::from_ref(&child)
        );
        calls.call("method Parameters", proxy.parameters().await);
        // The operator's methods are refused (no caller uid on a bus-less connection).
        calls.call("method Reload", proxy.reload().await);
        calls.call("method Shutdown", proxy.shutdown().await);
        calls.call("method RestartChild", proxy.restart_child("hbcomm").await);
        assert!(
            received.try_recv().is_err(),
            "a refused call reached the master's loop"
        );

        let mut changed = proxy.receive_child_state_changed().await.unwrap();
        let emitter = SignalEmitter::new(&server, OBJECT_PATH).unwrap();
        super::MasterInterface::child_state_changed(&emitter, child)
            .await
            .unwrap();
        let signal = changed.next().await.unwrap();
        calls.signal(
            "signal ChildStateChanged",
            signal.args().map(|a| assert_eq!(a.child().pid, 42)),
        );
        calls.verdict(INTERFACE).unwrap();
    }
}
