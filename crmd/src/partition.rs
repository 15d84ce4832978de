//! crmd's partition core, sans I/O: what this node knows of its peers and whether it may
//! decide. Events come in with the time ([`Partition::handle`]), and once a burst of events is
//! over [`Partition::settle`] returns what to do: messages to send, this node's own work for
//! lrmd, fences, signals and decisions to record. [`crate::daemon`] only carries those out;
//! placement itself is [`crate::policy::decide`]. No clock is read here, so that every rule is
//! tested with event sequences on a virtual clock (tests/events).
//!
//! The rules:
//! - **Membership as crmd sees it**: hbcomm's view (active/up/dead), narrowed by the peers'
//!   reports. With three or more nodes a peer counts for quorum and for the choice of decision
//!   maker only while its reports say it hears this node (after two keepalives of saying
//!   otherwise: at start-up a peer reports before it hears everyone).
//! - **The decision maker** is the alphabetically first member that is not leaving (FreeHA's
//!   rule). It decides only once every configured node is seen or declared dead, every member
//!   has reported with quorum, and every member hears the same nodes as it does.
//! - **Lost nodes**: a node that dies while it may hold groups is unclean. With fencing it is
//!   fenced before its groups start elsewhere; without fencing and with quorum its groups wait
//!   until its own stop must be over (the longest stop timeout plus deadtime; with a watchdog,
//!   its timeout plus deadtime, by when a node that could not stop them was reset; or ha.cf's
//!   `lost_node_wait`); a node that left cleanly (its last report: leaving, nothing running)
//!   is not unclean at all.
//! - **Orders** are sent to every node: a start under way counts as running on its target,
//!   for whoever is or becomes the decision maker, until the target answers or dies.
//! - **Leaving**: a node that stops reports `leaving` at once (so that another node takes the
//!   decision role without waiting for deadtime), stops its groups newest first, reports that
//!   nothing runs, and says whether every stop succeeded ([`Effect::Left`]).
//! - **hb_standby** is a one-time handover (Heartbeat's): the node gives up the groups of the
//!   scope; once none of them runs here it declines them, which means it takes them back only
//!   when no other node can run them (the node that took them crashing, for instance).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hbapi::comm::NodeStatus;
use hbapi::config::{AutoFailback, ClusterConfig, ResourceGroup, Style};
use hbapi::crmd::NodeState;

use crate::message::{LocalState, OrderKind, PeerMessage, Report};
use crate::policy::{self, Action, ClusterView, GroupView, Groups, NodeView, Scope};

/// How long an order may go unanswered before it is decided and sent again.
pub const UNANSWERED: Duration = Duration::from_secs(2);

/// How often unanswered orders, expired failures and stale reports are looked at.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// What an operation on a whole group came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupOutcome {
    /// Every member started.
    Started,
    /// A member failed to start; what had started was stopped again.
    StartFailed,
    /// Every member stopped.
    Stopped,
    /// A member failed to stop: the group may still run here.
    StopFailed,
}

/// What this node does to one of its groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Start it.
    Start,
    /// Stop it.
    Stop,
    /// Stop, then start again (a failed monitor under the migration threshold).
    Restart,
}

/// Operator commands, with the caller's uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// hb_standby: hand these groups over.
    Standby(Scope, u32),
    /// hb_takeover: take these groups.
    Takeover(Scope, u32),
    /// Move a group to a node ("" clears the move).
    Move {
        /// Group.
        group: String,
        /// Node, or empty.
        node: String,
        /// Caller.
        uid: u32,
    },
    /// Forget a group's failures everywhere (`None`: every group's).
    Cleanup {
        /// Group.
        group: Option<String>,
        /// Caller.
        uid: u32,
    },
    /// ipfail: give up every group (true) or become eligible again (false), with why.
    Connectivity {
        /// Give up, or take back.
        give_up: bool,
        /// The ping counts that caused it.
        reason: String,
        /// Caller.
        uid: u32,
    },
    /// FreeHA's SIGHUP.
    StopServices(u32),
    /// FreeHA's SIGUSR1 and `-m`.
    ForceStart(u32),
    /// FreeHA's SIGUSR2.
    ClearError(u32),
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The start-up probe is over: what runs here, and hbcomm's membership then.
    Started {
        /// Groups found running.
        running: Vec<String>,
        /// Each normal node hbcomm knows, with its status.
        members: Vec<(String, NodeStatus)>,
    },
    /// hbcomm says `node` is now `status` (init, up, active, dead).
    NodeStatus {
        /// Node.
        node: String,
        /// Its new status.
        status: NodeStatus,
    },
    /// A peer message (also this node's own broadcasts, which hbcomm delivers back).
    Message {
        /// Sender.
        from: String,
        /// The message.
        message: PeerMessage,
    },
    /// This node's work on a group is over.
    LocalDone {
        /// Group.
        group: String,
        /// How it ended.
        outcome: GroupOutcome,
    },
    /// A recurring monitor of a resource here failed.
    MonitorFailed {
        /// Resource.
        resource: String,
        /// The result, by name.
        result: String,
    },
    /// stonithd took a fence request (`Ok(op_id)`) or refused it.
    FenceRequested {
        /// Node.
        node: String,
        /// Its operation id, or why not.
        result: Result<u64, String>,
    },
    /// A fencing operation ended.
    FenceFinished {
        /// Operation id.
        op_id: u64,
        /// Whether the node is off.
        ok: bool,
        /// What stonithd said.
        message: String,
    },
    /// An operator command.
    Command(Command),
    /// hbcomm sent no heartbeat of this node for longer than deadtime (it was not
    /// scheduled): peers may have declared this node dead and taken its groups.
    NoLocalHeartbeat {
        /// How long this node was silent.
        silent: Duration,
    },
    /// The messaging engine decides quorum (Corosync's quorum API) and says this partition
    /// has it or not; crmd's own count no longer applies.
    EngineQuorum {
        /// Whether this partition is quorate.
        quorate: bool,
    },
    /// Time passed.
    Tick,
    /// The daemon is told to stop.
    Shutdown,
}

