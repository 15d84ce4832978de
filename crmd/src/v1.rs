//! Heartbeat 3.0.6's v1 resource protocol, spoken when the other node of a two-node cluster
//! is a Heartbeat node (a rolling upgrade, the seed's FAQ 26). Heartbeat has no decision
//! maker: each node takes its own share by the rules of `hb_resource.c` ("nice_failback"),
//! and [`Mixed`] follows those rules as a sans-IO state machine, fed the same events as
//! [`crate::partition::Partition`] and returning the same effects plus v1 messages.
//!
//! Groups are *local* when haresources names this node first and *foreign* otherwise; a
//! node says which of the two it holds (`t=resource rsc_hold=none|local|foreign|all`, with
//! `isstable=1` once it will take nothing more without another event). The rules:
//! - **Start-up**: a node says `starting`; each answers the other's `starting` with what it
//!   holds. A node takes its local groups once the other is stable and does not hold them
//!   (or 10 s after the first answer when neither becomes stable). We answer a `starting`
//!   as stable when we hold nothing and do nothing (we will take nothing until the other is
//!   stable): Heartbeat then takes its groups at once instead of after its 10 s timer.
//! - **A peer lost** with groups (it held something, or never said) is fenced first when a
//!   device is configured; then this node takes the peer's groups and its own. A peer that
//!   gave everything up (`info=shutdown`, then `shutdone`) is taken over at once.
//! - **hb_standby** is Heartbeat's three-phase handover: `ask_resources info=me` from the
//!   node going standby, `info=other` from the one taking over, then `info=done` from each
//!   once its part (release, then acquisition) is over. Auto failback is the same handover,
//!   started by the node holding foreign groups when their node is back and stable.
//! - **Shutdown** waits until things are stable, says it holds nothing, stops every group,
//!   and hbcomm then sends `shutdone`.
//! - **auto_failback legacy** (no nice_failback): a node asks for its groups with
//!   `ip-request`; the holder releases them and answers `ip-request-resp`.
//!
//! Every message we send carries [`MARKER`], so that a heartbeat-rs node never takes
//! another heartbeat-rs node for a Heartbeat one.

use hbapi::comm::NodeStatus;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hbapi::config::{AutoFailback, ClusterConfig};
use hbapi::crmd::NodeState;

use crate::message::MessageError;
use crate::partition::{Command, Effect, Event, GroupOutcome, Work};
use crate::policy::{ClusterView, GroupView, NodeView, Scope};

/// Field on every v1 message heartbeat-rs sends (Heartbeat ignores unknown fields).
pub const MARKER: &str = "crmd";

/// How long a node waits after the other's first answer before taking its local groups
/// when neither side becomes stable (Heartbeat's `RQSTDELAY`).
pub const REQUEST_DELAY: Duration = Duration::from_secs(10);

/// How long a node going standby waits for the other's `info=other` before it gives up.
pub const STANDBY_ANSWER: Duration = Duration::from_secs(10);

/// The longest a handover may take once both sides agreed (Heartbeat: an hour).
pub const STANDBY_WORK: Duration = Duration::from_secs(3600);

/// How soon a delayed auto failback is tried again, and a failed fence repeated.
const RETRY: Duration = Duration::from_secs(1);
const FENCE_RETRY: Duration = Duration::from_secs(5);

/// Which of the two sets of groups a node holds (Heartbeat's `rsc_hold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hold(u8);

impl Hold {
    /// Nothing.
    pub const NONE: Hold = Hold(0);
    /// The groups haresources gives to this node.
    pub const LOCAL: Hold = Hold(1);
    /// The other node's groups.
    pub const FOREIGN: Hold = Hold(2);
    /// Both.
    pub const ALL: Hold = Hold(3);

    /// Heartbeat's word for it.
    pub fn as_str(self) -> &'static str {
        ["none", "local", "foreign", "all"][usize::from(self.0 & 3)]
    }

    /// From Heartbeat's word.
    pub fn parse(text: &str) -> Option<Hold> {
        match text {
            "none" => Some(Hold::NONE),
            "local" => Some(Hold::LOCAL),
            "foreign" => Some(Hold::FOREIGN),
            "all" => Some(Hold::ALL),
            _ => None,
        }
    }

    /// Whether every set of `other` is in this one (and `other` is not empty).
    pub fn has(self, other: Hold) -> bool {
        other.0 != 0 && self.0 & other.0 == other.0
    }

    fn with(self, other: Hold) -> Hold {
        Hold(self.0 | other.0)
    }

    fn without(self, other: Hold) -> Hold {
        Hold(self.0 & !other.0)
    }

    /// The same groups named from the other node's side.
    fn mirrored(self) -> Hold {
        Hold(((self.0 & 1) << 1) | ((self.0 & 2) >> 1))
    }

    fn from_scope(scope: Scope) -> Hold {
        match scope {
            Scope::None => Hold::NONE,
            Scope::Local => Hold::LOCAL,
            Scope::Foreign => Hold::FOREIGN,
            Scope::All => Hold::ALL,
        }
    }
}

/// The words of the standby protocol (`info=` of `ask_resources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyWord {
    /// "I want to go standby."
    Me,
    /// "Go ahead: I take them."
    Other,
    /// "My part is done."
    Done,
}

impl StandbyWord {
    fn as_str(self) -> &'static str {
        match self {
            StandbyWord::Me => "me",
            StandbyWord::Other => "other",
            StandbyWord::Done => "done",
        }
    }
}

