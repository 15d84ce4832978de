//! The messaging layer on Corosync, sans I/O: what a CPG group's configuration changes, its
//! deliveries and the quorum API say, turned into the same [`Effect`]s as Heartbeat's own
//! protocol ([`crate::node::Node`]), so that the bus interface — and crmd, ipfail and the
//! tools behind it — do not know which engine runs.
//!
//! - **Membership**: a peer is `active` while one of its processes is in the group. It is
//!   `dead` at once when it left the group on purpose (a planned stop) or when its node left
//!   Corosync's membership (Corosync has already waited its token timeout and consensus). When
//!   only its process went (`CPG_REASON_PROCDOWN`: hbcomm died and the master respawns it) it
//!   stays `active` for deadtime, as a respawned hbcomm goes unnoticed by Heartbeat's peers.
//!   A peer never seen since start is `init` until initdead has passed, then `dead`.
//! - **Messages**: one CPG group, agreed order, each message signed with authkeys (another
//!   process on a node that may talk to Corosync cannot speak for this cluster) and carrying
//!   its sender's name, which must be the name the nodelist gives the sending node id. This
//!   node's own messages come back from Corosync in the same total order as everyone else's
//!   and are delivered then.
//! - **Quorum**: the quorum API's verdict, passed on ([`Effect::Quorum`]); crmd uses it in place
//!   of its own count.
//! - **Losing Corosync** is this node's failure, never a split: quorum is lost, then every
//!   peer (a partition where this node is alone: nothing is taken over, and the peers'
//!   reports are asked for again when Corosync is back), and crmd is told as for a
//!   node that was not scheduled for longer than deadtime ([`Effect::NoLocalHeartbeat`]), so
//!   it stops every group here. (A late tick alone is not reported so: a pause is
//!   Corosync's to judge, by its token.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hbapi::comm::{Counter, HeartbeatTiming, NodeInfo};
use hbapi::config::{ClusterConfig, Timing};
use hbapi::error::HbError;

use crate::membership::{Input, Membership, NodeKind, NodeStatus, Output};
use crate::node::{config_digest, Delivery, Effect, Send};
use crate::wire::{self, Authenticator, Format, Limits, Message};

/// Field carrying the configuration digest in the announcement a node sends on joining.
const CONFIG_DIGEST_FIELD: &str = "hbrs_cfd";
/// The announcement's message type (the messaging layer's own: clients never see it).
const ANNOUNCE: &str = "NS_cpg_hello";

/// Why a process left the group (Corosync's `CPG_REASON_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// It called `cpg_leave`: a planned stop.
    Left,
    /// Its node left Corosync's membership.
    NodeDown,
    /// The process ended (or lost its Corosync connection) while its node stayed.
    ProcessDown,
    /// Anything else Corosync may say.
    Other,
}

/// One process in the group: the node id Corosync gives it and its pid there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Process {
    /// Corosync node id.
    pub node_id: u32,
    /// Its pid on that node.
    pub pid: u32,
}

/// What Corosync says of this node when it connects.
#[derive(Debug, Clone)]
pub struct Connected {
    /// This node's node id.
    pub local_id: u32,
    /// The nodelist's names by node id (cmap's `nodelist.node.N`).
    pub names: BTreeMap<u32, String>,
    /// The quorum API's verdict.
    pub quorate: bool,
}

/// One peer as this view knows it.
#[derive(Debug, Clone)]
struct Peer {
    status: NodeStatus,
    /// Its processes in the group now.
    processes: BTreeSet<u32>,
    /// Its process went while its node stayed: dead at this time unless it is back.
    grace_until: Option<Instant>,
}

/// This node's messaging layer over one CPG group.
pub struct CpgView {
    local: String,
    local_id: u32,
    /// The nodelist's names by node id (cmap's `nodelist.node.N`).
    names: BTreeMap<u32, String>,
    peers: BTreeMap<String, Peer>,
    authenticator: Authenticator,
    limits: Limits,
    timing: Timing,
    digest: String,
    generation_hex: String,
    seq: u64,
    /// Until then a peer never seen is `init`, not `dead`.
    initdead_until: Instant,
    /// What Corosync's quorum API says.
    corosync_quorate: bool,
    /// Set by the first configuration change of this connection: until then this node does
    /// not know who is in the group, and says it has no quorum (crmd, told it has quorum
    /// while it knows no peer, would decide alone).
    membership_known: bool,
    /// What crmd was told ([`Effect::Quorum`]).
    told_quorate: bool,
    /// Set once the Corosync connection is gone.
    disconnected: bool,
    mismatches_reported: BTreeSet<String>,
    unknown_senders: BTreeSet<u32>,
    /// The ping nodes (ipfail's), judged as Heartbeat's engine judges them: Corosync knows
    /// nothing of them.
    pings: Membership,
}

