//! Corosync as hbcomm's engine: the CPG, quorum and cfg handles, their file descriptors on
//! tokio, and the loop around the sans-I/O [`CpgView`].
//!
//! The library calls its callbacks from inside `*_dispatch`, under the bindings' global lock:
//! they only queue what they were told ([`EVENTS`]), and the loop hands the queue to the view
//! once `dispatch` has returned. Nothing calls into the library from a callback.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rust_corosync::{self as cs, cfg, cmap, cpg, quorum, CsError, DispatchFlags, NodeId};
use tokio::io::unix::AsyncFd;

use hbapi::comm::{Counter, HeartbeatTiming, NodeInfo};
use hbapi::config::ClusterConfig;

use crate::cpg_view::{Connected, CpgView, LeaveReason, Process};
use crate::node::{Effect, Send};
use crate::wire::Authenticator;

use super::iface::{Control, Snapshot};
use super::{bump, listen_to_pings, ping, serve, watchdog_word};
use super::{CommError, CommOptions, Edges, Served, Transport, View};

/// What the callbacks were told, in order.
enum Event {
    Configuration {
        members: Vec<Process>,
        left: Vec<(Process, LeaveReason)>,
    },
    Deliver {
        process: Process,
        bytes: Vec<u8>,
    },
    Quorum(bool),
    ShutdownRequested,
}

/// Filled by the callbacks, drained by the loop after each dispatch. One per process: hbcomm
/// holds one connection at a time.
static EVENTS: Mutex<Vec<Event>> = Mutex::new(Vec::new());

fn queue(event: Event) {
    if let Ok(mut events) = EVENTS.lock() {
        events.push(event);
    }
}

fn drain() -> Vec<Event> {
    EVENTS
        .lock()
        .map(|mut events| std::mem::take(&mut *events))
        .unwrap_or_default()
}

fn process(address: &cpg::Address) -> Process {
    Process {
        node_id: u32::from(address.nodeid),
        pid: address.pid,
    }
}

fn on_deliver(_: &cpg::Handle, _group: String, node_id: NodeId, pid: u32, message: &[u8], _: usize) {
    queue(Event::Deliver {
        process: Process {
            node_id: u32::from(node_id),
            pid,
        },
        bytes: message.to_vec(),
    });
}

fn on_configuration(
    _: &cpg::Handle,
    _group: &str,
    members: Vec<cpg::Address>,
    left: Vec<cpg::Address>,
    _joined: Vec<cpg::Address>,
) {
    let left = left
        .iter()
        .map(|address| {
            let reason = match address.reason {
                cpg::Reason::Leave => LeaveReason::Left,
                cpg::Reason::NodeDown => LeaveReason::NodeDown,
                cpg::Reason::ProcDown => LeaveReason::ProcessDown,
                _ => LeaveReason::Other,
            };
            (process(address), reason)
        })
        .collect();
    queue(Event::Configuration {
        members: members.iter().map(process).collect(),
        left,
    });
}

fn on_quorum(_: &quorum::Handle, quorate: bool, _: quorum::RingId, _: Vec<NodeId>) {
    queue(Event::Quorum(quorate));
}

fn on_shutdown_request(_: &cfg::Handle, _flags: u32) {
    queue(Event::ShutdownRequested);
}

/// A descriptor the library owns (it closes it in `finalize`).
struct LibraryFd(RawFd);

impl AsRawFd for LibraryFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// How often a call is made while Corosync says "try again" (it is busy forming a
/// membership), 100 ms apart, as Pacemaker's `cs_repeat` does: at start-up, before anything is
/// served, and for a planned leave. When hbcomm connects again from its loop it makes one
/// attempt (the loop must keep feeding the watchdog) and tries the whole connection again a
/// second later.
const PATIENT: u32 = 20;

/// How often hbcomm tries to connect again once Corosync is gone.
const RECONNECT: Duration = Duration::from_secs(1);

