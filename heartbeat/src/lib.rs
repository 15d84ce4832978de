//! `heartbeat`, the master process: reads the configuration, provides the bus, starts and
//! respawns the core daemons and every ha.cf `respawn` line, and serves its own interface.
//!
//! What a core daemon's death means for the node's resources:
//! - `hbcomm`: this node stops sending heartbeats. It is respawned at once (well within
//!   deadtime, measured in milliseconds); if it stays down longer than deadtime, the peers
//!   declare this node dead and take over its resources — which is why the master restarts it
//!   before anything else and why fencing matters.
//! - `crmd`: no decisions are made on this node while it is down; resources keep running and
//!   are found again by crmd's start-up probes when it comes back.
//! - `lrmd`: running resources keep running (agents are separate processes); monitors pause
//!   until it is back and has reloaded its persisted history.
//! - `stonithd`: fencing requests wait until it is back; takeover that needs fencing waits too.

pub mod bus;
pub mod child;
pub mod cli;
pub mod iface;
pub mod liveness;
pub mod policy;
pub mod supervisor;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use zbus::object_server::SignalEmitter;

use hbapi::config::{ClusterConfig, Loaded, Style};
use hbapi::names;

use self::bus::{BusChoice, ProvidedBus};
use self::child::ChildSpec;
use self::iface::{Command, MasterInterface};
use self::policy::RespawnPolicy;
use self::supervisor::Supervisor;

/// The core daemons, in start order: messaging first, then the executor and fencing that
/// the resource manager needs.
pub const CORE_DAEMONS: &[(&str, &str)] = &[
    ("hbcomm", names::comm::BUS_NAME),
    ("lrmd", names::lrmd::BUS_NAME),
    ("stonithd", names::stonithd::BUS_NAME),
    ("crmd", names::crmd::BUS_NAME),
];

/// How the master is run.
#[derive(Debug, Clone)]
pub struct MasterOptions {
    /// Configuration directory (`/etc/ha.d`).
    pub config_dir: PathBuf,
    /// This node's name.
    pub node: String,
    /// State directory (`/var/lib/heartbeat`).
    pub state_dir: PathBuf,
    /// Run directory (`/run/heartbeat`).
    pub run_dir: PathBuf,
    /// Which bus.
    pub bus: BusChoice,
    /// Where the core daemons' binaries are.
    pub daemon_dir: PathBuf,
    /// Respawn tunables.
    pub policy: RespawnPolicy,
    /// How long a child gets between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
    /// Whether the master starts and respawns the core daemons (false: systemd's units do).
    pub core_daemons: bool,
    /// Where crmd writes the status file (FreeHA's `-l`), when not in the run directory.
    pub status_file: Option<PathBuf>,
}

/// Errors that stop the master.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The bus could not be provided.
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    /// Talking on the bus failed.
    #[error("bus: {0}")]
    ZBus(#[from] zbus::Error),
    /// Files in the run or state directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another master runs with this run directory.
    #[error("heartbeat is already running with pid {0} (see {1})")]
    AlreadyRunning(i32, PathBuf),
    /// A core daemon refused to run (exit 100): restarting the node would not help.
    #[error("{0}")]
    Refused(String),
    /// The bus the master provided went away.
    #[error("{0}")]
    BusDied(String),
    /// The stop ended with resources that may still run here.
    #[error("{0}")]
    LeftRunning(String),
}

impl MasterError {
    /// The master's exit status: 6 (LSB's "not configured", which systemd's unit does not
    /// restart) where the configuration or a daemon refused, 1 otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            MasterError::Config(_) | MasterError::Refused(_) => 6,
            _ => 1,
        }
    }
}

/// Heartbeat's plugins that heartbeat-rs provides itself: a respawn line naming one in a
/// Heartbeat directory (`/usr/lib/heartbeat/ipfail`, `/usr/lib64/heartbeat/ipfail`, …) runs
/// ours from `daemon_dir`, so that Heartbeat's ha.cf works unchanged (Heartbeat's own binary
/// speaks Heartbeat's IPC, which is not here).
pub const HEARTBEAT_PLUGINS: &[&str] = &["ipfail"];