/// A v1 resource-protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V1Message {
    /// `t=starting`: a node's resource manager starts and asks what the other holds.
    Starting,
    /// `t=resource`: what the sender holds.
    Resources {
        /// Which sets, from the sender's side.
        hold: Hold,
        /// `rtype=full`: the whole holding, not an addition.
        full: bool,
        /// `isstable`, when given.
        stable: Option<bool>,
        /// `info`: what sent it (`standby`, `shutdown`, `mach_down`, `req_our_resources()`).
        info: Option<String>,
    },
    /// `t=ask_resources`: the standby protocol.
    AskResources {
        /// The sets handed over, from the side of the node going standby.
        hold: Hold,
        /// Which step.
        word: StandbyWord,
    },
    /// `t=hb_takeover`: the sender wants these sets (the receiver goes standby).
    Takeover {
        /// From the sender's side.
        hold: Hold,
    },
    /// `t=ip-request`: give up this group (auto_failback legacy).
    IpRequest {
        /// The group.
        group: String,
    },
    /// `t=ip-request-resp`: the answer, to `requester`.
    IpRequestResp {
        /// Who asked.
        requester: String,
        /// The group.
        group: String,
        /// Whether the answering node held it.
        held: bool,
        /// Whether the requester may take it.
        ok: bool,
    },
    /// `t=shutdone`: the sender left the cluster.
    Shutdone,
}

/// The cluster message types of the v1 protocol.
pub const TYPES: &[&str] = &[
    "starting",
    "resource",
    "ask_resources",
    "hb_takeover",
    "ip-request",
    "ip-request-resp",
    "shutdone",
];

fn required<'a>(
    body: &'a HashMap<String, String>,
    op: &'static str,
    field: &'static str,
) -> Result<&'a str, MessageError> {
    body.get(field)
        .map(String::as_str)
        .ok_or(MessageError::Missing { op, field })
}

fn hold_field(body: &HashMap<String, String>, op: &'static str) -> Result<Hold, MessageError> {
    match body.get("rsc_hold") {
        // Heartbeat reads a missing rsc_hold as "all".
        None => Ok(Hold::ALL),
        Some(text) => Hold::parse(text).ok_or_else(|| MessageError::Invalid {
            op,
            field: "rsc_hold",
            value: text.clone(),
        }),
    }
}

impl V1Message {
    /// The message of a cluster message of type `msg_type`, if it is one of the protocol's.
    /// `Ok(None)`: not a v1 type.
    pub fn decode(msg_type: &str, body: &HashMap<String, String>) -> Result<Option<V1Message>, MessageError> {
        let message = match msg_type {
            "starting" => V1Message::Starting,
            "shutdone" => V1Message::Shutdone,
            "resource" => {
                let text = required(body, "resource", "rsc_hold")?;
                V1Message::Resources {
                    hold: Hold::parse(text).ok_or_else(|| MessageError::Invalid {
                        op: "resource",
                        field: "rsc_hold",
                        value: text.to_owned(),
                    })?,
                    full: body.get("rtype").is_some_and(|r| r == "full"),
                    stable: body.get("isstable").map(|s| s == "1"),
                    info: body.get("info").cloned(),
                }
            }
            "ask_resources" => {
                let word = match required(body, "ask_resources", "info")? {
                    "me" => StandbyWord::Me,
                    "other" => StandbyWord::Other,
                    "done" => StandbyWord::Done,
                    other => {
                        return Err(MessageError::Invalid {
                            op: "ask_resources",
                            field: "info",
                            value: other.to_owned(),
                        })
                    }
                };
                V1Message::AskResources {
                    hold: hold_field(body, "ask_resources")?,
                    word,
                }
            }
            "hb_takeover" => V1Message::Takeover {
                hold: hold_field(body, "hb_takeover")?,
            },
            "ip-request" => V1Message::IpRequest {
                group: required(body, "ip-request", "ipaddr")?.to_owned(),
            },
            "ip-request-resp" => V1Message::IpRequestResp {
                // hbcomm keeps `dest` to itself: a response delivered here is for this node.
                requester: body.get("dest").cloned().unwrap_or_default(),
                group: required(body, "ip-request-resp", "ipaddr")?.to_owned(),
                held: body.get("weown").is_some_and(|w| w == "yes"),
                ok: body.get("ok").is_some_and(|o| o == "OK"),
            },
            _ => return Ok(None),
        };
        Ok(Some(message))
    }

    /// Its cluster message: type, addressee ("" for every node) and body (with [`MARKER`]).
    pub fn encode(&self) -> (&'static str, String, HashMap<String, String>) {
        let mut body = HashMap::from([(MARKER.to_owned(), "1".to_owned())]);
        let mut set = |name: &str, value: &str| {
            body.insert(name.to_owned(), value.to_owned());
        };
        let (msg_type, to) = match self {
            V1Message::Starting => ("starting", String::new()),
            V1Message::Shutdone => ("shutdone", String::new()),
            V1Message::Resources {
                hold,
                full,
                stable,
                info,
            } => {
                set("rsc_hold", hold.as_str());
                if *full {
                    set("rtype", "full");
                }
                if let Some(stable) = stable {
                    set("isstable", if *stable { "1" } else { "0" });
                }
                if let Some(info) = info {
                    set("info", info);
                }
                ("resource", String::new())
            }
            V1Message::AskResources { hold, word } => {
                set("rsc_hold", hold.as_str());
                set("info", word.as_str());
                ("ask_resources", String::new())
            }
            V1Message::Takeover { hold } => {
                set("rsc_hold", hold.as_str());
                ("hb_takeover", String::new())
            }
            V1Message::IpRequest { group } => {
                set("ipaddr", group);
                ("ip-request", String::new())
            }
            V1Message::IpRequestResp {
                requester,
                group,
                held,
                ok,
            } => {
                set("ipaddr", group);
                set("weown", if *held { "yes" } else { "no" });
                set("ok", if *ok { "OK" } else { "NO" });
                ("ip-request-resp", requester.clone())
            }
        };
        (msg_type, to, body)
    }
}

/// Where this node's resource manager is (Heartbeat's `hb_rsc_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Said `starting`, waiting for the other's answer.
    Starting,
    /// Both said `starting`.
    BothStarting,
    /// Got an answer; takes its local groups at this time unless the other becomes stable.
    Received(Instant),
    /// Took what it should.
    Stable,
    /// Giving everything up.
    Shutdown,
}

/// The standby protocol's state (Heartbeat's `going_standby`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standby {
    Not,
    /// This node goes standby.
    Me,
    /// The other node goes standby; this one takes over.
    Other,
    /// This node's part is done; waiting for the other's `done`.
    Done,
}

