//! The daemon around [`crate::policy`]: it learns membership from hbcomm, what runs where
//! from every node's reports (cluster messages of type `crmd`), decides when it is the
//! partition's decision maker, and carries out its own node's part through lrmd.
//!
//! Messages (type `crmd`, field `op`):
//! - `report`: a node's `running`, `failed` (newline-separated groups), `standby` and
//!   `takeover` (hb_standby's and hb_takeover's scope: none, all, local, foreign) — sent
//!   after its start-up probe and after every change; groups being started or stopped count
//!   as running, so nobody else starts them meanwhile.
//! - `start` / `stop` with `group`, from the decision maker to one node.
//! - `fenced` with `node`, from the decision maker once stonithd fenced a lost node.
//! - `hello`, from a crmd that starts: every node answers with its report.
//!
//! The decision maker is the alphabetically first active member (FreeHA's rule). It decides
//! only once every configured node is seen or declared dead and every member has reported,
//! so that a cold start places each group on its preferred node and never starts a second
//! copy of something a node already runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::object_server::SignalEmitter;

use hbapi::comm::CommProxy;
use hbapi::config::{AutoFailback, ClusterConfig, ResourceGroup, Style};
use hbapi::crmd::NodeState;
use hbapi::lrmd::{rc, status, LrmdProxy};
use hbapi::names;
use hbapi::stonith::StonithProxy;

use crate::iface::{Command, CrmdInterface, Shared};
use crate::local::{Executor, GroupOutcome};
use crate::outbox::Outbox;
use crate::policy::{self, Action, ClusterView, GroupView, Groups, NodeView, Scope};

/// How long an order may go unanswered before it is decided and sent again.
const UNANSWERED: Duration = Duration::from_secs(2);

/// Message type of crmd's cluster messages.
pub const MESSAGE_TYPE: &str = "crmd";

/// What a node last said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Groups running (or being started or stopped).
    pub running: Groups,
    /// Groups that failed there.
    pub failed: Groups,
    /// Groups whose stop failed there: they may still run.
    pub blocked: Groups,
    /// Groups given up (hb_standby).
    pub standby: Scope,
    /// Groups asked for (hb_takeover).
    pub takeover: Scope,
    /// The node's own state.
    pub state: LocalState,
    /// Whether the node said it has no quorum (then it runs nothing).
    pub no_quorum: bool,
    /// The nodes it hears (itself included); `None` from a node that does not say.
    pub hears: Option<Groups>,
    /// Since when its reports have not listed this node among those it hears.
    pub deaf_to_us_since: Option<tokio::time::Instant>,
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join("\n")
}

fn split(text: Option<&String>) -> Groups {
    Arc::new(
        text.map(|t| t.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
    )
}

/// What a local group operation came to.
#[derive(Debug)]
struct LocalDone {
    group: String,
    outcome: GroupOutcome,
}

/// FreeHA's status file: every node's state, one per line, in RUN_DIR/status (replaced
/// whole, so a reader never sees half of it).
fn write_status_file(run_dir: &std::path::Path, local: &str, states: &[NodeState]) {
    let mut text = format!("# node states as crmd on {local} sees them: NODE STATE [GROUPS]\n");
    for state in states {
        text.push_str(&format!("{} {}", state.node, state.state));
        if !state.groups.is_empty() {
            text.push_str(&format!(" {}", state.groups.join(" ")));
        }
        text.push('\n');
    }
    let path = run_dir.join(names::run_files::STATUS);
    let temporary = path.with_extension("new");
    if let Err(error) = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, &path)) {
        tracing::warn!("status file {} not written: {error}", path.display());
    }
}

/// What this node does to one of its groups.
#[derive(Debug, Clone, Copy)]
enum Work {
    Start,
    Stop,
    /// Stop, then start again (a failed monitor under the migration threshold).
    Restart,
}

/// Does `work` in the background; its outcome comes back on `done`.
fn carry_out(executor: &Executor, done: &mpsc::UnboundedSender<LocalDone>, group: ResourceGroup, work: Work) {
    let (executor, done) = (executor.clone(), done.clone());
    tokio::spawn(async move {
        let outcome = match work {
            Work::Start => executor.start_group(&group).await,
            Work::Stop => executor.stop_group(&group).await,
            Work::Restart => match executor.stop_group(&group).await {
                GroupOutcome::Stopped => executor.start_group(&group).await,
                stop_failed => stop_failed,
            },
        };
        let _ = done.send(LocalDone {
            group: group.id,
            outcome,
        });
    });
}

/// What set off the events since the last decision, the significant ones first.
#[derive(Debug, Default)]
struct Triggers {
    significant: Vec<String>,
    routine: Vec<String>,
    more_significant: usize,
    more_routine: usize,
}

impl Triggers {
    /// Names kept of each kind; the rest are counted.
    const KEPT: usize = 3;

    fn new(first: &str) -> Self {
        let mut triggers = Self::default();
        triggers.push(first.to_owned(), false);
        triggers
    }

    fn push(&mut self, trigger: String, routine: bool) {
        let (list, more) = if routine {
            (&mut self.routine, &mut self.more_routine)
        } else {
            (&mut self.significant, &mut self.more_significant)
        };
        if trigger.is_empty() || list.contains(&trigger) {
            return;
        }
        if list.len() < Self::KEPT {
            list.push(trigger);
        } else {
            *more += 1;
        }
    }

    /// The description, and a fresh start.
    fn take(&mut self) -> String {
        let taken = std::mem::take(self);
        let (named, more) = if taken.significant.is_empty() {
            (taken.routine, taken.more_routine)
        } else {
            (taken.significant, taken.more_significant)
        };
        let mut text = named.join("; ");
        if more > 0 {
            text.push_str(&format!(" (and {more} more)"));
        }
        text
    }
}