/// The program a respawn line runs: ours for Heartbeat's plugins, when installed.
fn plugin_program(program: &str, daemon_dir: &Path) -> PathBuf {
    let path = PathBuf::from(program);
    let in_heartbeat_dir = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|dir| dir == "heartbeat");
    match path.file_name().and_then(|n| n.to_str()) {
        Some(name) if in_heartbeat_dir && HEARTBEAT_PLUGINS.contains(&name) => {
            let ours = daemon_dir.join(name);
            if hbapi::process::is_executable(&ours) {
                ours
            } else {
                path
            }
        }
        _ => path,
    }
}

/// The children a configuration asks for: core daemons found in `daemon_dir`, then the
/// respawn lines.
pub fn child_specs(config: &ClusterConfig, daemon_dir: &Path, core_daemons: bool) -> Vec<ChildSpec> {
    let mut specs: Vec<ChildSpec> = CORE_DAEMONS
        .iter()
        .filter(|_| core_daemons)
        .map(|(name, _)| daemon_dir.join(name))
        .filter(|path| nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok())
        .map(|program| {
            let name = program
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // crmd stops every group of its node before it exits (so that a peer may take
            // them at once): it gets the sum of their stop timeouts, not the default.
            let stop_timeout = (name == "crmd").then(|| {
                config
                    .groups
                    .iter()
                    .flat_map(|g| g.resources.iter().map(|r| r.ops.stop_timeout))
                    .sum::<std::time::Duration>()
                    + std::time::Duration::from_secs(10)
            });
            ChildSpec {
                name,
                program,
                args: Vec::new(),
                user: None,
                core: true,
                stop_timeout,
            }
        })
        .collect();
    for respawn in &config.respawn {
        let base = respawn.name();
        let mut name = base.clone();
        let mut suffix = 2;
        while specs.iter().any(|s| s.name == name) {
            name = format!("{base}-{suffix}");
            suffix += 1;
        }
        specs.push(ChildSpec {
            name,
            program: plugin_program(&respawn.command[0], daemon_dir),
            args: respawn.command[1..].to_vec(),
            user: Some(respawn.user.clone()),
            core: false,
            stop_timeout: None,
        });
    }
    specs
}

/// The environment every child gets.
pub fn child_env(
    options: &MasterOptions,
    config: &ClusterConfig,
    bus_address: &str,
) -> Vec<(String, String)> {
    let mut env = vec![
        (names::env::BUS_ADDRESS.to_owned(), bus_address.to_owned()),
        (names::env::NODE_NAME.to_owned(), options.node.clone()),
        (
            names::env::CONFIG_DIR.to_owned(),
            options.config_dir.display().to_string(),
        ),
        (
            names::env::STATE_DIR.to_owned(),
            options.state_dir.display().to_string(),
        ),
        (
            names::env::RUN_DIR.to_owned(),
            options.run_dir.display().to_string(),
        ),
    ];
    if config.logging.debug > 0 {
        env.push((names::env::DEBUG.to_owned(), config.logging.debug.to_string()));
    }
    if let Some(path) = &options.status_file {
        env.push((names::env::STATUS_FILE.to_owned(), path.display().to_string()));
    }
    env.extend(config.env.iter().cloned());
    env
}

/// hbcomm's own check of the links, run by `--check` and before anything starts, so that a
/// configuration hbcomm would refuse stops the start with its reason instead of a crash loop.
/// `HB_BIND_ADDRESS` is the address hbcomm will bind (several nodes on one host).
pub fn check_links(config: &ClusterConfig) -> Result<(), String> {
    let bind = match std::env::var("HB_BIND_ADDRESS").ok().filter(|b| !b.is_empty()) {
        Some(text) => Some(
            text.parse::<std::net::IpAddr>()
                .map_err(|e| format!("HB_BIND_ADDRESS {text:?}: {e}"))?,
        ),
        None => None,
    };
    hbapi::links::check(config, bind).map_err(|e| e.to_string())
}