impl CpgView {
    /// The view of node `local`, started at `now` with what Corosync said on connecting.
    pub fn new(
        local: &str,
        corosync: Connected,
        config: &ClusterConfig,
        authenticator: Authenticator,
        generation: u32,
        now: Instant,
    ) -> Self {
        let Connected {
            local_id,
            names,
            quorate,
        } = corosync;
        let peers = config
            .nodes
            .iter()
            .filter(|name| *name != local)
            .map(|name| {
                let peer = Peer {
                    status: NodeStatus::Init,
                    processes: BTreeSet::new(),
                    grace_until: None,
                };
                (name.clone(), peer)
            })
            .collect();
        CpgView {
            local: local.to_owned(),
            local_id,
            names,
            peers,
            authenticator,
            limits: Limits::default(),
            timing: config.timing,
            digest: config_digest(config),
            generation_hex: format!("{generation:x}"),
            seq: 0,
            initdead_until: now + config.timing.initdead,
            corosync_quorate: quorate,
            membership_known: false,
            told_quorate: false,
            disconnected: false,
            mismatches_reported: BTreeSet::new(),
            unknown_senders: BTreeSet::new(),
            pings: Membership::new(
                local,
                &[local.to_owned()],
                &config.ping_nodes.iter().map(|p| p.name()).collect::<Vec<_>>(),
                &[],
                config.timing,
                now,
            ),
        }
    }