/// Calls `call` up to `attempts` times while Corosync says "try again". Sends are queued
/// instead ([`CpgSender::flush`]).
fn repeat<T>(attempts: u32, what: &str, mut call: impl FnMut() -> cs::Result<T>) -> cs::Result<T> {
    let attempts = attempts.max(1);
    for attempt in 1..=attempts {
        match call() {
            Err(CsError::CsErrTryAgain) if attempt < attempts => {
                tracing::debug!("{what}: Corosync says try again ({attempt})");
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
    Err(CsError::CsErrTryAgain)
}

/// Corosync's names for its node ids (cmap's `nodelist.node.N.nodeid` and `.name`, or
/// `.ring0_addr` where a node has no name).
fn nodelist() -> cs::Result<BTreeMap<u32, String>> {
    let handle = cmap::initialize(cmap::Map::Icmap)?;
    let mut names = BTreeMap::new();
    for index in 0..1024 {
        let node_id = match cmap::get(&handle, &format!("nodelist.node.{index}.nodeid")) {
            Ok(cmap::Data::UInt32(id)) => id,
            Ok(_) => continue,
            Err(CsError::CsErrNotExist) => break,
            Err(error) => return Err(error),
        };
        let text = |key: &str| match cmap::get(&handle, &format!("nodelist.node.{index}.{key}")) {
            Ok(cmap::Data::String(text)) => Some(text.trim_end_matches('\0').to_owned()),
            _ => None,
        };
        if let Some(name) = text("name").or_else(|| text("ring0_addr")) {
            names.insert(node_id, name);
        }
    }
    Ok(names)
}

/// One connection to the local Corosync. The descriptors are declared first so that they are
/// deregistered from tokio before the handles (dropped after them) close them.
pub(crate) struct Connection {
    cpg_fd: AsyncFd<LibraryFd>,
    quorum_fd: AsyncFd<LibraryFd>,
    cfg_fd: AsyncFd<LibraryFd>,
    cpg: cpg::Handle,
    quorum: quorum::Handle,
    cfg: cfg::Handle,
    group: String,
    /// Whether this node is in the group (not after a planned leave).
    joined: bool,
}

/// A connection, and what Corosync said when it was made.
struct Opened {
    connection: Connection,
    facts: Connected,
}

#[derive(Clone, Copy)]
enum Ready {
    Cpg,
    Quorum,
    Cfg,
}

impl Connection {
    fn open(group: &str, attempts: u32) -> Result<Opened, String> {
        let names = repeat(attempts, "cmap", nodelist).map_err(|e| format!("cmap (the nodelist): {e}"))?;
        let model = cpg::ModelData::ModelV1(cpg::Model1Data {
            flags: cpg::Model1Flags::None,
            deliver_fn: Some(on_deliver),
            confchg_fn: Some(on_configuration),
            totem_confchg_fn: None,
        });
        let cpg = repeat(attempts, "cpg_initialize", || cpg::initialize(&model, 0))
            .map_err(|e| format!("cpg: {e}"))?;
        let local_id = u32::from(cpg::local_get(&cpg).map_err(|e| format!("cpg_local_get: {e}"))?);
        let model = quorum::ModelData::ModelV1(quorum::Model1Data {
            flags: quorum::Model1Flags::None,
            quorum_notification_fn: Some(on_quorum),
            nodelist_notification_fn: None,
        });
        let (quorum, _) = repeat(attempts, "quorum_initialize", || quorum::initialize(&model, 0))
            .map_err(|e| format!("quorum: {e}"))?;
        let quorate = repeat(attempts, "quorum_getquorate", || quorum::getquorate(&quorum))
            .map_err(|e| format!("quorum_getquorate: {e}"))?;
        repeat(attempts, "quorum_trackstart", || {
            quorum::trackstart(&quorum, cs::TrackFlags::Changes)
        })
        .map_err(|e| format!("quorum_trackstart: {e}"))?;
        let cfg = repeat(attempts, "cfg_initialize", || {
            cfg::initialize(&cfg::Callbacks {
                corosync_cfg_shutdown_callback_fn: Some(on_shutdown_request),
            })
        })
        .map_err(|e| format!("cfg: {e}"))?;
        // Asked before Corosync shuts down (corosync-cfgtool -H): see the loop.
        repeat(attempts, "cfg_trackstart", || {
            cfg::track_start(&cfg, cfg::TrackFlags::None)
        })
        .map_err(|e| format!("cfg_trackstart: {e}"))?;
        let fd = |fd: cs::Result<i32>, what: &str| {
            let fd = fd.map_err(|e| format!("{what}_fd_get: {e}"))?;
            // SAFETY: the descriptor stays open until the handle is finalized, which happens
            // after this AsyncFd is dropped (Connection's field order).
            unsafe { AsyncFd::register_with_interest(LibraryFd(fd), tokio::io::Interest::READABLE) }
                .map_err(|e| format!("{what} descriptor: {e}"))
        };
        let connection = Connection {
            cpg_fd: fd(cpg::fd_get(&cpg), "cpg")?,
            quorum_fd: fd(quorum::fd_get(&quorum), "quorum")?,
            cfg_fd: fd(cfg::fd_get(&cfg), "cfg")?,
            cpg,
            quorum,
            cfg,
            group: group.to_owned(),
            joined: false,
        };
        Ok(Opened {
            connection,
            facts: Connected {
                local_id,
                names,
                quorate,
            },
        })
    }

    fn join(&mut self, attempts: u32) -> cs::Result<()> {
        repeat(attempts, "cpg_join", || cpg::join(&self.cpg, &self.group))?;
        self.joined = true;
        Ok(())
    }

    fn leave(&mut self, sender: &CpgSender) {
        if self.joined {
            sender.flush();
            if let Err(error) = repeat(PATIENT, "cpg_leave", || cpg::leave(&self.cpg, &self.group)) {
                tracing::warn!("cpg_leave: {error}");
            }
            self.joined = false;
        }
    }

    /// Waits until one of the handles has something to dispatch.
    async fn ready(&self) -> std::io::Result<Ready> {
        let (mut guard, ready) = tokio::select! {
            guard = self.cpg_fd.readable() => (guard?, Ready::Cpg),
            guard = self.quorum_fd.readable() => (guard?, Ready::Quorum),
            guard = self.cfg_fd.readable() => (guard?, Ready::Cfg),
        };
        // Cleared before dispatching: what arrives during the dispatch wakes the loop again.
        guard.clear_ready();
        Ok(ready)
    }

    fn dispatch(&self, ready: Ready) -> cs::Result<()> {
        match ready {
            Ready::Cpg => cpg::dispatch(&self.cpg, DispatchFlags::All),
            Ready::Quorum => quorum::dispatch(&self.quorum, DispatchFlags::All),
            Ready::Cfg => cfg::dispatch(&self.cfg, DispatchFlags::All),
        }
    }
}

/// Where messages go: the group of the connection in force, with what Corosync could not take
/// yet (flow control), sent in order first. Kept apart from [`Connection`] so that it outlives
/// a lost connection: nothing is sent then ([`CpgView::on_send`] refuses).
#[derive(Default)]
struct CpgSender {
    inner: Mutex<Outbound>,
}

#[derive(Default)]
struct Outbound {
    /// A copy of the connection's handle (a copy does not finalize it).
    cpg: Option<cpg::Handle>,
    pending: VecDeque<Vec<u8>>,
}

impl CpgSender {
    fn attach(&self, connection: Option<&Connection>) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.cpg = connection.map(|c| c.cpg.clone());
            inner.pending.clear();
        }
    }

    fn has_pending(&self) -> bool {
        self.inner.lock().is_ok_and(|inner| !inner.pending.is_empty())
    }

    /// Sends what waits, in order, until Corosync asks to try again.
    fn flush(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Outbound { cpg, pending } = &mut *inner;
        let Some(cpg) = cpg else {
            pending.clear();
            return;
        };
        while let Some(packet) = pending.front() {
            match cpg::mcast_joined(cpg, cpg::Guarantee::TypeAgreed, packet) {
                Ok(()) => {
                    pending.pop_front();
                }
                Err(CsError::CsErrTryAgain) => return,
                Err(error) => {
                    tracing::warn!("cpg_mcast_joined: {error}: message dropped");
                    pending.pop_front();
                }
            }
        }
    }
}

impl Transport for CpgSender {
    fn send(&self, packet: &[u8], snapshot: &Mutex<Snapshot>) {
        if let Ok(mut inner) = self.inner.lock() {
            let pending = &mut inner.pending;
            // At most a few seconds of a busy node's messages: beyond that Corosync is not
            // taking any, and the oldest are the least useful.
            if pending.len() >= 4096 {
                pending.pop_front();
                bump(snapshot, Counter::SendErrors);
            }
            pending.push_back(packet.to_vec());
        }
        bump(snapshot, Counter::Sent);
        self.flush();
    }
}

impl View for CpgView {
    fn nodes(&self, _now: Instant) -> Vec<NodeInfo> {
        CpgView::nodes(self)
    }
    fn timing(&self) -> HeartbeatTiming {
        CpgView::timing(self)
    }
}

/// Connects, checks the nodelist against the configuration, joins the group.
fn connect(
    options: &CommOptions,
    config: &ClusterConfig,
    group: &str,
    authenticator: &Authenticator,
    generation: u32,
    attempts: u32,
) -> Result<(Connection, CpgView, bool), CommError> {
    let Opened {
        mut connection,
        facts,
    } = Connection::open(group, attempts)
        .map_err(|e| CommError::Io(format!("Corosync: {e}; is corosync running?")))?;
    let local_id = facts.local_id;
    if facts.names.get(&local_id) != Some(&options.node) {
        return Err(CommError::Config(format!(
            "Corosync's nodelist names this node (id {local_id}) {:?}, and heartbeat-rs calls it {:?}: give it the same name in corosync.conf (nodelist.node.N.name) and ha.cf (node)",
            facts.names.get(&local_id).map_or("nothing", String::as_str),
            options.node
        )));
    }
    let quorate = facts.quorate;
    let view = CpgView::new(
        &options.node,
        facts,
        config,
        authenticator.clone(),
        generation,
        Instant::now(),
    );
    let unnamed = view.unnamed_nodes(&config.nodes);
    if !unnamed.is_empty() {
        return Err(CommError::Config(format!(
            "ha.cf names node(s) {} that Corosync's nodelist does not: every node needs the same name in corosync.conf (nodelist.node.N.name) and ha.cf",
            unnamed.join(", ")
        )));
    }
    connection
        .join(attempts)
        .map_err(|e| CommError::Io(format!("cpg_join {group}: {e}")))?;
    Ok((connection, view, quorate))
}

/// Runs hbcomm on Corosync until `shutdown` resolves.
pub(crate) async fn run(
    options: CommOptions,
    config: ClusterConfig,
    group: &str,
    authenticator: Authenticator,
    mut generation: u32,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), CommError> {
    tokio::pin!(shutdown);
    // Corosync may start after this node's heartbeat-rs (or be restarting): waited for, as
    // Pacemaker waits, before anything is served — crmd decides nothing until hbcomm is on the
    // bus.
    let mut attempts = 0u32;
    let (connection, mut view, quorate) = loop {
        match connect(&options, &config, group, &authenticator, generation, PATIENT) {
            Ok(connected) => break connected,
            Err(error @ CommError::Config(_)) => return Err(error),
            Err(error) => {
                if attempts.is_multiple_of(10) {
                    tracing::warn!("waiting for Corosync: {error}");
                }
                attempts += 1;
            }
        }
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    let mut connection = Some(connection);
    let Served {
        connection: bus,
        emitter,
        snapshot,
        mut outgoing,
        mut control,
        watchdog,
        mut crmd_owner_changes,
    } = serve(&options, &config, generation, Some(view.quorate())).await?;
    tracing::info!(node = %options.node, generation, group, node_id = view.local_id(), quorate, "hbcomm started on Corosync");
    let _ = hbapi::notify::notify("READY=1");

    let pinger = ping::Pinger::open(&config.ping_nodes, options.bind)?.map(std::sync::Arc::new);
    let mut ping_replies = listen_to_pings(pinger.as_ref());
    let (keepalive, deadlines) = super::timers(&config)?;
    let sender = CpgSender::default();
    sender.attach(connection.as_ref());
    let mut edges = Edges::new(
        &config,
        &sender,
        &snapshot,
        &emitter,
        &keepalive,
        pinger.as_deref(),
        watchdog,
    );
    edges.publish_start(&view);
    let mut shutdown_requested = false;
    let mut armed: Option<Instant> = None;
    let mut reconnect_at = tokio::time::Instant::now();
    loop {
        let deadline = view.next_deadline();
        if deadline != armed {
            if let Err(error) = deadlines.set_deadline(deadline) {
                tracing::error!("timerfd: {error}");
            }
            armed = deadline;
        }
        let waiting = sender.has_pending();
        let effects = tokio::select! {
            () = &mut shutdown => break,
            _ = keepalive.fired() => {
                let mut effects = view.on_keepalive(Instant::now());
                // Ping nodes are echoed with every keepalive, as on Heartbeat's engine.
                if pinger.is_some() {
                    effects.push(Effect::Ping);
                }
                effects
            }
            ready = async { connection.as_ref()?.ready().await.ok() }, if connection.is_some() => {
                let result = match (&connection, ready) {
                    (Some(connection), Some(ready)) => connection.dispatch(ready),
                    _ => Err(CsError::CsErrLibrary),
                };
                let mut effects = Vec::new();
                for event in drain() {
                    effects.extend(match event {
                        Event::Configuration { members, left } => view.on_configuration(Instant::now(), &members, &left),
                        Event::Deliver { process, bytes } => view.on_deliver(process, &bytes),
                        Event::Quorum(quorate) => view.on_quorum(quorate),
                        Event::ShutdownRequested => {
                            if !shutdown_requested {
                                shutdown_requested = true;
                                tracing::warn!("Corosync is asked to shut down: stopping this node's heartbeat-rs first, so that its groups are handed over");
                                tokio::spawn(stop_the_master(bus.clone()));
                            }
                            Vec::new()
                        }
                    });
                }
                if let Err(error) = result {
                    if error != CsError::CsErrTryAgain {
                        tracing::error!("Corosync dispatch: {error}");
                        connection = None;
                        sender.attach(None);
                        reconnect_at = tokio::time::Instant::now() + RECONNECT;
                        effects.extend(view.on_disconnected());
                    }
                }
                effects
            }
            () = tokio::time::sleep(Duration::from_millis(20)), if waiting => {
                sender.flush();
                continue;
            }
            () = tokio::time::sleep_until(reconnect_at), if connection.is_none() => {
                reconnect_at = tokio::time::Instant::now() + RECONNECT;
                // Back in the cluster as a new member: peers took this node's groups over
                // when it disappeared; they are met as after a partition.
                generation = super::next_generation_or_time(&options.state_dir);
                match connect(&options, &config, group, &authenticator, generation, 1) {
                    Ok((reconnected, fresh, _)) => {
                        tracing::warn!(generation, "connected to Corosync again");
                        connection = Some(reconnected);
                        sender.attach(connection.as_ref());
                        view = fresh;
                        // Quorum is said once the group's membership is known.
                        vec![Effect::Quorum(view.quorate()), Effect::MembersChanged]
                    }
                    Err(error) => {
                        tracing::debug!("Corosync still unreachable: {error}");
                        continue;
                    }
                }
            }
            Some(request) = outgoing.recv() => {
                let send = Send { to: request.to, msg_type: request.msg_type, body: request.body };
                let (result, effects) = view.on_send(send);
                edges.carry_out(&view, effects).await;
                let _ = request.reply.send(result);
                continue;
            }
            Some(change) = async { crmd_owner_changes.as_mut()?.next().await }, if crmd_owner_changes.is_some() => {
                edges.crmd_presence(&change);
                continue;
            }
            Some(request) = control.recv() => {
                match watchdog_word(&mut edges, request).await {
                    Some(Control::Leave(reply)) => {
                        if let Some(connection) = &mut connection {
                            connection.leave(&sender);
                        }
                        let _ = reply.send(());
                    }
                    Some(Control::Join(reply)) => {
                        if let Some(connection) = connection.as_mut().filter(|c| !c.joined) {
                            if let Err(error) = connection.join(PATIENT) {
                                tracing::error!("cpg_join: {error}");
                            }
                        }
                        let _ = reply.send(());
                    }
                    _ => {}
                }
                continue;
            }
            Some(ping_node) = ping_replies.recv() => view.on_ping_reply(Instant::now(), &ping_node),
            _ = deadlines.fired() => {
                armed = None;
                view.on_deadline(Instant::now())
            }
        };
        edges.carry_out(&view, effects).await;
    }
    edges.close();
    if let Some(mut connection) = connection {
        connection.leave(&sender);
        if shutdown_requested {
            // Everything here is stopped: Corosync may go.
            if let Err(error) = cfg::reply_to_shutdown(&connection.cfg, cfg::ShutdownReply::Yes) {
                tracing::warn!("cfg_replyto_shutdown: {error}");
            }
        }
    }
    tracing::info!("hbcomm stopping");
    Ok(())
}

/// Asks the master to stop this node (crmd hands its groups over first, hbcomm stops last).
async fn stop_the_master(bus: zbus::Connection) {
    let stopped = async { hbapi::master::HeartbeatProxy::new(&bus).await?.shutdown().await };
    if let Err(error) = stopped.await {
        tracing::error!("the master did not take the stop: {error}; Corosync will stop without waiting for this node's groups");
    }
}