/// What to do when a job's group work is over.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Then {
    /// Local groups taken: say so, stable.
    LocalTaken,
    /// The lost or departed peer's groups taken (Heartbeat's mach_down script).
    PeerTaken,
    /// This node's part of a standby handover: say `done`.
    StandbyPart,
    /// Everything given up: leaving is over.
    GaveUp,
    /// A group released for the peer's `ip-request`: answer it.
    Released { group: String, held: bool },
    /// Work that was under way when this core took over.
    Adopted,
    /// Groups both nodes held after a partition, left to the peer: say what is held now.
    Yielded,
}

/// Group work done one job at a time, as Heartbeat runs one resource script at a time.
#[derive(Debug, Clone)]
struct Job {
    work: Vec<(String, Work)>,
    then: Then,
}

/// This node's side of the v1 protocol with one Heartbeat peer.
pub struct Mixed {
    local: String,
    peer: String,
    config: Arc<ClusterConfig>,
    now: Instant,
    nice_failback: bool,
    auto_failback: bool,
    fencing: bool,
    peer_status: NodeStatus,
    phase: Phase,
    /// What this node holds.
    held: Hold,
    /// What the peer holds, from its side.
    peer_holds: Hold,
    peer_stable: bool,
    standby: Standby,
    standby_until: Option<Instant>,
    standby_hold: Hold,
    needs_failback: bool,
    failback_at: Option<Instant>,
    takeover_in_progress: bool,
    shutdown_wanted: bool,
    leaving: bool,
    /// Fence of the peer: `None` none wanted; `Some(None)` asked, `Some(Some(id))` taken.
    fence: Option<Option<u64>>,
    fence_retry_at: Option<Instant>,
    /// When this node last asked the peer to say whether it is stable.
    stability_asked_at: Option<Instant>,
    running: BTreeSet<String>,
    failed: BTreeSet<String>,
    jobs: VecDeque<Job>,
    /// The job under way and its groups not yet done.
    current: Option<(Job, BTreeSet<String>)>,
    /// Stops that failed: the group may still run here.
    blocked: BTreeSet<String>,
    effects: Vec<Effect>,
}

impl Mixed {
    /// Takes over from [`crate::partition::Partition`] when `peer` turned out to be a
    /// Heartbeat node (it answered, or sent, a `starting`): `running` runs here (`busy` of
    /// them with work under way).
    pub fn new(
        local: &str,
        peer: &str,
        config: Arc<ClusterConfig>,
        running: BTreeSet<String>,
        busy: BTreeSet<String>,
        peer_status: NodeStatus,
        now: Instant,
    ) -> (Mixed, Vec<Effect>) {
        let mut mixed = Mixed {
            local: local.to_owned(),
            peer: peer.to_owned(),
            nice_failback: config.auto_failback != AutoFailback::Legacy,
            auto_failback: config.auto_failback != AutoFailback::Off,
            fencing: !config.stonith.is_empty(),
            config,
            now,
            peer_status,
            phase: Phase::Starting,
            held: Hold::NONE,
            peer_holds: Hold::NONE,
            peer_stable: false,
            standby: Standby::Not,
            standby_until: None,
            standby_hold: Hold::ALL,
            needs_failback: false,
            failback_at: None,
            takeover_in_progress: false,
            shutdown_wanted: false,
            leaving: false,
            fence: None,
            fence_retry_at: None,
            stability_asked_at: None,
            running,
            failed: BTreeSet::new(),
            jobs: VecDeque::new(),
            current: None,
            blocked: BTreeSet::new(),
            effects: Vec::new(),
        };
        tracing::info!(
            peer,
            "{peer} is a Heartbeat node: speaking Heartbeat's v1 resource protocol with it"
        );
        if !busy.is_empty() {
            let work = busy.iter().map(|g| (g.clone(), Work::Start)).collect();
            mixed.current = Some((
                Job {
                    work,
                    then: Then::Adopted,
                },
                busy,
            ));
        }
        for group in mixed.running.clone() {
            let set = mixed.set_of(&group);
            mixed.held = mixed.held.with(set);
        }
        if !mixed.running.is_empty() {
            // This node ran alone and took what it should: it is stable, and answers the
            // Heartbeat node's `starting` so.
            mixed.phase = Phase::Stable;
            if mixed.running.len() == mixed.config.groups.len() {
                mixed.held = Hold::ALL;
                mixed.needs_failback = true;
            }
        }
        // This node's `starting` went out already: crmd says it to a peer as it starts and
        // whenever a peer becomes active (Heartbeat logs an error for a second one).
        let effects = std::mem::take(&mut mixed.effects);
        (mixed, effects)
    }

    /// The Heartbeat node.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Groups running here (or with work under way).
    pub fn running_here(&self) -> BTreeSet<String> {
        let mut running = self.running.clone();
        if let Some((_, pending)) = &self.current {
            running.extend(pending.iter().cloned());
        }
        running
    }

    /// Whether nothing is under way here (a handover back to the partition core may happen).
    pub fn idle(&self) -> bool {
        self.current.is_none() && self.jobs.is_empty() && !self.leaving && self.standby == Standby::Not
    }

    /// Which set `group` is in, from this node's side.
    fn set_of(&self, group: &str) -> Hold {
        match self.config.groups.iter().find(|g| g.id == group) {
            Some(g) if g.preferred_node == self.local => Hold::LOCAL,
            _ => Hold::FOREIGN,
        }
    }

    /// The groups of `sets` (from this node's side), in configuration order.
    fn groups_of(&self, sets: Hold) -> Vec<String> {
        self.config
            .groups
            .iter()
            .filter(|g| {
                let set = if g.preferred_node == self.local {
                    Hold::LOCAL
                } else {
                    Hold::FOREIGN
                };
                sets.has(set)
            })
            .map(|g| g.id.clone())
            .collect()
    }

    fn send(&mut self, message: V1Message) {
        self.effects.push(Effect::SendV1(message));
    }