/// How crmd is run.
pub struct CrmdOptions {
    /// This node.
    pub node: String,
    /// Bus address.
    pub bus_address: String,
    /// Run directory: where the status file goes.
    pub run_dir: std::path::PathBuf,
}

/// A node's own state, as it reports it (FreeHA's node states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocalState {
    /// Working normally.
    #[default]
    Ok,
    /// Its services were stopped on request (FreeHA's SIGHUP); it runs nothing until force
    /// start or a restart.
    Stopping,
    /// Its daemon is stopping (SIGTERM).
    Leaving,
    /// A group failed here (FreeHA style): it runs nothing until the error is cleared.
    Errored,
}

impl LocalState {
    fn as_str(self) -> &'static str {
        match self {
            LocalState::Ok => "ok",
            LocalState::Stopping => "stopping",
            LocalState::Leaving => "leaving",
            LocalState::Errored => "errored",
        }
    }

    fn parse(text: &str) -> LocalState {
        match text {
            "stopping" => LocalState::Stopping,
            "leaving" => LocalState::Leaving,
            "errored" => LocalState::Errored,
            _ => LocalState::Ok,
        }
    }
}

struct Crmd {
    local: String,
    config: ClusterConfig,
    fencing: bool,
    // Membership and reports.
    members: BTreeMap<String, String>,
    reports: BTreeMap<String, Report>,
    unclean: BTreeSet<String>,
    // The decision maker's bookkeeping.
    /// Orders and fences under way, with when they were sent.
    sent: BTreeMap<Action, tokio::time::Instant>,
    fencing_ops: BTreeMap<u64, String>,
    released_at: BTreeMap<String, tokio::time::Instant>,
    // This node.
    running: BTreeSet<String>,
    failed: BTreeSet<String>,
    /// Groups whose stop failed here.
    blocked: BTreeSet<String>,
    busy: BTreeSet<String>,
    standby: Scope,
    takeover: Scope,
    /// The last operator command on this node, with its caller (reported with the scopes).
    last_command: String,
    /// Operators' moves, group → node (every node keeps them, so any can become the
    /// decision maker).
    moves: BTreeMap<String, String>,
    /// Who asked for each move (recorded with the decisions that carry it out).
    moved_by: BTreeMap<String, String>,
    /// The groups as the policy sees them (with `moves`).
    group_views: Arc<Vec<GroupView>>,
    /// This node's own state.
    state: LocalState,
    /// FreeHA's oops windows: groups of a node whose daemon stopped, held until then.
    holds: BTreeMap<String, (Groups, tokio::time::Instant)>,
    probed: bool,
    /// Monitor failures per resource on this node, for migration threshold and expiry.
    failures: BTreeMap<String, Vec<tokio::time::Instant>>,
}

impl Crmd {
    fn group(&self, id: &str) -> Option<&ResourceGroup> {
        self.config.groups.iter().find(|g| g.id == id)
    }

    /// How long a lost node's groups are held without fencing: the longest stop timeout of
    /// what it ran, plus deadtime for the two sides noticing the split at different moments.
    fn hold_off(&self, node: &str) -> Duration {
        let held = self
            .reports
            .get(node)
            .map(|r| r.running.clone())
            .unwrap_or_default();
        let longest_stop = self
            .config
            .groups
            .iter()
            .filter(|g| held.contains(&g.id))
            .flat_map(|g| g.resources.iter().map(|r| r.ops.stop_timeout))
            .max()
            .unwrap_or_default();
        longest_stop + self.config.timing.deadtime
    }

    /// Whether hbcomm hears `node`.
    fn hears(&self, node: &str) -> bool {
        node == self.local || self.members.get(node).is_some_and(|s| s == "active" || s == "up")
    }

    /// Whether `node` counts for quorum and the choice of decision maker: heard, and (with
    /// three or more nodes) hearing this node too by its reports. A link cut one way leaves
    /// each side with a node it hears that does not hear it; counting such a node would let
    /// both sides believe they have quorum. A report that does not list us counts only once
    /// it has said so for [`Crmd::deafness_settle`]: at start-up a peer reports before it
    /// hears everyone, and reports again as soon as it does.
    fn is_member(&self, node: &str) -> bool {
        self.hears(node)
            && (node == self.local
                || self.config.nodes.len() < 3
                || self
                    .reports
                    .get(node)
                    .and_then(|r| r.deaf_to_us_since)
                    .is_none_or(|since| since.elapsed() < self.deafness_settle()))
    }

    /// How long a peer's reports must leave this node out before it stops counting.
    fn deafness_settle(&self) -> Duration {
        self.config.timing.keepalive * 2
    }

