//! `hbcomm`: heartbeats on every link, membership, and the bus API for them.
//!
//! The I/O around the sans-I/O node ([`crate::node::Node`]): the loop owns the sockets, the
//! timers, the watchdog device and the bus, feeds the node what arrives with the time it
//! arrived, and carries out the effects it returns ([`Edges`]).

#[cfg(feature = "corosync")]
pub mod corosync;
pub mod iface;
pub mod media;
pub mod ping;
pub mod serial;
pub mod socket;
pub mod state;
pub mod timer;
pub mod watchdog;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::object_server::SignalEmitter;

use hbapi::comm::{Counter, HeartbeatTiming};
use hbapi::config::{AuthMethod, ClusterConfig, Engine};
use hbapi::names;

use crate::node::{Effect, Identity, Node, Send};
use crate::watchdog::Guard;
use crate::wire::Authenticator;

use self::iface::{CommInterface, Control, Outgoing, Snapshot};

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

/// /proc/loadavg for Heartbeat's `ld` field, kept open (reopening it five times a second is a
/// measurable part of an idle node's CPU) and read at most once a second (the kernel updates
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

/// What an engine's core shows of its members and timers (Heartbeat's [`Node`], Corosync's
/// [`crate::cpg_view::CpgView`]).
pub(crate) trait View {
    fn nodes(&self, now: Instant) -> Vec<hbapi::comm::NodeInfo>;
    fn timing(&self) -> HeartbeatTiming;
}

impl View for Node {
    fn nodes(&self, now: Instant) -> Vec<hbapi::comm::NodeInfo> {
        Node::nodes(self, now)
    }
    fn timing(&self) -> HeartbeatTiming {
        Node::timing(self)
    }
}

/// Where an engine's packets go ([`Effect::Send`]).
pub(crate) trait Transport {
    fn send(&self, packet: &[u8], snapshot: &Mutex<Snapshot>);
}

/// Heartbeat's links: every packet to every destination of every link.
struct Links<'a>(&'a [media::Link]);

impl Transport for Links<'_> {
    fn send(&self, packet: &[u8], snapshot: &Mutex<Snapshot>) {
        broadcast(self.0, packet, snapshot);
    }
}

/// What carries out the node's effects: the links, the keepalive timer, the ping sockets, the
/// watchdog device and the bus.
pub(crate) struct Edges<'a> {
    config: &'a ClusterConfig,
    transport: &'a dyn Transport,
    snapshot: &'a Mutex<Snapshot>,
    emitter: &'a SignalEmitter<'static>,
    keepalive: &'a timer::FdTimer,
    pinger: Option<&'a ping::Pinger>,
    ping_seq: u16,
    watchdog: Option<watchdog::Device>,
    /// Whether the watchdog may be fed (crmd's word and presence).
    guard: Guard,
}

impl<'a> Edges<'a> {
    /// The edges of one engine's loop: its transport, and what every engine shares.
    fn new(
        config: &'a ClusterConfig,
        transport: &'a dyn Transport,
        snapshot: &'a Mutex<Snapshot>,
        emitter: &'a SignalEmitter<'static>,
        keepalive: &'a timer::FdTimer,
        pinger: Option<&'a ping::Pinger>,
        watchdog: Option<watchdog::Device>,
    ) -> Self {
        Edges {
            config,
            transport,
            snapshot,
            emitter,
            keepalive,
            pinger,
            ping_seq: 0,
            watchdog,
            guard: Guard::new(),
        }
    }