/// Checks the respawn lines can run: every program executable, every user known.
pub fn preflight(specs: &[ChildSpec]) -> Result<(), MasterError> {
    let problems: Vec<String> = specs
        .iter()
        .filter_map(|spec| {
            child::preflight(spec)
                .err()
                .map(|e| format!("respawn {}: {e}", spec.command_line()))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(MasterError::Config(problems.join("\n")))
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> MasterError + '_ {
    move |source| MasterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The pid in RUN_DIR/heartbeat.pid if a master holds that file's lock: `Ok(None)` with no
/// pid file, `Err(Some(pid))` for a pid file no master holds (the master died; the pid may
/// since name an unrelated process, which must never be signalled), `Err(None)` for a pid
/// file that cannot be read.
pub fn running_pid(run_dir: &Path) -> Result<Option<i32>, Option<i32>> {
    use nix::fcntl::{Flock, FlockArg};
    let path = run_dir.join(names::run_files::PID);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(None),
    };
    let pid = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 0);
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // Nobody holds it: whatever the pid names, it is not a master.
        Ok(_unlocked_on_drop) => Err(pid),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => pid.map(Some).ok_or(None),
        Err(_) => Err(None),
    }
}

/// Takes RUN_DIR/heartbeat.pid for this process: locked for as long as the returned handle
/// lives (so that a live unrelated process named by a stale file never counts as a master),
/// then this pid written in it.
fn take_pid_file(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, MasterError> {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::Write;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_error(path))?;
    let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            let pid = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            return Err(MasterError::AlreadyRunning(pid, path.to_path_buf()));
        }
        Err((_, errno)) => return Err(io_error(path)(std::io::Error::from(errno))),
    };
    locked.set_len(0).map_err(io_error(path))?;
    locked
        .write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(io_error(path))?;
    Ok(locked)
}

/// Whether `pid` is a live process (a zombie has finished: only its parent has not reaped it).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Passes FreeHA's signals (and `-m`) to crmd, which owns the node's services.
async fn tell_crmd(connection: zbus::Connection, command: Command) {
    // `-m` (and a signal during start-up) may come before crmd is on the bus.
    hbapi::bus::wait_for_name(&connection, names::crmd::BUS_NAME).await;
    let outcome = async {
        let crmd = hbapi::crmd::CrmdProxy::new(&connection).await?;
        match command {
            Command::Hangup => crmd.stop_services().await,
            Command::UserSignal1 | Command::ForceStart => crmd.force_start().await,
            _ => crmd.clear_error().await,
        }
    }
    .await;
    match outcome {
        Ok(()) => tracing::info!("{command:?} passed to crmd"),
        Err(error) => tracing::error!("{command:?} not passed to crmd: {error}"),
    }
}

