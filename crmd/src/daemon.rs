//! The daemon around [`crate::partition`]: it feeds the core what the bus brings (membership
//! from hbcomm, peer messages, lrmd's results, stonithd's fences, operator commands, time
//! passing) and carries out what the core returns. No decision rule lives here.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::object_server::SignalEmitter;

use hbapi::comm::{CommProxy, NodeStatus};
use hbapi::config::{AutoFailback, ClusterConfig, ResourceGroup};
use hbapi::crmd::{HoldInfo, NodeState};
use hbapi::lrmd::{rc, status, LrmdProxy};
use hbapi::names;
use hbapi::stonith::StonithProxy;

use crate::iface::{Command, CrmdInterface, Shared};
use crate::local::Executor;
use crate::message::PeerMessage;
use crate::outbox::Outbox;
use crate::partition::{Effect, Event, GroupOutcome, Partition, Work};
use crate::v1::{Mixed, V1Message};

/// Message type of crmd's cluster messages.
pub const MESSAGE_TYPE: &str = "crmd";

/// The core in charge: crmd's own protocol, or Heartbeat's v1 protocol while the other node
/// of a two-node cluster is a Heartbeat 3.0.6 node.
enum Core {
    Native(Box<Partition>),
    Mixed(Box<Mixed>),
}

impl Core {
    fn handle(&mut self, now: Instant, event: Event) -> Vec<Effect> {
        match self {
            Core::Native(core) => core.handle(now, event),
            Core::Mixed(core) => core.handle(now, event),
        }
    }

    fn settle(&mut self, now: Instant) -> Vec<Effect> {
        match self {
            Core::Native(core) => core.settle(now),
            Core::Mixed(_) => Vec::new(),
        }
    }

    fn unsettled(&self) -> bool {
        match self {
            Core::Native(core) => core.unsettled(),
            Core::Mixed(_) => false,
        }
    }

    fn next_deadline(&self) -> Instant {
        match self {
            Core::Native(core) => core.next_deadline(),
            Core::Mixed(core) => core.next_deadline(),
        }
    }

    /// What the watchdog is told (Heartbeat's v1 protocol is for two nodes: no quorum).
    fn watchdog_state(&self) -> (bool, String) {
        match self {
            Core::Native(core) => core.watchdog_state(),
            Core::Mixed(core) => (!core.running_here().is_empty(), String::new()),
        }
    }
}

/// Hands the core's watchdog state to [`speak_to_watchdog`] when it changed.
fn tell_watchdog(states: &tokio::sync::watch::Sender<(bool, String)>, core: &Core) {
    states.send_if_modified(|said| {
        let now = core.watchdog_state();
        if now == *said {
            return false;
        }
        *said = now;
        true
    });
}

/// Tells hbcomm's watchdog guard what crmd knows ([`Core::watchdog_state`]), in order, off
/// crmd's loop (hbcomm may be stopped: a call must not hold decisions up); again whenever
/// hbcomm comes back (a respawned hbcomm knows nothing). Ends once `states` is closed and
/// its last value sent.
async fn speak_to_watchdog(
    connection: zbus::Connection,
    mut states: tokio::sync::watch::Receiver<(bool, String)>,
) {
    let Ok(comm) = CommProxy::new(&connection).await else {
        return;
    };
    let mut comm_back = match zbus::fdo::DBusProxy::new(&connection).await {
        Ok(bus) => bus
            .receive_name_owner_changed_with_args(&[(0, names::comm::BUS_NAME)])
            .await
            .ok(),
        Err(_) => None,
    };
    let mut closed = false;
    loop {
        let (groups_here, hold) = states.borrow_and_update().clone();
        let sent = comm.set_watchdog_state(groups_here, &hold).await;
        if let Err(error) = &sent {
            tracing::warn!("hbcomm did not take the watchdog state: {error}; trying again");
        }
        if closed && sent.is_ok() {
            return;
        }
        tokio::select! {
            changed = states.changed(), if !closed => closed = changed.is_err(),
            Some(_) = async { comm_back.as_mut()?.next().await }, if comm_back.is_some() => {}
            () = tokio::time::sleep(std::time::Duration::from_secs(1)), if sent.is_err() => {}
        }
    }
}

