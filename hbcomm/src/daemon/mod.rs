//! `hbcomm`: heartbeats on every link, membership, and the bus API for them.
//!
//! The loop is the I/O around two pure parts: [`crate::membership`] decides who is alive,
//! [`replay::ReplayGuard`] decides which packets are new. Each received packet goes through
//! the bounded framing check, authentication and only then decoding ([`crate::wire`]).

pub mod iface;
pub mod media;
pub mod ping;
pub mod rejects;
pub mod replay;
pub mod serial;
pub mod socket;
pub mod state;
pub mod timer;
pub mod watchdog;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::object_server::SignalEmitter;

use hbapi::comm::{Counter, HeartbeatTiming, LinkGap, LinkInfo, NodeGaps, NodeInfo};
use hbapi::config::{AuthMethod, ClusterConfig};
use hbapi::names;

use crate::cadence;
use crate::membership::{Input, Membership, NodeKind, NodeStatus, Output};
use crate::reliable::{AnswerLimiter, Inbound, InboundOutput, Resend, SendHistory};
use crate::watchdog::Guard;
use crate::wire::{self, Authenticator, Format, Limits, Message, Value, WireError};

use self::iface::{CommInterface, Control, Outgoing, Snapshot, RESERVED_FIELDS};
use self::replay::{ReplayGuard, Verdict};

/// Heartbeat's protocol version field.
const PROTOCOL: &str = "1";
/// Field carrying our digest of the resource configuration and key id (Heartbeat ignores it).
const CONFIG_DIGEST_FIELD: &str = "hbrs_cfd";

/// How hbcomm is run.
#[derive(Debug, Clone)]
pub struct CommOptions {
    /// This node.
    pub node: String,
    /// State directory (generation, uuid).
    pub state_dir: PathBuf,
    /// Bus address.
    pub bus_address: String,
    /// Bind to this address instead of devices (several nodes on one host).
    pub bind: Option<IpAddr>,
    /// Accept `crc` (no security) anyway.
    pub insecure_crc: bool,
}