/// What the daemon carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send to every node (this one included).
    Broadcast(PeerMessage),
    /// This node's part: through lrmd.
    Carry {
        /// Group.
        group: String,
        /// What to do.
        work: Work,
    },
    /// Ask stonithd to fence a node.
    Fence {
        /// Node.
        node: String,
        /// Why.
        reason: String,
    },
    /// Tell the bus a group changed here (`GroupChanged`).
    GroupChanged {
        /// Group.
        group: String,
        /// started, stopped, failed, blocked, restarting.
        state: &'static str,
    },
    /// A decision, with the event that made it possible (the decision history).
    Decided {
        /// The action.
        decision: String,
        /// What set it off.
        trigger: String,
    },
    /// Every group is where it should be after this many actions.
    TransitionCompleted {
        /// Actions since the cluster was last settled.
        actions: u32,
    },
    /// Leaving is over: `clean` when every group here was stopped.
    Left {
        /// Whether nothing may run here any more.
        clean: bool,
    },
    /// A message of Heartbeat 3.0.6's v1 resource protocol, to every node (a mixed cluster:
    /// [`crate::v1`]).
    SendV1(crate::v1::V1Message),
}

/// Why a node's groups are held back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The node.
    pub node: String,
    /// `lost-node-stop` (a lost node's own stop, without fencing) or `oops-window` (FreeHA).
    pub kind: &'static str,
    /// The groups it held.
    pub groups: Vec<String>,
    /// How long until they are free.
    pub remaining: Duration,
}

/// A peer as this node knows it.
#[derive(Debug, Clone)]
struct Peer {
    report: Report,
    /// Since when its reports have not listed this node among those it hears.
    deaf_to_us_since: Option<Instant>,
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

/// One node's view of its partition and its own part in it.
pub struct Partition {
    local: String,
    config: Arc<ClusterConfig>,
    fencing: bool,
    /// The time of the event being handled.
    now: Instant,
    // What this node knows of the others.
    /// hbcomm's status of every normal node.
    members: BTreeMap<String, NodeStatus>,
    peers: BTreeMap<String, Peer>,
    /// Lost while they may have held groups, neither fenced nor cleanly stopped since.
    unclean: BTreeSet<String>,
    /// Fenced, and not heard back from the dead since: not members, whatever hbcomm still
    /// says of them until it notices.
    fenced: BTreeSet<String>,
    /// Lost nodes whose groups wait for their own stop (no fencing), until when.
    released_at: BTreeMap<String, Instant>,
    /// FreeHA's oops windows: groups of a node whose daemon stopped, held until then.
    holds: BTreeMap<String, (Groups, Instant)>,
    /// Orders under way (this node's as decision maker, or seen from another), and fences.
    orders: BTreeMap<Action, Instant>,
    /// Fences asked of stonithd: node → operation id once it took the request.
    fences: BTreeMap<String, Option<u64>>,
    /// Operators' moves, group → node (every node keeps them, so any can decide).
    moves: BTreeMap<String, String>,
    /// Who asked for each move.
    moved_by: BTreeMap<String, String>,
    group_views: Arc<Vec<GroupView>>,
    // This node.
    running: BTreeSet<String>,
    failed: BTreeSet<String>,
    /// Groups whose stop failed here.
    blocked: BTreeSet<String>,
    /// Groups with work under way here.
    busy: BTreeSet<String>,
    standby: Scope,
    takeover: Scope,
    declined: BTreeSet<String>,
    state: LocalState,
    last_command: String,
    /// Monitor failures per resource here, for migration threshold and expiry.
    failures: BTreeMap<String, Vec<Instant>>,
    started: bool,
    /// Groups stopped (or tried) while leaving; `Some` once leaving.
    leaving: Option<BTreeSet<String>>,
    left: bool,
    // The loop's bookkeeping.
    triggers: Triggers,
    dirty: bool,
    report_due: bool,
    transition_actions: u32,
    next_retry: Instant,
    last_tick: Instant,
    view: Arc<ClusterView>,
    /// The messaging engine's quorum verdict, where it decides (Corosync); `None`: counted.
    engine_quorum: Option<bool>,
}

impl Partition {
    /// A node's core before its start-up probe.
    pub fn new(local: &str, config: Arc<ClusterConfig>, now: Instant) -> Self {
        let fencing = !config.stonith.is_empty();
        let mut partition = Partition {
            local: local.to_owned(),
            config,
            fencing,
            now,
            members: BTreeMap::new(),
            peers: BTreeMap::new(),
            unclean: BTreeSet::new(),
            fenced: BTreeSet::new(),
            released_at: BTreeMap::new(),
            holds: BTreeMap::new(),
            orders: BTreeMap::new(),
            fences: BTreeMap::new(),
            moves: BTreeMap::new(),
            moved_by: BTreeMap::new(),
            group_views: Arc::default(),
            running: BTreeSet::new(),
            failed: BTreeSet::new(),
            blocked: BTreeSet::new(),
            busy: BTreeSet::new(),
            standby: Scope::None,
            takeover: Scope::None,
            declined: BTreeSet::new(),
            state: LocalState::Ok,
            last_command: String::new(),
            failures: BTreeMap::new(),
            started: false,
            leaving: None,
            left: false,
            triggers: Triggers::default(),
            dirty: false,
            report_due: false,
            transition_actions: 0,
            next_retry: now + RETRY_PERIOD,
            last_tick: now,
            view: Arc::new(ClusterView {
                nodes: Vec::new(),
                groups: Arc::default(),
                auto_failback: AutoFailback::Off,
                fencing,
            }),
            engine_quorum: None,
        };
        partition.refresh_group_views();
        partition.view = Arc::new(partition.view_now());
        partition
    }

    // ---- Queries (for the bus interface and the status file) ----

    /// The cluster as the last settle saw it.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.clone()
    }

    /// Groups running here (or being started or stopped), for a handover to [`crate::v1`].
    pub fn running_here(&self) -> BTreeSet<String> {
        self.running.union(&self.busy).cloned().collect()
    }

    /// Groups with work under way here.
    pub fn busy_here(&self) -> BTreeSet<String> {
        self.busy.clone()
    }