    /// The nodelist names of the configured nodes Corosync does not name (each is a
    /// configuration error: its messages could not be told apart).
    pub fn unnamed_nodes<'a>(&self, configured: &'a [String]) -> Vec<&'a str> {
        configured
            .iter()
            .filter(|name| !self.names.values().any(|n| n == *name))
            .map(String::as_str)
            .collect()
    }

    /// Whether this node says its partition has quorum: Corosync says so, and this node
    /// knows the group's membership.
    pub fn quorate(&self) -> bool {
        self.told_quorate
    }

    /// Tells crmd when the verdict it may act on changes.
    fn tell_quorum(&mut self, effects: &mut Vec<Effect>) {
        let quorate = self.corosync_quorate && self.membership_known && !self.disconnected;
        if quorate != self.told_quorate {
            self.told_quorate = quorate;
            effects.push(Effect::Quorum(quorate));
        }
    }

    /// A peer's status (this node is always `active`).
    pub fn status(&self, node: &str) -> Option<NodeStatus> {
        if node == self.local {
            return Some(NodeStatus::Active);
        }
        self.peers.get(node).map(|peer| peer.status)
    }

    /// The group's membership changed: `members` are in it now, `left` went (with why).
    pub fn on_configuration(
        &mut self,
        now: Instant,
        members: &[Process],
        left: &[(Process, LeaveReason)],
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut someone_joined = false;
        for (name, peer) in &mut self.peers {
            let processes: BTreeSet<u32> = members
                .iter()
                .filter(|p| self.names.get(&p.node_id) == Some(name))
                .map(|p| p.pid)
                .collect();
            let went: Vec<LeaveReason> = left
                .iter()
                .filter(|(p, _)| self.names.get(&p.node_id) == Some(name))
                .map(|(_, reason)| *reason)
                .collect();
            someone_joined |= processes.iter().any(|pid| !peer.processes.contains(pid));
            peer.processes = processes;
            let new = if !peer.processes.is_empty() {
                peer.grace_until = None;
                NodeStatus::Active
            } else if went.contains(&LeaveReason::ProcessDown)
                && !went
                    .iter()
                    .any(|r| matches!(r, LeaveReason::Left | LeaveReason::NodeDown))
                && peer.status == NodeStatus::Active
            {
                // The node is still in Corosync's membership: a respawned hbcomm is back
                // within deadtime.
                let until = *peer.grace_until.get_or_insert(now + self.timing.deadtime);
                tracing::warn!(node = %name, "hbcomm on {name} left the group while its node stayed; {name} is dead unless it is back within {:.1} s", until.saturating_duration_since(now).as_secs_f64());
                NodeStatus::Active
            } else if !went.is_empty() {
                peer.grace_until = None;
                NodeStatus::Dead
            } else {
                peer.status
            };
            change(&mut effects, name, peer, new);
        }
        for process in members {
            if !self.names.contains_key(&process.node_id) && self.unknown_senders.insert(process.node_id) {
                tracing::warn!(
                    node_id = process.node_id,
                    "node id {} joined the group but Corosync's nodelist gives it no name of this cluster's nodes: ignored",
                    process.node_id
                );
            }
        }
        if someone_joined {
            // Whoever joined learns that this node runs the same configuration.
            let announce = Message::new()
                .with("t", ANNOUNCE)
                .with(CONFIG_DIGEST_FIELD, self.digest.as_str());
            effects.push(Effect::Send(self.seal(announce)));
        }
        // After the statuses: crmd learns who is there before it may act on quorum.
        self.membership_known = true;
        self.tell_quorum(&mut effects);
        effects.push(Effect::MembersChanged);
        effects
    }

    /// Corosync's quorum verdict.
    pub fn on_quorum(&mut self, quorate: bool) -> Vec<Effect> {
        if quorate != self.corosync_quorate {
            tracing::info!(
                quorate,
                "Corosync: this partition {} quorum",
                if quorate { "has" } else { "lost" }
            );
        }
        self.corosync_quorate = quorate;
        let mut effects = Vec::new();
        self.tell_quorum(&mut effects);
        effects
    }

    /// A message Corosync delivered from `process`.
    pub fn on_deliver(&mut self, process: Process, bytes: &[u8]) -> Vec<Effect> {
        let mut effects = vec![Effect::Count(Counter::Received)];
        let message = match wire::receive(bytes, &self.authenticator, &self.limits) {
            Ok((message, _)) => message,
            Err(error) => {
                let counter = match error {
                    wire::WireError::Auth(_) | wire::WireError::NoAuth => Counter::DroppedForged,
                    wire::WireError::TooLarge(_) => Counter::DroppedOversized,
                    _ => Counter::DroppedMalformed,
                };
                tracing::warn!(node_id = process.node_id, "message from node id {} dropped: {error} (another authkeys on a node in this CPG group?)", process.node_id);
                effects.push(Effect::Count(counter));
                return effects;
            }
        };
        let Some(sender) = self.names.get(&process.node_id).cloned() else {
            effects.push(Effect::Count(Counter::DroppedUnknownNode));
            return effects;
        };
        if message.get("src") != Some(sender.as_str()) {
            tracing::warn!(node = %sender, claimed = ?message.get("src"), "message from {sender} signed as another node: dropped");
            effects.push(Effect::Count(Counter::DroppedForged));
            return effects;
        }
        let msg_type = message.get("t").unwrap_or_default();
        if msg_type == ANNOUNCE {
            let theirs = message.get(CONFIG_DIGEST_FIELD).unwrap_or_default();
            if theirs != self.digest
                && sender != self.local
                && self.mismatches_reported.insert(sender.clone())
            {
                tracing::error!(node = %sender, theirs, ours = %self.digest, "{sender} runs another resource configuration or key than this node");
                effects.push(Effect::ConfigMismatch {
                    node: sender,
                    theirs: theirs.to_owned(),
                    ours: self.digest.clone(),
                });
            }
            return effects;
        }
        if message.get("dest").is_some_and(|dest| dest != self.local) {
            return effects;
        }
        effects.push(Effect::Count(Counter::MessagesDelivered));
        effects.push(Effect::Deliver {
            sender,
            message: Delivery::from_message(&message),
        });
        effects
    }

    /// A client's message: the packet to multicast, and its number. It is delivered here
    /// when Corosync delivers it back, in the group's order.
    pub fn on_send(&mut self, request: Send) -> (Result<u64, HbError>, Vec<Effect>) {
        if self.disconnected {
            return (
                Err(HbError::Failed("Corosync is not reachable from this node".into())),
                Vec::new(),
            );
        }
        let mut message = Message::new().with("t", request.msg_type.as_str());
        if let Some(to) = &request.to {
            message.set("dest", to.as_str());
        }
        for (name, value) in &request.body {
            message.set(name, value.as_str());
        }
        let packet = self.seal(message);
        if packet.len() > self.limits.max_packet {
            let refusal = HbError::InvalidArgument(format!(
                "message of {} bytes: the most one message carries is {} bytes",
                packet.len(),
                self.limits.max_packet
            ));
            return (Err(refusal), Vec::new());
        }
        (
            Ok(self.seq),
            vec![Effect::Send(packet), Effect::Count(Counter::MessagesSent)],
        )
    }

    /// The keepalive tick: feeds the watchdog while Corosync is reachable. A tick that comes
    /// late is not taken for "no local heartbeat" as on Heartbeat's engine: Corosync judges a
    /// pause by its token, and a node paused past it finds itself outside the membership and
    /// without quorum when it runs again ([`CpgView::on_configuration`], [`CpgView::on_quorum`]).
    pub fn on_keepalive(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        if !self.disconnected {
            effects.push(Effect::Beat);
        }
        effects.extend(self.on_deadline(now));
        effects
    }

    /// A ping node answered an echo.
    pub fn on_ping_reply(&mut self, now: Instant, node: &str) -> Vec<Effect> {
        let heard = Input::Heard {
            link: node.to_owned(),
            node: node.to_owned(),
            status: NodeStatus::Ping,
        };
        let outputs = self.pings.handle(heard, now);
        ping_effects(outputs)
    }

    /// When [`CpgView::on_deadline`] has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let graces = self
            .peers
            .values()
            .filter_map(|peer| peer.grace_until)
            .chain(self.pings.next_deadline());
        let initdead = self
            .peers
            .values()
            .any(|peer| peer.status == NodeStatus::Init && !self.disconnected)
            .then_some(self.initdead_until);
        graces.chain(initdead).min()
    }

    /// Time passed: graces and initdead run out.
    pub fn on_deadline(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = ping_effects(self.pings.handle(Input::Tick, now));
        let initdead_over = now >= self.initdead_until && !self.disconnected;
        for (name, peer) in &mut self.peers {
            let new = match peer.grace_until {
                Some(until) if now >= until => {
                    peer.grace_until = None;
                    tracing::warn!(node = %name, "hbcomm on {name} did not come back within deadtime: dead");
                    NodeStatus::Dead
                }
                _ if peer.status == NodeStatus::Init && initdead_over => NodeStatus::Dead,
                _ => peer.status,
            };
            change(&mut effects, name, peer, new);
        }
        if !effects.is_empty() {
            effects.push(Effect::MembersChanged);
        }
        effects
    }

    /// The Corosync connection is gone: this node is the one that failed.
    pub fn on_disconnected(&mut self) -> Vec<Effect> {
        if self.disconnected {
            return Vec::new();
        }
        self.disconnected = true;
        tracing::error!("lost the connection to Corosync: this node is out of the cluster; stopping every group here (its peers take them over)");
        // Told as "no local heartbeat": crmd gives up every group here.
        let mut effects = vec![Effect::NoLocalHeartbeat {
            silent: self.timing.deadtime,
            deadtime: self.timing.deadtime,
        }];
        self.tell_quorum(&mut effects);
        // Then every peer is lost to this node, as in a partition where it is alone: crmd, told
        // first that there is no quorum, takes nothing over, and forgets what the peers
        // reported — when Corosync is back, it waits for their reports again instead of
        // deciding on stale ones (what they run changed while this node was away).
        for (name, peer) in &mut self.peers {
            peer.processes.clear();
            peer.grace_until = None;
            change(&mut effects, name, peer, NodeStatus::Dead);
        }
        effects.push(Effect::MembersChanged);
        effects
    }

    /// The members as the bus shows them, this node first.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let info = |name: &str, status: NodeStatus| NodeInfo {
            name: name.to_owned(),
            kind: NodeKind::Normal.as_str().into(),
            status: status.as_str().into(),
            links: Vec::new(),
        };
        let pings = self
            .pings
            .members()
            .filter(|(_, kind, _)| *kind == NodeKind::Ping)
            .map(|(name, kind, status)| NodeInfo {
                kind: kind.as_str().into(),
                ..info(name, status)
            });
        std::iter::once(info(&self.local, NodeStatus::Active))
            .chain(self.peers.iter().map(|(name, peer)| info(name, peer.status)))
            .chain(pings)
            .collect()
    }

    /// The timers in force (Corosync measures no per-peer lateness this layer could see).
    pub fn timing(&self) -> HeartbeatTiming {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        HeartbeatTiming {
            keepalive_ms: millis(self.timing.keepalive),
            warntime_ms: millis(self.timing.warntime),
            deadtime_ms: millis(self.timing.deadtime),
            ..HeartbeatTiming::default()
        }
    }

    /// This node's Corosync node id.
    pub fn local_id(&self) -> u32 {
        self.local_id
    }

    fn seal(&mut self, mut message: Message) -> Vec<u8> {
        self.seq += 1;
        message.set("src", self.local.as_str());
        message.set("seq", format!("{:x}", self.seq));
        message.set("hg", self.generation_hex.as_str());
        wire::encode(&message, Format::Netstring, &self.authenticator)
    }
}