/// A v1 message that says the sender is a Heartbeat node (not one of ours: ours carry the
/// marker), in a cluster of two where the v1 protocol applies.
fn heartbeat_peer(
    config: &ClusterConfig,
    local: &str,
    from: &str,
    body: &std::collections::HashMap<String, String>,
) -> bool {
    from != local
        && !body.contains_key(crate::v1::MARKER)
        && config.nodes.len() == 2
        && config.nodes.iter().any(|n| n == from)
}

/// What a local group operation came to.
#[derive(Debug)]
struct LocalDone {
    group: String,
    outcome: GroupOutcome,
}

/// FreeHA's status file: every node's state, one per line (replaced whole, so a reader never
/// sees half of it).
fn write_status_file(path: &std::path::Path, local: &str, states: &[NodeState]) {
    let mut text = format!("# node states as crmd on {local} sees them: NODE STATE [GROUPS]\n");
    for state in states {
        text.push_str(&format!("{} {}", state.node, state.state));
        if !state.groups.is_empty() {
            text.push_str(&format!(" {}", state.groups.join(" ")));
        }
        text.push('\n');
    }
    if let Err(error) = hbapi::statefile::replace(path, text.as_bytes(), 0o644) {
        tracing::warn!("status file {} not written: {error}", path.display());
    }
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

/// How crmd is run.
pub struct CrmdOptions {
    /// This node.
    pub node: String,
    /// Bus address.
    pub bus_address: String,
    /// The status file (RUN_DIR/status unless the master was given `-l PATH`).
    pub status_file: std::path::PathBuf,
}

/// How crmd ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every group of this node was stopped and the node left the cluster.
    Clean,
    /// A group could not be stopped: it may still run here.
    GroupsLeftRunning,
}

/// Where the core's effects go.
struct Edges {
    local: String,
    config: Arc<ClusterConfig>,
    emitter: SignalEmitter<'static>,
    outbox: Outbox,
    executor: Executor,
    stonith: StonithProxy<'static>,
    shared: Arc<Mutex<Shared>>,
    done: mpsc::UnboundedSender<LocalDone>,
}

impl Edges {
    /// Carries out `effects`; a fence request's answer goes back into the core. Returns how
    /// leaving ended, once it has.
    async fn execute(&self, core: &mut Core, effects: Vec<Effect>) -> Option<Ending> {
        let mut ending = None;
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Broadcast(message) => self.outbox.send("", message.encode()),
                Effect::SendV1(message) => {
                    let (msg_type, to, body) = message.encode();
                    self.outbox.send_typed(&to, msg_type, body);
                }
                Effect::Carry { group, work } => {
                    if let Some(group) = self.config.groups.iter().find(|g| g.id == group) {
                        carry_out(&self.executor, &self.done, group.clone(), work);
                    }
                }
                Effect::Fence { node, reason } => {
                    let result = self
                        .stonith
                        .fence(&node, "reboot", &reason)
                        .await
                        .map_err(|e| e.to_string());
                    queue.extend(core.handle(now(), Event::FenceRequested { node, result }));
                }
                Effect::GroupChanged { group, state } => {
                    let _ = CrmdInterface::group_changed(&self.emitter, &group, &self.local, state).await;
                }
                Effect::Decided { decision, trigger } => {
                    if let Ok(mut shared) = self.shared.lock() {
                        shared.record(&decision, &trigger);
                    }
                }
                Effect::TransitionCompleted { actions } => {
                    let _ = CrmdInterface::transition_completed(&self.emitter, actions).await;
                }
                Effect::Left { clean } => {
                    ending = Some(if clean {
                        Ending::Clean
                    } else {
                        Ending::GroupsLeftRunning
                    });
                }
            }
        }
        ending
    }
}