/// Runs the master until a [`Command::Shutdown`] arrives on `commands` (or the bus it runs
/// dies). `commands_tx` is handed to the bus interface.
pub async fn run(
    options: MasterOptions,
    loaded: Loaded,
    commands_tx: mpsc::UnboundedSender<Command>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> Result<(), MasterError> {
    let specs = child_specs(&loaded.config, &options.daemon_dir, options.core_daemons);
    preflight(&specs)?;
    for dir in [&options.run_dir, &options.state_dir] {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let pid_path = options.run_dir.join(names::run_files::PID);
    let pid_file = take_pid_file(&pid_path)?;
    let _ = std::fs::remove_file(options.run_dir.join(names::run_files::LAST_STOP));

    let result = serve(&options, loaded, specs, commands_tx, &mut commands).await;

    // How this run ended, for `heartbeat -k` (which cannot wait for a process it did not start).
    let outcome = match &result {
        Ok(()) => "0 stopped cleanly\n".to_owned(),
        Err(error) => format!("{} {error}\n", error.exit_status()),
    };
    let _ = std::fs::write(options.run_dir.join(names::run_files::LAST_STOP), outcome);
    let _ = std::fs::remove_file(&pid_path);
    drop(pid_file);
    let _ = std::fs::remove_file(options.run_dir.join(names::run_files::BUS_ADDRESS));
    result
}

async fn serve(
    options: &MasterOptions,
    loaded: Loaded,
    specs: Vec<ChildSpec>,
    commands_tx: mpsc::UnboundedSender<Command>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Result<(), MasterError> {
    let mut provided: ProvidedBus = bus::provide(&options.bus, &options.run_dir).await?;
    tracing::info!(address = %provided.address, kind = provided.kind, "cluster bus ready");
    let address_path = options.run_dir.join(names::run_files::BUS_ADDRESS);
    std::fs::write(&address_path, format!("{}\n", provided.address)).map_err(io_error(&address_path))?;

    let env = child_env(options, &loaded.config, &provided.address);
    let mut supervisor = Supervisor::new(options.policy, options.stop_timeout, env);
    let (parameters_tx, parameters) =
        tokio::sync::watch::channel(hbapi::config::heartbeat_parameters(&loaded.config));
    let interface = MasterInterface {
        node_name: options.node.clone(),
        children: supervisor.subscribe(),
        commands: commands_tx,
        parameters,
    };
    let connection = zbus::connection::Builder::address(provided.address.as_str())
        .method_timeout(hbapi::bus::METHOD_TIMEOUT)
        .serve_at(names::master::OBJECT_PATH, interface)
        .name(names::master::BUS_NAME)
        .build()
        .await;
    let connection = match connection {
        Ok(connection) => connection,
        Err(error) => {
            provided.stop().await;
            return Err(error.into());
        }
    };
    supervisor.set_emitter(SignalEmitter::new(&connection, names::master::OBJECT_PATH)?.into_owned());

    let core: Vec<String> = specs.iter().filter(|s| s.core).map(|s| s.name.clone()).collect();
    for spec in specs {
        supervisor.add(spec).await;
    }
    // Start-up is a phase of the loop, not a wait before it: a daemon that dies meanwhile is
    // respawned, and a SIGTERM is acted on, while the others are still taking their names.
    let mut startup = Some(Box::pin(wait_for_core_daemons(connection.clone(), core)));
    let watchdog_interval = hbapi::notify::watchdog_interval();

    // Pings go out on a connection of their own: the master's is busy serving and signalling.
    let pinger = hbapi::bus::connect(&provided.address).await?;
    let mut liveness = liveness::Liveness::new(loaded.config.timing.deadtime);
    let mut pinged: BTreeMap<String, u32> = BTreeMap::new();
    let (answers_tx, mut answers) = mpsc::unbounded_channel::<(String, Instant)>();
    let mut ping_tick = tokio::time::interval(liveness.ping_interval());
    ping_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = Instant::now();
    // A child that stops (SIGSTOP) or continues sends its parent SIGCHLD: the master looks at
    // the daemons' states then, and not on a timer, so an idle node wakes nobody.
    let mut child_signals =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).map_err(|source| {
            MasterError::Io {
                path: PathBuf::from("SIGCHLD"),
                source,
            }
        })?;
    let mut verdict_at: Option<tokio::time::Instant> = None;

    let mut config = loaded.config;
    let mut bus_died = None;
    let mut refused = None;
    // Heartbeat's debug number for this node, moved by SIGUSR1/SIGUSR2 and reset by a reload.
    let mut debug = config.logging.debug;
    loop {
        let watchdog = async {
            match watchdog_interval {
                Some(interval) => tokio::time::sleep(interval).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = async { startup.as_mut().expect("polled only while starting").await }, if startup.is_some() => {
                startup = None;
                // Each core daemon owns its bus name: alive now, whether or not a ping got
                // through yet (one hung from here on is then found hung).
                let now = Instant::now();
                follow_core_processes(&supervisor, &mut liveness, &mut pinged, now);
                for daemon in pinged.keys() {
                    liveness.answered(daemon, now);
                }
                let _ = hbapi::notify::notify(&format!("READY=1\nSTATUS=heartbeat running on {}", options.node));
                tracing::info!(node = %options.node, children = ?supervisor.names(), "heartbeat started");
            }
            () = supervisor.step() => {
                if let Some(daemon) = supervisor.core_refused() {
                    let reason = format!("{daemon} refused to run (exit 100; its reason is in the log above): stopping the node");
                    tracing::error!("{reason}");
                    refused = Some(reason);
                    break;
                }
            }
            command = commands.recv() => match command {
                None | Some(Command::Shutdown) => break,
                Some(Command::Reload(reply)) => {
                    let outcome = reload(options, &mut config, &mut supervisor, &provided.address).await;
                    let outcome = after_reload(outcome, &config, &supervisor, &parameters_tx, &mut debug);
                    if let Some(reply) = reply {
                        let _ = reply.send(outcome);
                    }
                }
                Some(Command::RestartChild(name, reply)) => {
                    let _ = reply.send(supervisor.restart(&name).await);
                }
                Some(Command::Hangup) if config.style == Style::Heartbeat => {
                    tracing::info!("SIGHUP: rereading the configuration");
                    let outcome = reload(options, &mut config, &mut supervisor, &provided.address).await;
                    let _ = after_reload(outcome, &config, &supervisor, &parameters_tx, &mut debug);
                }
                Some(command @ (Command::UserSignal1 | Command::UserSignal2)) if config.style == Style::Heartbeat => {
                    // Heartbeat's meaning: one debug level up or down, for the whole node.
                    let signal = if matches!(command, Command::UserSignal1) {
                        debug = debug.saturating_add(1);
                        nix::sys::signal::Signal::SIGUSR1
                    } else {
                        debug = debug.saturating_sub(1);
                        nix::sys::signal::Signal::SIGUSR2
                    };
                    hbapi::logging::set_debug(debug);
                    supervisor.signal_core(signal);
                }
                Some(command @ (Command::Hangup | Command::UserSignal1 | Command::UserSignal2 | Command::ForceStart)) => {
                    tokio::spawn(tell_crmd(connection.clone(), command));
                }
            },
            reason = provided.died() => {
                tracing::error!("{reason}; shutting down");
                bus_died = Some(reason);
                break;
            }
            Some((daemon, asked)) = answers.recv() => liveness.answered(&daemon, asked),
            _ = child_signals.recv() => {
                let now = Instant::now();
                follow_core_processes(&supervisor, &mut liveness, &mut pinged, now);
                for (daemon, pid) in &pinged {
                    liveness.observed(daemon, process_stopped(*pid), now);
                }
                verdict_at = liveness
                    .next_verdict()
                    .map(|at| tokio::time::Instant::from_std(at + Duration::from_millis(1)));
            }
            () = async { tokio::time::sleep_until(verdict_at.expect("guarded")).await }, if verdict_at.is_some() => {
                let now = Instant::now();
                for (daemon, pid) in &pinged {
                    liveness.observed(daemon, process_stopped(*pid), now);
                }
                kill_hung(&mut liveness, &supervisor, &mut pinged, now);
                verdict_at = liveness
                    .next_verdict()
                    .map(|at| tokio::time::Instant::from_std(at + Duration::from_millis(1)));
            }
            _ = ping_tick.tick() => {
                let now = Instant::now();
                follow_core_processes(&supervisor, &mut liveness, &mut pinged, now);
                if now.saturating_duration_since(last_tick) > liveness.ping_interval() * 2 {
                    // The master itself did not run (the whole node was frozen, or starved):
                    // nothing seen meanwhile counts against the daemons.
                    liveness.master_resumed(now);
                }
                last_tick = now;
                kill_hung(&mut liveness, &supervisor, &mut pinged, now);
                for daemon in pinged.keys() {
                    if let Some((_, bus_name)) = CORE_DAEMONS.iter().find(|(name, _)| name == daemon) {
                        tokio::spawn(ping(pinger.clone(), daemon.clone(), bus_name, liveness.ping_interval(), answers_tx.clone()));
                    }
                }
            }
            () = watchdog => {
                // systemd's watchdog (and so a hardware one) acts on a hung stack, not only on
                // a hung master.
                let hung = liveness.hung(Instant::now());
                if hung.is_empty() {
                    let _ = hbapi::notify::notify("WATCHDOG=1");
                } else {
                    tracing::error!(?hung, "not feeding systemd's watchdog: core daemons hung");
                }
            }
        }
    }
    let _ = hbapi::notify::notify("STOPPING=1");
    let mut left_running = None;
    if bus_died.is_none() {
        tracing::info!("shutting down: stopping children in reverse start order");
        match supervisor.stop_through("crmd").await {
            None | Some(policy::Exit::Code(0)) => {}
            // Without lrmd nothing can run here.
            Some(_) if !supervisor.is_running("lrmd") => {}
            Some(exit) => {
                // crmd could not stop the node's groups (a stop failed, or it hung and was
                // killed): lrmd stops what runs before anything else goes.
                tracing::error!("crmd ended with {exit} while stopping the node's groups: asking lrmd to stop every resource");
                left_running = stop_resources_without_crmd(&provided.address, &config).await;
            }
        }
        supervisor.stop_all().await;
    } else {
        // Without a bus crmd cannot hand its groups over, nor tell lrmd to stop them: the
        // children are left to the master's exit (their parent-death signal), on which lrmd
        // stops every resource by itself before the node's peers may take them.
        tracing::error!("leaving the children to stop on their own: lrmd stops the resources");
    }
    drop(supervisor);
    // Replies in flight (a Shutdown call's own, for one) go out before the bus goes away.
    if tokio::time::timeout(Duration::from_secs(2), connection.graceful_shutdown())
        .await
        .is_err()
    {
        tracing::debug!("bus connection still busy after 2 s; closing anyway");
    }
    provided.stop().await;
    tracing::info!("heartbeat stopped");
    match (bus_died, refused, left_running) {
        (Some(reason), _, _) => Err(MasterError::BusDied(reason)),
        (None, Some(reason), _) => Err(MasterError::Refused(reason)),
        (None, None, Some(reason)) => Err(MasterError::LeftRunning(reason)),
        (None, None, None) => Ok(()),
    }
}

/// Brings `liveness` in line with the core daemons' processes: a new pid is a new start, a
/// missing one is gone. `known` holds the pids it was last told about.
fn follow_core_processes(
    supervisor: &Supervisor,
    liveness: &mut liveness::Liveness,
    known: &mut BTreeMap<String, u32>,
    now: Instant,
) {
    let running: BTreeMap<String, u32> = supervisor.core_pids().into_iter().collect();
    for (daemon, pid) in &running {
        if known.get(daemon) != Some(pid) {
            liveness.started(daemon, now);
        }
    }
    for daemon in known.keys().filter(|d| !running.contains_key(*d)) {
        liveness.gone(daemon);
    }
    *known = running;
}

/// Kills every core daemon `liveness` finds hung at `now` (it is then respawned).
fn kill_hung(
    liveness: &mut liveness::Liveness,
    supervisor: &Supervisor,
    known: &mut BTreeMap<String, u32>,
    now: Instant,
) {
    for (daemon, why) in liveness.hung(now) {
        tracing::error!(daemon = %daemon, "{daemon} is hung ({why}); killing it so that a fresh one takes over");
        supervisor.kill_hung(&daemon);
        liveness.gone(&daemon);
        known.remove(&daemon);
    }
}

/// Whether process `pid` is stopped (SIGSTOP) or stopped by a tracer, from /proc.
fn process_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "T" || state == "t")
    })
}

