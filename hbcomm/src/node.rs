//! One node of the messaging layer, sans I/O: datagrams, timer expiries and clients' sends in,
//! with the time passed in; packets to send, messages to deliver and status changes out
//! ([`Effect`]). It owns everything the receive path decides — the outbox and its history,
//! the replay guard, the membership, in-order delivery with `NS_rexmit`/`NS_nak_rexmit`/
//! `NS_ackmsg`, the configuration-digest check, leaving and joining — so that two or three
//! nodes are tested against each other in memory, with loss, duplication and reordering,
//! without sockets or namespaces. `daemon::run` owns the sockets, the timers and the bus,
//! and carries out the effects.
//!
//! Each received packet goes through the bounded framing check, authentication and only then
//! decoding ([`crate::wire::receive`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hbapi::comm::{Counter, HeartbeatTiming, LinkGap, LinkInfo, NodeGaps, NodeInfo};
use hbapi::config::{ClusterConfig, Timing};
use hbapi::error::HbError;

use crate::cadence;
use crate::membership::{Input, Membership, NodeKind, NodeStatus, Output};
use crate::rejects::{self, RejectLog};
use crate::reliable::{AnswerLimiter, Inbound, InboundOutput, Resend, SendHistory};
use crate::replay::{ReplayGuard, Verdict};
use crate::wire::{self, Authenticator, Format, Limits, Message, Value, WireError, RESERVED_FIELDS};

/// Heartbeat's protocol version field.
const PROTOCOL: &str = "1";
/// Field carrying our digest of the resource configuration and key id (Heartbeat ignores it).
const CONFIG_DIGEST_FIELD: &str = "hbrs_cfd";
/// Most sequence numbers answered per retransmission request (a forged or confused request
/// must not make this node flood the link).
const MAX_RESEND_PER_REQUEST: u64 = 64;
/// Room kept in a packet for the fields sealing adds and the signature.
const SEAL_ROOM: usize = 512;

/// Who this node is in this run.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Its name.
    pub node: String,
    /// Its uuid (Heartbeat's `srcuuid`).
    pub uuid: Vec<u8>,
    /// This run's generation (Heartbeat's `hg`): peers take a higher one as a restart.
    pub generation: u32,
}

/// A cluster message as clients get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Heartbeat's `t`.
    pub msg_type: String,
    /// Every string field that is not the messaging layer's own.
    pub body: HashMap<String, String>,
}