    fn say_held(&mut self, stable: bool, info: Option<&str>) {
        if !self.nice_failback {
            return;
        }
        self.send(V1Message::Resources {
            hold: self.held,
            full: true,
            stable: Some(stable),
            info: info.map(str::to_owned),
        });
    }

    fn decided(&mut self, decision: String, trigger: &str) {
        tracing::info!(decision = %decision, trigger, "decided: {decision} (after: {trigger})");
        self.effects.push(Effect::Decided {
            decision,
            trigger: trigger.to_owned(),
        });
    }

    /// Heartbeat's `hb_rsc_isstable`.
    fn is_stable(&self) -> bool {
        if !self.nice_failback {
            return self.current.is_none() && self.jobs.is_empty();
        }
        self.peer_stable
            && !self.takeover_in_progress
            && self.standby == Standby::Not
            && self.standby_until.is_none()
            && self.current.is_none()
            && self.jobs.is_empty()
            && matches!(self.phase, Phase::Stable | Phase::Shutdown)
    }

    /// Whether nothing is in transition: Heartbeat's rscstatus says `transition` otherwise.
    pub fn is_settled(&self) -> bool {
        self.is_stable() || (self.leaving && self.current.is_none())
    }

    fn peer_alive(&self) -> bool {
        self.peer_status.is_alive()
    }

    // ---- Events ----