/// Errors that stop hbcomm.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    /// Configuration refused.
    #[error("{0}")]
    Config(String),
    /// Links could not be opened.
    #[error(transparent)]
    Media(#[from] media::MediaError),
    /// State directory.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// Bus.
    #[error("bus: {0}")]
    Bus(#[from] zbus::Error),
    /// Ping nodes.
    #[error(transparent)]
    Ping(#[from] ping::PingError),
    /// A system resource hbcomm could not get now (a timer): worth a respawn, unlike
    /// [`CommError::Config`].
    #[error("{0}")]
    Io(String),
}

/// Most sequence numbers answered per retransmission request (a forged or confused request
/// must not make this node flood the link).
const MAX_RESEND_PER_REQUEST: u64 = 64;

/// What every sequenced message this node sends carries, and the history kept of them.
struct Outbox {
    node: String,
    uuid: Vec<u8>,
    generation_hex: String,
    seq: u64,
    history: SendHistory,
    /// What retransmission requests may make this node send.
    answers: AnswerLimiter,
}

impl Outbox {
    /// Adds the sender's fields and the next sequence number, signs, and records the packet.
    /// The fields are set in place: a message sealed again (the heartbeat) keeps its fields.
    fn seal(&mut self, message: &mut Message, authenticator: &Authenticator) -> (u64, Vec<u8>) {
        self.seq += 1;
        message.set("src", self.node.as_str());
        message.set_binary("srcuuid", &self.uuid);
        message.set("seq", format!("{:x}", self.seq));
        message.set("hg", self.generation_hex.as_str());
        message.set("ts", format!("{:x}", unix_time()));
        message.set("ttl", "3");
        let packet = wire::encode(message, Format::Netstring, authenticator);
        self.history.record(self.seq, packet.clone());
        (self.seq, packet)
    }

    /// Signs one of the messaging layer's unsequenced messages (`NS_*`) with the sender's
    /// fields Heartbeat requires of every message (`process_clustermsg` refuses one without
    /// `src`, `ts` and `t`), and no sequence number.
    fn stamp(&self, message: &mut Message, authenticator: &Authenticator) -> Vec<u8> {
        message.set("src", self.node.as_str());
        message.set_binary("srcuuid", &self.uuid);
        message.set("hg", self.generation_hex.as_str());
        message.set("ts", format!("{:x}", unix_time()));
        message.set("ttl", "3");
        wire::encode(message, Format::Netstring, authenticator)
    }
}

/// A cluster message as clients get it.
#[derive(Debug)]
struct Delivery {
    msg_type: String,
    body: HashMap<String, String>,
}

impl Delivery {
    /// The client's part of a received message: its type and every string field that is not
    /// the messaging layer's own (binary and nested fields are not passed on).
    fn from_message(message: &Message) -> Self {
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

/// Sends `packet` on every link to every destination.
fn broadcast(links: &[media::Link], packet: &[u8], snapshot: &Mutex<Snapshot>) {
    for link in links {
        for destination in &link.destinations {
            match destination.send(packet) {
                Ok(_) => bump(snapshot, Counter::Sent),
                Err(error) => {
                    bump(snapshot, Counter::SendErrors);
                    tracing::debug!(link = %link.name, destination = %destination.address, "send failed: {error}");
                }
            }
        }
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

/// `/proc/loadavg`, kept open: each heartbeat carries it (Heartbeat's `ld`), and reopening
/// the file five times a second is a measurable part of an idle node's CPU.
/// /proc/loadavg for Heartbeat's `ld` field, read at most once a second (the kernel updates
/// it every five).
struct LoadAverage {
    file: Option<std::fs::File>,
    last: Option<(Instant, String)>,
}

impl LoadAverage {
    fn open() -> Self {
        LoadAverage {
            file: std::fs::File::open("/proc/loadavg").ok(),
            last: None,
        }
    }

    fn read(&mut self) -> String {
        use std::os::unix::fs::FileExt;
        if let Some((at, text)) = &self.last {
            if at.elapsed() < Duration::from_secs(1) {
                return text.clone();
            }
        }
        let mut buffer = [0u8; 128];
        let length = self
            .file
            .as_ref()
            .and_then(|file| file.read_at(&mut buffer, 0).ok())
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&buffer[..length]).trim().to_owned();
        self.last = Some((Instant::now(), text.clone()));
        text
    }
}

/// Heartbeat's unsequenced protocol messages addressed to this node: retransmission requests
/// (answered from the history, or refused with `NS_nak_rexmit`), refusals of our own
/// requests, and acknowledgements (counted; the history is bounded by size, not by acks).
#[allow(clippy::too_many_arguments)]
fn protocol_message(
    message: &Message,
    local: &str,
    outbox: &mut Outbox,
    inbound: &mut Inbound<Delivery>,
    links: &[media::Link],
    authenticator: &Authenticator,
    snapshot: &Mutex<Snapshot>,
    ordered: &mut Vec<InboundOutput<Delivery>>,
    now: Instant,
) {
    let kind = message.get("t").unwrap_or("untyped");
    bump(snapshot, Counter::received(kind));
    if message.get("dest") != Some(local) {
        return;
    }
    let Some(src) = message.get("src") else { return };
    match kind {
        "NS_rexmit" => {
            // Heartbeat writes a retransmission request's numbers in decimal (ha_msg_add_int),
            // unlike every other sequence number.
            let decimal = |name: &str| message.get(name).and_then(|v| v.parse::<u64>().ok());
            let (Some(first), Some(last)) = (decimal("firstseq"), decimal("lastseq")) else {
                bump(snapshot, Counter::DroppedMalformed);
                return;
            };
            // Nothing past what this node sent: such a request is forged or of another life.
            let last = last
                .min(first.saturating_add(MAX_RESEND_PER_REQUEST - 1))
                .min(outbox.seq);
            for seq in first..=last {
                if !outbox.answers.allow(src, seq, now) {
                    bump(snapshot, Counter::RexmitLimited);
                    continue;
                }
                match outbox.history.resend(seq, now) {
                    Resend::Packet(packet) => {
                        let packet = packet.to_vec();
                        bump(snapshot, Counter::RexmitAnswered);
                        broadcast(links, &packet, snapshot);
                    }
                    Resend::Recently => {}
                    Resend::Unknown => {
                        bump(snapshot, Counter::RexmitRefused);
                        let mut nak = Message::new()
                            .with("t", "NS_nak_rexmit")
                            .with("firstseq", format!("{seq:x}"))
                            .with("dest", src);
                        broadcast(links, &outbox.stamp(&mut nak, authenticator), snapshot);
                    }
                }
            }
        }
        "NS_nak_rexmit" => {
            if let Some(seq) = hex_field(message, "firstseq") {
                ordered.extend(inbound.unavailable(src, seq, seq, now));
            }
        }
        _ => {}
    }
}

/// This node's heartbeat, kept from one to the next (only the load, sequence number and
/// time change), and the echo sequence of the pings sent with it.
struct Heartbeats {
    message: Message,
    load: LoadAverage,
    ping_seq: u16,
}

impl Heartbeats {
    /// Sends this node's heartbeat on every link, and an echo to every ping node.
    fn send(
        &mut self,
        outbox: &mut Outbox,
        links: &[media::Link],
        authenticator: &Authenticator,
        snapshot: &Mutex<Snapshot>,
        pinger: Option<&ping::Pinger>,
    ) {
        self.message.set("ld", self.load.read());
        let (_, packet) = outbox.seal(&mut self.message, authenticator);
        broadcast(links, &packet, snapshot);
        if let Some(pinger) = pinger {
            self.ping_seq = self.ping_seq.wrapping_add(1);
            for _ in 0..pinger.send_all(self.ping_seq) {
                bump(snapshot, Counter::PingSendErrors);
            }
        }
    }
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs hbcomm until `shutdown` resolves.
pub async fn run(
    options: CommOptions,
    config: ClusterConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), CommError> {
    let authenticator = Authenticator::from_keys(&config.auth)
        .ok_or_else(|| CommError::Config("authkeys: the active key is missing".into()))?;
    if authenticator.method() == AuthMethod::Crc && !options.insecure_crc {
        return Err(CommError::Config(
            "authkeys selects crc, which has no key: anyone who can send UDP to this cluster could forge heartbeats and take over resources. Use sha256 (or sha1 with Heartbeat nodes); start hbcomm with --insecure-crc only on a network nobody else can reach".into(),
        ));
    }
    std::fs::create_dir_all(&options.state_dir)
        .map_err(|e| CommError::Config(format!("{}: {e}", options.state_dir.display())))?;
    let mut generation = state::next_generation(&options.state_dir)?;
    let uuid = state::node_uuid(&options.state_dir)?;
    // A configuration error will not read better on a respawn: exit 100, not 1.
    hbapi::links::check(&config, options.bind).map_err(|e| CommError::Config(e.to_string()))?;
    let links = media::open(&config, options.bind, &authenticator)?;
    let link_names: Vec<String> = {
        let mut names: Vec<String> = links.iter().map(|l| l.name.clone()).collect();
        names.dedup();
        names
    };
    let ping_names: Vec<String> = config.ping_nodes.iter().map(|p| p.name()).collect();
    let now = Instant::now();
    let mut membership = Membership::new(
        &options.node,
        &config.nodes,
        &ping_names,
        &link_names,
        config.timing,
        now,
    );
    let mut guard = ReplayGuard::new(config.timing.keepalive);
    // Keyed by the sender's address, or by the tty for a serial link (its packets have none).
    let mut reject_log: rejects::RejectLog<String> = rejects::RejectLog::default();
    let mut unknown_log: rejects::RejectLog<String> = rejects::RejectLog::default();
    let limits = Limits::default();
    let digest = config_digest(&config);
    let node_names = config.nodes.clone();
    let mut mismatches_reported: Vec<String> = Vec::new();

    let snapshot = Arc::new(Mutex::new(Snapshot::default()));
    let (outgoing_tx, mut outgoing) = mpsc::channel::<Outgoing>(64);
    let (control_tx, mut control) = mpsc::channel::<Control>(4);
    let interface = CommInterface {
        local_node: options.node.clone(),
        generation,
        snapshot: snapshot.clone(),
        nodes: config.nodes.clone(),
        outgoing: outgoing_tx,
        control: control_tx,
    };
    let connection = zbus::connection::Builder::address(options.bus_address.as_str())
        .method_timeout(hbapi::bus::METHOD_TIMEOUT)
        .serve_at(names::comm::OBJECT_PATH, interface)
        .name(names::comm::BUS_NAME)
        .build()
        .await?;
    let emitter = SignalEmitter::new(&connection, names::comm::OBJECT_PATH)?.into_owned();
    // Opened once the bus name is ours: a second hbcomm (which could not take the name)
    // never touches the first one's device.
    let mut watchdog = match (&config.watchdog, config.watchdog_timeout()) {
        (Some(path), Some(timeout)) => {
            Some(watchdog::Device::open(path, timeout).map_err(CommError::Config)?)
        }
        _ => None,
    };
    let mut guard_of_watchdog = Guard::new();
    // crmd's presence matters to the watchdog only (see crate::watchdog).
    let mut crmd_owner_changes = match &watchdog {
        Some(_) => Some(
            zbus::fdo::DBusProxy::new(&connection)
                .await?
                .receive_name_owner_changed_with_args(&[(0, names::crmd::BUS_NAME)])
                .await?,
        ),
        None => None,
    };
    tracing::info!(node = %options.node, generation, links = ?link_names, "hbcomm started");
    // Under systemd (Type=notify); the master gives its children no notify socket.
    let _ = hbapi::notify::notify("READY=1");

    // Datagrams are read in the loop itself, into one buffer: a task per link handing packets
    // over a channel cost a second wake-up and a copy per packet.
    let link_sockets: Vec<&socket::DatagramSocket> = links.iter().map(|link| &link.socket).collect();
    let mut datagram = vec![0u8; 65_536];
    let mut next_link = 0;

    let pinger = ping::Pinger::open(&config.ping_nodes, options.bind)?.map(Arc::new);
    let (ping_tx, mut ping_replies) = mpsc::channel::<String>(256);
    if let Some(pinger) = &pinger {
        for icmp in [&pinger.v4, &pinger.v6].into_iter().flatten() {
            let socket = icmp.socket.clone();
            let (raw, v6) = (icmp.raw, icmp.v6);
            let pinger = pinger.clone();
            let tx = ping_tx.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 1500];
                let reference = ping::IcmpSocket {
                    socket: socket.clone(),
                    raw,
                    v6,
                };
                loop {
                    let Ok((length, from)) = socket.recv_from(&mut buffer).await else {
                        continue;
                    };
                    if let Some(node) = pinger.answered(&reference, &buffer[..length], from.ip()) {
                        let _ = tx.try_send(node.to_owned());
                    }
                }
            });
        }
    }
    drop(ping_tx);

    let mut outbox = Outbox {
        node: options.node.clone(),
        uuid: uuid.to_vec(),
        generation_hex: format!("{generation:x}"),
        seq: 0,
        history: SendHistory::new(config.max_rexmit_delay),
        answers: AnswerLimiter::new(config.max_rexmit_delay, MAX_RESEND_PER_REQUEST as usize),
    };
    // A gap not filled within deadtime will not be: the sender is gone or has moved on.
    let mut inbound: Inbound<Delivery> = Inbound::new(
        config.max_rexmit_delay,
        config.timing.deadtime.max(config.max_rexmit_delay * 4),
    );
    let keepalive = timer::FdTimer::new().map_err(|e| CommError::Io(format!("timerfd: {e}")))?;
    keepalive
        .set_periodic(Duration::ZERO, config.timing.keepalive)
        .map_err(|e| CommError::Io(format!("timerfd: {e}")))?;
    let deadlines = timer::FdTimer::new().map_err(|e| CommError::Io(format!("timerfd: {e}")))?;
    let mut heartbeats = Heartbeats {
        message: Message::new()
            .with("t", "status")
            .with("st", "active")
            .with("dt", format!("{:x}", config.timing.deadtime.as_millis()))
            .with("protocol", PROTOCOL)
            .with("ld", "")
            .with(CONFIG_DIGEST_FIELD, digest.as_str()),
        load: LoadAverage::open(),
        ping_seq: 0,
    };
    tokio::pin!(shutdown);
    publish(&snapshot, &membership, &options.node, Instant::now());
    publish_timing(&snapshot, &membership);
    if watchdog.is_some() {
        publish_watchdog(&snapshot, &config, None);
    }
    let mut published_lateness = membership.lateness_version();
    // When the deadline timer is set for. Each heartbeat received pushes the next deadline
    // out; rather than re-arming the timer for every packet, it is re-armed only to fire
    // sooner, and when it fires early the loop arms it for the real deadline.
    let mut armed: Option<Instant> = None;
    // The keepalive tick runs the deadline checks too, so the deadline timer is needed only
    // for a deadline before the next tick. In a quiet cluster every deadline (warntime or
    // deadtime after a peer's last heartbeat) is more than a keepalive away: the timer never
    // fires. This is the latest the next tick can come (the first one comes at once).
    let mut next_tick = Instant::now();
    // Set once this node sent its shutdown notice: no heartbeats until it joins again.
    let mut left = false;
    // When this node's last heartbeat went (or would have, while it has left): a wake-up
    // later than deadtime after it means hbcomm was not scheduled — no local heartbeat.
    let mut last_beat = Instant::now();
    // Nodes that said they leave, with the generation they left in: heartbeats of that
    // generation (Heartbeat sends a few more before it exits) do not bring them back.
    let mut departed: HashMap<String, u32> = HashMap::new();
    loop {
        let deadline = [membership.next_deadline(), inbound.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at + Duration::from_millis(1))
            .filter(|at| *at < next_tick);
        let fires_first =
            matches!((armed, deadline), (Some(at), Some(wanted)) if at <= wanted && at > Instant::now());
        if deadline.is_some() && !fires_first && armed != deadline {
            if let Err(error) = deadlines.set_deadline(deadline) {
                tracing::error!("timerfd: {error}");
            }
            armed = deadline;
        }
        let mut outputs = Vec::new();
        let mut ordered = Vec::new();
        // Set when this node's heartbeat goes now: when the one after it is due.
        let mut beat: Option<Instant> = None;
        let mut deadline_checks = false;
        tokio::select! {
            () = &mut shutdown => break,
            _ = keepalive.fired() => beat = Some(Instant::now() + config.timing.keepalive),
            Some(request) = outgoing.recv() => {
                let mut message = Message::new().with("t", request.msg_type.as_str());
                if let Some(to) = &request.to {
                    message.set("dest", to.as_str());
                }
                for (name, value) in &request.body {
                    message.set(name, value.as_str());
                }
                // Checked before sealing so that a refused message does not use up a number.
                let unsigned = wire::encode(&message, Format::Netstring, &authenticator);
                if unsigned.len() + 512 > limits.max_packet {
                    let _ = request.reply.send(Err(hbapi::error::HbError::InvalidArgument(format!(
                        "message of {} bytes: the most one packet carries is {} bytes",
                        unsigned.len(),
                        limits.max_packet - 512
                    ))));
                    continue;
                }
                let (seq, packet) = outbox.seal(&mut message, &authenticator);
                broadcast(&links, &packet, &snapshot);
                bump(&snapshot, Counter::MessagesSent);
                if request.to.as_deref().is_none_or(|to| to == options.node) {
                    let delivery = Delivery { msg_type: request.msg_type.clone(), body: request.body.iter().cloned().collect() };
                    let _ = CommInterface::message_received(&emitter, &options.node, &delivery.msg_type, delivery.body).await;
                }
                let _ = request.reply.send(Ok(seq));
            }
            Some(change) = async { crmd_owner_changes.as_mut()?.next().await }, if crmd_owner_changes.is_some() => {
                if let Ok(args) = change.args() {
                    let present = args.new_owner().is_some();
                    if let Some(verdict) = guard_of_watchdog.crmd_present(present) {
                        watchdog_verdict(&snapshot, &config, verdict.as_deref());
                    }
                }
            }
            Some(request) = control.recv() => match request {
                Control::WatchdogState { groups_here, hold, reply } => {
                    if let Some(verdict) = guard_of_watchdog.crmd_says(groups_here, &hold) {
                        watchdog_verdict(&snapshot, &config, verdict.as_deref());
                    }
                    let _ = reply.send(());
                }
                Control::Leave(reply) => {
                    if !left {
                        left = true;
                        let mut notice = Message::new().with("t", "shutdone").with("st", "dead");
                        let (_, packet) = outbox.seal(&mut notice, &authenticator);
                        // Twice: nothing follows it, so a lost notice would not be asked for
                        // again, and peers would wait for deadtime. The copy is a duplicate.
                        broadcast(&links, &packet, &snapshot);
                        broadcast(&links, &packet, &snapshot);
                        tracing::info!("shutdown notice sent: this node leaves the cluster");
                    }
                    let _ = reply.send(());
                }
                Control::Join(reply) => {
                    if left {
                        match state::next_generation(&options.state_dir) {
                            Ok(next) => generation = next,
                            // Peers would ignore the old generation: a time-based one instead.
                            Err(error) => {
                                tracing::error!("generation not advanced on file: {error}");
                                generation = u32::try_from(unix_time()).unwrap_or(u32::MAX);
                            }
                        }
                        outbox.generation_hex = format!("{generation:x}");
                        left = false;
                        beat = Some(Instant::now() + config.timing.keepalive);
                        tracing::info!(generation, "this node joins the cluster again");
                    }
                    let _ = reply.send(());
                }
            },
            Some(node) = ping_replies.recv() => {
                outputs.extend(membership.handle(Input::Heard { link: node.clone(), node, status: NodeStatus::Ping }, Instant::now()));
            }
            (index, result) = std::future::poll_fn(|cx| socket::poll_any(&link_sockets, next_link, cx, &mut datagram)) => {
                next_link = (index + 1) % link_sockets.len();
                let (length, from) = match result {
                    Ok((length, from)) => (length, from),
                    Err(error) => {
                        bump(&snapshot, Counter::ReceiveErrors);
                        tracing::debug!(link = %links[index].name, "receive failed: {error}");
                        continue;
                    }
                };
                let now = Instant::now();
                bump(&snapshot, Counter::Received);
                let link = &links[index].name;
                match wire::receive(&datagram[..length], &authenticator, &limits) {
                    Err(error) => {
                        let reason = match error {
                            WireError::Auth(_) | WireError::NoAuth => Counter::DroppedForged,
                            WireError::TooLarge(_) => Counter::DroppedOversized,
                            _ => Counter::DroppedMalformed,
                        };
                        bump(&snapshot, reason);
                        let forged = reason == Counter::DroppedForged;
                        let source = if links[index].serial { link.clone() } else { from.ip().to_string() };
                        match reject_log.reject(source.clone(), now).map(|unlogged| (source, unlogged)) {
                            Some((source, unlogged)) if forged => {
                                let claimed = rejects::claimed_node(&datagram[..length]).unwrap_or_else(|| "?".into());
                                tracing::warn!(%link, %source, claimed_node = %claimed, unlogged, "failed authentication: packet from {source} claiming to be {claimed} dropped ({error}); a wrong authkeys, or another cluster on this segment ({unlogged} more since the last line)");
                            }
                            Some((source, unlogged)) => {
                                tracing::info!(%link, %source, unlogged, "packet from {source} dropped: {error} ({unlogged} more since the last line)");
                            }
                            None => tracing::debug!(%link, "packet dropped: {error}"),
                        }
                    }
                    Ok((message, _)) => {
                        let Some(src) = message.get("src") else {
                            bump(&snapshot, Counter::DroppedMalformed);
                            continue;
                        };
                        if src == options.node {
                            continue;
                        }
                        let (Some(hg), Some(packet_seq)) = (
                            message.get("hg").and_then(|h| u32::from_str_radix(h, 16).ok()),
                            hex_field(&message, "seq"),
                        ) else {
                            // Heartbeat's protocol messages (NS_*) carry no sequence number;
                            // only a member may ask anything of this node. Its status does not
                            // matter: a node back from a partition asks for what it missed
                            // before it is heard again (Heartbeat logs the loss otherwise).
                            let member = membership
                                .members()
                                .any(|(name, kind, _)| name == src && kind == NodeKind::Normal);
                            if !member {
                                bump(&snapshot, Counter::DroppedNotMember);
                                continue;
                            }
                            protocol_message(&message, &options.node, &mut outbox, &mut inbound, &links, &authenticator, &snapshot, &mut ordered, now);
                            continue;
                        };
                        match guard.check(src, hg, packet_seq, now) {
                            Verdict::Replay => {
                                bump(&snapshot, Counter::DroppedReplay);
                                tracing::debug!(%link, src, hg, seq = packet_seq, "replayed packet dropped");
                            }
                            verdict => {
                                let is_status = message.get("t") == Some("status");
                                let departed_generation = departed.get(src).copied();
                                if departed_generation.is_some_and(|gone| hg > gone) {
                                    departed.remove(src);
                                }
                                if is_status && departed_generation.is_none_or(|gone| hg > gone) {
                                    let status = NodeStatus::from_heartbeat(message.get("st").unwrap_or("active"));
                                    let heard = membership.handle(Input::Heard { node: src.to_owned(), link: link.clone(), status }, now);
                                    let newcomer = heard.iter().any(|output| matches!(output,
                                        Output::NodeStatus { node, old: NodeStatus::Init | NodeStatus::Dead, .. } if node == src));
                                    outputs.extend(heard);
                                    // Our heartbeat goes in this wake-up, in step with the peers
                                    // (crate::cadence), and at once to a node heard for the first
                                    // time: it may be waiting to hear us.
                                    let step = if newcomer {
                                        Some(cadence::greet(config.timing.keepalive))
                                    } else if verdict == Verdict::Fresh {
                                        cadence::join_step(next_tick, now, config.timing.keepalive)
                                    } else {
                                        None
                                    };
                                    if let Some(first) = step {
                                        if let Err(error) = keepalive.set_periodic(first, config.timing.keepalive) {
                                            tracing::error!("timerfd: {error}");
                                        } else {
                                            beat = Some(now + first);
                                            bump(&snapshot, Counter::HeartbeatsEarly);
                                        }
                                    }
                                }
                                if verdict == Verdict::Fresh {
                                    if let Some(theirs) = message.get(CONFIG_DIGEST_FIELD) {
                                        if theirs != digest && !mismatches_reported.iter().any(|n| n == src) {
                                            mismatches_reported.push(src.to_owned());
                                            tracing::error!(node = src, theirs, ours = %digest, "CONFIGURATION MISMATCH: {src} runs other resource groups or another authentication key than this node; haresources/ha.toml and authkeys must be identical on every node");
                                            let _ = CommInterface::config_mismatch(&emitter, src, theirs, &digest).await;
                                        }
                                    }
                                    let for_us = !is_status
                                        && message.get("dest").is_none_or(|dest| dest == options.node);
                                    let item = for_us.then(|| Delivery::from_message(&message));
                                    if membership.status(src).is_some() {
                                        ordered.extend(inbound.accept(src, hg, packet_seq, item, now));
                                    }
                                } else {
                                    bump(&snapshot, Counter::Duplicates);
                                }
                            }
                        }
                    }
                }
            }
            _ = deadlines.fired() => {
                armed = None;
                deadline_checks = true;
            }
        }
        // Before any deadline is judged: silence that was this node's own stall is not the
        // peers' death.
        let woke = Instant::now();
        let silent = woke.saturating_duration_since(last_beat);
        if silent > config.timing.deadtime {
            last_beat = woke;
            bump(&snapshot, Counter::LocalStalls);
            tracing::error!(silent_ms = silent.as_millis() as u64, "No local heartbeat: this node sent none for {:.2} s (deadtime {:.2} s) — hbcomm was not scheduled. Its peers may have declared it dead and taken its groups over: they are given up here", silent.as_secs_f64(), config.timing.deadtime.as_secs_f64());
            outputs.extend(membership.handle(Input::Stalled { gap: silent }, woke));
            let _ = CommInterface::no_local_heartbeat(
                &emitter,
                silent.as_millis() as u64,
                config.timing.deadtime.as_millis() as u64,
            )
            .await;
        }
        if beat.is_some() {
            last_beat = woke;
            if let Some(device) = watchdog
                .as_mut()
                .filter(|_| guard_of_watchdog.starving().is_none())
            {
                device.tickle();
            }
        }
        // Every heartbeat of this node also runs the deadline checks (see next_tick above).
        if deadline_checks || beat.is_some() {
            let now = Instant::now();
            outputs.extend(membership.handle(Input::Tick, now));
            ordered.extend(inbound.tick(now));
        }
        if let Some(next) = beat.filter(|_| !left) {
            next_tick = next;
            heartbeats.send(&mut outbox, &links, &authenticator, &snapshot, pinger.as_deref());
        }
        for event in ordered {
            match event {
                InboundOutput::Deliver { sender, item, .. } => {
                    bump(&snapshot, Counter::MessagesDelivered);
                    if item.msg_type == "reqnodes" && !left {
                        // Heartbeat 3.0.6 asks one peer for the node list when its links come
                        // up, and reports itself active only once answered.
                        let mut nodelist: String = node_names.iter().map(|node| format!("{node} ")).collect();
                        if nodelist.is_empty() {
                            nodelist.push(' ');
                        }
                        let mut reply = Message::new()
                            .with("t", "repnodes")
                            .with("dest", sender.as_str())
                            .with("nodelist", nodelist)
                            .with("delnodelist", " ");
                        let (_, packet) = outbox.seal(&mut reply, &authenticator);
                        broadcast(&links, &packet, &snapshot);
                        bump(&snapshot, Counter::MessagesSent);
                    }
                    if item.msg_type == "shutdone" {
                        tracing::info!(node = %sender, "Received shutdown notice from '{sender}'");
                        if let Some(gone) = guard.generation(&sender) {
                            departed.insert(sender.clone(), gone);
                        }
                        outputs
                            .extend(membership.handle(Input::Left { node: sender.clone() }, Instant::now()));
                    }
                    let _ =
                        CommInterface::message_received(&emitter, &sender, &item.msg_type, item.body).await;
                }
                InboundOutput::Request { sender, first, last } => {
                    bump(&snapshot, Counter::RexmitRequested);
                    let mut request = Message::new()
                        .with("t", "NS_rexmit")
                        .with("dest", sender.as_str())
                        .with("firstseq", first.to_string())
                        .with("lastseq", last.to_string());
                    broadcast(&links, &outbox.stamp(&mut request, &authenticator), &snapshot);
                }
                InboundOutput::Lost { sender, first, last } => {
                    bump(&snapshot, Counter::MessagesLost);
                    tracing::warn!(node = %sender, "messages {first}..={last} from {sender} were lost and could not be retransmitted");
                }
                InboundOutput::Acknowledge { sender, seq } => {
                    let mut ack = Message::new()
                        .with("t", "NS_ackmsg")
                        .with("dest", sender.as_str())
                        .with("ackseq", format!("{seq:x}"));
                    broadcast(&links, &outbox.stamp(&mut ack, &authenticator), &snapshot);
                }
            }
        }
        if membership.lateness_version() != published_lateness {
            published_lateness = membership.lateness_version();
            publish_timing(&snapshot, &membership);
        }
        if outputs.is_empty() {
            continue;
        }
        for output in &outputs {
            match output {
                Output::NodeStatus { node, old, new } => {
                    if *new == NodeStatus::Dead {
                        tracing::warn!(node = %node, "node {node}: status dead");
                        // Its next run is a new generation; a partition's backlog is stale.
                        inbound.forget(node);
                    } else {
                        tracing::info!(node = %node, "node {node}: status {}", new.as_str());
                    }
                    let _ =
                        CommInterface::node_status_changed(&emitter, node, old.as_str(), new.as_str()).await;
                }
                Output::LinkStatus { node, link, up } => {
                    tracing::info!(node = %node, link = %link, "link {node}:{link} {}", if *up { "up" } else { "dead" });
                    let _ = CommInterface::link_status_changed(&emitter, node, link, *up).await;
                }
                Output::LateHeartbeat { node, silent_for } => {
                    tracing::warn!(node = %node, "Late heartbeat: node {node}: no heartbeat for {} ms (warntime {} ms)", silent_for.as_millis(), config.timing.warntime.as_millis());
                }
                Output::LateArrived {
                    node,
                    link,
                    gap,
                    longest,
                } => {
                    let suggested = hbapi::comm::suggested_deadtime(*longest)
                        .1
                        .max(config.timing.deadtime);
                    tracing::warn!(node = %node, link = %link, gap_ms = gap.as_millis() as u64, longest_ms = longest.as_millis() as u64, "heartbeat from {node} on {link} {:.2} s after the last (warntime {:.2} s); longest gap {:.2} s, deadtime {:.2} s (suggested at least {:.2} s)", gap.as_secs_f64(), config.timing.warntime.as_secs_f64(), longest.as_secs_f64(), config.timing.deadtime.as_secs_f64(), suggested.as_secs_f64());
                }
                Output::Returned { node, silent_for } => {
                    tracing::warn!(node = %node, "node {node} is back after {} ms of silence (partition healed or node restarted)", silent_for.as_millis());
                }
                Output::Unknown { node } => {
                    bump(&snapshot, Counter::DroppedUnknownNode);
                    // A foreign cluster on this segment sends many: once a minute per name.
                    if let Some(unlogged) = unknown_log.reject(node.clone(), Instant::now()) {
                        tracing::warn!(node = %node, unlogged, "heartbeat from {node:?}, which is not a configured node: another cluster on this segment with the same key and port? ({unlogged} more since the last line)");
                    }
                }
            }
        }
        publish(&snapshot, &membership, &options.node, Instant::now());
    }
    if let Some(device) = watchdog {
        device.close(guard_of_watchdog.may_disarm());
    }
    tracing::info!("hbcomm stopping");
    Ok(())
}

/// Says when the watchdog stops or starts being fed, in the log and on the bus.
fn watchdog_verdict(snapshot: &Mutex<Snapshot>, config: &ClusterConfig, starving: Option<&str>) {
    publish_watchdog(snapshot, config, starving);
    let timeout = config.watchdog_timeout().unwrap_or_default().as_secs();
    match starving {
        Some(reason) => tracing::error!(
            "watchdog no longer fed: {reason}; this node resets within {timeout} s unless that changes"
        ),
        None => tracing::warn!("watchdog fed again"),
    }
}

/// Counts one event in the counters the bus interface serves (no copy kept elsewhere).
fn bump(snapshot: &Mutex<Snapshot>, counter: Counter) {
    if let Ok(mut shared) = snapshot.lock() {
        match shared.counters.get_mut(counter.as_str()) {
            Some(count) => *count += 1,
            None => {
                shared.counters.insert(counter.as_str().to_owned(), 1);
            }
        }
    }
}

fn publish(snapshot: &Mutex<Snapshot>, membership: &Membership, local: &str, now: Instant) {
    let mut nodes = vec![NodeInfo {
        name: local.to_owned(),
        kind: NodeKind::Normal.as_str().into(),
        status: NodeStatus::Active.as_str().into(),
        links: Vec::new(),
    }];
    nodes.extend(membership.members().map(|(name, kind, status)| {
        NodeInfo {
            name: name.to_owned(),
            kind: kind.as_str().into(),
            status: status.as_str().into(),
            links: membership
                .links(name, now)
                .into_iter()
                .map(|(name, up)| LinkInfo { name, up })
                .collect(),
        }
    }));
    if let Ok(mut shared) = snapshot.lock() {
        shared.nodes = nodes;
    }
}

/// Publishes the timers and every peer's lateness (FAQ 12's measures).
fn publish_timing(snapshot: &Mutex<Snapshot>, membership: &Membership) {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let timing = membership.timing();
    let timing = HeartbeatTiming {
        keepalive_ms: millis(timing.keepalive),
        warntime_ms: millis(timing.warntime),
        deadtime_ms: millis(timing.deadtime),
        nodes: membership
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
    };
    if let Ok(mut shared) = snapshot.lock() {
        let HeartbeatTiming {
            watchdog,
            watchdog_timeout_ms,
            watchdog_starving,
            ..
        } = std::mem::replace(&mut shared.timing, timing);
        shared.timing.watchdog = watchdog;
        shared.timing.watchdog_timeout_ms = watchdog_timeout_ms;
        shared.timing.watchdog_starving = watchdog_starving;
    }
}

/// The watchdog as the bus shows it (with the timers: `HeartbeatTiming`).
fn publish_watchdog(snapshot: &Mutex<Snapshot>, config: &ClusterConfig, starving: Option<&str>) {
    if let Ok(mut shared) = snapshot.lock() {
        shared.timing.watchdog = config.watchdog.clone().unwrap_or_default();
        shared.timing.watchdog_timeout_ms = config
            .watchdog_timeout()
            .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        shared.timing.watchdog_starving = starving.unwrap_or_default().to_owned();
    }
}

/// `hbcomm`'s entry point: configuration from the master's environment or flags.
pub fn main() -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut args = std::env::args().skip(1);
    let mut insecure_crc = false;
    let mut config_dir = std::env::var(names::env::CONFIG_DIR).unwrap_or_else(|_| "/etc/ha.d".into());
    let mut node = std::env::var(names::env::NODE_NAME).ok();
    let mut state_dir = std::env::var(names::env::STATE_DIR).unwrap_or_else(|_| "/var/lib/heartbeat".into());
    let mut bind = std::env::var("HB_BIND_ADDRESS").ok();
    while let Some(arg) = args.next() {
        let value = |args: &mut dyn Iterator<Item = String>| args.next().unwrap_or_default();
        match arg.as_str() {
            "--insecure-crc" => insecure_crc = true,
            "--config-dir" => config_dir = value(&mut args),
            "--node" => node = Some(value(&mut args)),
            "--state-dir" => state_dir = value(&mut args),
            "--bind" => bind = Some(value(&mut args)),
            "--help" | "-h" => {
                println!("usage: hbcomm [--config-dir DIR] [--node NAME] [--state-dir DIR] [--bind ADDRESS] [--insecure-crc]\nNormally started by the heartbeat master, which passes these in the environment.");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("hbcomm: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    let loaded = match hbapi::daemon::read_config_in("hbcomm", std::path::Path::new(&config_dir)) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    // Before any thread exists: the policy is per thread and threads inherit it.
    let realtime = hbapi::realtime::apply(&loaded.config.realtime);
    hbapi::logging::init_with(
        "hbcomm",
        hbapi::logging::level_for_debug(loaded.config.logging.debug),
        &loaded.config.logging,
    );
    hbapi::realtime::log("hbcomm", realtime);
    let Some(node) = node else {
        tracing::error!("no node name: set {} or pass --node", names::env::NODE_NAME);
        return hbapi::daemon::no_respawn();
    };
    let bus_address = match hbapi::daemon::bus("hbcomm") {
        Ok((_, address)) => address,
        Err(code) => return code,
    };
    let bind = match bind.filter(|b| !b.is_empty()).map(|b| b.parse::<IpAddr>()) {
        Some(Ok(address)) => Some(address),
        Some(Err(error)) => {
            tracing::error!("--bind: {error}");
            return hbapi::daemon::no_respawn();
        }
        None => None,
    };
    let options = CommOptions {
        node,
        state_dir: PathBuf::from(state_dir),
        bus_address,
        bind,
        insecure_crc,
    };
    hbapi::daemon::block_on("hbcomm", async move {
        hbapi::daemon::follow_log_level();
        let shutdown = hbapi::daemon::terminated();
        match run(options, loaded.config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error @ CommError::Config(_)) => {
                tracing::error!("{error}");
                hbapi::daemon::no_respawn()
            }
            Err(error) => {
                tracing::error!("{error}");
                ExitCode::FAILURE
            }
        }
    })
}