impl Delivery {
    /// The client's part of a received message (binary and nested fields are not passed on).
    pub(crate) fn from_message(message: &Message) -> Self {
        Delivery {
            msg_type: message.get("t").unwrap_or_default().to_owned(),
            body: message
                .fields
                .iter()
                .filter(|(name, _)| !RESERVED_FIELDS.contains(&name.as_str()))
                .filter_map(|(name, value)| match value {
                    Value::Str(text) => Some((name.clone(), text.clone())),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// A cluster message a client asks this node to send.
#[derive(Debug, Clone)]
pub struct Send {
    /// One node, or `None` for every node.
    pub to: Option<String>,
    /// Message type.
    pub msg_type: String,
    /// Body fields.
    pub body: Vec<(String, String)>,
}

/// What the I/O around the core must do, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send this packet on every link to every destination.
    Send(Vec<u8>),
    /// Count one event.
    Count(Counter),
    /// Hand a cluster message to clients (in order per sender).
    Deliver {
        /// Its sender (this node for its own messages).
        sender: String,
        /// The message.
        message: Delivery,
    },
    /// A node changed status.
    NodeStatus {
        /// Node.
        node: String,
        /// Before.
        old: NodeStatus,
        /// Now.
        new: NodeStatus,
    },
    /// A link to a node went up or down.
    LinkStatus {
        /// Node.
        node: String,
        /// Link.
        link: String,
        /// Whether it is up.
        up: bool,
    },
    /// A peer runs another configuration (reported once per peer).
    ConfigMismatch {
        /// Peer.
        node: String,
        /// Its digest.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// This node was not scheduled for longer than deadtime: its peers may have declared it
    /// dead.
    NoLocalHeartbeat {
        /// How long it sent nothing.
        silent: Duration,
        /// Deadtime.
        deadtime: Duration,
    },
    /// Restart the keepalive timer: next expiry after this, then every keepalive (this
    /// node's heartbeats fall in step with a peer's, [`crate::cadence`]).
    Keepalive(Duration),
    /// This node's heartbeat time (the watchdog is fed now, whether or not it has left).
    Beat,
    /// This node's heartbeat went: echo the ping nodes too.
    Ping,
    /// The member list changed ([`Node::nodes`]).
    MembersChanged,
    /// A peer's lateness changed ([`Node::timing`]).
    TimingChanged,
    /// The engine's quorum verdict changed (Corosync's; Heartbeat's engine leaves the count
    /// to crmd and never says this).
    Quorum(bool),
}

/// What every sequenced message this node sends carries, and the history kept of them.
struct Outbox {
    /// This node's name: the `src` of all it sends.
    node: String,
    uuid: Vec<u8>,
    generation_hex: String,
    seq: u64,
    history: SendHistory,
    /// What retransmission requests may make this node send.
    answers: AnswerLimiter,
    /// Seconds since the epoch, for Heartbeat's `ts` (a clock passed in, like the time).
    wall_clock: fn() -> u64,
}

impl Outbox {
    /// Adds the sender's fields and the next sequence number, signs, and records the packet.
    /// The fields are set in place: a message sealed again (the heartbeat) keeps its fields.
    fn seal(&mut self, message: &mut Message, authenticator: &Authenticator) -> (u64, Vec<u8>) {
        self.seq += 1;
        let packet = self.sign(message, Some(self.seq), authenticator);
        self.history.record(self.seq, packet.clone());
        (self.seq, packet)
    }

    /// Signs one of the messaging layer's own messages (`NS_*`): the sender's fields and no
    /// sequence number.
    fn stamp(&self, message: &mut Message, authenticator: &Authenticator) -> Vec<u8> {
        self.sign(message, None, authenticator)
    }

    /// The sender's fields Heartbeat requires of every message (`process_clustermsg` refuses
    /// one without `src`, `ts` and `t`), in Heartbeat's order, then the signature.
    fn sign(&self, message: &mut Message, seq: Option<u64>, authenticator: &Authenticator) -> Vec<u8> {
        message.set("src", self.node.as_str());
        message.set_binary("srcuuid", &self.uuid);
        if let Some(seq) = seq {
            message.set("seq", format!("{seq:x}"));
        }
        message.set("hg", self.generation_hex.as_str());
        message.set("ts", format!("{:x}", (self.wall_clock)()));
        message.set("ttl", "3");
        wire::encode(message, Format::Netstring, authenticator)
    }
}

fn hex_field(message: &Message, name: &str) -> Option<u64> {
    message.get(name).and_then(|v| u64::from_str_radix(v, 16).ok())
}

/// A digest of what must be identical on every node: resource groups and the key in force.
pub fn config_digest(config: &ClusterConfig) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(format!("{:?}", config.groups));
    hasher.update(format!(
        "key {} {}",
        config.auth.active,
        config.auth.active_key().map_or("", |k| k.method.as_str())
    ));
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Seconds since the epoch by the system clock.
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One node's messaging layer.
pub struct Node {
    timing: Timing,
    authenticator: Authenticator,
    limits: Limits,
    digest: String,
    node_names: Vec<String>,
    membership: Membership,
    guard: ReplayGuard,
    outbox: Outbox,
    inbound: Inbound<Delivery>,
    /// Keyed by the sender's address, or by the tty for a serial link (its packets have none).
    reject_log: RejectLog<String>,
    unknown_log: RejectLog<String>,
    mismatches_reported: Vec<String>,
    /// This node's heartbeat, kept from one to the next (only the load, sequence number and
    /// time change).
    heartbeat: Message,
    /// Set once this node sent its shutdown notice: no heartbeats until it joins again.
    left: bool,
    /// The latest the next heartbeat goes (the keepalive timer's next expiry).
    next_tick: Instant,
    /// When this node's last heartbeat went (or would have, while it has left): an event
    /// later than deadtime after it means this node was not scheduled — no local heartbeat.
    last_beat: Instant,
    /// Nodes that said they leave, with the generation they left in: heartbeats of that
    /// generation (Heartbeat sends a few more before it exits) do not bring them back.
    departed: HashMap<String, u32>,
    published_lateness: u64,
}

/// What one event leads to before the common steps ([`Node::finish`]).
struct Step {
    effects: Vec<Effect>,
    outputs: Vec<Output>,
    ordered: Vec<InboundOutput<Delivery>>,
    /// This node's heartbeat goes now; the one after it is due at this time.
    beat: Option<Instant>,
    deadline_checks: bool,
}

impl Default for Step {
    fn default() -> Self {
        Step {
            // Room for what a heartbeat received or sent leads to, without growing.
            effects: Vec::with_capacity(8),
            outputs: Vec::new(),
            ordered: Vec::new(),
            beat: None,
            deadline_checks: false,
        }
    }
}

impl Step {
    fn count(&mut self, counter: Counter) {
        self.effects.push(Effect::Count(counter));
    }
}

impl Node {
    /// A node starting at `now` on the links named `links`. The first heartbeat goes at the
    /// keepalive timer's first expiry ([`Node::on_keepalive`]).
    pub fn new(
        identity: Identity,
        config: &ClusterConfig,
        authenticator: Authenticator,
        links: &[String],
        now: Instant,
    ) -> Self {
        let ping_names: Vec<String> = config.ping_nodes.iter().map(|p| p.name()).collect();
        let digest = config_digest(config);
        let heartbeat = Message::new()
            .with("t", "status")
            .with("st", "active")
            .with("dt", format!("{:x}", config.timing.deadtime.as_millis()))
            .with("protocol", PROTOCOL)
            .with("ld", "")
            .with(CONFIG_DIGEST_FIELD, digest.as_str());
        let membership = Membership::new(
            &identity.node,
            &config.nodes,
            &ping_names,
            links,
            config.timing,
            now,
        );
        Node {
            timing: config.timing,
            authenticator,
            limits: Limits::default(),
            digest,
            node_names: config.nodes.clone(),
            published_lateness: membership.lateness_version(),
            membership,
            guard: ReplayGuard::new(config.timing.keepalive),
            outbox: Outbox {
                node: identity.node,
                uuid: identity.uuid,
                generation_hex: format!("{:x}", identity.generation),
                seq: 0,
                history: SendHistory::new(config.max_rexmit_delay),
                answers: AnswerLimiter::new(config.max_rexmit_delay, MAX_RESEND_PER_REQUEST as usize),
                wall_clock: unix_time,
            },
            // A gap not filled within deadtime will not be: the sender is gone or has moved on.
            inbound: Inbound::new(
                config.max_rexmit_delay,
                config.timing.deadtime.max(config.max_rexmit_delay * 4),
            ),
            reject_log: RejectLog::default(),
            unknown_log: RejectLog::default(),
            mismatches_reported: Vec::new(),
            heartbeat,
            left: false,
            next_tick: now,
            last_beat: now,
            departed: HashMap::new(),
        }
    }

    /// Uses `clock` for the `ts` field instead of the system clock (tests on a virtual clock).
    pub fn with_wall_clock(mut self, clock: fn() -> u64) -> Self {
        self.outbox.wall_clock = clock;
        self
    }

    /// This node's name.
    pub fn local(&self) -> &str {
        &self.outbox.node
    }

    /// Whether this node has left the cluster (sent its shutdown notice).
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// What a peer's status is in this node's view.
    pub fn status(&self, node: &str) -> Option<NodeStatus> {
        self.membership.status(node)
    }

    /// When a deadline (a peer's warntime or deadtime, a gap to ask for again) falls before
    /// the next keepalive expiry, which runs the deadline checks anyway: then the caller
    /// calls [`Node::on_deadline`] at that time.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.membership.next_deadline(), self.inbound.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at + Duration::from_millis(1))
            .filter(|at| *at < self.next_tick)
    }

    /// The keepalive timer fired: this node's heartbeat goes, carrying `load` (Heartbeat's
    /// `ld`, /proc/loadavg).
    pub fn on_keepalive(&mut self, now: Instant, load: &str) -> Vec<Effect> {
        self.heartbeat.set("ld", load);
        let step = Step {
            beat: Some(now + self.timing.keepalive),
            ..Step::default()
        };
        self.finish(step, now)
    }

    /// The deadline timer fired.
    pub fn on_deadline(&mut self, now: Instant) -> Vec<Effect> {
        let step = Step {
            deadline_checks: true,
            ..Step::default()
        };
        self.finish(step, now)
    }

    /// A ping node answered an echo.
    pub fn on_ping_reply(&mut self, now: Instant, node: &str) -> Vec<Effect> {
        let mut step = Step::default();
        step.outputs.extend(self.membership.handle(
            Input::Heard {
                link: node.to_owned(),
                node: node.to_owned(),
                status: NodeStatus::Ping,
            },
            now,
        ));
        self.finish(step, now)
    }

    /// A receive on a link failed.
    pub fn on_receive_error(&mut self, now: Instant) -> Vec<Effect> {
        let mut step = Step::default();
        step.count(Counter::ReceiveErrors);
        self.finish(step, now)
    }

    /// A client's message: sent to every node (and delivered here too when it is addressed to
    /// every node or to this one); its sequence number, or why it was refused.
    pub fn on_send(&mut self, now: Instant, request: Send) -> (Result<u64, HbError>, Vec<Effect>) {
        let mut step = Step::default();
        let mut message = Message::new().with("t", request.msg_type.as_str());
        if let Some(to) = &request.to {
            message.set("dest", to.as_str());
        }
        for (name, value) in &request.body {
            message.set(name, value.as_str());
        }
        // Checked before sealing so that a refused message does not use up a number.
        let unsigned = wire::encode(&message, Format::Netstring, &self.authenticator);
        if unsigned.len() + SEAL_ROOM > self.limits.max_packet {
            let refusal = HbError::InvalidArgument(format!(
                "message of {} bytes: the most one packet carries is {} bytes",
                unsigned.len(),
                self.limits.max_packet - SEAL_ROOM
            ));
            return (Err(refusal), self.finish(step, now));
        }
        let (seq, packet) = self.outbox.seal(&mut message, &self.authenticator);
        step.effects.push(Effect::Send(packet));
        step.count(Counter::MessagesSent);
        if request.to.as_deref().is_none_or(|to| to == self.outbox.node) {
            step.effects.push(Effect::Deliver {
                sender: self.outbox.node.clone(),
                message: Delivery {
                    msg_type: request.msg_type,
                    body: request.body.into_iter().collect(),
                },
            });
        }
        (Ok(seq), self.finish(step, now))
    }

    /// Sends Heartbeat's shutdown notice and stops this node's heartbeats.
    pub fn leave(&mut self, now: Instant) -> Vec<Effect> {
        let mut step = Step::default();
        if !self.left {
            self.left = true;
            let mut notice = Message::new().with("t", "shutdone").with("st", "dead");
            let (_, packet) = self.outbox.seal(&mut notice, &self.authenticator);
            // Twice: nothing follows it, so a lost notice would not be asked for again, and
            // peers would wait for deadtime. The copy is a duplicate.
            step.effects.push(Effect::Send(packet.clone()));
            step.effects.push(Effect::Send(packet));
            tracing::info!("shutdown notice sent: this node leaves the cluster");
        }
        self.finish(step, now)
    }

    /// Heartbeats again after a leave, as the new `generation` (peers ignore the old one).
    pub fn join(&mut self, now: Instant, generation: u32) -> Vec<Effect> {
        let mut step = Step::default();
        if self.left {
            self.outbox.generation_hex = format!("{generation:x}");
            self.left = false;
            step.beat = Some(now + self.timing.keepalive);
            tracing::info!(generation, "this node joins the cluster again");
        }
        self.finish(step, now)
    }

    /// A datagram arrived on `link` from the address `from` (`None` on a serial link: its
    /// packets come from the tty, which the link is named after).
    pub fn on_datagram(
        &mut self,
        now: Instant,
        link: &str,
        from: Option<IpAddr>,
        bytes: &[u8],
    ) -> Vec<Effect> {
        let mut step = Step::default();
        step.count(Counter::Received);
        match wire::receive(bytes, &self.authenticator, &self.limits) {
            Err(error) => {
                // Rejects are logged per source: the sender's address, or the tty.
                let source = from.map_or_else(|| link.to_owned(), |address| address.to_string());
                self.rejected(&mut step, now, link, &source, bytes, &error)
            }
            Ok((message, _)) => self.received(&mut step, now, link, &message),
        }
        self.finish(step, now)
    }

    fn rejected(
        &mut self,
        step: &mut Step,
        now: Instant,
        link: &str,
        source: &str,
        bytes: &[u8],
        error: &WireError,
    ) {
        let reason = match error {
            WireError::Auth(_) | WireError::NoAuth => Counter::DroppedForged,
            WireError::TooLarge(_) => Counter::DroppedOversized,
            _ => Counter::DroppedMalformed,
        };
        step.count(reason);
        match self.reject_log.reject(source.to_owned(), now) {
            Some(unlogged) if reason == Counter::DroppedForged => {
                let claimed = rejects::claimed_node(bytes).unwrap_or_else(|| "?".into());
                tracing::warn!(%link, %source, claimed_node = %claimed, unlogged, "failed authentication: packet from {source} claiming to be {claimed} dropped ({error}); a wrong authkeys, or another cluster on this segment ({unlogged} more since the last line)");
            }
            Some(unlogged) => {
                tracing::info!(%link, %source, unlogged, "packet from {source} dropped: {error} ({unlogged} more since the last line)");
            }
            None => tracing::debug!(%link, "packet dropped: {error}"),
        }
    }

    fn received(&mut self, step: &mut Step, now: Instant, link: &str, message: &Message) {
        let Some(src) = message.get("src") else {
            step.count(Counter::DroppedMalformed);
            return;
        };
        if src == self.outbox.node {
            return;
        }
        let (Some(hg), Some(packet_seq)) = (
            message.get("hg").and_then(|h| u32::from_str_radix(h, 16).ok()),
            hex_field(message, "seq"),
        ) else {
            // Heartbeat's protocol messages (NS_*) carry no sequence number; only a member may
            // ask anything of this node. Its status does not matter: a node back from a
            // partition asks for what it missed before it is heard again (Heartbeat logs the
            // loss otherwise).
            let member = self
                .membership
                .members()
                .any(|(name, kind, _)| name == src && kind == NodeKind::Normal);
            if member {
                self.protocol_message(step, now, message, src);
            } else {
                step.count(Counter::DroppedNotMember);
            }
            return;
        };
        let verdict = self.guard.check(src, hg, packet_seq, now);
        if verdict == Verdict::Replay {
            step.count(Counter::DroppedReplay);
            tracing::debug!(%link, src, hg, seq = packet_seq, "replayed packet dropped");
            return;
        }
        let is_status = message.get("t") == Some("status");
        let departed_generation = self.departed.get(src).copied();
        if departed_generation.is_some_and(|gone| hg > gone) {
            self.departed.remove(src);
        }
        if is_status && departed_generation.is_none_or(|gone| hg > gone) {
            let status = NodeStatus::from_heartbeat(message.get("st").unwrap_or("active"));
            let heard = self.membership.handle(
                Input::Heard {
                    node: src.to_owned(),
                    link: link.to_owned(),
                    status,
                },
                now,
            );
            let newcomer = heard.iter().any(|output| {
                matches!(output, Output::NodeStatus { node, old: NodeStatus::Init | NodeStatus::Dead, .. } if node == src)
            });
            step.outputs.extend(heard);
            // Our heartbeat goes now, in step with the peers (crate::cadence), and at once to
            // a node heard for the first time: it may be waiting to hear us.
            let first = if newcomer {
                Some(cadence::greet(self.timing.keepalive))
            } else if verdict == Verdict::Fresh {
                cadence::join_step(self.next_tick, now, self.timing.keepalive)
            } else {
                None
            };
            if let Some(first) = first {
                step.effects.push(Effect::Keepalive(first));
                step.beat = Some(now + first);
                step.count(Counter::HeartbeatsEarly);
            }
        }
        if verdict != Verdict::Fresh {
            step.count(Counter::Duplicates);
            return;
        }
        if let Some(theirs) = message.get(CONFIG_DIGEST_FIELD) {
            if theirs != self.digest && !self.mismatches_reported.iter().any(|n| n == src) {
                self.mismatches_reported.push(src.to_owned());
                tracing::error!(node = src, theirs, ours = %self.digest, "CONFIGURATION MISMATCH: {src} runs other resource groups or another authentication key than this node; haresources/ha.toml and authkeys must be identical on every node");
                step.effects.push(Effect::ConfigMismatch {
                    node: src.to_owned(),
                    theirs: theirs.to_owned(),
                    ours: self.digest.clone(),
                });
            }
        }
        let for_us = !is_status && message.get("dest").is_none_or(|dest| dest == self.outbox.node);
        let item = for_us.then(|| Delivery::from_message(message));
        if self.membership.status(src).is_some() {
            step.ordered
                .extend(self.inbound.accept(src, hg, packet_seq, item, now));
        }
    }

    /// Heartbeat's unsequenced protocol messages addressed to this node: retransmission
    /// requests (answered from the history, or refused with `NS_nak_rexmit`), refusals of our
    /// own requests, and acknowledgements (counted; the history is bounded by size, not by
    /// acks).
    fn protocol_message(&mut self, step: &mut Step, now: Instant, message: &Message, src: &str) {
        let kind = message.get("t").unwrap_or("untyped");
        step.count(Counter::received(kind));
        if message.get("dest") != Some(self.outbox.node.as_str()) {
            return;
        }
        match kind {
            "NS_rexmit" => {
                // Heartbeat writes a retransmission request's numbers in decimal
                // (ha_msg_add_int), unlike every other sequence number.
                let decimal = |name: &str| message.get(name).and_then(|v| v.parse::<u64>().ok());
                let (Some(first), Some(last)) = (decimal("firstseq"), decimal("lastseq")) else {
                    step.count(Counter::DroppedMalformed);
                    return;
                };
                // Nothing past what this node sent: such a request is forged or of another life.
                let last = last
                    .min(first.saturating_add(MAX_RESEND_PER_REQUEST - 1))
                    .min(self.outbox.seq);
                for seq in first..=last {
                    if !self.outbox.answers.allow(src, seq, now) {
                        step.count(Counter::RexmitLimited);
                        continue;
                    }
                    match self.outbox.history.resend(seq, now) {
                        Resend::Packet(packet) => {
                            step.effects.push(Effect::Send(packet.to_vec()));
                            step.count(Counter::RexmitAnswered);
                        }
                        Resend::Recently => {}
                        Resend::Unknown => {
                            step.count(Counter::RexmitRefused);
                            let mut nak = Message::new()
                                .with("t", "NS_nak_rexmit")
                                .with("firstseq", format!("{seq:x}"))
                                .with("dest", src);
                            step.effects
                                .push(Effect::Send(self.outbox.stamp(&mut nak, &self.authenticator)));
                        }
                    }
                }
            }
            "NS_nak_rexmit" => {
                if let Some(seq) = hex_field(message, "firstseq") {
                    step.ordered.extend(self.inbound.unavailable(src, seq, seq, now));
                }
            }
            _ => {}
        }
    }

    /// What every event ends with: the stall check, this node's heartbeat when due, the
    /// deadline checks, in-order delivery and the membership's outputs.
    fn finish(&mut self, mut step: Step, now: Instant) -> Vec<Effect> {
        // Before any deadline is judged: silence that was this node's own stall is not the
        // peers' death.
        let silent = now.saturating_duration_since(self.last_beat);
        if silent > self.timing.deadtime {
            self.last_beat = now;
            step.count(Counter::LocalStalls);
            tracing::error!(silent_ms = silent.as_millis() as u64, "No local heartbeat: this node sent none for {:.2} s (deadtime {:.2} s) — hbcomm was not scheduled. Its peers may have declared it dead and taken its groups over: they are given up here", silent.as_secs_f64(), self.timing.deadtime.as_secs_f64());
            step.outputs
                .extend(self.membership.handle(Input::Stalled { gap: silent }, now));
            step.effects.push(Effect::NoLocalHeartbeat {
                silent,
                deadtime: self.timing.deadtime,
            });
        }
        if step.beat.is_some() {
            self.last_beat = now;
            step.effects.push(Effect::Beat);
        }
        // Every heartbeat of this node also runs the deadline checks (see next_deadline).
        if step.deadline_checks || step.beat.is_some() {
            step.outputs.extend(self.membership.handle(Input::Tick, now));
            step.ordered.extend(self.inbound.tick(now));
        }
        if let Some(next) = step.beat.filter(|_| !self.left) {
            self.next_tick = next;
            let (_, packet) = self.outbox.seal(&mut self.heartbeat, &self.authenticator);
            step.effects.push(Effect::Send(packet));
            step.effects.push(Effect::Ping);
        }
        let ordered = std::mem::take(&mut step.ordered);
        for event in ordered {
            self.ordered(&mut step, now, event);
        }
        if self.membership.lateness_version() != self.published_lateness {
            self.published_lateness = self.membership.lateness_version();
            step.effects.push(Effect::TimingChanged);
        }
        if !step.outputs.is_empty() {
            let outputs = std::mem::take(&mut step.outputs);
            for output in outputs {
                self.output(&mut step, now, output);
            }
            step.effects.push(Effect::MembersChanged);
        }
        step.effects
    }

    fn ordered(&mut self, step: &mut Step, now: Instant, event: InboundOutput<Delivery>) {
        match event {
            InboundOutput::Deliver { sender, item, .. } => {
                step.count(Counter::MessagesDelivered);
                if item.msg_type == "reqnodes" && !self.left {
                    // Heartbeat 3.0.6 asks one peer for the node list when its links come up,
                    // and reports itself active only once answered.
                    let mut nodelist: String =
                        self.node_names.iter().map(|node| format!("{node} ")).collect();
                    if nodelist.is_empty() {
                        nodelist.push(' ');
                    }
                    let mut reply = Message::new()
                        .with("t", "repnodes")
                        .with("dest", sender.as_str())
                        .with("nodelist", nodelist)
                        .with("delnodelist", " ");
                    let (_, packet) = self.outbox.seal(&mut reply, &self.authenticator);
                    step.effects.push(Effect::Send(packet));
                    step.count(Counter::MessagesSent);
                }
                if item.msg_type == "shutdone" {
                    tracing::info!(node = %sender, "Received shutdown notice from '{sender}'");
                    if let Some(gone) = self.guard.generation(&sender) {
                        self.departed.insert(sender.clone(), gone);
                    }
                    step.outputs
                        .extend(self.membership.handle(Input::Left { node: sender.clone() }, now));
                }
                step.effects.push(Effect::Deliver {
                    sender,
                    message: item,
                });
            }
            InboundOutput::Request { sender, first, last } => {
                step.count(Counter::RexmitRequested);
                let mut request = Message::new()
                    .with("t", "NS_rexmit")
                    .with("dest", sender.as_str())
                    .with("firstseq", first.to_string())
                    .with("lastseq", last.to_string());
                step.effects
                    .push(Effect::Send(self.outbox.stamp(&mut request, &self.authenticator)));
            }
            InboundOutput::Lost { sender, first, last } => {
                step.count(Counter::MessagesLost);
                tracing::warn!(node = %sender, "messages {first}..={last} from {sender} were lost and could not be retransmitted");
            }
            InboundOutput::Acknowledge { sender, seq } => {
                let mut ack = Message::new()
                    .with("t", "NS_ackmsg")
                    .with("dest", sender.as_str())
                    .with("ackseq", format!("{seq:x}"));
                step.effects
                    .push(Effect::Send(self.outbox.stamp(&mut ack, &self.authenticator)));
            }
        }
    }

    fn output(&mut self, step: &mut Step, now: Instant, output: Output) {
        match output {
            Output::NodeStatus { node, old, new } => {
                if new == NodeStatus::Dead {
                    tracing::warn!(node = %node, "node {node}: status dead");
                    // Its next run is a new generation; a partition's backlog is stale.
                    self.inbound.forget(&node);
                } else {
                    tracing::info!(node = %node, "node {node}: status {}", new.as_str());
                }
                step.effects.push(Effect::NodeStatus { node, old, new });
            }
            Output::LinkStatus { node, link, up } => {
                tracing::info!(node = %node, link = %link, "link {node}:{link} {}", if up { "up" } else { "dead" });
                step.effects.push(Effect::LinkStatus { node, link, up });
            }
            Output::LateHeartbeat { node, silent_for } => {
                tracing::warn!(node = %node, "Late heartbeat: node {node}: no heartbeat for {} ms (warntime {} ms)", silent_for.as_millis(), self.timing.warntime.as_millis());
            }
            Output::LateArrived {
                node,
                link,
                gap,
                longest,
            } => {
                let suggested = hbapi::comm::suggested_deadtime(longest)
                    .1
                    .max(self.timing.deadtime);
                tracing::warn!(node = %node, link = %link, gap_ms = gap.as_millis() as u64, longest_ms = longest.as_millis() as u64, "heartbeat from {node} on {link} {:.2} s after the last (warntime {:.2} s); longest gap {:.2} s, deadtime {:.2} s (suggested at least {:.2} s)", gap.as_secs_f64(), self.timing.warntime.as_secs_f64(), longest.as_secs_f64(), self.timing.deadtime.as_secs_f64(), suggested.as_secs_f64());
            }
            Output::Returned { node, silent_for } => {
                tracing::warn!(node = %node, "node {node} is back after {} ms of silence (partition healed or node restarted)", silent_for.as_millis());
            }
            Output::Unknown { node } => {
                step.count(Counter::DroppedUnknownNode);
                // A foreign cluster on this segment sends many: once a minute per name.
                if let Some(unlogged) = self.unknown_log.reject(node.clone(), now) {
                    tracing::warn!(node = %node, unlogged, "heartbeat from {node:?}, which is not a configured node: another cluster on this segment with the same key and port? ({unlogged} more since the last line)");
                }
            }
        }
    }

    /// The members as the bus shows them, this node first.
    pub fn nodes(&self, now: Instant) -> Vec<NodeInfo> {
        let mut nodes = vec![NodeInfo {
            name: self.outbox.node.clone(),
            kind: NodeKind::Normal.as_str().into(),
            status: NodeStatus::Active.as_str().into(),
            links: Vec::new(),
        }];
        nodes.extend(self.membership.members().map(|(name, kind, status)| {
            NodeInfo {
                name: name.to_owned(),
                kind: kind.as_str().into(),
                status: status.as_str().into(),
                links: self
                    .membership
                    .links(name, now)
                    .into_iter()
                    .map(|(name, up)| LinkInfo { name, up })
                    .collect(),
            }
        }));
        nodes
    }

    /// The timers and every peer's lateness (FAQ 12's measures), without the watchdog.
    pub fn timing(&self) -> HeartbeatTiming {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let timing = self.membership.timing();
        HeartbeatTiming {
            keepalive_ms: millis(timing.keepalive),
            warntime_ms: millis(timing.warntime),
            deadtime_ms: millis(timing.deadtime),
            nodes: self
                .membership
                .lateness()
                .map(|(node, overall, links)| NodeGaps {
                    node: node.to_owned(),
                    longest_gap_ms: millis(overall.longest_gap),
                    late: overall.late,
                    links: links
                        .iter()
                        .map(|(link, lateness)| LinkGap {
                            link: link.clone(),
                            longest_gap_ms: millis(lateness.longest_gap),
                            late: lateness.late,
                        })
                        .collect(),
                })
                .collect(),
            ..HeartbeatTiming::default()
        }
    }
}