    /// What the watchdog is told ([`hbapi::comm::CommProxy::set_watchdog_state`]): whether a
    /// group runs here (or is being started or stopped, or failed to stop), and why this node
    /// must not be kept alive with it — no quorum (peers take its groups over once the
    /// watchdog must have fired), or a planned stop that left groups running.
    pub fn watchdog_state(&self) -> (bool, String) {
        let groups_here = !(self.running.is_empty() && self.busy.is_empty() && self.blocked.is_empty());
        // Nodes that left cleanly run nothing and take nothing over: a planned stop of the
        // other nodes is no reason to reset this one.
        let could_take_over = self
            .config
            .nodes
            .iter()
            .filter(|n| {
                **n != self.local
                    && !self.is_member(n)
                    && !self
                        .report_of(n)
                        .is_some_and(|r| r.state == LocalState::Leaving && r.running.is_empty())
            })
            .count();
        let hold = if !self.started {
            ""
        } else if !self.has_quorum() && could_take_over * 2 > self.config.nodes.len() {
            "no quorum while groups run here"
        } else if self.left && !self.running.is_empty() {
            "crmd stopped with groups it could not stop"
        } else {
            ""
        };
        (groups_here, hold.to_owned())
    }

    /// Whether a node hbcomm hears has not reported yet (nothing is decided meanwhile: the
    /// resources are in transition, as Heartbeat's rscstatus says).
    pub fn awaiting_reports(&self) -> bool {
        self.config.nodes.iter().any(|n| {
            n != &self.local
                && self.members.get(n).is_some_and(|s| s.is_alive())
                && self.report_of(n).is_none()
        })
    }

    /// Whether this node is stopping.
    pub fn is_leaving(&self) -> bool {
        self.leaving.is_some()
    }

    /// The partition's decision maker, as this node sees it.
    pub fn decision_maker(&self) -> Option<String> {
        self.config
            .nodes
            .iter()
            .filter(|n| self.may_lead(n))
            .min()
            .cloned()
    }

    /// Monitor failures per resource here.
    pub fn fail_counts(&self) -> Vec<(String, u32)> {
        self.failures
            .iter()
            .map(|(resource, failures)| {
                (
                    resource.clone(),
                    u32::try_from(failures.len()).unwrap_or(u32::MAX),
                )
            })
            .collect()
    }

    /// Groups held back, and until when.
    pub fn holds(&self) -> Vec<Hold> {
        let lost = self.released_at.iter().map(|(node, until)| Hold {
            node: node.clone(),
            kind: "lost-node-stop",
            groups: self
                .peers
                .get(node)
                .map(|p| p.report.running.iter().cloned().collect())
                .unwrap_or_default(),
            remaining: until.saturating_duration_since(self.now),
        });
        let oops = self.holds.iter().map(|(node, (groups, until))| Hold {
            node: node.clone(),
            kind: "oops-window",
            groups: groups.iter().cloned().collect(),
            remaining: until.saturating_duration_since(self.now),
        });
        lost.chain(oops).collect()
    }

    /// When [`Event::Tick`] is next needed.
    pub fn next_deadline(&self) -> Instant {
        let settle = self.config.timing.keepalive * 2;
        self.released_at
            .values()
            .chain(self.holds.values().map(|(_, until)| until))
            .copied()
            .chain(
                self.peers
                    .values()
                    .filter_map(|p| p.deaf_to_us_since.map(|since| since + settle))
                    .filter(|at| *at > self.now),
            )
            .chain(std::iter::once(self.next_retry))
            .min()
            .unwrap_or(self.next_retry)
    }