/// Pings `daemon` on the bus; reports when it answers (within `deadline`).
async fn ping(
    connection: zbus::Connection,
    daemon: String,
    bus_name: &'static str,
    deadline: Duration,
    answers: mpsc::UnboundedSender<(String, Instant)>,
) {
    let asked = Instant::now();
    let answer = connection.call_method(
        Some(bus_name),
        "/",
        Some("org.freedesktop.DBus.Peer"),
        "Ping",
        &(),
    );
    match tokio::time::timeout(deadline, answer).await {
        Ok(Ok(_)) => {
            let _ = answers.send((daemon, asked));
        }
        Ok(Err(error)) => tracing::debug!(daemon = %daemon, "no answer to a ping: {error}"),
        Err(_) => tracing::debug!(daemon = %daemon, "no answer to a ping within {deadline:?}"),
    }
}

/// Has lrmd stop every resource that runs here (crmd could not); returns what may still run,
/// as a sentence, or `None` when everything stopped.
async fn stop_resources_without_crmd(bus_address: &str, config: &ClusterConfig) -> Option<String> {
    let budget: Duration = config
        .groups
        .iter()
        .flat_map(|g| g.resources.iter().map(|r| r.ops.stop_timeout))
        .sum::<Duration>()
        + Duration::from_secs(10);
    let outcome = async {
        let connection = zbus::connection::Builder::address(bus_address)
            .method_timeout(budget)
            .build()
            .await?;
        hbapi::lrmd::LrmdProxy::new(&connection).await?.stop_all().await
    }
    .await;
    match outcome {
        Ok(failed) if failed.is_empty() => {
            tracing::warn!("lrmd stopped every resource that ran here");
            None
        }
        Ok(failed) => Some(format!(
            "these resources may still run here (their stop failed): {}",
            failed.join(", ")
        )),
        Err(error) => Some(format!(
            "the node's resources may still run here: lrmd could not be asked to stop them ({error})"
        )),
    }
}

