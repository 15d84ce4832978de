//! crmd's D-Bus interface (`org.heartbeatrs.Crmd1`).

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection};

use hbapi::config::AutoFailback;
use hbapi::crmd::{DecisionInfo, GroupInfo, HoldInfo, NodeState};
use hbapi::error::HbError;

pub use crate::partition::Command;
use crate::policy::{ClusterView, Scope};

/// Decisions kept for `History`.
pub const HISTORY_LIMIT: usize = 1000;

/// What the daemon's loop keeps current for the interface.
#[derive(Debug, Default)]
pub struct Shared {
    /// The cluster as the last decision saw it.
    pub view: Option<Arc<ClusterView>>,
    /// Every node's state.
    pub node_states: Vec<NodeState>,
    /// Monitor failures per resource on this node (those not yet expired).
    pub fail_counts: Vec<(String, u32)>,
    /// The partition's decision maker.
    pub decision_maker: String,
    /// Whether this node is in transition (work under way, or not settled).
    pub in_transition: bool,
    /// Groups held back, as of the last event.
    pub holds: Vec<HoldInfo>,
    /// This node's decisions, oldest first.
    pub history: std::collections::VecDeque<DecisionInfo>,
    next_decision: u64,
}

impl Shared {
    /// Records a decision and what set it off.
    pub fn record(&mut self, decision: &str, trigger: &str) {
        self.next_decision += 1;
        self.history.push_back(DecisionInfo {
            id: self.next_decision,
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            decision: decision.to_owned(),
            trigger: trigger.to_owned(),
        });
        while self.history.len() > HISTORY_LIMIT {
            self.history.pop_front();
        }
    }
}

/// The served object.
pub struct CrmdInterface {
    pub(crate) local: String,
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) config: Arc<hbapi::config::ClusterConfig>,
}

impl CrmdInterface {
    /// The group `id` names: a group, or a resource of one.
    fn group_of(&self, id: &str) -> Result<String, HbError> {
        self.config
            .groups
            .iter()
            .find(|g| g.id == id || g.resources.iter().any(|r| r.id == id))
            .map(|g| g.id.clone())
            .ok_or_else(|| HbError::NotFound(format!("no group or resource {id:?}")))
    }

    fn send(&self, command: Command) -> Result<(), HbError> {
        self.commands
            .send(command)
            .map_err(|_| HbError::Failed("crmd is stopping".into()))
    }
}