    async fn carry_out(&mut self, node: &dyn View, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send(packet) => self.transport.send(&packet, self.snapshot),
                Effect::Count(counter) => bump(self.snapshot, counter),
                Effect::Deliver { sender, message } => {
                    let _ = CommInterface::message_received(
                        self.emitter,
                        &sender,
                        &message.msg_type,
                        message.body,
                    )
                    .await;
                }
                Effect::NodeStatus { node, old, new } => {
                    let _ =
                        CommInterface::node_status_changed(self.emitter, &node, old.as_str(), new.as_str())
                            .await;
                }
                Effect::LinkStatus { node, link, up } => {
                    let _ = CommInterface::link_status_changed(self.emitter, &node, &link, up).await;
                }
                Effect::ConfigMismatch { node, theirs, ours } => {
                    let _ = CommInterface::config_mismatch(self.emitter, &node, &theirs, &ours).await;
                }
                Effect::NoLocalHeartbeat { silent, deadtime } => {
                    let _ = CommInterface::no_local_heartbeat(self.emitter, millis(silent), millis(deadtime))
                        .await;
                }
                Effect::Keepalive(first) => {
                    if let Err(error) = self.keepalive.set_periodic(first, self.config.timing.keepalive) {
                        tracing::error!("timerfd: {error}");
                    }
                }
                Effect::Beat => {
                    if let Some(device) = self.watchdog.as_mut().filter(|_| self.guard.starving().is_none()) {
                        device.tickle();
                    }
                }
                Effect::Ping => {
                    if let Some(pinger) = self.pinger {
                        self.ping_seq = self.ping_seq.wrapping_add(1);
                        for _ in 0..pinger.send_all(self.ping_seq) {
                            bump(self.snapshot, Counter::PingSendErrors);
                        }
                    }
                }
                Effect::MembersChanged => {
                    if let Ok(mut shared) = self.snapshot.lock() {
                        shared.nodes = node.nodes(Instant::now());
                    }
                }
                Effect::TimingChanged => publish_timing(self.snapshot, node),
                Effect::Quorum(quorate) => {
                    if let Ok(mut shared) = self.snapshot.lock() {
                        shared.quorum = Some(quorate);
                    }
                    let _ = CommInterface::quorum_changed(self.emitter, quorate).await;
                }
            }
        }
    }

    /// What the bus shows before the first event: the members, the timers, the watchdog.
    fn publish_start(&self, view: &dyn View) {
        if let Ok(mut shared) = self.snapshot.lock() {
            shared.nodes = view.nodes(Instant::now());
        }
        publish_timing(self.snapshot, view);
        if self.watchdog.is_some() {
            publish_watchdog(self.snapshot, self.config, None);
        }
    }

    /// crmd appeared on the bus or left it.
    fn crmd_presence(&mut self, change: &zbus::fdo::NameOwnerChanged) {
        if let Ok(args) = change.args() {
            let present = args.new_owner().is_some();
            if let Some(verdict) = self.guard.crmd_present(present) {
                self.watchdog_verdict(verdict.as_deref());
            }
        }
    }

    /// A planned stop: the watchdog is disarmed unless groups are left running.
    fn close(self) {
        if let Some(device) = self.watchdog {
            device.close(self.guard.may_disarm());
        }
    }

    /// Says when the watchdog stops or starts being fed, in the log and on the bus.
    fn watchdog_verdict(&self, starving: Option<&str>) {
        publish_watchdog(self.snapshot, self.config, starving);
        let timeout = self.config.watchdog_timeout().unwrap_or_default().as_secs();
        match starving {
            Some(reason) => tracing::error!(
                "watchdog no longer fed: {reason}; this node resets within {timeout} s unless that changes"
            ),
            None => tracing::warn!("watchdog fed again"),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What every engine serves: the bus interface and its requests, the watchdog device, and
/// crmd's presence (which matters to the watchdog only, see [`crate::watchdog`]).
pub(crate) struct Served {
    pub(crate) connection: zbus::Connection,
    pub(crate) emitter: SignalEmitter<'static>,
    pub(crate) snapshot: Arc<Mutex<Snapshot>>,
    pub(crate) outgoing: mpsc::Receiver<Outgoing>,
    pub(crate) control: mpsc::Receiver<Control>,
    pub(crate) watchdog: Option<watchdog::Device>,
    pub(crate) crmd_owner_changes: Option<zbus::fdo::NameOwnerChangedStream>,
}

/// Takes hbcomm's bus name and serves its interface, then opens the watchdog.
async fn serve(
    options: &CommOptions,
    config: &ClusterConfig,
    generation: u32,
    quorum: Option<bool>,
) -> Result<Served, CommError> {
    let snapshot = Arc::new(Mutex::new(Snapshot {
        quorum,
        ..Snapshot::default()
    }));
    let (outgoing_tx, outgoing) = mpsc::channel::<Outgoing>(64);
    let (control_tx, control) = mpsc::channel::<Control>(4);
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
    let watchdog = match (&config.watchdog, config.watchdog_timeout()) {
        (Some(path), Some(timeout)) => {
            Some(watchdog::Device::open(path, timeout).map_err(CommError::Config)?)
        }
        _ => None,
    };
    let crmd_owner_changes = match &watchdog {
        Some(_) => Some(
            zbus::fdo::DBusProxy::new(&connection)
                .await?
                .receive_name_owner_changed_with_args(&[(0, names::crmd::BUS_NAME)])
                .await?,
        ),
        None => None,
    };
    Ok(Served {
        connection,
        emitter,
        snapshot,
        outgoing,
        control,
        watchdog,
        crmd_owner_changes,
    })
}

/// The keepalive timer (running from now) and the deadline timer (not armed).
fn timers(config: &ClusterConfig) -> Result<(timer::FdTimer, timer::FdTimer), CommError> {
    let timerfd = |e: std::io::Error| CommError::Io(format!("timerfd: {e}"));
    let keepalive = timer::FdTimer::new().map_err(timerfd)?;
    keepalive
        .set_periodic(Duration::ZERO, config.timing.keepalive)
        .map_err(timerfd)?;
    Ok((keepalive, timer::FdTimer::new().map_err(timerfd)?))
}

/// The next generation (peers take a higher one as a restart), falling back to the time.
fn next_generation_or_time(state_dir: &std::path::Path) -> u32 {
    match state::next_generation(state_dir) {
        Ok(next) => next,
        // Peers would ignore the old generation: a time-based one instead.
        Err(error) => {
            tracing::error!("generation not advanced on file: {error}");
            u32::try_from(crate::node::unix_time()).unwrap_or(u32::MAX)
        }
    }
}

/// Runs hbcomm until `shutdown` resolves, on the engine the configuration names.
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
    let generation = state::next_generation(&options.state_dir)?;
    match &config.engine {
        Engine::Heartbeat => run_heartbeat(options, config.clone(), authenticator, generation, shutdown).await,
        #[cfg(feature = "corosync")]
        Engine::Corosync { group } => {
            corosync::run(options, config.clone(), group, authenticator, generation, shutdown).await
        }
        #[cfg(not(feature = "corosync"))]
        Engine::Corosync { .. } => Err(CommError::Config(
            "engine corosync: this hbcomm was built without Corosync (cargo feature `corosync`); install a build with it, or use engine heartbeat".into(),
        )),
    }
}

/// crmd's word and presence, for the watchdog guard (both engines).
async fn watchdog_word(edges: &mut Edges<'_>, control: Control) -> Option<Control> {
    match control {
        Control::WatchdogState {
            groups_here,
            hold,
            reply,
        } => {
            if let Some(verdict) = edges.guard.crmd_says(groups_here, &hold) {
                edges.watchdog_verdict(verdict.as_deref());
            }
            let _ = reply.send(());
            None
        }
        other => Some(other),
    }
}

/// Heartbeat's own protocol on the configured links.
async fn run_heartbeat(
    options: CommOptions,
    config: ClusterConfig,
    authenticator: Authenticator,
    generation: u32,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), CommError> {
    let uuid = state::node_uuid(&options.state_dir)?;
    // A configuration error will not read better on a respawn: exit 100, not 1.
    hbapi::links::check(&config, options.bind).map_err(|e| CommError::Config(e.to_string()))?;
    let links = media::open(&config, options.bind, &authenticator)?;
    let link_names: Vec<String> = {
        let mut names: Vec<String> = links.iter().map(|l| l.name.clone()).collect();
        names.dedup();
        names
    };
    let identity = Identity {
        node: options.node.clone(),
        uuid: uuid.to_vec(),
        generation,
    };
    let mut node = Node::new(identity, &config, authenticator, &link_names, Instant::now());
    let Served {
        connection: _connection,
        emitter,
        snapshot,
        mut outgoing,
        mut control,
        watchdog,
        mut crmd_owner_changes,
    } = serve(&options, &config, generation, None).await?;
    tracing::info!(node = %options.node, generation, links = ?link_names, "hbcomm started");
    // Under systemd (Type=notify); the master gives its children no notify socket.
    let _ = hbapi::notify::notify("READY=1");

    // Datagrams are read in the loop itself, into one buffer: a task per link handing packets
    // over a channel cost a second wake-up and a copy per packet.
    let link_sockets: Vec<&socket::DatagramSocket> = links.iter().map(|link| &link.socket).collect();
    let mut datagram = vec![0u8; 65_536];
    let mut next_link = 0;

    let pinger = ping::Pinger::open(&config.ping_nodes, options.bind)?.map(Arc::new);
    let mut ping_replies = listen_to_pings(pinger.as_ref());

    let (keepalive, deadlines) = timers(&config)?;
    let mut load = LoadAverage::open();
    let transport = Links(&links);
    let mut edges = Edges::new(
        &config,
        &transport,
        &snapshot,
        &emitter,
        &keepalive,
        pinger.as_deref(),
        watchdog,
    );
    tokio::pin!(shutdown);
    edges.publish_start(&node);
    // When the deadline timer is set for. Each heartbeat received pushes the next deadline
    // out; rather than re-arming the timer for every packet, it is re-armed only to fire
    // sooner, and when it fires early the loop arms it for the real deadline. The keepalive
    // tick runs the deadline checks too (Node::next_deadline): in a quiet cluster this timer
    // never fires.
    let mut armed: Option<Instant> = None;
    loop {
        let deadline = node.next_deadline();
        let fires_first =
            matches!((armed, deadline), (Some(at), Some(wanted)) if at <= wanted && at > Instant::now());
        if deadline.is_some() && !fires_first && armed != deadline {
            if let Err(error) = deadlines.set_deadline(deadline) {
                tracing::error!("timerfd: {error}");
            }
            armed = deadline;
        }
        let effects = tokio::select! {
            () = &mut shutdown => break,
            _ = keepalive.fired() => node.on_keepalive(Instant::now(), &load.read()),
            Some(request) = outgoing.recv() => {
                let send = Send { to: request.to, msg_type: request.msg_type, body: request.body };
                let (result, effects) = node.on_send(Instant::now(), send);
                // Answered once sent, and once delivered here when it is for this node too.
                edges.carry_out(&node, effects).await;
                let _ = request.reply.send(result);
                continue;
            }
            Some(change) = async { crmd_owner_changes.as_mut()?.next().await }, if crmd_owner_changes.is_some() => {
                edges.crmd_presence(&change);
                continue;
            }
            Some(request) = control.recv() => match watchdog_word(&mut edges, request).await {
                None => continue,
                Some(Control::Leave(reply)) => {
                    let effects = node.leave(Instant::now());
                    edges.carry_out(&node, effects).await;
                    let _ = reply.send(());
                    continue;
                }
                Some(Control::Join(reply)) => {
                    let effects = if node.has_left() {
                        node.join(Instant::now(), next_generation_or_time(&options.state_dir))
                    } else {
                        Vec::new()
                    };
                    edges.carry_out(&node, effects).await;
                    let _ = reply.send(());
                    continue;
                }
                Some(Control::WatchdogState { .. }) => continue,
            },
            Some(ping_node) = ping_replies.recv() => node.on_ping_reply(Instant::now(), &ping_node),
            (index, result) = std::future::poll_fn(|cx| socket::poll_any(&link_sockets, next_link, cx, &mut datagram)) => {
                next_link = (index + 1) % link_sockets.len();
                let link = &links[index];
                match result {
                    Ok((length, from)) => {
                        let from = (!link.serial).then(|| from.ip());
                        node.on_datagram(Instant::now(), &link.name, from, &datagram[..length])
                    }
                    Err(error) => {
                        tracing::debug!(link = %link.name, "receive failed: {error}");
                        node.on_receive_error(Instant::now())
                    }
                }
            }
            _ = deadlines.fired() => {
                armed = None;
                node.on_deadline(Instant::now())
            }
        };
        edges.carry_out(&node, effects).await;
    }
    edges.close();
    tracing::info!("hbcomm stopping");
    Ok(())
}

/// Reads the ping nodes' echo replies, one task per ICMP socket, and hands over the names of
/// the nodes that answered.
fn listen_to_pings(pinger: Option<&Arc<ping::Pinger>>) -> mpsc::Receiver<String> {
    let (ping_tx, ping_replies) = mpsc::channel::<String>(256);
    let Some(pinger) = pinger else {
        return ping_replies;
    };
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
    ping_replies
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

/// Publishes the timers and every peer's lateness, keeping the watchdog's part.
fn publish_timing(snapshot: &Mutex<Snapshot>, node: &dyn View) {
    let timing = node.timing();
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