/// What the ping nodes' membership says that leaves this layer.
fn ping_effects(outputs: Vec<Output>) -> Vec<Effect> {
    let mut effects = Vec::new();
    for output in outputs {
        match output {
            Output::NodeStatus { node, old, new } => {
                tracing::info!(node = %node, "ping node {node}: status {}", new.as_str());
                effects.push(Effect::NodeStatus { node, old, new });
            }
            Output::LinkStatus { node, link, up } => effects.push(Effect::LinkStatus { node, link, up }),
            _ => {}
        }
    }
    if !effects.is_empty() {
        effects.push(Effect::MembersChanged);
    }
    effects
}

fn change(effects: &mut Vec<Effect>, name: &str, peer: &mut Peer, new: NodeStatus) {
    if peer.status != new {
        tracing::info!(node = %name, old = peer.status.as_str(), new = new.as_str(), "node {name}: {} -> {}", peer.status.as_str(), new.as_str());
        effects.push(Effect::NodeStatus {
            node: name.to_owned(),
            old: peer.status,
            new,
        });
        peer.status = new;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use hbapi::config::{parse_authkeys, parse_ha_cf};

    use super::*;

    fn config(extra: &str) -> ClusterConfig {
        let ha_cf = format!(
            "keepalive 200ms\ndeadtime 2\ninitdead 4\nengine corosync\nnode alpha bravo charlie\n{extra}"
        );
        let (mut config, _) = parse_ha_cf(Path::new("ha.cf"), &ha_cf).unwrap();
        let (auth, _) = parse_authkeys(Path::new("authkeys"), "auth 1\n1 sha256 secret\n").unwrap();
        config.auth = auth;
        config
    }

    fn view(local: &str, local_id: u32, now: Instant) -> CpgView {
        let config = config("");
        let names = BTreeMap::from([(1, "alpha".into()), (2, "bravo".into()), (3, "charlie".into())]);
        let authenticator = Authenticator::from_keys(&config.auth).unwrap();
        let corosync = Connected {
            local_id,
            names,
            quorate: false,
        };
        CpgView::new(local, corosync, &config, authenticator, 7, now)
    }

    fn process(node_id: u32) -> Process {
        Process {
            node_id,
            pid: 100 + node_id,
        }
    }

    fn statuses(effects: &[Effect]) -> Vec<(String, NodeStatus)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::NodeStatus { node, new, .. } => Some((node.clone(), *new)),
                _ => None,
            })
            .collect()
    }

    fn packets(effects: &[Effect]) -> Vec<Vec<u8>> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(packet) => Some(packet.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn members_of_the_group_are_active_and_leave_as_corosync_says_why() {
        let start = Instant::now();
        let mut alpha = view("alpha", 1, start);
        let all = [process(1), process(2), process(3)];
        let effects = alpha.on_configuration(start, &all, &[]);
        assert_eq!(
            statuses(&effects),
            [
                ("bravo".into(), NodeStatus::Active),
                ("charlie".into(), NodeStatus::Active)
            ]
        );
        assert_eq!(
            packets(&effects).len(),
            1,
            "the configuration digest is announced to newcomers"
        );
        // A planned stop: dead at once.
        let effects = alpha.on_configuration(start, &all[..2], &[(process(3), LeaveReason::Left)]);
        assert_eq!(statuses(&effects), [("charlie".into(), NodeStatus::Dead)]);
        // bravo's hbcomm died, its node stayed: active for deadtime, then dead.
        let later = start + Duration::from_secs(1);
        let effects = alpha.on_configuration(later, &all[..1], &[(process(2), LeaveReason::ProcessDown)]);
        assert!(statuses(&effects).is_empty(), "{effects:?}");
        assert_eq!(alpha.next_deadline(), Some(later + Duration::from_secs(2)));
        assert!(statuses(&alpha.on_deadline(later + Duration::from_millis(1999))).is_empty());
        // Back in time: the grace ends without a death.
        let effects = alpha.on_configuration(later + Duration::from_millis(500), &all[..2], &[]);
        assert!(statuses(&effects).is_empty());
        assert!(statuses(&alpha.on_deadline(later + Duration::from_secs(5))).is_empty());
        // Gone again, and not back: dead when deadtime has passed.
        let effects = alpha.on_configuration(later, &all[..1], &[(process(2), LeaveReason::ProcessDown)]);
        assert!(statuses(&effects).is_empty());
        let effects = alpha.on_deadline(later + Duration::from_secs(2));
        assert_eq!(statuses(&effects), [("bravo".into(), NodeStatus::Dead)]);
        // Its node leaving Corosync's membership needs no grace.
        alpha.on_configuration(later, &all, &[]);
        let effects = alpha.on_configuration(later, &all[..2], &[(process(3), LeaveReason::NodeDown)]);
        assert_eq!(statuses(&effects), [("charlie".into(), NodeStatus::Dead)]);
    }

    #[test]
    fn a_peer_never_seen_is_init_until_initdead() {
        let start = Instant::now();
        let mut alpha = view("alpha", 1, start);
        alpha.on_configuration(start, &[process(1), process(2)], &[]);
        assert_eq!(alpha.status("charlie"), Some(NodeStatus::Init));
        assert_eq!(alpha.next_deadline(), Some(start + Duration::from_secs(4)));
        let effects = alpha.on_deadline(start + Duration::from_secs(4));
        assert_eq!(statuses(&effects), [("charlie".into(), NodeStatus::Dead)]);
    }

    #[test]
    fn messages_are_delivered_in_the_groups_order_to_whom_they_are_for() {
        let start = Instant::now();
        let (mut alpha, mut bravo) = (view("alpha", 1, start), view("bravo", 2, start));
        let send = |to: Option<&str>| Send {
            to: to.map(str::to_owned),
            msg_type: "crmd".into(),
            body: vec![("op".into(), "report".into())],
        };
        let (seq, effects) = alpha.on_send(send(None));
        assert_eq!(seq.unwrap(), 1);
        let packet = packets(&effects).remove(0);
        // Nothing is delivered at sending: the sender gets its own back from Corosync.
        assert!(!effects.iter().any(|e| matches!(e, Effect::Deliver { .. })));
        for receiver in [&mut alpha, &mut bravo] {
            let delivered: Vec<_> = receiver
                .on_deliver(process(1), &packet)
                .into_iter()
                .filter_map(|e| match e {
                    Effect::Deliver { sender, message } => Some((sender, message.body["op"].clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(delivered, [("alpha".into(), "report".into())]);
        }
        // For charlie only: bravo drops it.
        let (_, effects) = alpha.on_send(send(Some("charlie")));
        let packet = packets(&effects).remove(0);
        assert!(!bravo
            .on_deliver(process(1), &packet)
            .iter()
            .any(|e| matches!(e, Effect::Deliver { .. })));
        // Signed by alpha but sent from bravo's node id: refused.
        let (_, effects) = alpha.on_send(send(None));
        let packet = packets(&effects).remove(0);
        let effects = bravo.on_deliver(process(2), &packet);
        assert!(
            effects.contains(&Effect::Count(Counter::DroppedForged)),
            "{effects:?}"
        );
        // Another key: refused before it is decoded.
        let (other, _) = parse_authkeys(Path::new("authkeys"), "auth 1\n1 sha256 other\n").unwrap();
        let corosync = Connected {
            local_id: 1,
            names: BTreeMap::from([(1, "alpha".into())]),
            quorate: false,
        };
        let mut forger = CpgView::new(
            "alpha",
            corosync,
            &config(""),
            Authenticator::from_keys(&other).unwrap(),
            1,
            start,
        );
        let packet = packets(&forger.on_send(send(None)).1).remove(0);
        let effects = bravo.on_deliver(process(1), &packet);
        assert!(
            effects.contains(&Effect::Count(Counter::DroppedForged)),
            "{effects:?}"
        );
        assert!(!effects.iter().any(|e| matches!(e, Effect::Deliver { .. })));
    }

    #[test]
    fn another_configuration_is_reported_once() {
        let start = Instant::now();
        let mut alpha = view("alpha", 1, start);
        let mut other = config("");
        other.groups.push(hbapi::config::ResourceGroup {
            id: "extra".into(),
            ..alpha_group()
        });
        let names = BTreeMap::from([(1, "alpha".into()), (2, "bravo".into())]);
        let corosync = Connected {
            local_id: 2,
            names,
            quorate: false,
        };
        let mut bravo = CpgView::new(
            "bravo",
            corosync,
            &other,
            Authenticator::from_keys(&other.auth).unwrap(),
            1,
            start,
        );
        let announce = packets(&bravo.on_configuration(start, &[process(1), process(2)], &[])).remove(0);
        let mismatches = |effects: Vec<Effect>| {
            effects
                .iter()
                .filter(|e| matches!(e, Effect::ConfigMismatch { node, .. } if node == "bravo"))
                .count()
        };
        assert_eq!(mismatches(alpha.on_deliver(process(2), &announce)), 1);
        assert_eq!(mismatches(alpha.on_deliver(process(2), &announce)), 0);
    }

    fn alpha_group() -> hbapi::config::ResourceGroup {
        let nodes = ["alpha".to_owned()];
        let (groups, _) =
            hbapi::config::parse_haresources(Path::new("haresources"), "alpha IPaddr::10.0.0.1\n", &nodes)
                .unwrap();
        groups.into_iter().next().unwrap()
    }

    #[test]
    fn quorum_known_on_connecting_is_lost_with_the_connection() {
        let start = Instant::now();
        let config = config("");
        let names = BTreeMap::from([(1, "alpha".into()), (2, "bravo".into())]);
        let authenticator = Authenticator::from_keys(&config.auth).unwrap();
        let corosync = Connected {
            local_id: 1,
            names,
            quorate: true,
        };
        let mut alpha = CpgView::new("alpha", corosync, &config, authenticator, 1, start);
        // Quorate by Corosync, but no member known yet: not said.
        assert!(!alpha.quorate());
        assert!(alpha.on_quorum(true).is_empty(), "still no membership");
        let effects = alpha.on_configuration(start, &[process(1), process(2)], &[]);
        let statuses_then_quorum: Vec<_> = effects
            .iter()
            .filter(|e| matches!(e, Effect::NodeStatus { .. } | Effect::Quorum(_)))
            .collect();
        assert!(
            matches!(
                statuses_then_quorum.as_slice(),
                [Effect::NodeStatus { .. }, .., Effect::Quorum(true)]
            ),
            "{effects:?}"
        );
        assert!(alpha.quorate());
        assert!(alpha.on_disconnected().contains(&Effect::Quorum(false)));
        assert!(!alpha.quorate());
    }

    #[test]
    fn losing_corosync_is_this_nodes_failure_never_a_split() {
        let start = Instant::now();
        let mut alpha = view("alpha", 1, start);
        alpha.on_configuration(start, &[process(1), process(2), process(3)], &[]);
        assert_eq!(alpha.on_quorum(true), [Effect::Quorum(true)]);
        let effects = alpha.on_disconnected();
        assert!(effects
            .iter()
            .any(|e| matches!(e, Effect::NoLocalHeartbeat { .. })));
        assert!(effects.contains(&Effect::Quorum(false)));
        // Quorum lost first, then every peer lost: nothing is taken over, and their reports
        // are not trusted when Corosync is back.
        let quorum_lost = effects.iter().position(|e| *e == Effect::Quorum(false)).unwrap();
        let first_death = effects
            .iter()
            .position(|e| matches!(e, Effect::NodeStatus { .. }))
            .unwrap();
        assert!(quorum_lost < first_death, "{effects:?}");
        assert_eq!(
            statuses(&effects),
            [
                ("bravo".into(), NodeStatus::Dead),
                ("charlie".into(), NodeStatus::Dead)
            ]
        );
        assert!(statuses(&alpha.on_deadline(start + Duration::from_secs(60))).is_empty());
        assert!(alpha
            .on_send(Send {
                to: None,
                msg_type: "crmd".into(),
                body: Vec::new()
            })
            .0
            .is_err());
        // The watchdog is no longer fed.
        assert!(!alpha
            .on_keepalive(start + Duration::from_secs(61))
            .contains(&Effect::Beat));
    }
}