fn scope(mode: &str) -> Result<Scope, HbError> {
    Scope::parse(mode).filter(|s| *s != Scope::None).ok_or_else(|| {
        HbError::InvalidArgument(format!("mode {mode:?}: expected all, local, foreign or failback"))
    })
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

    /// Whether this node's resources are in transition (Heartbeat's rscstatus `transition`).
    #[zbus(property(emits_changed_signal = "false"))]
    fn in_transition(&self) -> bool {
        self.shared.lock().map(|s| s.in_transition).unwrap_or(true)
    }

    /// The decisions this node made as decision maker, with what set each off, oldest first.
    fn history(&self) -> Vec<DecisionInfo> {
        self.shared
            .lock()
            .map(|s| s.history.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every group with where it runs.
    fn groups(&self) -> Vec<GroupInfo> {
        let view = self.shared.lock().ok().and_then(|s| s.view.clone());
        view.map(|view| group_infos(&view)).unwrap_or_default()
    }

    /// hb_standby: this node gives up groups — `all`, `local` (those preferring it), `foreign`
    /// or `failback` (those preferring another node). Cluster users only.
    async fn standby(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        mode: &str,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        let scope = scope(mode)?;
        if self.config.auto_failback == AutoFailback::Legacy {
            return Err(HbError::Failed(
                "hb_standby is not available with auto_failback legacy (nor is it in Heartbeat): set auto_failback on or off".into(),
            ));
        }
        let view = self.shared.lock().ok().and_then(|s| s.view.clone());
        if let Some(view) = view {
            if !someone_else_can_run(&view, &self.local) {
                return Err(HbError::Failed(
                    "no other node can take the groups over: standby request cancelled".into(),
                ));
            }
        }
        tracing::warn!(uid, mode, "standby ({}) requested by uid {uid}", scope.as_str());
        self.send(Command::Standby(scope, uid))
    }

    /// hb_takeover: this node takes groups — `all`, `local` (those preferring it, whatever
    /// auto_failback says), `foreign` or `failback`. Cluster users only.
    async fn takeover(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        mode: &str,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        let scope = scope(mode)?;
        tracing::warn!(uid, mode, "takeover ({}) requested by uid {uid}", scope.as_str());
        self.send(Command::Takeover(scope, uid))
    }

    /// Moves a group to `node` (it leaves its current node first); "" lets it go where the
    /// usual rules put it. Cluster users only.
    async fn move_group(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        group: &str,
        node: &str,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        let group = self.group_of(group)?;
        if !node.is_empty() && !self.config.nodes.iter().any(|n| n == node) {
            return Err(HbError::NotFound(format!(
                "{node:?} is not a node of this cluster"
            )));
        }
        self.send(Command::Move {
            group,
            node: node.to_owned(),
            uid,
        })
    }

    /// Forgets the failures of a group (or of the group of a resource) on every node, so that
    /// it may run there again; "" forgets every group's. Cluster users only.
    async fn cleanup(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        resource: &str,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        let group = if resource.is_empty() {
            None
        } else {
            Some(self.group_of(resource)?)
        };
        self.send(Command::Cleanup { group, uid })
    }

    /// ipfail: this node gives up every group for lack of connectivity (`give_up`), or becomes
    /// eligible again (the failback policy decides whether groups come back); `reason` is
    /// recorded with the decisions. Cluster users only.
    async fn connectivity(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        give_up: bool,
        reason: &str,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        let reason: String = reason.chars().take(512).collect();
        tracing::warn!(uid, give_up, "{reason}");
        self.send(Command::Connectivity { give_up, reason, uid })
    }

    /// Groups held back from starting elsewhere while a node may still run them, and how
    /// long each hold lasts.
    fn holds(&self) -> Vec<HoldInfo> {
        self.shared.lock().map(|s| s.holds.clone()).unwrap_or_default()
    }

    /// Every node's state, FreeHA's way (also in RUN_DIR/status).
    fn node_states(&self) -> Vec<NodeState> {
        self.shared
            .lock()
            .map(|s| s.node_states.clone())
            .unwrap_or_default()
    }

    /// FreeHA's SIGHUP: this node stops its services and stays STOPPING until force_start or
    /// a restart. Cluster users only.
    async fn stop_services(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        self.send(Command::StopServices(uid))
    }

    /// FreeHA's SIGUSR1 and `-m`: clears the error flag and failures here and brings every
    /// group to this node, stopped elsewhere first. Cluster users only.
    async fn force_start(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        self.send(Command::ForceStart(uid))
    }

    /// FreeHA's SIGUSR2: clears this node's error flag and its groups' failures here.
    /// Cluster users only.
    async fn clear_error(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), HbError> {
        let uid = hbapi::bus::authorise_operator(connection, &header).await?;
        self.send(Command::ClearError(uid))
    }

    /// Monitor failures per resource on this node that have not expired (what counts against
    /// each resource's migration threshold).
    fn fail_counts(&self) -> Vec<(String, u32)> {
        self.shared
            .lock()
            .map(|s| s.fail_counts.clone())
            .unwrap_or_default()
    }

    /// The decision maker's transition is over: every group is where it should be, after
    /// `actions` orders and fences.
    #[zbus(signal)]
    pub async fn transition_completed(emitter: &SignalEmitter<'_>, actions: u32) -> zbus::Result<()>;

    /// A group started or stopped on this node (`started`, `stopped`, `failed`, `blocked`,
    /// `restarting`).
    #[zbus(signal)]
    pub async fn group_changed(
        emitter: &SignalEmitter<'_>,
        group: &str,
        node: &str,
        state: &str,
    ) -> zbus::Result<()>;
}

/// Whether a node other than `local` is active and not handing everything over.
fn someone_else_can_run(view: &ClusterView, local: &str) -> bool {
    view.nodes
        .iter()
        .any(|n| n.name != local && n.active && n.standby != Scope::All)
}

/// Every group with where it runs: the first active node reporting it, and the nodes where
/// it failed.
fn group_infos(view: &ClusterView) -> Vec<GroupInfo> {
    view.groups
        .iter()
        .map(|group| GroupInfo {
            group: group.name.clone(),
            preferred_node: group.preferred_node.clone(),
            node: view
                .nodes
                .iter()
                .find(|n| n.active && n.running.contains(&group.name))
                .map(|n| n.name.clone())
                .unwrap_or_default(),
            failed_on: view
                .nodes
                .iter()
                .filter(|n| n.failed.contains(&group.name))
                .map(|n| n.name.clone())
                .collect(),
        })
        .collect()
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

    /// The served interface and the hbapi proxy both match the checked-in XML.
    #[tokio::test]
    async fn served_and_proxy_match_the_checked_in_xml() {
        use futures_util::StreamExt;
        use hbapi::contract::{self, Calls};
        use hbapi::crmd::CrmdProxy;
        use hbapi::names::crmd::{INTERFACE, OBJECT_PATH};
        use std::os::unix::fs::PermissionsExt;
        use std::sync::{Arc, Mutex};
        use zbus::object_server::SignalEmitter;

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ha.cf"), "node alpha bravo\nbcast lo\n").unwrap();
        std::fs::write(dir.path().join("haresources"), "alpha Dummy::web\n").unwrap();
        let keys = dir.path().join("authkeys");
        std::fs::write(&keys, "auth 1\n1 sha1 contract\n").unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = hbapi::config::load_dir(dir.path()).unwrap().config;
        let (commands, mut received) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(super::Shared::default()));
        shared.lock().unwrap().record("start web alpha", "contract");
        let interface = super::CrmdInterface {
            local: "alpha".into(),
            shared,
            commands,
            config: Arc::new(config),
        };
        let (server, client) = contract::serve_p2p(OBJECT_PATH, interface).await.unwrap();
        contract::check_served(&client, OBJECT_PATH, INTERFACE)
            .await
            .unwrap();

        let proxy = CrmdProxy::new(&client).await.unwrap();
        let mut calls = Calls::new();
        calls.call("property DecisionMaker", proxy.decision_maker().await);
        calls.call("property InTransition", proxy.in_transition().await);
        let history = calls.call("method History", proxy.history().await).unwrap();
        assert_eq!(history.len(), 1, "{history:?}");
        calls.call("method Groups", proxy.groups().await);
        calls.call("method Holds", proxy.holds().await);
        calls.call("method NodeStates", proxy.node_states().await);
        calls.call("method FailCounts", proxy.fail_counts().await);
        // The operator's methods are refused (no caller uid on a bus-less connection).
        calls.call("method Standby", proxy.standby("all").await);
        calls.call("method Takeover", proxy.takeover("all").await);
        calls.call("method MoveGroup", proxy.move_group("Dummy::web", "bravo").await);
        calls.call("method Cleanup", proxy.cleanup("").await);
        calls.call("method Connectivity", proxy.connectivity(true, "contract").await);
        calls.call("method StopServices", proxy.stop_services().await);
        calls.call("method ForceStart", proxy.force_start().await);
        calls.call("method ClearError", proxy.clear_error().await);
        assert!(received.try_recv().is_err(), "a refused call reached crmd's loop");

        let mut completed = proxy.receive_transition_completed().await.unwrap();
        let mut changed = proxy.receive_group_changed().await.unwrap();
        let emitter = SignalEmitter::new(&server, OBJECT_PATH).unwrap();
        super::CrmdInterface::transition_completed(&emitter, 2)
            .await
            .unwrap();
        super::CrmdInterface::group_changed(&emitter, "Dummy::web", "alpha", "started")
            .await
            .unwrap();
        let signal = completed.next().await.unwrap();
        calls.signal(
            "signal TransitionCompleted",
            signal.args().map(|a| assert_eq!(*a.actions(), 2)),
        );
        let signal = changed.next().await.unwrap();
        calls.signal(
            "signal GroupChanged",
            signal.args().map(|a| assert_eq!(*a.state(), "started")),
        );
        calls.verdict(INTERFACE).unwrap();
    }
}