/// Keeps the bus interface's copy and the status file current.
fn publish(core: &Core, shared: &Mutex<Shared>, options: &CrmdOptions, last_states: &mut Vec<NodeState>) {
    // The v1 core has no decision maker, failure counts or holds: Heartbeat's protocol has none.
    let (node_states, view, fail_counts, decision_maker, holds, in_transition) = match core {
        Core::Native(core) => (
            core.node_states(),
            core.view(),
            core.fail_counts(),
            core.decision_maker().unwrap_or_default(),
            core.holds()
                .into_iter()
                .map(|hold| HoldInfo {
                    node: hold.node,
                    kind: hold.kind.to_owned(),
                    groups: hold.groups,
                    remaining_ms: u64::try_from(hold.remaining.as_millis()).unwrap_or(u64::MAX),
                })
                .collect(),
            core.unsettled() || !core.busy_here().is_empty() || core.awaiting_reports(),
        ),
        Core::Mixed(mixed) => (
            mixed.node_states(),
            mixed.view(),
            Vec::new(),
            String::new(),
            Vec::new(),
            !mixed.is_settled(),
        ),
    };
    if node_states != *last_states {
        write_status_file(&options.status_file, &options.node, &node_states);
        *last_states = node_states.clone();
    }
    if let Ok(mut shared) = shared.lock() {
        shared.view = Some(view);
        shared.node_states = node_states;
        shared.fail_counts = fail_counts;
        shared.decision_maker = decision_maker;
        shared.holds = holds;
        shared.in_transition = in_transition;
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs crmd until `shutdown` resolves and this node's groups are stopped.
pub async fn run(
    options: CrmdOptions,
    config: ClusterConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> zbus::Result<Ending> {
    let config = Arc::new(config);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let (commands_tx, mut commands) = mpsc::unbounded_channel::<Command>();
    let connection = zbus::connection::Builder::address(options.bus_address.as_str())
        .method_timeout(hbapi::bus::METHOD_TIMEOUT)
        .serve_at(
            names::crmd::OBJECT_PATH,
            CrmdInterface {
                local: options.node.clone(),
                shared: shared.clone(),
                commands: commands_tx,
                config: config.clone(),
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
    if config.nodes.len() == 2 && !fencing && config.ping_nodes.is_empty() {
        tracing::warn!("two nodes without fencing (stonith) or ping nodes: if the link between them breaks, BOTH will run every resource (split brain). Configure a stonith device, or ping nodes with ipfail");
    }
    if config.nodes.len() >= 3 && !fencing && config.watchdog.is_none() && !config.groups.is_empty() {
        tracing::warn!("{} nodes without fencing (stonith) or a watchdog: if every process of the stack on a node dies at once, or the node hangs for longer than its peers wait for its own stop, its groups keep running there while the others start them. Configure a stonith device or a watchdog", config.nodes.len());
    }
    if config.auto_failback == AutoFailback::Legacy {
        tracing::warn!(
            "auto_failback legacy is deprecated (Heartbeat says so too); it behaves as auto_failback on here, and hb_standby is refused"
        );
    }
    let mut core = Core::Native(Box::new(Partition::new(&options.node, config.clone(), now())));
    hbapi::bus::wait_for_name(&connection, names::lrmd::BUS_NAME).await;
    hbapi::bus::wait_for_name(&connection, names::comm::BUS_NAME).await;
    // A node that left the cluster (a clean stop of crmd alone) joins it again.
    if let Err(error) = comm.join().await {
        tracing::warn!("hbcomm did not take the join: {error}");
    }
    let (executor, mut monitor_results) = Executor::new(lrmd).await?;
    // Start-up probe: what already runs here is reported before anyone decides anything.
    // All groups at once: lrmd runs them as its parallelism allows.
    let probes = config.groups.iter().map(|group| {
        let executor = executor.clone();
        async move { (group.id.clone(), executor.probe_group(group).await) }
    });
    let mut found = Vec::new();
    for (group, running) in futures_util::future::join_all(probes).await {
        if running {
            tracing::warn!(group = %group, "{group} found running at start-up");
            found.push(group);
        }
    }
    // Subscribed only after the probe: a signal stream nobody reads holds up the whole
    // connection (zbus applies back-pressure). What happened meanwhile is caught up below:
    // membership from ListNodes, everyone's state from their answers to our hello.
    let mut node_changes = comm.receive_node_status_changed().await?;
    let mut stalls = comm.receive_no_local_heartbeat().await?;
    let mut messages = comm.receive_message_received().await?;
    let mut fences = stonith.receive_fence_finished().await?;
    // Where the engine decides quorum (Corosync), its verdict; asked again whenever hbcomm
    // comes back (a respawned one does not repeat it).
    let mut quorum_changes = comm.receive_quorum_changed().await?;
    let mut comm_back = zbus::fdo::DBusProxy::new(&connection)
        .await?
        .receive_name_owner_changed_with_args(&[(0, names::comm::BUS_NAME)])
        .await?;
    let engine_quorum = |quorum: zbus::Result<(bool, bool)>| match quorum {
        Ok((true, quorate)) => Some(Event::EngineQuorum { quorate }),
        _ => None,
    };
    let first_quorum = engine_quorum(comm.quorum().await);
    let members: Vec<(String, NodeStatus)> = comm
        .list_nodes()
        .await
        .map(|nodes| {
            nodes
                .into_iter()
                .filter(|n| !n.is_ping())
                .map(|n| {
                    let status = n.node_status();
                    (n.name, status)
                })
                .collect()
        })
        .unwrap_or_default();
    tracing::info!(node = %options.node, running = ?found, "crmd started");
    // Under systemd (Type=notify); the master gives its children no notify socket.
    let _ = hbapi::notify::notify("READY=1");
    let (done_tx, mut done) = mpsc::unbounded_channel::<LocalDone>();
    let edges = Edges {
        local: options.node.clone(),
        config: config.clone(),
        emitter,
        outbox: outbox.clone(),
        executor,
        stonith,
        shared: shared.clone(),
        done: done_tx,
    };
    let mut members_now: std::collections::BTreeMap<String, NodeStatus> = members.iter().cloned().collect();
    let effects = core.handle(
        now(),
        Event::Started {
            running: found,
            members,
        },
    );
    edges.execute(&mut core, effects).await;
    if let Some(event) = first_quorum {
        let effects = core.handle(now(), event);
        edges.execute(&mut core, effects).await;
    }
    // A Heartbeat peer answers this with what it holds (ours ignore it: it carries the
    // marker). Once per life of the peer: Heartbeat logs an error for a second `starting`
    // while it negotiates. One that is not active yet ignores it, and gets another.
    let mut probed: std::collections::BTreeSet<String> = Default::default();
    let probe =
        |edges: &Edges, peer: &str, status: NodeStatus, probed: &mut std::collections::BTreeSet<String>| {
            if config.nodes.len() == 2
                && peer != options.node
                && status == NodeStatus::Active
                && probed.insert(peer.to_owned())
            {
                let (msg_type, to, body) = V1Message::Starting.encode();
                edges.outbox.send_typed(&to, msg_type, body);
            }
        };
    for (peer, status) in &members_now {
        probe(&edges, peer, *status, &mut probed);
    }
    // Set when the Heartbeat peer turned out to be ours (upgraded): the partition core takes
    // over again once the v1 core is idle.
    let mut back_to_native = false;
    let mut warned_v1: std::collections::BTreeSet<String> = Default::default();
    let mut last_states: Vec<NodeState> = Vec::new();
    let mut stopping = false;
    let (watchdog_tx, watchdog_rx) = tokio::sync::watch::channel(core.watchdog_state());
    let watchdog_speaker = config
        .watchdog
        .is_some()
        .then(|| tokio::spawn(speak_to_watchdog(connection.clone(), watchdog_rx)));
    tokio::pin!(shutdown);
    let ending = loop {
        if back_to_native {
            if let Core::Mixed(mixed) = &core {
                if mixed.idle() && !stopping {
                    let running: Vec<String> = mixed.running_here().into_iter().collect();
                    let mut partition = Box::new(Partition::new(&options.node, config.clone(), now()));
                    let members = members_now.iter().map(|(n, s)| (n.clone(), *s)).collect();
                    let effects = partition.handle(now(), Event::Started { running, members });
                    core = Core::Native(partition);
                    back_to_native = false;
                    if let Some(ending) = edges.execute(&mut core, effects).await {
                        break ending;
                    }
                }
            }
        }
        let wake_at = tokio::time::Instant::from_std(core.next_deadline());
        // Events first, every one that is ready; the core settles when none is left (the
        // last arm), so that a burst of results makes one report and one decision.
        let event = tokio::select! {
            biased;
            () = &mut shutdown, if !stopping => {
                stopping = true;
                Some(Event::Shutdown)
            }
            () = tokio::time::sleep_until(wake_at) => Some(Event::Tick),
            Some(signal) = node_changes.next() => {
                let Ok(args) = signal.args() else { continue };
                let Some(status) = NodeStatus::parse(args.new) else {
                    tracing::warn!(node = %args.node, "hbcomm reports {} as {:?}, a status this crmd does not know: ignored", args.node, args.new);
                    continue;
                };
                if config.nodes.iter().any(|n| n == args.node) {
                    members_now.insert(args.node.to_owned(), status);
                    if status == NodeStatus::Dead {
                        probed.remove(args.node);
                    } else if matches!(core, Core::Native(_)) {
                        probe(&edges, args.node, status, &mut probed);
                    }
                }
                Some(Event::NodeStatus { node: args.node.to_owned(), status })
            }
            Some(signal) = messages.next() => {
                let Ok(args) = signal.args() else { continue };
                if args.msg_type != MESSAGE_TYPE {
                    let message = match V1Message::decode(args.msg_type, &args.body) {
                        Ok(Some(message)) => message,
                        Ok(None) => continue,
                        Err(error) => {
                            tracing::warn!(from = %args.from, "{} message from {} not understood: {error}", args.msg_type, args.from);
                            continue;
                        }
                    };
                    if !heartbeat_peer(&config, &options.node, args.from, &args.body) {
                        if config.nodes.len() != 2
                            && args.from != options.node
                            && !args.body.contains_key(crate::v1::MARKER)
                            && warned_v1.insert(args.from.to_owned())
                        {
                            tracing::error!(node = %args.from, "{} is a Heartbeat 3.0.6 node: its v1 resource protocol is for two-node clusters, and this one has {}; upgrade every node (nothing is decided while it does not report)", args.from, config.nodes.len());
                        }
                        continue;
                    }
                    if let Core::Native(partition) = &core {
                        // Every node sends shutdone (hbcomm does): it tells nothing of the sender.
                        if message == V1Message::Shutdone {
                            continue;
                        }
                        if partition.is_leaving() {
                            continue;
                        }
                        let peer_status = members_now.get(args.from).copied().unwrap_or(NodeStatus::Active);
                        let (mixed, effects) = Mixed::new(
                            &options.node,
                            args.from,
                            config.clone(),
                            partition.running_here(),
                            partition.busy_here(),
                            peer_status,
                            now(),
                        );
                        core = Core::Mixed(Box::new(mixed));
                        back_to_native = false;
                        if let Some(ending) = edges.execute(&mut core, effects).await {
                            break ending;
                        }
                    }
                    let Core::Mixed(mixed) = &mut core else { continue };
                    let effects = mixed.message(now(), args.from, message);
                    if let Some(ending) = edges.execute(&mut core, effects).await {
                        break ending;
                    }
                    publish(&core, &shared, &options, &mut last_states);
                    continue;
                }
                match PeerMessage::decode(&args.body) {
                    Ok(message) => {
                        if let Core::Mixed(mixed) = &core {
                            if args.from == mixed.peer() {
                                tracing::info!(peer = %args.from, "{} now speaks crmd's protocol (upgraded): leaving Heartbeat's v1 protocol", args.from);
                                back_to_native = true;
                            }
                            continue;
                        }
                        Some(Event::Message { from: args.from.to_owned(), message })
                    }
                    Err(error) => {
                        tracing::warn!(from = %args.from, "crmd message from {} not understood: {error}", args.from);
                        continue;
                    }
                }
            }
            Some(finished) = done.recv() => Some(Event::LocalDone { group: finished.group, outcome: finished.outcome }),
            Some(result) = monitor_results.recv() => {
                let healthy = result.status == status::DONE
                    && matches!(result.rc, rc::OK | rc::RUNNING_PROMOTED | rc::DEGRADED | rc::DEGRADED_PROMOTED);
                if result.interval_ms == 0 || healthy {
                    continue;
                }
                let outcome = if result.status == status::DONE { rc::name(result.rc).to_owned() } else { result.status.clone() };
                Some(Event::MonitorFailed { resource: result.resource, result: outcome })
            }
            Some(signal) = fences.next() => {
                // zbus takes only stonithd's signals here (it matches the sender with the
                // name's owner); the cores then count only a fence crmd asked for and still
                // waits on.
                let Ok(args) = signal.args() else { continue };
                let record = args.record;
                Some(Event::FenceFinished { op_id: record.op_id, ok: record.ok, message: record.message })
            }
            Some(command) = commands.recv() => Some(Event::Command(command)),
            Some(signal) = quorum_changes.next() => {
                let Ok(args) = signal.args() else { continue };
                Some(Event::EngineQuorum { quorate: args.quorate })
            }
            Some(change) = comm_back.next() => {
                let back = change.args().is_ok_and(|args| args.new_owner().is_some());
                if !back {
                    continue;
                }
                match engine_quorum(comm.quorum().await) {
                    Some(event) => Some(event),
                    None => continue,
                }
            }
            Some(signal) = stalls.next() => {
                let Ok(args) = signal.args() else { continue };
                Some(Event::NoLocalHeartbeat { silent: std::time::Duration::from_millis(args.silent_ms) })
            }
            () = std::future::ready(()), if core.unsettled() => None,
        };
        let settled = event.is_none();
        let effects = match event {
            Some(event) => core.handle(now(), event),
            None => core.settle(now()),
        };
        if let Some(ending) = edges.execute(&mut core, effects).await {
            break ending;
        }
        if settled || matches!(core, Core::Mixed(_)) {
            publish(&core, &shared, &options, &mut last_states);
        }
        tell_watchdog(&watchdog_tx, &core);
    };
    publish(&core, &shared, &options, &mut last_states);
    tell_watchdog(&watchdog_tx, &core);
    drop(watchdog_tx);
    if let Some(speaker) = watchdog_speaker {
        // Its last word before crmd leaves the bus: whether groups are left here.
        let _ = tokio::time::timeout(hbapi::bus::METHOD_TIMEOUT, speaker).await;
    }
    outbox.flush().await;
    if ending == Ending::Clean {
        // Heartbeat's shutdown notice: peers drop this node at once instead of waiting for
        // deadtime. Only after a clean stop: a node that may still run a group never says
        // it left.
        if let Err(error) = comm.leave().await {
            tracing::warn!("hbcomm did not announce the departure: {error}");
        }
    }
    tracing::info!(?ending, "crmd stopped");
    Ok(ending)
}