    /// When a peer that does not hear us stops counting, if that is still to come.
    fn next_deafness_deadline(&self) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        self.reports
            .values()
            .filter_map(|r| r.deaf_to_us_since.map(|since| since + self.deafness_settle()))
            .filter(|deadline| *deadline > now)
            .min()
    }

    fn has_quorum(&self) -> bool {
        let total = self.config.nodes.len();
        total < 3 || self.config.nodes.iter().filter(|n| self.is_member(n)).count() * 2 > total
    }

    fn decision_maker(&self) -> Option<String> {
        let mut active: Vec<&String> = self.config.nodes.iter().filter(|n| self.is_member(n)).collect();
        active.sort();
        active.first().map(|n| (*n).clone())
    }

    /// Whether the membership is not yet agreed: a node we hear, which claims quorum, says it
    /// does not hear us, or a member hears a different set of nodes than we do (after a
    /// partition heals, one side may hear a node again before the other: deciding then would
    /// take a node's groups for free while that node still runs them).
    fn waiting_on_deaf_peer(&self) -> bool {
        self.config.nodes.iter().any(|n| {
            if n == &self.local || !self.hears(n) {
                return false;
            }
            let Some(report) = self.reports.get(n) else {
                return false;
            };
            if !self.is_member(n) {
                return !report.no_quorum;
            }
            report.hears.as_ref().is_some_and(|heard| {
                self.config
                    .nodes
                    .iter()
                    .any(|x| heard.contains(x) != self.hears(x))
            })
        })
    }

    /// Whether this node may decide now.
    fn may_decide(&self) -> bool {
        self.decision_maker().as_deref() == Some(self.local.as_str())
            && self.has_quorum()
            && self.config.nodes.iter().all(|n| {
                n == &self.local
                    || matches!(
                        self.members.get(n).map(String::as_str),
                        Some("active" | "up" | "dead")
                    )
            })
            && self
                .config
                .nodes
                .iter()
                .filter(|n| self.is_member(n))
                .all(|n| {
                    // A member that hears us and says it has no quorum reported before it
                    // heard everyone: wait for its next report.
                    self.reports
                        .get(n)
                        .is_some_and(|r| n == &self.local || !r.no_quorum)
                })
            // A node we hear that does not hear us but claims quorum either reported before
            // it heard us again (its next report will say) or is on the other side of a
            // one-way cut, where it decides: wait either way. One that does not hear us and
            // has no quorum stops what it runs by itself; we decide without it.
            && !self.waiting_on_deaf_peer()
    }

    fn view(&self) -> ClusterView {
        let mut view = self.reported_view();
        // A start ordered and not yet answered may be running already: the next decision must
        // stop it there before it starts the group anywhere else.
        for action in self.sent.keys() {
            if let Action::Start { group, node } = action {
                if let Some(target) = view.nodes.iter_mut().find(|n| n.name == *node) {
                    if !target.running.contains(group) {
                        Arc::make_mut(&mut target.running).insert(group.clone());
                    }
                }
            }
        }
        view
    }

    /// The cluster as the nodes' reports describe it.
    fn reported_view(&self) -> ClusterView {
        ClusterView {
            nodes: self
                .config
                .nodes
                .iter()
                .map(|name| {
                    let report = self.reports.get(name).cloned().unwrap_or_default();
                    NodeView {
                        name: name.clone(),
                        active: self.hears(name),
                        // A node that is stopping, leaving or errored runs nothing.
                        // So does a node without quorum, or one that does not hear us.
                        standby: if report.state == LocalState::Ok
                            && self.is_member(name)
                            && (name == &self.local || !report.no_quorum)
                        {
                            report.standby
                        } else {
                            Scope::All
                        },
                        takeover: report.takeover,
                        running: report.running,
                        failed: report.failed,
                        blocked: report.blocked,
                        unclean: self.unclean.contains(name),
                        held: self
                            .holds
                            .get(name)
                            .map(|(groups, _)| groups.clone())
                            .unwrap_or_default(),
                    }
                })
                .collect(),
            groups: self.group_views.clone(),
            auto_failback: self.config.auto_failback,
            fencing: self.fencing,
        }
    }

    fn own_report(&self) -> HashMap<String, String> {
        let running: BTreeSet<String> = self.running.union(&self.busy).cloned().collect();
        HashMap::from([
            ("op".to_owned(), "report".to_owned()),
            ("running".to_owned(), join(&running)),
            ("failed".to_owned(), join(&self.failed)),
            ("blocked".to_owned(), join(&self.blocked)),
            ("standby".to_owned(), self.standby.as_str().to_owned()),
            ("takeover".to_owned(), self.takeover.as_str().to_owned()),
            ("state".to_owned(), self.state.as_str().to_owned()),
            ("command".to_owned(), self.last_command.clone()),
            (
                "quorum".to_owned(),
                if self.has_quorum() { "yes" } else { "no" }.to_owned(),
            ),
            (
                "hears".to_owned(),
                join(
                    &self
                        .config
                        .nodes
                        .iter()
                        .filter(|n| self.hears(n))
                        .cloned()
                        .collect(),
                ),
            ),
        ])
    }

    /// FreeHA style: a group that failed here makes the node ERRORED.
    fn error_flag(&mut self, group: &str) {
        if self.config.style == Style::FreeHa && self.state == LocalState::Ok {
            tracing::error!(group = %group, "{group} failed here: this node is ERRORED until the error is cleared (SIGUSR2, or SIGUSR1 to force a start)");
            self.state = LocalState::Errored;
        }
    }

    /// Clears the error flag and this node's failures (a stopped node stays stopped).
    fn clear_error(&mut self) {
        if matches!(self.state, LocalState::Errored | LocalState::Stopping) {
            self.state = LocalState::Ok;
        }
        self.failed.clear();
        self.blocked.clear();
        self.failures.clear();
    }

    /// Every node's state, FreeHA's way.
    fn node_states(&self, view: &ClusterView) -> Vec<NodeState> {
        view.nodes
            .iter()
            .map(|node| {
                let report = self.reports.get(&node.name);
                let state = if !node.blocked.is_empty() {
                    "BLOCKED"
                } else if !node.held.is_empty() {
                    "STOPPING"
                } else if !node.active {
                    if self.members.get(&node.name).is_some_and(|s| s == "dead") {
                        "DEAD"
                    } else {
                        "UNKNOWN"
                    }
                } else {
                    match report.map(|r| (r.state, r.standby)) {
                        None => "UNKNOWN",
                        Some((LocalState::Stopping | LocalState::Leaving, _)) => "STOPPING",
                        Some((LocalState::Errored, _)) => "ERRORED",
                        Some((LocalState::Ok, _)) if !node.running.is_empty() => "ACTIVE",
                        Some((LocalState::Ok, Scope::None)) => "IDLE",
                        Some((LocalState::Ok, _)) => "STANDBY",
                    }
                };
                NodeState {
                    node: node.name.clone(),
                    state: state.to_owned(),
                    groups: node.running.iter().cloned().collect(),
                }
            })
            .collect()
    }

    /// Rebuilds the groups' part of the view (it changes only with operators' moves).
    fn refresh_group_views(&mut self) {
        self.group_views = Arc::new(
            self.config
                .groups
                .iter()
                .map(|g| GroupView {
                    name: g.id.clone(),
                    preferred_node: g.preferred_node.clone(),
                    moved_to: self.moves.get(&g.id).cloned(),
                })
                .collect(),
        );
    }
}