/// Waits (up to 10 s each) until each core daemon owns its well-known name.
async fn wait_for_core_daemons(connection: zbus::Connection, core: Vec<String>) {
    use futures_util::StreamExt;
    let Ok(dbus) = zbus::fdo::DBusProxy::new(&connection).await else {
        return;
    };
    for (name, bus_name) in CORE_DAEMONS
        .iter()
        .filter(|(name, _)| core.iter().any(|c| c == name))
    {
        let Ok(well_known) = zbus::names::BusName::try_from(*bus_name) else {
            continue;
        };
        let Ok(mut changes) = dbus.receive_name_owner_changed_with_args(&[(0, bus_name)]).await else {
            continue;
        };
        if dbus.name_has_owner(well_known).await.unwrap_or(false) {
            continue;
        }
        if tokio::time::timeout(Duration::from_secs(10), changes.next())
            .await
            .is_err()
        {
            tracing::warn!(daemon = name, "did not take its bus name {bus_name} within 10 s");
        }
    }
}

/// What a reload changes beyond the children, whichever way it was asked for (SIGHUP,
/// `heartbeat -r`, the bus): the parameters served on the bus and, when the new configuration
/// was accepted, the log level — back to its `debug`, here and in every daemon.
fn after_reload(
    outcome: Result<(), String>,
    config: &ClusterConfig,
    supervisor: &Supervisor,
    parameters: &tokio::sync::watch::Sender<Vec<(String, String)>>,
    debug: &mut u8,
) -> Result<(), String> {
    match &outcome {
        Ok(()) => {
            parameters.send_replace(hbapi::config::heartbeat_parameters(config));
            *debug = config.logging.debug;
            hbapi::logging::set_debug(*debug);
            supervisor.signal_core(nix::sys::signal::Signal::SIGHUP);
        }
        Err(message) => tracing::error!("reload refused; keeping the running configuration:\n{message}"),
    }
    outcome
}