    /// Takes one event in and returns what to do.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Effect> {
        self.now = now;
        match event {
            Event::Started { .. } => {}
            Event::NodeStatus { node, status } => {
                if node == self.peer {
                    let was_alive = self.peer_alive();
                    self.peer_status = status;
                    if was_alive && self.peer_status == NodeStatus::Dead {
                        self.peer_lost();
                    } else if !was_alive && self.peer_alive() && self.phase == Phase::Stable {
                        // Back: restarted (it will say `starting`) or a healed partition (it
                        // may hold what this node took meanwhile). Ask what it holds.
                        self.ask_peer_state();
                    }
                }
            }
            Event::Message { .. } => {}
            Event::LocalDone { group, outcome } => self.local_done(&group, outcome),
            Event::MonitorFailed { resource, result } => {
                if let Some(group) = self
                    .config
                    .groups
                    .iter()
                    .find(|g| g.resources.iter().any(|r| r.id == resource))
                {
                    // v1 has no monitors: the group is restarted here, as a local matter.
                    tracing::warn!(resource = %resource, "monitor of {resource}: {result}; restarting {} here", group.id);
                    let id = group.id.clone();
                    self.queue(vec![(id, Work::Restart)], Then::Adopted);
                }
            }
            Event::FenceRequested { node, result } => match result {
                Ok(op_id) if node == self.peer => self.fence = Some(Some(op_id)),
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(node = %node, "fencing {node} refused: {error}; trying again");
                    self.fence_retry_at = Some(now + FENCE_RETRY);
                }
            },
            Event::FenceFinished { op_id, ok, message } => {
                if self.fence == Some(Some(op_id)) {
                    if ok {
                        tracing::info!(node = %self.peer, "{} fenced: taking over its groups", self.peer);
                        self.fence = None;
                        self.take_over_peer("fenced");
                    } else {
                        tracing::error!(node = %self.peer, "STONITH of {} failed ({message}); retrying", self.peer);
                        self.fence = Some(None);
                        self.fence_retry_at = Some(now + FENCE_RETRY);
                    }
                }
            }
            Event::Command(command) => self.command(command),
            Event::NoLocalHeartbeat { silent } => {
                // Heartbeat 3.0.6 restarts itself, giving everything up: the same here.
                tracing::error!(
                    "no local heartbeat for {:.2} s: giving up every group",
                    silent.as_secs_f64()
                );
                self.standby_request(Hold::ALL, "no local heartbeat");
            }
            // Heartbeat's v1 protocol is for two nodes on Heartbeat's engine: no quorum.
            Event::EngineQuorum { .. } => {}
            Event::Tick => self.tick(),
            Event::Shutdown => self.shutdown(),
        }
        self.start_next_job();
        std::mem::take(&mut self.effects)
    }

    /// A v1 message from `from` (ours come back from hbcomm too: they were applied when sent).
    pub fn message(&mut self, now: Instant, from: &str, message: V1Message) -> Vec<Effect> {
        self.now = now;
        if from == self.peer {
            match message {
                V1Message::Starting => self.peer_starting(),
                V1Message::Resources {
                    hold,
                    full,
                    stable,
                    info,
                } => self.peer_resources(hold, full, stable, info.as_deref()),
                V1Message::AskResources { hold, word } => self.ask_for_resources(hold, word, false),
                V1Message::Takeover { hold } => {
                    // Heartbeat's rc.d/hb_takeover: the receiver goes standby for them.
                    let mine = if hold == Hold::ALL { hold } else { hold.mirrored() };
                    self.standby_request(mine, "hb_takeover from the Heartbeat node");
                }
                V1Message::IpRequest { group } => self.ip_request(group),
                V1Message::IpRequestResp { group, ok, .. } => {
                    if ok && !self.leaving && self.config.groups.iter().any(|g| g.id == group) {
                        self.queue(vec![(group, Work::Start)], Then::Adopted);
                    }
                }
                V1Message::Shutdone => self.peer_shutdone(),
            }
        }
        self.start_next_job();
        std::mem::take(&mut self.effects)
    }

    fn peer_starting(&mut self) {
        if !self.nice_failback {
            return;
        }
        match self.phase {
            Phase::Starting => self.phase = Phase::BothStarting,
            Phase::BothStarting | Phase::Received(_) | Phase::Stable | Phase::Shutdown => {}
        }
        self.peer_stable = false;
        // Holding nothing and doing nothing, this node takes nothing before the peer is
        // stable: it says it is stable so that the peer need not wait out its 10 s.
        let idle_and_empty = self.held == Hold::NONE && self.current.is_none() && self.jobs.is_empty();
        let stable = self.phase == Phase::Stable || (idle_and_empty && !self.leaving);
        self.say_held(stable, None);
    }

    fn peer_resources(&mut self, hold: Hold, full: bool, stable: Option<bool>, info: Option<&str>) {
        if !self.nice_failback {
            return;
        }
        if matches!(self.phase, Phase::Starting | Phase::BothStarting) {
            self.phase = Phase::Received(self.now + REQUEST_DELAY);
        }
        self.peer_holds = if full || hold == Hold::NONE {
            hold
        } else {
            self.peer_holds.with(hold)
        };
        match stable {
            Some(true) if !self.peer_stable => {
                tracing::info!(peer = %self.peer, "remote resource transition completed");
                self.peer_stable = true;
                self.say_held(self.phase == Phase::Stable, None);
                self.auto_failback();
            }
            Some(false) => self.peer_stable = false,
            _ => {}
        }
        if matches!(self.phase, Phase::Received(_)) && self.peer_stable {
            self.take_local(false, "the Heartbeat node is stable");
            self.phase = Phase::Stable;
            self.say_held(true, None);
            self.auto_failback();
        }
        self.yield_doubles();
        if info == Some("shutdown") {
            tracing::info!(peer = %self.peer, "{} gives up its groups (shutdown)", self.peer);
        }
        self.audit();
    }

    /// After a partition both nodes may hold the same groups (Heartbeat logs "Both machines
    /// own …" and, unless it saw this node die too, does nothing about it): this node leaves
    /// them to the Heartbeat node.
    fn yield_doubles(&mut self) {
        let both = Hold(self.held.0 & self.peer_holds.mirrored().0);
        if both == Hold::NONE
            || self.leaving
            || !self.peer_alive()
            || self.standby != Standby::Not
            || self.current.is_some()
            || !self.jobs.is_empty()
        {
            return;
        }
        let groups: Vec<String> = self
            .groups_of(both)
            .into_iter()
            .filter(|g| self.running.contains(g))
            .collect();
        tracing::warn!(peer = %self.peer, groups = ?groups, "both nodes hold [{}] (a healed partition): leaving them to {}", both.as_str(), self.peer);
        self.held = self.held.without(both);
        for group in &groups {
            self.decided(
                format!("stop {group} {}", self.local),
                "the Heartbeat node holds it too",
            );
        }
        self.queue(
            groups.into_iter().map(|g| (g, Work::Stop)).collect(),
            Then::Yielded,
        );
    }

    /// Heartbeat's AuditResources: both nodes holding the same set is logged.
    fn audit(&self) {
        if self.held.has(Hold::LOCAL) && self.peer_holds.has(Hold::FOREIGN) {
            tracing::error!(peer = %self.peer, "both nodes hold this node's local groups");
        }
        if self.held.has(Hold::FOREIGN) && self.peer_holds.has(Hold::LOCAL) {
            tracing::error!(peer = %self.peer, "both nodes hold {}'s groups", self.peer);
        }
    }

    /// Heartbeat's req_our_resources: this node's local groups, unless someone has them.
    fn take_local(&mut self, anyway: bool, trigger: &str) {
        if self.leaving {
            return;
        }
        if self.nice_failback {
            let someone_has = self.peer_holds.has(Hold::FOREIGN) || self.held.has(Hold::LOCAL);
            if someone_has && !anyway && self.standby == Standby::Not {
                tracing::info!("local groups: already held (none to take)");
                return;
            }
            self.held = self.held.with(Hold::LOCAL);
        }
        let groups = self.groups_of(Hold::LOCAL);
        if !self.nice_failback && self.peer_alive() {
            for group in groups {
                self.send(V1Message::IpRequest { group });
            }
            return;
        }
        for group in &groups {
            if !self.running.contains(group) {
                self.decided(format!("start {group} {}", self.local), trigger);
            }
        }
        let work = groups.into_iter().map(|g| (g, Work::Start)).collect();
        self.queue(work, Then::LocalTaken);
    }

    /// Heartbeat's takeover_from_node: the peer's groups (and ours) are taken here.
    fn take_over_peer(&mut self, trigger: &str) {
        if self.leaving {
            tracing::info!("takeover cancelled: this node is stopping");
            return;
        }
        // The peer's death and its shutdown notice both lead here; one takeover is enough.
        if self.takeover_in_progress {
            return;
        }
        tracing::info!(peer = %self.peer, "taking over {}'s groups", self.peer);
        if self.nice_failback {
            self.held = self.held.with(Hold::FOREIGN);
            self.peer_holds = Hold::NONE;
            self.peer_stable = true;
            self.takeover_in_progress = true;
        }
        let groups = self.groups_of(Hold::FOREIGN);
        for group in &groups {
            if !self.running.contains(group) {
                self.decided(format!("start {group} {}", self.local), trigger);
            }
        }
        let work = groups.into_iter().map(|g| (g, Work::Start)).collect();
        self.queue(work, Then::PeerTaken);
        self.take_local(true, trigger);
    }

    /// Heartbeat's hb_rsc_recover_dead_resources.
    fn peer_lost(&mut self) {
        tracing::warn!(peer = %self.peer, "{} is dead", self.peer);
        if self.standby != Standby::Not {
            tracing::info!("cancelling the handover under way");
            self.standby = Standby::Not;
            self.standby_until = None;
            if !self.peer_stable && self.held == Hold::ALL {
                self.peer_stable = true;
            }
        }
        if self.leaving {
            return;
        }
        self.needs_failback = true;
        let must_fence = !self.nice_failback || self.peer_holds != Hold::NONE;
        if !must_fence {
            tracing::info!(peer = %self.peer, "dead node {} gave up its groups", self.peer);
            if self.held == Hold::ALL {
                self.peer_stable = true;
                return;
            }
            if !self.held.has(Hold::LOCAL) {
                self.take_local(true, "the Heartbeat node left");
            }
            if !self.held.has(Hold::FOREIGN) {
                self.take_over_peer("the Heartbeat node left");
            }
            return;
        }
        if self.fencing {
            tracing::warn!(peer = %self.peer, "{} may hold groups: fencing it first", self.peer);
            self.fence_peer();
        } else {
            tracing::warn!("no STONITH device configured: shared disks are not protected");
            self.take_over_peer("the Heartbeat node is dead");
        }
    }

    fn fence_peer(&mut self) {
        self.fence = Some(None);
        self.effects.push(Effect::Fence {
            node: self.peer.clone(),
            reason: format!("{} (a Heartbeat node) lost while holding groups", self.peer),
        });
    }

    /// Says "unstable" then "stable": Heartbeat answers a change to stable with its own
    /// holdings and state.
    fn ask_peer_state(&mut self) {
        self.stability_asked_at = Some(self.now);
        self.say_held(false, None);
        self.say_held(true, None);
    }

    fn peer_shutdone(&mut self) {
        tracing::info!(peer = %self.peer, "received shutdown notice from '{}'", self.peer);
        self.peer_stable = true;
        self.peer_holds = Hold::NONE;
        if self.leaving {
            return;
        }
        if self.held != Hold::ALL
            || self
                .groups_of(Hold::ALL)
                .iter()
                .any(|g| !self.running.contains(g))
        {
            self.needs_failback = true;
            self.take_over_peer("the Heartbeat node stopped");
        }
    }

    /// Heartbeat's PerformAutoFailback: give the peer's groups back once it is stable.
    fn auto_failback(&mut self) {
        if self.leaving || !self.held.has(Hold::FOREIGN) || !self.needs_failback || !self.auto_failback {
            self.needs_failback = false;
            return;
        }
        if self.standby != Standby::Not || !self.peer_stable || self.phase != Phase::Stable {
            self.failback_at = Some(self.now + RETRY);
            return;
        }
        tracing::info!(peer = %self.peer, "auto failback: handing {}'s groups back", self.peer);
        self.needs_failback = false;
        self.failback_at = None;
        self.send(V1Message::AskResources {
            hold: Hold::FOREIGN,
            word: StandbyWord::Me,
        });
        self.ask_for_resources(Hold::FOREIGN, StandbyWord::Me, true);
    }

    /// hb_standby here (or the peer's hb_takeover): start the handover of `hold`.
    fn standby_request(&mut self, hold: Hold, why: &str) {
        if !self.nice_failback {
            tracing::warn!("{why}: refused, hb_standby needs auto_failback on or off");
            return;
        }
        if hold == Hold::NONE {
            return;
        }
        tracing::info!(hold = hold.as_str(), "going standby [{}] ({why})", hold.as_str());
        self.send(V1Message::AskResources {
            hold,
            word: StandbyWord::Me,
        });
        self.ask_for_resources(hold, StandbyWord::Me, true);
    }

    /// Heartbeat's ask_for_resources: one step of the standby protocol.
    fn ask_for_resources(&mut self, hold: Hold, word: StandbyWord, from_me: bool) {
        if !self.nice_failback || self.phase == Phase::Shutdown || self.leaving {
            return;
        }
        let from = if from_me {
            self.local.clone()
        } else {
            self.peer.clone()
        };
        if word == StandbyWord::Me && self.standby_until.is_some_and(|until| self.now < until) {
            tracing::warn!("standby in progress: new request from {from} ignored");
            return;
        }
        let mut ignored = false;
        match self.standby {
            Standby::Not => {
                if !self.peer_stable {
                    tracing::warn!("standby request from {from} ignored: {} is in flux", self.peer);
                    return;
                }
                if self.phase != Phase::Stable {
                    tracing::warn!("standby request from {from} ignored: local groups in flux");
                    return;
                }
                self.standby_hold = hold;
                if word == StandbyWord::Me {
                    self.peer_stable = false;
                    tracing::info!("{from} wants to go standby [{}]", hold.as_str());
                    if from_me {
                        self.standby = Standby::Me;
                        self.standby_until = Some(self.now + STANDBY_ANSWER);
                    } else {
                        self.standby = Standby::Other;
                        self.send(V1Message::AskResources {
                            hold,
                            word: StandbyWord::Other,
                        });
                        self.standby_until = Some(self.now + STANDBY_WORK);
                    }
                } else {
                    ignored = true;
                }
            }
            Standby::Me => {
                if !from_me && word == StandbyWord::Other {
                    self.standby_hold = hold;
                    self.standby_until = Some(self.now + STANDBY_WORK);
                    tracing::info!("standby: {from} takes our [{}] groups", hold.as_str());
                    self.go_standby(true, hold);
                } else if from_me && word == StandbyWord::Done {
                    tracing::info!("local standby part completed [{}]", hold.as_str());
                    self.standby = Standby::Done;
                    self.held = self.held.without(self.standby_hold);
                    self.standby_until = Some(self.now + STANDBY_WORK);
                } else {
                    ignored = true;
                }
            }
            Standby::Other => {
                self.standby_hold = hold;
                if word == StandbyWord::Done && !from_me {
                    self.standby_until = Some(self.now + STANDBY_WORK);
                    tracing::info!("standby: acquiring [{}] groups from {from}", hold.as_str());
                    self.standby = Standby::Done;
                    self.go_standby(false, hold);
                } else if !from_me || word != StandbyWord::Other {
                    ignored = true;
                }
            }
            Standby::Done => {
                self.standby_hold = hold;
                if word == StandbyWord::Done {
                    self.standby_until = None;
                    if from_me {
                        let taken = if hold == Hold::ALL { hold } else { hold.mirrored() };
                        tracing::info!("standby acquisition done [{}]", hold.as_str());
                        self.held = self.held.with(taken);
                    } else {
                        tracing::info!("{from} completed the standby takeover of [{}]", hold.as_str());
                    }
                    self.standby = Standby::Not;
                    self.say_held(true, None);
                } else {
                    ignored = true;
                }
            }
        }
        if ignored {
            tracing::warn!(
                "standby message '{}' from {from} ignored in state {:?}",
                word.as_str(),
                self.standby
            );
        }
    }

    /// Heartbeat's go_standby: give up (`give_up`) or take `set` (from the standby node's
    /// side); the job says `done` when over.
    fn go_standby(&mut self, give_up: bool, set: Hold) {
        if give_up {
            self.peer_stable = false;
            self.held = self.held.without(set);
            self.say_held(false, Some("standby"));
        }
        let ours = if give_up || set == Hold::ALL {
            set
        } else {
            set.mirrored()
        };
        let groups = self.groups_of(ours);
        let work = if give_up { Work::Stop } else { Work::Start };
        let trigger = if give_up {
            "hb_standby (handover to the Heartbeat node)"
        } else {
            "hb_standby of the Heartbeat node"
        };
        for group in &groups {
            let verb = if give_up { "stop" } else { "start" };
            self.decided(format!("{verb} {group} {}", self.local), trigger);
        }
        self.queue(groups.into_iter().map(|g| (g, work)).collect(), Then::StandbyPart);
    }

    fn ip_request(&mut self, group: String) {
        if self.running.contains(&group) {
            self.decided(
                format!("stop {group} {}", self.local),
                "ip-request from the Heartbeat node",
            );
            self.queue(
                vec![(group.clone(), Work::Stop)],
                Then::Released { group, held: true },
            );
        } else {
            let requester = self.peer.clone();
            self.send(V1Message::IpRequestResp {
                requester,
                group,
                held: false,
                ok: true,
            });
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Standby(scope, _) => self.standby_request(Hold::from_scope(scope), "hb_standby"),
            Command::Takeover(scope, _) => {
                let hold = Hold::from_scope(scope);
                if hold != Hold::NONE {
                    tracing::info!(
                        "hb_takeover [{}]: asking {} to go standby",
                        hold.as_str(),
                        self.peer
                    );
                    self.send(V1Message::Takeover { hold });
                }
            }
            Command::Connectivity {
                give_up: true,
                reason,
                ..
            } => {
                self.standby_request(Hold::ALL, &format!("ipfail: {reason}"));
            }
            Command::Connectivity { give_up: false, .. } => {}
            other => {
                tracing::warn!(
                    "{other:?}: not available while {} is a Heartbeat node (v1 protocol); upgrade it first",
                    self.peer
                );
            }
        }
    }

    fn tick(&mut self) {
        if let Phase::Received(at) = self.phase {
            if self.now >= at {
                self.phase = Phase::Stable;
                self.take_local(false, "no stable answer from the Heartbeat node in 10 s");
                tracing::info!("local resource transition completed");
                self.say_held(true, None);
                self.audit();
            }
        }
        if self.failback_at.is_some_and(|at| self.now >= at) {
            self.failback_at = None;
            self.auto_failback();
        }
        if self.fence_retry_at.is_some_and(|at| self.now >= at) && !self.peer_alive() {
            self.fence_retry_at = None;
            self.fence_peer();
        }
        // A handover the peer never answered does not block this node for ever.
        if self.standby == Standby::Me
            && self.current.is_none()
            && self.standby_until.is_some_and(|until| self.now >= until)
            && self.held != Hold::NONE
        {
            tracing::warn!("{} never answered the standby request: cancelled", self.peer);
            self.standby = Standby::Not;
            self.standby_until = None;
            self.peer_stable = self.peer_alive();
        }
        if self.standby == Standby::Not && self.standby_until.is_some() {
            self.standby_until = None;
        }
        if self.stability_unknown()
            && self
                .stability_asked_at
                .is_none_or(|at| self.now >= at + REQUEST_DELAY)
        {
            // Heartbeat says it is stable only when it sees the other side become stable (and
            // when its own work ends): a node that took the other for stable without hearing
            // it say so (after a takeover) never tells. Saying "unstable" then "stable" makes
            // it answer with its own state.
            tracing::info!(peer = %self.peer, "asking {} whether it is stable", self.peer);
            self.ask_peer_state();
        }
        if self.shutdown_wanted {
            self.shutdown();
        }
    }

    /// Stable here, idle, the peer alive, and not known to be stable.
    fn stability_unknown(&self) -> bool {
        self.nice_failback
            && self.phase == Phase::Stable
            && !self.peer_stable
            && self.peer_alive()
            && !self.leaving
            && self.standby == Standby::Not
            && self.current.is_none()
            && self.jobs.is_empty()
    }

    /// Heartbeat's hb_giveup_resources: once stable, give everything up.
    fn shutdown(&mut self) {
        if self.leaving {
            return;
        }
        let peer_gone = !self.peer_alive();
        if !self.is_stable() && !peer_gone && self.phase != Phase::Starting {
            if !self.shutdown_wanted {
                tracing::warn!("shutdown delayed until the current resource activity finishes");
            }
            self.shutdown_wanted = true;
            return;
        }
        if !(self.current.is_none() && self.jobs.is_empty()) {
            self.shutdown_wanted = true;
            return;
        }
        self.shutdown_wanted = false;
        self.leaving = true;
        self.held = Hold::NONE;
        self.phase = Phase::Shutdown;
        self.say_held(false, Some("shutdown"));
        tracing::info!("giving up all groups");
        let mut groups: Vec<String> = self.running.iter().cloned().collect();
        groups.reverse();
        for group in &groups {
            self.decided(format!("stop {group} {}", self.local), "this node stops");
        }
        self.queue(
            groups.into_iter().map(|g| (g, Work::Stop)).collect(),
            Then::GaveUp,
        );
    }

    fn queue(&mut self, work: Vec<(String, Work)>, then: Then) {
        self.jobs.push_back(Job { work, then });
    }

    /// Starts the next job when none runs; a job with nothing left to do ends at once.
    fn start_next_job(&mut self) {
        while self.current.is_none() {
            let Some(job) = self.jobs.pop_front() else { break };
            let mut pending = BTreeSet::new();
            for (group, work) in &job.work {
                let needed = match work {
                    Work::Start => !self.running.contains(group) && !self.failed.contains(group),
                    Work::Stop => self.running.contains(group) || self.blocked.contains(group),
                    Work::Restart => self.running.contains(group),
                };
                if needed && pending.insert(group.clone()) {
                    self.effects.push(Effect::Carry {
                        group: group.clone(),
                        work: *work,
                    });
                }
            }
            if pending.is_empty() {
                self.job_over(job.then, true);
            } else {
                self.current = Some((job, pending));
            }
        }
    }

    fn local_done(&mut self, group: &str, outcome: GroupOutcome) {
        let state = match outcome {
            GroupOutcome::Started => {
                self.running.insert(group.to_owned());
                "started"
            }
            GroupOutcome::StartFailed => {
                self.running.remove(group);
                self.failed.insert(group.to_owned());
                tracing::error!(group, "start of {group} failed: it stays stopped here");
                "failed"
            }
            GroupOutcome::Stopped => {
                self.running.remove(group);
                self.blocked.remove(group);
                "stopped"
            }
            GroupOutcome::StopFailed => {
                self.blocked.insert(group.to_owned());
                tracing::error!(group, "stop of {group} failed: it may still run here");
                "blocked"
            }
        };
        self.effects.push(Effect::GroupChanged {
            group: group.to_owned(),
            state,
        });
        let over = match &mut self.current {
            Some((_, pending)) => {
                pending.remove(group);
                pending.is_empty()
            }
            None => false,
        };
        if over {
            if let Some((job, _)) = self.current.take() {
                let clean = !job.work.iter().any(|(g, _)| self.blocked.contains(g));
                self.job_over(job.then, clean);
            }
        }
    }

    fn job_over(&mut self, then: Then, clean: bool) {
        match then {
            Then::Adopted => {}
            Then::Yielded => self.say_held(true, None),
            Then::LocalTaken => {
                tracing::info!("local resource acquisition completed");
                self.say_held(true, Some("req_our_resources()"));
            }
            Then::PeerTaken => {
                tracing::info!(peer = %self.peer, "takeover of {}'s groups complete", self.peer);
                self.takeover_in_progress = false;
                if self.nice_failback {
                    self.held = self.held.with(Hold::FOREIGN);
                    self.needs_failback = true;
                    self.peer_stable = true;
                    self.send(V1Message::Resources {
                        hold: Hold::FOREIGN,
                        full: false,
                        stable: None,
                        info: Some("mach_down".into()),
                    });
                }
            }
            Then::StandbyPart => {
                let hold = self.standby_hold;
                self.send(V1Message::AskResources {
                    hold,
                    word: StandbyWord::Done,
                });
                self.ask_for_resources(hold, StandbyWord::Done, true);
            }
            Then::GaveUp => {
                tracing::info!(clean, "all groups given up");
                self.effects.push(Effect::Left { clean });
            }
            Then::Released { group, held } => {
                let requester = self.peer.clone();
                self.send(V1Message::IpRequestResp {
                    requester,
                    group,
                    held,
                    ok: clean,
                });
            }
        }
        if self.leaving || self.current.is_some() || !self.jobs.is_empty() {
            return;
        }
        if self.shutdown_wanted {
            self.shutdown();
        }
    }

    /// When [`Mixed::handle`] wants to be called with [`Event::Tick`].
    pub fn next_deadline(&self) -> Instant {
        let received = match self.phase {
            Phase::Received(at) => Some(at),
            _ => None,
        };
        let standby = (self.standby == Standby::Me)
            .then_some(self.standby_until)
            .flatten();
        let shutdown = self.shutdown_wanted.then_some(self.now + RETRY);
        let ask = self.stability_unknown().then(|| {
            self.stability_asked_at
                .map_or(self.now + RETRY, |at| at + REQUEST_DELAY)
        });
        [
            received,
            self.failback_at,
            self.fence_retry_at,
            standby,
            shutdown,
            ask,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.now + Duration::from_secs(60))
    }

    /// Every node's state, for the status file and the bus.
    pub fn node_states(&self) -> Vec<NodeState> {
        let peer_groups = if self.peer_alive() {
            self.groups_of(self.peer_holds.mirrored())
        } else {
            Vec::new()
        };
        let local_groups: Vec<String> = self.running.iter().cloned().collect();
        let state = |alive: bool, groups: &[String]| {
            if !alive {
                "DEAD"
            } else if groups.is_empty() {
                "IDLE"
            } else {
                "ACTIVE"
            }
        };
        let mut states = vec![
            NodeState {
                node: self.local.clone(),
                state: state(true, &local_groups).to_owned(),
                groups: local_groups,
            },
            NodeState {
                node: self.peer.clone(),
                state: state(self.peer_alive(), &peer_groups).to_owned(),
                groups: peer_groups,
            },
        ];
        states.sort_by(|a, b| a.node.cmp(&b.node));
        states
    }

    /// The cluster as this node sees it, in the partition core's terms.
    pub fn view(&self) -> Arc<ClusterView> {
        let groups: Vec<GroupView> = self
            .config
            .groups
            .iter()
            .map(|g| GroupView {
                name: g.id.clone(),
                preferred_node: g.preferred_node.clone(),
                moved_to: None,
            })
            .collect();
        let node =
            |name: &str, active: bool, running: Vec<String>, failed: Vec<String>, blocked: Vec<String>| {
                NodeView {
                    name: name.to_owned(),
                    active,
                    standby: Scope::None,
                    takeover: Scope::None,
                    running: Arc::new(running.into_iter().collect()),
                    failed: Arc::new(failed.into_iter().collect()),
                    unclean: false,
                    blocked: Arc::new(blocked.into_iter().collect()),
                    held: Arc::default(),
                    declined: Arc::default(),
                }
            };
        let peer_running = if self.peer_alive() {
            self.groups_of(self.peer_holds.mirrored())
        } else {
            Vec::new()
        };
        let mut nodes = vec![
            node(
                &self.local,
                true,
                self.running_here().into_iter().collect(),
                self.failed.iter().cloned().collect(),
                self.blocked.iter().cloned().collect(),
            ),
            node(
                &self.peer,
                self.peer_alive(),
                peer_running,
                Vec::new(),
                Vec::new(),
            ),
        ];
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Arc::new(ClusterView {
            nodes,
            groups: Arc::new(groups),
            auto_failback: self.config.auto_failback,
            fencing: self.fencing,
        })
    }
}