/// Runs crmd until `shutdown` resolves.
pub async fn run(
    options: CrmdOptions,
    config: ClusterConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> zbus::Result<()> {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let (commands_tx, mut commands) = mpsc::unbounded_channel::<Command>();
    let connection = zbus::connection::Builder::address(options.bus_address.as_str())
        .method_timeout(hbapi::bus::METHOD_TIMEOUT)
        .serve_at(
            names::crmd::OBJECT_PATH,
            CrmdInterface {
                shared: shared.clone(),
                commands: commands_tx,
                config: Arc::new(config.clone()),
            },
        )
        .name(names::crmd::BUS_NAME)
        .build()
        .await?;
    let emitter = SignalEmitter::new(&connection, names::crmd::OBJECT_PATH)?.into_owned();
    let comm = CommProxy::new(&connection).await?;
    let outbox = Outbox::new(comm.clone(), MESSAGE_TYPE);
    let lrmd = LrmdProxy::new(&connection).await?;
    let stonith = StonithProxy::new(&connection).await?;

    let fencing = !config.stonith.is_empty();
    let has_ping = !config.ping_nodes.is_empty();
    if config.nodes.len() == 2 && !fencing && !has_ping {
        tracing::warn!("two nodes without fencing (stonith) or ping nodes: if the link between them breaks, BOTH will run every resource (split brain). Configure a stonith device, or ping nodes with ipfail");
    }
    if config.auto_failback == AutoFailback::Legacy {
        tracing::warn!(
            "auto_failback legacy is deprecated (Heartbeat says so too); it behaves as auto_failback on here"
        );
    }
    let mut crmd = Crmd {
        local: options.node.clone(),
        config,
        fencing,
        members: BTreeMap::new(),
        reports: BTreeMap::new(),
        unclean: BTreeSet::new(),
        sent: BTreeMap::new(),
        fencing_ops: BTreeMap::new(),
        released_at: BTreeMap::new(),
        running: BTreeSet::new(),
        failed: BTreeSet::new(),
        blocked: BTreeSet::new(),
        busy: BTreeSet::new(),
        standby: Scope::None,
        takeover: Scope::None,
        last_command: String::new(),
        moves: BTreeMap::new(),
        moved_by: BTreeMap::new(),
        group_views: Arc::default(),
        state: LocalState::Ok,
        holds: BTreeMap::new(),
        probed: false,
        failures: BTreeMap::new(),
    };
    crmd.refresh_group_views();
    hbapi::bus::wait_for_name(&connection, names::lrmd::BUS_NAME).await;
    hbapi::bus::wait_for_name(&connection, names::comm::BUS_NAME).await;
    let (executor, mut monitor_results) = Executor::new(lrmd).await?;
    // Start-up probe: what already runs here is reported before anyone decides anything.
    // All groups at once: lrmd runs them as its parallelism allows.
    let probes = crmd.config.groups.iter().map(|group| {
        let executor = executor.clone();
        async move { (group.id.clone(), executor.probe_group(group).await) }
    });
    for (group, running) in futures_util::future::join_all(probes).await {
        if running {
            tracing::warn!(group = %group, "{group} found running at start-up");
            crmd.running.insert(group);
        }
    }
    crmd.probed = true;
    // Subscribed only after the probe: a signal stream nobody reads holds up the whole
    // connection (zbus applies back-pressure). What happened meanwhile is caught up below:
    // membership from ListNodes, everyone's state from their answers to our hello.
    let mut node_changes = comm.receive_node_status_changed().await?;
    let mut messages = comm.receive_message_received().await?;
    let mut fences = stonith.receive_fence_finished().await?;
    if let Ok(nodes) = comm.list_nodes().await {
        for node in nodes.into_iter().filter(|n| n.kind == "normal") {
            crmd.members.insert(node.name, node.status);
        }
    }
    tracing::info!(node = %crmd.local, running = ?crmd.running, "crmd started");
    // Under systemd (Type=notify); the master gives its children no notify socket.
    let _ = hbapi::notify::notify("READY=1");
    let (done_tx, mut done) = mpsc::unbounded_channel::<LocalDone>();
    let mut report_due = true;
    // A crmd that starts (or is respawned) knows nobody's state: it asks every node for a
    // report, since reports are otherwise sent only on change.
    outbox.send("", HashMap::from([("op".to_owned(), "hello".to_owned())]));
    // What set off the events since the last decision; every decision is recorded with them.
    let mut triggers = Triggers::new("start-up");
    let mut retry = tokio::time::interval(Duration::from_secs(2));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether an event since the last decision may change it.
    let mut dirty = true;
    let mut last_states: Vec<NodeState> = Vec::new();
    // Actions decided since the cluster was last where it should be.
    let mut transition_actions: u32 = 0;
    tokio::pin!(shutdown);
    loop {
        // What set off this turn of the loop.
        let mut trigger = String::new();
        let next_release = crmd
            .released_at
            .values()
            .chain(crmd.holds.values().map(|(_, until)| until))
            .copied()
            .chain(crmd.next_deafness_deadline())
            .min();
        // Events first, every one that is ready; the report and the decision come when none
        // is left (the last arm), so that a burst of results makes one decision and one
        // report, not one per result.
        let mut idle = false;
        // Reports and hellos are routine: a decision names them only when nothing else happened.
        let mut routine = false;
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = async {
                match next_release {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = tokio::time::Instant::now();
                let released: Vec<String> = crmd.released_at.iter().filter(|(_, at)| **at <= now).map(|(n, _)| n.clone()).collect();
                for node in released {
                    crmd.released_at.remove(&node);
                    crmd.unclean.remove(&node);
                    if let Some(report) = crmd.reports.get_mut(&node) {
                        report.running = Groups::default();
                    }
                    tracing::warn!(node = %node, "{node}'s groups are free: its own stop must be over");
                    trigger = format!("the wait for {node}'s own stop is over");
                }
                let over: Vec<String> = crmd.holds.iter().filter(|(_, (_, until))| *until <= now).map(|(n, _)| n.clone()).collect();
                for node in over {
                    crmd.holds.remove(&node);
                    tracing::warn!(node = %node, "{node}'s oops window is over: its groups may start elsewhere");
                    trigger = format!("{node}'s oops window is over");
                }
            }
            Some(signal) = node_changes.next() => {
                let Ok(args) = signal.args() else { continue };
                let (node, new) = (args.node.to_owned(), args.new.to_owned());
                trigger = format!("node {node} is {new}");
                if !crmd.config.nodes.contains(&node) {
                    continue;
                }
                if new == "dead" {
                    let held = crmd.reports.get(&node).is_some_and(|r| !r.running.is_empty())
                        || crmd.sent.keys().any(|a| matches!(a, Action::Start { node: n, .. } | Action::Stop { node: n, .. } if *n == node));
                    if held && crmd.fencing {
                        tracing::warn!(node = %node, "{node} was lost while it held resources: it must be fenced before they start elsewhere");
                        crmd.unclean.insert(node.clone());
                    } else if held && crmd.config.nodes.len() >= 3 {
                        // No fencing, but quorum: the lost node, alone in its partition, stops
                        // its groups itself. Wait until that stop must be over.
                        let wait = crmd.hold_off(&node);
                        tracing::warn!(node = %node, "{node} was lost while it held resources: they start elsewhere in {} s, when its own stop (it has no quorum) must be over", wait.as_secs());
                        crmd.unclean.insert(node.clone());
                        crmd.released_at.insert(node.clone(), tokio::time::Instant::now() + wait);
                    }
                    crmd.sent.retain(|a, _| !matches!(a, Action::Start { node: n, .. } | Action::Stop { node: n, .. } if *n == node));
                } else if new == "active" && crmd.members.get(&node).is_some_and(|old| old == "dead") {
                    // Back from the dead: it reports afresh before anyone counts on it, and
                    // what it reports is the truth about it again.
                    crmd.reports.remove(&node);
                    crmd.unclean.remove(&node);
                    crmd.released_at.remove(&node);
                }
                crmd.members.insert(node, new);
                // Peers count this node by whom it says it hears.
                report_due = true;
            }
            Some(signal) = messages.next() => {
                let Ok(args) = signal.args() else { continue };
                if args.msg_type != MESSAGE_TYPE {
                    continue;
                }
                let from = args.from.to_owned();
                let body = args.body;
                trigger = format!("{} from {from}", body.get("op").map_or("message", String::as_str));
                routine = matches!(body.get("op").map(String::as_str), Some("report" | "hello"));
                match body.get("op").map(String::as_str) {
                    Some("hello") => {
                        report_due = true;
                    }
                    Some("report") => {
                        let mut report = Report {
                            running: split(body.get("running")),
                            failed: split(body.get("failed")),
                            blocked: split(body.get("blocked")),
                            standby: body.get("standby").and_then(|s| Scope::parse(s)).unwrap_or_default(),
                            takeover: body.get("takeover").and_then(|s| Scope::parse(s)).unwrap_or_default(),
                            state: body.get("state").map(|s| LocalState::parse(s)).unwrap_or_default(),
                            no_quorum: body.get("quorum").is_some_and(|q| q == "no"),
                            hears: body.get("hears").map(|h| split(Some(h))),
                            deaf_to_us_since: None,
                        };
                        if report.hears.as_ref().is_some_and(|h| !h.contains(&crmd.local)) {
                            report.deaf_to_us_since = crmd
                                .reports
                                .get(&from)
                                .and_then(|r| r.deaf_to_us_since)
                                .or_else(|| Some(tokio::time::Instant::now()));
                        }
                        if crmd.config.style == Style::FreeHa {
                            if report.state == LocalState::Leaving {
                                if !crmd.holds.contains_key(&from) && !report.running.is_empty() {
                                    let until = tokio::time::Instant::now() + crmd.config.oops_timeout;
                                    tracing::warn!(node = %from, "{from}'s daemon is stopping: its groups wait {} s (the oops window) before they start elsewhere", crmd.config.oops_timeout.as_secs());
                                    crmd.holds.insert(from.clone(), (report.running.clone(), until));
                                }
                            } else if crmd.holds.remove(&from).is_some() {
                                tracing::info!(node = %from, "{from} is back within its oops window");
                            }
                        }
                        let previous = crmd.reports.get(&from);
                        if previous.is_some_and(|p| p.standby != report.standby || p.takeover != report.takeover) {
                            if let Some(command) = body.get("command").filter(|c| !c.is_empty()) {
                                trigger = format!("{command} on {from}");
                                routine = false;
                            }
                        }
                        // An order counts as answered once the node's report shows it taken up
                        // (a group being started counts as running) or failed.
                        crmd.sent.retain(|action, _| match action {
                            Action::Start { group, node } if *node == from => !report.running.contains(group) && !report.failed.contains(group),
                            Action::Stop { group, node } if *node == from => report.running.contains(group),
                            _ => true,
                        });
                        crmd.reports.insert(from, report);
                    }
                    // An order from a node that sorts after the decision maker this node
                    // knows cannot come from the decision maker. One that sorts before may:
                    // this node may just not have heard that node yet.
                    Some("start") | Some("stop") if crmd.decision_maker().is_some_and(|dc| from > dc) => {
                        tracing::warn!(from = %from, "ignoring an order from {from}, which is not the decision maker");
                    }
                    Some(op @ ("start" | "stop")) => {
                        let Some(group) = body.get("group").and_then(|g| crmd.group(g)).cloned() else { continue };
                        let starting = op == "start";
                        if crmd.busy.contains(&group.id) || (starting && crmd.running.contains(&group.id)) || (!starting && !crmd.running.contains(&group.id)) {
                            report_due = true;
                            continue;
                        }
                        if starting && !crmd.has_quorum() {
                            continue;
                        }
                        tracing::info!(group = %group.id, "{op} {} (ordered by {from})", group.id);
                        crmd.busy.insert(group.id.clone());
                        report_due = true;
                        carry_out(&executor, &done_tx, group, if starting { Work::Start } else { Work::Stop });
                    }
                    Some("move") => {
                        if let Some(group) = body.get("group").filter(|g| crmd.group(g).is_some()) {
                            match body.get("node").filter(|n| crmd.config.nodes.contains(n)) {
                                Some(node) => {
                                    crmd.moves.insert(group.clone(), node.clone());
                                }
                                None => {
                                    crmd.moves.remove(group);
                                }
                            }
                            crmd.refresh_group_views();
                            if let Some(by) = body.get("by") {
                                trigger = by.clone();
                                crmd.moved_by.insert(group.clone(), by.clone());
                            }
                            tracing::info!(group = %group, from = %from, "{group} moved: {trigger}");
                        }
                    }
                    Some("cleanup") => {
                        if let Some(group) = body.get("group").and_then(|g| crmd.group(g)).cloned() {
                            for resource in &group.resources {
                                crmd.failures.remove(&resource.id);
                            }
                            if crmd.failed.remove(&group.id) | crmd.blocked.remove(&group.id) {
                                report_due = true;
                            }
                            if let Some(by) = body.get("by") {
                                trigger = by.clone();
                            }
                        }
                    }
                    Some("fenced") => {
                        if let Some(node) = body.get("node") {
                            crmd.unclean.remove(node);
                            if let Some(report) = crmd.reports.get_mut(node) {
                                report.running = Groups::default();
                                report.blocked = Groups::default();
                            }
                        }
                    }
                    _ => {}
                }
            }
            Some(finished) = done.recv() => {
                crmd.busy.remove(&finished.group);
                let state = match finished.outcome {
                    GroupOutcome::Started => {
                        crmd.running.insert(finished.group.clone());
                        "started"
                    }
                    GroupOutcome::StartFailed => {
                        crmd.running.remove(&finished.group);
                        crmd.failed.insert(finished.group.clone());
                        crmd.error_flag(&finished.group);
                        "failed"
                    }
                    GroupOutcome::Stopped => { crmd.running.remove(&finished.group); "stopped" }
                    // It may still run here: reported as running and blocked, so that it
                    // starts nowhere else until this node is fenced or an operator cleans up.
                    GroupOutcome::StopFailed => {
                        crmd.running.insert(finished.group.clone());
                        crmd.failed.insert(finished.group.clone());
                        crmd.blocked.insert(finished.group.clone());
                        crmd.error_flag(&finished.group);
                        "blocked"
                    }
                };
                trigger = format!("{} {state} on {}", finished.group, crmd.local);
                let _ = CrmdInterface::group_changed(&emitter, &finished.group, &crmd.local, state).await;
                report_due = true;
            }
            Some(result) = monitor_results.recv() => {
                let healthy = result.status == status::DONE && matches!(result.rc, rc::OK | rc::RUNNING_PROMOTED | rc::DEGRADED | rc::DEGRADED_PROMOTED);
                if result.interval_ms == 0 || healthy {
                    continue;
                }
                let Some(group) = crmd.config.groups.iter().find(|g| g.resources.iter().any(|r| r.id == result.resource)).cloned() else { continue };
                if !crmd.running.contains(&group.id) || crmd.busy.contains(&group.id) {
                    continue;
                }
                let Some(resource) = group.resources.iter().find(|r| r.id == result.resource) else { continue };
                let failures = crmd.failures.entry(resource.id.clone()).or_default();
                failures.push(tokio::time::Instant::now());
                let count = u32::try_from(failures.len()).unwrap_or(u32::MAX);
                trigger = format!("monitor of {} failed ({}), failure {count}", resource.id, rc::name(result.rc));
                let threshold = resource.ops.migration_threshold.max(1);
                crmd.busy.insert(group.id.clone());
                report_due = true;
                if count < threshold {
                    tracing::warn!(group = %group.id, resource = %resource.id, "monitor of {} failed ({}, failure {count} of {threshold}): restarting {} here", resource.id, rc::name(result.rc), group.id);
                    let _ = CrmdInterface::group_changed(&emitter, &group.id, &crmd.local, "restarting").await;
                    carry_out(&executor, &done_tx, group, Work::Restart);
                } else {
                    tracing::error!(group = %group.id, resource = %resource.id, "monitor of {} failed ({}, failure {count} of {threshold}): {} leaves this node", resource.id, rc::name(result.rc), group.id);
                    crmd.failed.insert(group.id.clone());
                    crmd.error_flag(&group.id);
                    carry_out(&executor, &done_tx, group, Work::Stop);
                }
            }
            Some(signal) = fences.next() => {
                let Ok(args) = signal.args() else { continue };
                let record = args.record;
                if let Some(node) = crmd.fencing_ops.remove(&record.op_id) {
                    trigger = format!("fencing {node} {}", if record.ok { "succeeded" } else { "failed" });
                    if record.ok {
                        crmd.sent.remove(&Action::Fence { node: node.clone() });
                        // Cleared here at once, not when the broadcast comes back, so that the
                        // next decision does not fence it again.
                        crmd.unclean.remove(&node);
                        if let Some(report) = crmd.reports.get_mut(&node) {
                            report.running = Groups::default();
                            report.blocked = Groups::default();
                        }
                        let body = HashMap::from([("op".to_owned(), "fenced".to_owned()), ("node".to_owned(), node.clone())]);
                        outbox.send("", body);
                    } else {
                        tracing::error!(node = %node, "fencing {node} failed ({}): its resources stay stopped; retrying", record.message);
                    }
                }
            }
            Some(command) = commands.recv() => {
                match command {
                    Command::Standby(scope, uid) => {
                        trigger = format!("hb_standby {} by uid {uid}", scope.as_str());
                        crmd.last_command = trigger.clone();
                        crmd.standby = scope;
                        crmd.takeover = Scope::None;
                    }
                    Command::Move { group, node, uid } => {
                        trigger = format!("move {group} to {} by uid {uid}", if node.is_empty() { "wherever it belongs" } else { node.as_str() });
                        let body = HashMap::from([
                            ("op".to_owned(), "move".to_owned()),
                            ("group".to_owned(), group),
                            ("node".to_owned(), node),
                            ("by".to_owned(), trigger.clone()),
                        ]);
                        outbox.send("", body);
                        continue;
                    }
                    Command::Cleanup { group, uid } => {
                        trigger = format!("cleanup of {group} by uid {uid}");
                        let body = HashMap::from([
                            ("op".to_owned(), "cleanup".to_owned()),
                            ("group".to_owned(), group),
                            ("by".to_owned(), trigger.clone()),
                        ]);
                        outbox.send("", body);
                        continue;
                    }
                    Command::Takeover(scope, uid) => {
                        trigger = format!("hb_takeover {} by uid {uid}", scope.as_str());
                        crmd.last_command = trigger.clone();
                        crmd.takeover = scope;
                        crmd.standby = Scope::None;
                    }
                    Command::Connectivity { give_up, reason, uid } => {
                        trigger = format!("ipfail: {reason} (uid {uid})");
                        crmd.last_command = trigger.clone();
                        crmd.standby = if give_up { Scope::All } else { Scope::None };
                        crmd.takeover = Scope::None;
                    }
                    Command::StopServices(uid) => {
                        trigger = format!("stop services (FreeHA's SIGHUP) by uid {uid}");
                        tracing::warn!("{trigger}: this node stops its groups and stays STOPPING");
                        crmd.last_command = trigger.clone();
                        crmd.state = LocalState::Stopping;
                    }
                    Command::ForceStart(uid) => {
                        trigger = format!("force start (FreeHA's SIGUSR1 or -m) by uid {uid}");
                        tracing::warn!("{trigger}: error flag cleared, every group comes here");
                        crmd.last_command = trigger.clone();
                        crmd.clear_error();
                        crmd.standby = Scope::None;
                        crmd.takeover = Scope::All;
                    }
                    Command::ClearError(uid) => {
                        trigger = format!("clear error (FreeHA's SIGUSR2) by uid {uid}");
                        tracing::warn!("{trigger}");
                        crmd.last_command = trigger.clone();
                        crmd.clear_error();
                    }
                }
                report_due = true;
            }
            _ = retry.tick() => {
                trigger = "retry of unanswered orders".into();
                // A report that says a node does not hear us, while we hear it and it claims
                // quorum, holds up every decision; if it is old (its successor lost on a bad
                // link), ask for fresh ones.
                if crmd.waiting_on_deaf_peer() {
                    outbox.send("", HashMap::from([("op".to_owned(), "hello".to_owned())]));
                }
                // Failures expire one by one after the resource's failure_timeout.
                let now = tokio::time::Instant::now();
                let mut cleared = Vec::new();
                for group in &crmd.config.groups {
                    for resource in &group.resources {
                        let Some(timeout) = resource.ops.failure_timeout else { continue };
                        if let Some(failures) = crmd.failures.get_mut(&resource.id) {
                            failures.retain(|at| now.duration_since(*at) < timeout);
                            if failures.is_empty() {
                                crmd.failures.remove(&resource.id);
                                cleared.push(group.id.clone());
                            }
                        }
                    }
                }
                for group in cleared {
                    if crmd.failed.remove(&group) {
                        tracing::info!(group = %group, "failures of {group} expired: it may run here again");
                        report_due = true;
                    }
                }
                // Orders whose reports never came, and fences that failed, are tried again.
                // (Orders are taken up at once, so two seconds unanswered means lost or refused.)
                let fencing_now: BTreeSet<String> = crmd.fencing_ops.values().cloned().collect();
                crmd.sent.retain(|action, sent_at| match action {
                    Action::Fence { node } => fencing_now.contains(node),
                    _ => now.duration_since(*sent_at) < UNANSWERED,
                });
                routine = true;
            }
            () = std::future::ready(()), if dirty || report_due => idle = true,
        }
        if !idle {
            triggers.push(trigger, routine);
            dirty = true;
            continue;
        }
        dirty = false;
        if !crmd.has_quorum() {
            for group in crmd.running.clone() {
                if crmd.busy.contains(&group) {
                    continue;
                }
                let Some(group) = crmd.group(&group).cloned() else {
                    continue;
                };
                tracing::error!(group = %group.id, "no quorum: stopping {}", group.id);
                crmd.busy.insert(group.id.clone());
                report_due = true;
                carry_out(&executor, &done_tx, group, Work::Stop);
            }
        }
        if report_due {
            report_due = false;
            outbox.send("", crmd.own_report());
        }
        let view = Arc::new(crmd.view());
        let node_states = crmd.node_states(&view);
        if node_states != last_states {
            write_status_file(&options.run_dir, &crmd.local, &node_states);
            last_states = node_states.clone();
        }
        if let Ok(mut shared) = shared.lock() {
            shared.view = Some(view.clone());
            shared.node_states = node_states;
            shared.fail_counts = crmd
                .failures
                .iter()
                .map(|(resource, failures)| {
                    (
                        resource.clone(),
                        u32::try_from(failures.len()).unwrap_or(u32::MAX),
                    )
                })
                .collect();
            shared.decision_maker = crmd.decision_maker().unwrap_or_default();
        }
        let trigger = triggers.take();
        if !crmd.may_decide() {
            continue;
        }
        let actions = policy::decide(&view);
        if actions.is_empty() && transition_actions > 0 {
            // Every group is where it should be: the transition is over.
            tracing::info!(
                actions = transition_actions,
                "transition complete after {transition_actions} action(s)"
            );
            let _ = CrmdInterface::transition_completed(&emitter, transition_actions).await;
            transition_actions = 0;
        }
        for action in actions {
            if crmd.sent.contains_key(&action) {
                continue;
            }
            // A decision that carries out an operator's move says so, whatever event came last.
            let reason = match &action {
                Action::Start { group, .. } | Action::Stop { group, .. }
                    if crmd.moves.contains_key(group) =>
                {
                    match crmd.moved_by.get(group) {
                        Some(by) if *by != trigger => format!("{trigger}; {by}"),
                        _ => trigger.clone(),
                    }
                }
                _ => trigger.clone(),
            };
            tracing::info!(decision = %action, trigger = %reason, "decided: {action} (after: {reason})");
            if let Ok(mut shared) = shared.lock() {
                shared.record(&action.to_string(), &reason);
            }
            match &action {
                Action::Fence { node } => {
                    match stonith
                        .fence(
                            node,
                            "reboot",
                            &format!("{node} was lost while it held resources, or could not stop one"),
                        )
                        .await
                    {
                        Ok(op_id) => {
                            crmd.fencing_ops.insert(op_id, node.clone());
                        }
                        Err(error) => {
                            tracing::error!(node = %node, "cannot ask stonithd to fence {node}: {error}");
                            continue;
                        }
                    }
                }
                Action::Start { group, node } | Action::Stop { group, node } => {
                    let op = if matches!(action, Action::Start { .. }) {
                        "start"
                    } else {
                        "stop"
                    };
                    let body = HashMap::from([
                        ("op".to_owned(), op.to_owned()),
                        ("group".to_owned(), group.clone()),
                    ]);
                    outbox.send(node, body);
                }
            }
            crmd.sent.insert(action, tokio::time::Instant::now());
            transition_actions += 1;
        }
    }
    // Heartbeat's shutdown: this node gives up its groups cleanly before it leaves, so that a
    // peer takes them at once instead of waiting for deadtime and a fence. Standby first, so
    // that nothing is placed here meanwhile.
    tracing::info!(running = ?crmd.running, "crmd stopping: giving up this node's groups");
    crmd.standby = Scope::All;
    crmd.state = LocalState::Leaving;
    outbox.send("", crmd.own_report());
    while !crmd.busy.is_empty() {
        let Some(finished) = done.recv().await else { break };
        crmd.busy.remove(&finished.group);
        match finished.outcome {
            GroupOutcome::Stopped | GroupOutcome::StartFailed => {
                crmd.running.remove(&finished.group);
            }
            GroupOutcome::Started | GroupOutcome::StopFailed => {
                crmd.running.insert(finished.group);
            }
        }
    }
    let order: Vec<ResourceGroup> = crmd
        .config
        .groups
        .iter()
        .rev()
        .filter(|g| crmd.running.contains(&g.id))
        .cloned()
        .collect();
    for group in order {
        if executor.stop_group(&group).await == GroupOutcome::Stopped {
            crmd.running.remove(&group.id);
            let _ = CrmdInterface::group_changed(&emitter, &group.id, &crmd.local, "stopped").await;
        } else {
            tracing::error!(group = %group.id, "{} could not be stopped: it may still run here", group.id);
        }
    }
    outbox.send("", crmd.own_report());
    outbox.flush().await;
    tracing::info!("crmd stopped");
    Ok(())
}