async fn reload(
    options: &MasterOptions,
    config: &mut ClusterConfig,
    supervisor: &mut Supervisor,
    bus_address: &str,
) -> Result<(), String> {
    let loaded = hbapi::config::load_dir(&options.config_dir).map_err(|e| e.to_string())?;
    hbapi::config::check_local_node(&loaded.config, &options.node, &loaded.source)
        .map_err(|e| e.to_string())?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let specs = child_specs(&loaded.config, &options.daemon_dir, options.core_daemons);
    preflight(&specs).map_err(|e| e.to_string())?;
    supervisor.set_env(child_env(options, &loaded.config, bus_address));
    supervisor
        .reconcile(specs.into_iter().filter(|s| !s.core).collect())
        .await;
    *config = loaded.config;
    tracing::info!("configuration reloaded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_ipfail_path_runs_ours_when_it_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ipfail");
        std::fs::write(&ours, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&ours, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        for heartbeat in ["/usr/lib/heartbeat/ipfail", "/usr/lib64/heartbeat/ipfail"] {
            assert_eq!(plugin_program(heartbeat, dir.path()), ours);
        }
        // Anything else runs as written.
        assert_eq!(
            plugin_program("/usr/local/bin/ipfail", dir.path()),
            PathBuf::from("/usr/local/bin/ipfail")
        );
        assert_eq!(
            plugin_program("/usr/lib/heartbeat/dopd", dir.path()),
            PathBuf::from("/usr/lib/heartbeat/dopd")
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            plugin_program("/usr/lib/heartbeat/ipfail", empty.path()),
            PathBuf::from("/usr/lib/heartbeat/ipfail")
        );
    }
}