    /// Every node's state, FreeHA's way.
    pub fn node_states(&self) -> Vec<NodeState> {
        self.view
            .nodes
            .iter()
            .map(|node| {
                let own;
                let report = if node.name == self.local {
                    own = self.own_report();
                    Some(&own)
                } else {
                    self.report_of(&node.name)
                };
                let state = if !node.blocked.is_empty() {
                    "BLOCKED"
                } else if !node.held.is_empty() {
                    "STOPPING"
                } else if !node.active {
                    if self.members.get(&node.name) == Some(&NodeStatus::Dead) {
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

    /// Whether events since the last [`Partition::settle`] may change a report or a decision.
    pub fn unsettled(&self) -> bool {
        self.started && (self.dirty || self.report_due)
    }

    // ---- Events ----

    /// Takes one event in. Effects that cannot wait for the burst to end (work on this node)
    /// come out at once; the rest come from [`Partition::settle`].
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Effect> {
        self.now = now;
        let mut effects = Vec::new();
        let (trigger, routine) = match event {
            Event::Started { running, members } => {
                self.running.extend(running);
                for (node, status) in members {
                    self.members.insert(node, status);
                }
                self.started = true;
                self.report_due = true;
                // A crmd that starts (or is respawned) knows nobody's state: it asks every
                // node for a report, since reports are otherwise sent only on change.
                effects.push(Effect::Broadcast(PeerMessage::Hello));
                ("start-up".to_owned(), false)
            }
            Event::NodeStatus { node, status } => (self.on_node_status(node, status), false),
            Event::Message { from, message } => {
                let routine = message.is_routine();
                (self.on_message(from, message, &mut effects), routine)
            }
            Event::LocalDone { group, outcome } => (self.on_local_done(group, outcome, &mut effects), false),
            Event::MonitorFailed { resource, result } => {
                (self.on_monitor_failed(&resource, &result, &mut effects), false)
            }
            Event::FenceRequested { node, result } => {
                match result {
                    Ok(op_id) => {
                        self.fences.insert(node, Some(op_id));
                    }
                    Err(error) => {
                        tracing::error!(node = %node, "cannot ask stonithd to fence {node}: {error}");
                        self.fences.remove(&node);
                        self.orders.remove(&Action::Fence { node });
                    }
                }
                return effects;
            }
            Event::FenceFinished { op_id, ok, message } => {
                (self.on_fence_finished(op_id, ok, &message, &mut effects), false)
            }
            Event::Command(command) => (self.on_command(command, &mut effects), false),
            Event::NoLocalHeartbeat { silent } => {
                // Heartbeat restarts itself here; giving the groups up is the part of that
                // which matters: whoever decides places them again, here or where a peer
                // already took them.
                for group in self.running.clone() {
                    if !self.busy.contains(&group) {
                        tracing::error!(group = %group, "no local heartbeat for {:.2} s: stopping {group}, which peers may have taken over", silent.as_secs_f64());
                        self.work(&group, Work::Stop, &mut effects);
                    }
                }
                (
                    format!("no local heartbeat for {:.2} s", silent.as_secs_f64()),
                    false,
                )
            }
            Event::EngineQuorum { quorate } => {
                let changed = self.engine_quorum != Some(quorate);
                self.engine_quorum = Some(quorate);
                self.report_due |= changed;
                if changed {
                    if quorate {
                        tracing::info!("the messaging engine says this partition has quorum");
                    } else {
                        tracing::warn!("the messaging engine says this partition does not have quorum");
                    }
                    (
                        format!("engine quorum {}", if quorate { "yes" } else { "no" }),
                        false,
                    )
                } else {
                    (String::new(), false)
                }
            }
            Event::Tick => self.on_tick(&mut effects),
            Event::Shutdown => {
                if self.leaving.is_none() {
                    tracing::info!(running = ?self.running, "crmd stopping: giving up this node's groups");
                    self.leaving = Some(BTreeSet::new());
                    self.state = LocalState::Leaving;
                    self.standby = Scope::All;
                    self.takeover = Scope::None;
                    self.report_due = true;
                }
                ("this node is leaving".to_owned(), false)
            }
        };
        if !trigger.is_empty() {
            self.triggers.push(trigger, routine);
            self.dirty = true;
        }
        effects
    }

    /// After a burst of events: the report, this node's leaving steps, and — on the decision
    /// maker, once it may decide — the decisions.
    pub fn settle(&mut self, now: Instant) -> Vec<Effect> {
        self.now = now;
        let mut effects = Vec::new();
        if !self.started || !(self.dirty || self.report_due) {
            return effects;
        }
        self.dirty = false;
        if !self.has_quorum() {
            for group in self.running.clone() {
                // A stop that failed is not tried again in a loop: the group is blocked
                // until an operator cleans it up (or the watchdog resets this node).
                if !self.busy.contains(&group) && !self.blocked.contains(&group) {
                    tracing::error!(group = %group, "no quorum: stopping {group}");
                    self.work(&group, Work::Stop, &mut effects);
                }
            }
        }
        self.finish_standby();
        self.leave_step(&mut effects);
        if self.report_due {
            self.report_due = false;
            effects.push(Effect::Broadcast(PeerMessage::Report(self.own_report())));
        }
        if self.leaving.is_some() && self.busy.is_empty() && !self.left {
            let tried = self.leaving.as_ref();
            if self.running.iter().all(|g| tried.is_some_and(|t| t.contains(g))) {
                self.left = true;
                let clean = self.running.is_empty();
                if clean {
                    tracing::info!("every group of this node is stopped: leaving the cluster");
                } else {
                    tracing::error!(running = ?self.running, "leaving with groups that could not be stopped: they may still run here");
                }
                effects.push(Effect::Left { clean });
            }
        }
        let own = self.own_report();
        let local = self.local.clone();
        self.answer_orders(&local, &own);
        self.view = Arc::new(self.view_now());
        if self.decision_maker().as_deref() != Some(self.local.as_str()) {
            // Another node decides: what happened here is its business, not history to
            // credit to a later decision of this node's.
            self.triggers = Triggers::default();
            return effects;
        }
        if !self.may_decide() {
            // Kept: the event that made this node the decision maker is what its first
            // decision must name.
            return effects;
        }
        let trigger = self.triggers.take();
        let actions = policy::decide(&self.view);
        let under_way = self.orders.keys().any(|a| a.target_node().is_some());
        if actions.is_empty() && self.transition_actions > 0 && !under_way {
            tracing::info!(
                actions = self.transition_actions,
                "transition complete after {} action(s)",
                self.transition_actions
            );
            effects.push(Effect::TransitionCompleted {
                actions: self.transition_actions,
            });
            self.transition_actions = 0;
        }
        for action in actions {
            if self.orders.contains_key(&action) {
                continue;
            }
            // A decision that carries out an operator's move says so, whatever came last.
            let reason = match &action {
                Action::Start { group, .. } | Action::Stop { group, .. }
                    if self.moves.contains_key(group) =>
                {
                    match self.moved_by.get(group) {
                        Some(by) if *by != trigger => format!("{trigger}; {by}"),
                        _ => trigger.clone(),
                    }
                }
                _ => trigger.clone(),
            };
            tracing::info!(decision = %action, trigger = %reason, "decided: {action} (after: {reason})");
            effects.push(Effect::Decided {
                decision: action.to_string(),
                trigger: reason,
            });
            match &action {
                Action::Fence { node } => {
                    self.fences.insert(node.clone(), None);
                    effects.push(Effect::Fence {
                        node: node.clone(),
                        reason: format!("{node} was lost while it held resources, or could not stop one"),
                    });
                }
                Action::Start { group, node } | Action::Stop { group, node } => {
                    let kind = if matches!(action, Action::Start { .. }) {
                        OrderKind::Start
                    } else {
                        OrderKind::Stop
                    };
                    effects.push(Effect::Broadcast(PeerMessage::Order {
                        kind,
                        group: group.clone(),
                        node: node.clone(),
                    }));
                }
            }
            self.orders.insert(action, self.now);
            self.transition_actions += 1;
        }
        effects
    }

    fn on_node_status(&mut self, node: String, status: NodeStatus) -> String {
        let trigger = format!("node {node} is {status}");
        if !self.config.nodes.contains(&node) || node == self.local {
            return trigger;
        }
        if status == NodeStatus::Dead {
            let report = self.report_of(&node);
            let left_cleanly = report.is_some_and(|r| r.state == LocalState::Leaving && r.running.is_empty());
            let held = !left_cleanly
                && (report.is_some_and(|r| !r.running.is_empty())
                    || self
                        .orders
                        .keys()
                        .any(|a| matches!(a, Action::Start { node: target, .. } if *target == node)));
            if left_cleanly {
                tracing::info!(node = %node, "{node} left the cluster cleanly: it runs nothing");
            } else if held && self.fencing {
                tracing::warn!(node = %node, "{node} was lost while it held resources: it must be fenced before they start elsewhere");
                self.unclean.insert(node.clone());
            } else if held && self.config.nodes.len() >= 3 {
                // No fencing, but quorum: the lost node, alone in its partition, stops its
                // groups itself. Wait until that stop must be over.
                let wait = self.lost_node_wait(&node);
                tracing::warn!(node = %node, "{node} was lost while it held resources: they start elsewhere in {:.1} s, when its own stop (it has no quorum) must be over", wait.as_secs_f64());
                self.unclean.insert(node.clone());
                self.released_at.insert(node.clone(), self.now + wait);
            }
            self.orders.retain(|a, _| a.target_node() != Some(node.as_str()));
        } else if status == NodeStatus::Active && self.members.get(&node) == Some(&NodeStatus::Dead) {
            // Back from the dead: it reports afresh before anyone counts on it, and what it
            // reports is the truth about it again.
            self.peers.remove(&node);
            self.fenced.remove(&node);
            self.unclean.remove(&node);
            self.released_at.remove(&node);
        }
        self.members.insert(node, status);
        // Peers count this node by whom it says it hears.
        self.report_due = true;
        trigger
    }

    fn on_message(&mut self, from: String, message: PeerMessage, effects: &mut Vec<Effect>) -> String {
        let mut trigger = format!("{} from {from}", message.op());
        match message {
            PeerMessage::Hello => self.report_due = true,
            PeerMessage::Report(report) => {
                if from == self.local {
                    return String::new();
                }
                let deaf_to_us_since = if report.hears.contains(&self.local) {
                    None
                } else {
                    self.peers
                        .get(&from)
                        .and_then(|p| p.deaf_to_us_since)
                        .or(Some(self.now))
                };
                if self.config.style == Style::FreeHa {
                    if report.state == LocalState::Leaving {
                        if !self.holds.contains_key(&from) && !report.running.is_empty() {
                            let until = self.now + self.config.oops_timeout;
                            tracing::warn!(node = %from, "{from}'s daemon is stopping: its groups wait {} s (the oops window) before they start elsewhere", self.config.oops_timeout.as_secs());
                            self.holds.insert(from.clone(), (report.running.clone(), until));
                        }
                    } else if self.holds.remove(&from).is_some() {
                        tracing::info!(node = %from, "{from} is back within its oops window");
                    }
                }
                let previous = self.peers.get(&from).map(|p| &p.report);
                if previous.is_some_and(|p| p.standby != report.standby || p.takeover != report.takeover)
                    && !report.command.is_empty()
                {
                    trigger = format!("{} on {from}", report.command);
                } else if previous.is_some_and(|p| p.state != report.state)
                    && report.state == LocalState::Leaving
                {
                    trigger = format!("{from} is leaving");
                }
                self.answer_orders(&from, &report);
                self.peers.insert(
                    from,
                    Peer {
                        report,
                        deaf_to_us_since,
                    },
                );
            }
            PeerMessage::Order { kind, group, node } => {
                let action = match kind {
                    OrderKind::Start => Action::Start {
                        group: group.clone(),
                        node: node.clone(),
                    },
                    OrderKind::Stop => Action::Stop {
                        group: group.clone(),
                        node: node.clone(),
                    },
                };
                // An order from a node that sorts after the decision maker this node knows
                // cannot come from the decision maker. One that sorts before may: this node
                // may just not have heard that node yet.
                if self.decision_maker().is_some_and(|dc| from > dc) {
                    tracing::warn!(from = %from, "ignoring an order from {from}, which is not the decision maker");
                    return trigger;
                }
                // Seen by every node: whoever decides next counts it as under way.
                self.orders.entry(action).or_insert(self.now);
                if node != self.local {
                    return String::new();
                }
                let Some(group) = self.group(&group).map(|g| g.id.clone()) else {
                    return trigger;
                };
                let starting = kind == OrderKind::Start;
                if self.leaving.is_some() {
                    return trigger;
                }
                if self.busy.contains(&group)
                    || (starting && self.running.contains(&group))
                    || (!starting && !self.running.contains(&group))
                {
                    self.report_due = true;
                    return trigger;
                }
                if starting && !self.has_quorum() {
                    return trigger;
                }
                tracing::info!(group = %group, "{} {group} (ordered by {from})", if starting { "start" } else { "stop" });
                self.work(&group, if starting { Work::Start } else { Work::Stop }, effects);
            }
            PeerMessage::Move { group, node, by } => {
                if self.group(&group).is_none() {
                    return trigger;
                }
                match node.filter(|n| self.config.nodes.contains(n)) {
                    Some(node) => {
                        self.moves.insert(group.clone(), node);
                    }
                    None => {
                        self.moves.remove(&group);
                    }
                }
                self.refresh_group_views();
                if !by.is_empty() {
                    trigger = by.clone();
                    self.moved_by.insert(group.clone(), by);
                }
                tracing::info!(group = %group, from = %from, "{group} moved: {trigger}");
            }
            PeerMessage::Cleanup { group, by } => {
                let groups: Vec<ResourceGroup> = match &group {
                    Some(id) => self.group(id).cloned().into_iter().collect(),
                    None => self.config.groups.clone(),
                };
                for group in groups {
                    for resource in &group.resources {
                        self.failures.remove(&resource.id);
                    }
                    if self.failed.remove(&group.id) | self.blocked.remove(&group.id) {
                        self.report_due = true;
                    }
                }
                if group.is_none() && self.state == LocalState::Errored {
                    self.state = LocalState::Ok;
                    self.report_due = true;
                }
                if !by.is_empty() {
                    trigger = by;
                }
            }
            PeerMessage::Fenced { node } => {
                if node != self.local {
                    self.fenced.insert(node.clone());
                    // Whom this node hears changed: peers compare.
                    self.report_due = true;
                }
                self.unclean.remove(&node);
                self.released_at.remove(&node);
                if let Some(peer) = self.peers.get_mut(&node) {
                    peer.report.running = Groups::default();
                    peer.report.blocked = Groups::default();
                }
            }
        }
        trigger
    }

    fn on_local_done(&mut self, group: String, outcome: GroupOutcome, effects: &mut Vec<Effect>) -> String {
        self.busy.remove(&group);
        let state = match outcome {
            GroupOutcome::Started => {
                self.running.insert(group.clone());
                self.declined.remove(&group);
                "started"
            }
            GroupOutcome::StartFailed => {
                self.running.remove(&group);
                self.failed.insert(group.clone());
                self.error_flag(&group);
                "failed"
            }
            GroupOutcome::Stopped => {
                self.running.remove(&group);
                "stopped"
            }
            // It may still run here: reported as running and blocked, so that it starts
            // nowhere else until this node is fenced or an operator cleans up.
            GroupOutcome::StopFailed => {
                self.running.insert(group.clone());
                self.failed.insert(group.clone());
                self.blocked.insert(group.clone());
                self.error_flag(&group);
                "blocked"
            }
        };
        effects.push(Effect::GroupChanged {
            group: group.clone(),
            state,
        });
        self.report_due = true;
        format!("{group} {state} on {}", self.local)
    }

    fn on_monitor_failed(&mut self, resource_id: &str, result: &str, effects: &mut Vec<Effect>) -> String {
        let Some(group) = self
            .config
            .groups
            .iter()
            .find(|g| g.resources.iter().any(|r| r.id == resource_id))
            .cloned()
        else {
            return String::new();
        };
        if !self.running.contains(&group.id) || self.busy.contains(&group.id) || self.leaving.is_some() {
            return String::new();
        }
        let Some(resource) = group.resources.iter().find(|r| r.id == resource_id) else {
            return String::new();
        };
        let failures = self.failures.entry(resource.id.clone()).or_default();
        failures.push(self.now);
        let count = u32::try_from(failures.len()).unwrap_or(u32::MAX);
        let threshold = resource.ops.migration_threshold.max(1);
        if count < threshold {
            tracing::warn!(group = %group.id, resource = %resource.id, "monitor of {} failed ({result}, failure {count} of {threshold}): restarting {} here", resource.id, group.id);
            effects.push(Effect::GroupChanged {
                group: group.id.clone(),
                state: "restarting",
            });
            self.work(&group.id, Work::Restart, effects);
        } else {
            tracing::error!(group = %group.id, resource = %resource.id, "monitor of {} failed ({result}, failure {count} of {threshold}): {} leaves this node", resource.id, group.id);
            self.failed.insert(group.id.clone());
            self.error_flag(&group.id);
            self.work(&group.id, Work::Stop, effects);
        }
        format!("monitor of {} failed ({result}), failure {count}", resource.id)
    }

    fn on_fence_finished(
        &mut self,
        op_id: u64,
        ok: bool,
        message: &str,
        effects: &mut Vec<Effect>,
    ) -> String {
        let Some(node) = self
            .fences
            .iter()
            .find(|(_, id)| **id == Some(op_id))
            .map(|(node, _)| node.clone())
        else {
            // Not a fence this node asked for and still waits on.
            return String::new();
        };
        self.fences.remove(&node);
        if ok {
            // Nothing ordered there is under way any more.
            self.orders.retain(|a, _| {
                !matches!(a, Action::Fence { node: n } if *n == node)
                    && a.target_node() != Some(node.as_str())
            });
            // Cleared here at once, not when the broadcast comes back, so that the next
            // decision does not fence it again.
            self.unclean.remove(&node);
            self.released_at.remove(&node);
            self.fenced.insert(node.clone());
            self.report_due = true;
            if let Some(peer) = self.peers.get_mut(&node) {
                peer.report.running = Groups::default();
                peer.report.blocked = Groups::default();
            }
            effects.push(Effect::Broadcast(PeerMessage::Fenced { node: node.clone() }));
        } else {
            tracing::error!(node = %node, "fencing {node} failed ({message}): its resources stay stopped; retrying");
        }
        format!("fencing {node} {}", if ok { "succeeded" } else { "failed" })
    }

    fn on_command(&mut self, command: Command, effects: &mut Vec<Effect>) -> String {
        let trigger = match command {
            Command::Standby(scope, uid) => {
                let trigger = format!("hb_standby {} by uid {uid}", scope.as_str());
                if self.config.auto_failback == AutoFailback::Legacy {
                    tracing::warn!(
                        "{trigger} ignored: auto_failback legacy has no standby (as in Heartbeat)"
                    );
                    return String::new();
                }
                if self.leaving.is_some() {
                    return String::new();
                }
                self.standby = scope;
                self.takeover = Scope::None;
                trigger
            }
            Command::Takeover(scope, uid) => {
                if self.leaving.is_some() {
                    return String::new();
                }
                self.takeover = scope;
                self.standby = Scope::None;
                let local = self.local.clone();
                let covered: Vec<String> = self
                    .group_views
                    .iter()
                    .filter(|g| scope.covers(g, &local))
                    .map(|g| g.name.clone())
                    .collect();
                for group in covered {
                    self.declined.remove(&group);
                }
                format!("hb_takeover {} by uid {uid}", scope.as_str())
            }
            Command::Move { group, node, uid } => {
                let by = format!(
                    "move {group} to {} by uid {uid}",
                    if node.is_empty() {
                        "wherever it belongs"
                    } else {
                        node.as_str()
                    }
                );
                effects.push(Effect::Broadcast(PeerMessage::Move {
                    group,
                    node: (!node.is_empty()).then_some(node),
                    by,
                }));
                return String::new();
            }
            Command::Cleanup { group, uid } => {
                let by = match &group {
                    Some(group) => format!("cleanup of {group} by uid {uid}"),
                    None => format!("cleanup of every group by uid {uid}"),
                };
                effects.push(Effect::Broadcast(PeerMessage::Cleanup { group, by }));
                return String::new();
            }
            Command::Connectivity { give_up, reason, uid } => {
                if self.leaving.is_some() {
                    return String::new();
                }
                if give_up {
                    self.standby = Scope::All;
                } else {
                    self.standby = Scope::None;
                    self.declined.clear();
                }
                self.takeover = Scope::None;
                format!("ipfail: {reason} (uid {uid})")
            }
            Command::StopServices(uid) => {
                let trigger = format!("stop services (FreeHA's SIGHUP) by uid {uid}");
                tracing::warn!("{trigger}: this node stops its groups and stays STOPPING");
                if self.leaving.is_none() {
                    self.state = LocalState::Stopping;
                }
                trigger
            }
            Command::ForceStart(uid) => {
                let trigger = format!("force start (FreeHA's SIGUSR1 or -m) by uid {uid}");
                if self.leaving.is_some() {
                    return String::new();
                }
                tracing::warn!("{trigger}: error flag cleared, every group comes here");
                self.clear_error();
                self.standby = Scope::None;
                self.declined.clear();
                self.takeover = Scope::All;
                trigger
            }
            Command::ClearError(uid) => {
                let trigger = format!("clear error (FreeHA's SIGUSR2) by uid {uid}");
                tracing::warn!("{trigger}: this node may run its groups again; nothing starts here now");
                if self.state == LocalState::Errored {
                    self.state = LocalState::Ok;
                }
                // The error flag is the failures that set it. A stop that failed stays
                // blocked: the service may still run here (SIGUSR1 or hb_cleanup after a look).
                self.failed.clear();
                self.failures.clear();
                trigger
            }
        };
        self.last_command = trigger.clone();
        self.report_due = true;
        trigger
    }

    fn on_tick(&mut self, effects: &mut Vec<Effect>) -> (String, bool) {
        let mut trigger = String::new();
        let released: Vec<String> = self
            .released_at
            .iter()
            .filter(|(_, at)| **at <= self.now)
            .map(|(n, _)| n.clone())
            .collect();
        for node in released {
            self.released_at.remove(&node);
            self.unclean.remove(&node);
            if let Some(peer) = self.peers.get_mut(&node) {
                peer.report.running = Groups::default();
            }
            tracing::warn!(node = %node, "{node}'s groups are free: its own stop must be over");
            trigger = format!("the wait for {node}'s own stop is over");
        }
        let over: Vec<String> = self
            .holds
            .iter()
            .filter(|(_, (_, until))| *until <= self.now)
            .map(|(n, _)| n.clone())
            .collect();
        for node in over {
            self.holds.remove(&node);
            tracing::warn!(node = %node, "{node}'s oops window is over: its groups may start elsewhere");
            trigger = format!("{node}'s oops window is over");
        }
        // A peer whose reports leave this node out stops counting once that has lasted.
        let settle = self.config.timing.keepalive * 2;
        let deafness_over = self
            .peers
            .iter()
            .filter_map(|(node, p)| p.deaf_to_us_since.map(|since| (node, since + settle)))
            .find(|(_, at)| *at > self.last_tick && *at <= self.now)
            .map(|(node, _)| node.clone());
        self.last_tick = self.now;
        if trigger.is_empty() {
            if let Some(node) = deafness_over {
                trigger = format!("{node} does not hear this node");
            }
        }
        if !trigger.is_empty() {
            return (trigger, false);
        }
        if self.now < self.next_retry {
            return (String::new(), true);
        }
        self.next_retry = self.now + RETRY_PERIOD;
        // A report that says a node does not hear us, while we hear it and it claims quorum,
        // holds up every decision; if it is old (its successor lost on a bad link), ask again.
        if self.waiting_on_deaf_peer() {
            effects.push(Effect::Broadcast(PeerMessage::Hello));
        }
        // Failures expire one by one after the resource's failure_timeout.
        let mut cleared = Vec::new();
        for group in &self.config.groups {
            for resource in &group.resources {
                let Some(timeout) = resource.ops.failure_timeout else {
                    continue;
                };
                if let Some(failures) = self.failures.get_mut(&resource.id) {
                    failures.retain(|at| self.now.saturating_duration_since(*at) < timeout);
                    if failures.is_empty() {
                        self.failures.remove(&resource.id);
                        cleared.push(group.id.clone());
                    }
                }
            }
        }
        for group in cleared {
            if self.failed.remove(&group) {
                tracing::info!(group = %group, "failures of {group} expired: it may run here again");
                self.report_due = true;
            }
        }
        // Orders whose reports never came, and fences that failed, are tried again. (Orders
        // are taken up at once, so two seconds unanswered means lost or refused.)
        let now = self.now;
        let fences = &self.fences;
        self.orders.retain(|action, sent_at| match action {
            Action::Fence { node } => fences.contains_key(node),
            _ => now.saturating_duration_since(*sent_at) < UNANSWERED,
        });
        ("retry of unanswered orders".to_owned(), true)
    }

    /// An order counts as answered once its node's report shows it taken up (a group being
    /// started counts as running) or failed.
    fn answer_orders(&mut self, from: &str, report: &Report) {
        self.orders.retain(|action, _| match action {
            Action::Start { group, node } if node == from => {
                !report.running.contains(group) && !report.failed.contains(group)
            }
            Action::Stop { group, node } if node == from => report.running.contains(group),
            _ => true,
        });
    }

    // ---- This node's part ----

    fn work(&mut self, group: &str, work: Work, effects: &mut Vec<Effect>) {
        self.busy.insert(group.to_owned());
        self.report_due = true;
        effects.push(Effect::Carry {
            group: group.to_owned(),
            work,
        });
    }

    /// Once none of the groups of a standby runs here, the handover is done: the node
    /// declines them (takes them only as a last resort) and is no longer in standby.
    fn finish_standby(&mut self) {
        if self.standby == Scope::None || self.leaving.is_some() {
            return;
        }
        let local = self.local.clone();
        let covered: Vec<String> = self
            .group_views
            .iter()
            .filter(|g| self.standby.covers(g, &local))
            .map(|g| g.name.clone())
            .collect();
        if covered
            .iter()
            .any(|g| self.running.contains(g) || self.busy.contains(g))
        {
            return;
        }
        tracing::info!(
            scope = self.standby.as_str(),
            "standby done: {} handed over",
            if covered.is_empty() {
                "nothing".to_owned()
            } else {
                covered.join(", ")
            }
        );
        self.declined.extend(covered);
        self.standby = Scope::None;
        self.report_due = true;
    }

    /// While leaving: stop this node's groups one at a time, newest first.
    fn leave_step(&mut self, effects: &mut Vec<Effect>) {
        let Some(tried) = &self.leaving else { return };
        if !self.busy.is_empty() {
            return;
        }
        let next = self
            .config
            .groups
            .iter()
            .rev()
            .find(|g| self.running.contains(&g.id) && !tried.contains(&g.id))
            .map(|g| g.id.clone());
        if let Some(group) = next {
            if let Some(tried) = &mut self.leaving {
                tried.insert(group.clone());
            }
            self.work(&group, Work::Stop, effects);
        }
    }

    fn own_report(&self) -> Report {
        Report {
            running: Arc::new(self.running.union(&self.busy).cloned().collect()),
            failed: Arc::new(self.failed.clone()),
            blocked: Arc::new(self.blocked.clone()),
            standby: self.standby,
            takeover: self.takeover,
            declined: Arc::new(self.declined.clone()),
            state: self.state,
            command: self.last_command.clone(),
            quorum: self.has_quorum(),
            hears: Arc::new(
                self.config
                    .nodes
                    .iter()
                    .filter(|n| self.hears(n))
                    .cloned()
                    .collect(),
            ),
        }
    }

    /// FreeHA style: a group that failed here makes the node ERRORED.
    fn error_flag(&mut self, group: &str) {
        if self.config.style == Style::FreeHa && self.state == LocalState::Ok {
            tracing::error!(group = %group, "{group} failed here: this node is ERRORED until the error is cleared (SIGUSR2, or SIGUSR1 to force a start)");
            self.state = LocalState::Errored;
        }
    }

    /// Clears the error flag and this node's failures (a stopped node starts again).
    fn clear_error(&mut self) {
        if matches!(self.state, LocalState::Errored | LocalState::Stopping) {
            self.state = LocalState::Ok;
        }
        self.failed.clear();
        self.blocked.clear();
        self.failures.clear();
    }

    // ---- What this node knows ----

    fn group(&self, id: &str) -> Option<&ResourceGroup> {
        self.config.groups.iter().find(|g| g.id == id)
    }

    fn report_of(&self, node: &str) -> Option<&Report> {
        self.peers.get(node).map(|p| &p.report)
    }

    /// How long a lost node's groups are held without fencing: ha.cf's `lost_node_wait`
    /// when set; with a watchdog its timeout plus deadtime; else the longest stop timeout of
    /// what it ran plus deadtime (the two sides notice the split at different moments).
    fn lost_node_wait(&self, node: &str) -> Duration {
        if let Some(wait) = self.config.lost_node_wait {
            return wait;
        }
        // With a watchdog, a lost node that still runs groups without quorum stopped feeding
        // it when it noticed (about when we did, within deadtime): by then it has either
        // stopped them or been reset — a stop that failed included, which the stop timeout
        // alone does not cover.
        if let Some(timeout) = self.config.watchdog_timeout() {
            return timeout + self.config.timing.deadtime;
        }
        let held = self
            .report_of(node)
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
        node == self.local
            || (!self.fenced.contains(node) && self.members.get(node).is_some_and(|s| s.is_alive()))
    }

    /// Whether `node` counts for quorum: heard, and (with three or more nodes) hearing this
    /// node too by its reports. A link cut one way leaves each side with a node it hears that
    /// does not hear it; counting such a node would let both sides believe they have quorum.
    fn is_member(&self, node: &str) -> bool {
        self.hears(node)
            && (node == self.local
                || self.config.nodes.len() < 3
                || self
                    .peers
                    .get(node)
                    .and_then(|p| p.deaf_to_us_since)
                    .is_none_or(|since| {
                        self.now.saturating_duration_since(since) < self.config.timing.keepalive * 2
                    }))
    }

    /// Whether `node` may be the decision maker: a member that is not leaving and, with
    /// fencing, not about to be fenced for a stop that failed there (a node does not order
    /// its own fence).
    fn may_lead(&self, node: &str) -> bool {
        let (leaving, blocked) = if node == self.local {
            (self.leaving.is_some(), !self.blocked.is_empty())
        } else {
            self.report_of(node).map_or((false, false), |r| {
                (r.state == LocalState::Leaving, !r.blocked.is_empty())
            })
        };
        self.is_member(node) && !leaving && !(blocked && self.fencing)
    }

    fn has_quorum(&self) -> bool {
        if let Some(quorate) = self.engine_quorum {
            return quorate;
        }
        let total = self.config.nodes.len();
        total < 3 || self.config.nodes.iter().filter(|n| self.is_member(n)).count() * 2 > total
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
            let Some(report) = self.report_of(n) else {
                return false;
            };
            if !self.is_member(n) {
                return report.quorum;
            }
            self.config
                .nodes
                .iter()
                .any(|x| report.hears.contains(x) != self.hears(x))
        })
    }

    /// Whether this node may decide now.
    fn may_decide(&self) -> bool {
        self.decision_maker().as_deref() == Some(self.local.as_str())
            && self.has_quorum()
            && self.config.nodes.iter().all(|n| {
                n == &self.local
                    || self
                        .members
                        .get(n)
                        .is_some_and(|s| s.is_alive() || *s == NodeStatus::Dead)
            })
            // Every member has reported, with quorum (a member that hears us and says it has
            // none reported before it heard everyone: wait for its next report).
            && self
                .config
                .nodes
                .iter()
                .filter(|n| self.is_member(n) && *n != &self.local)
                .all(|n| self.report_of(n).is_some_and(|r| r.quorum))
            // A node we hear that does not hear us but claims quorum either reported before
            // it heard us again (its next report will say) or is on the other side of a
            // one-way cut, where it decides: wait either way.
            && !self.waiting_on_deaf_peer()
    }

    fn view_now(&self) -> ClusterView {
        let mut view = self.reported_view();
        // A start ordered and not yet answered may be running already: the next decision
        // must stop it there before it starts the group anywhere else.
        for action in self.orders.keys() {
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
        let own = self.own_report();
        ClusterView {
            nodes: self
                .config
                .nodes
                .iter()
                .map(|name| {
                    let report = if *name == self.local {
                        own.clone()
                    } else {
                        self.report_of(name).cloned().unwrap_or_default()
                    };
                    let quorum = *name == self.local || report.quorum;
                    NodeView {
                        name: name.clone(),
                        active: self.hears(name),
                        // A node that is stopping, leaving or errored runs nothing. So does a
                        // node without quorum, or one that does not hear us.
                        standby: if report.state == LocalState::Ok && self.is_member(name) && quorum {
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
                        declined: report.declined,
                    }
                })
                .collect(),
            groups: self.group_views.clone(),
            auto_failback: self.config.auto_failback,
            fencing: self.fencing,
        }
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
