//! `lrmd`: the local resource executor. It runs heartbeat, LSB and OCF agents for crmd, one
//! operation at a time per resource and many resources in parallel, and keeps each
//! resource's history in the state directory so that a respawned lrmd knows what runs.
//!
//! [`agent`] knows the classes (where agents are, how they are called, what their exits
//! mean), [`hbapi::process`] runs one agent process, [`executor`] schedules, [`store`] persists and
//! [`iface`] serves the bus interface.

pub mod agent;
pub mod executor;
pub mod iface;
pub mod store;

use std::path::PathBuf;
use std::time::Duration;

use hbapi::names;

use crate::agent::AgentDirs;
use crate::executor::{Executor, ExecutorOptions};
use crate::iface::LrmdInterface;

/// How lrmd is run.
#[derive(Debug, Clone)]
pub struct LrmdOptions {
    /// This node's name (a field of every operation logged).
    pub node: String,
    /// Bus address.
    pub bus_address: String,
    /// State directory (history lives in its `lrmd/`).
    pub state_dir: PathBuf,
    /// Agents and their directories.
    pub executor: ExecutorOptions,
    /// Stop timeouts of the configured resources (others get [`DEFAULT_STOP_TIMEOUT`]), for
    /// stopping everything when the master dies or asks (`StopAll`).
    pub stop_timeouts: std::collections::BTreeMap<String, Duration>,
}

/// One journal entry per operation, with its fields (NODE, RESOURCE, OP, RC, STATUS,
/// DURATION_MS): each start, stop and probe, and a recurring monitor only when it fails.
fn log_result(node: &str, result: &hbapi::lrmd::OpResult) {
    if result.interval_ms != 0 && result.status == hbapi::lrmd::status::DONE && result.rc == 0 {
        return;
    }
    tracing::info!(
        node,
        resource = %result.resource,
        op = %result.action,
        rc = result.rc,
        status = %result.status,
        duration_ms = result.duration_ms,
        "{} {} on {node}: {}, rc {} in {} ms",
        result.action,
        result.resource,
        result.status,
        result.rc,
        result.duration_ms
    );
}

/// The stop timeout of a resource the configuration does not name.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors that stop lrmd.
#[derive(Debug, thiserror::Error)]
pub enum LrmdError {
    /// State directory.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Bus.
    #[error("bus: {0}")]
    Bus(#[from] zbus::Error),
}

/// Runs lrmd until `shutdown` resolves. Agents still running then are left to finish (they
/// are in their own process groups); the next lrmd finds them in the history.
///
/// Except when the master that started lrmd is gone (its parent changed): then the node's
/// cluster stack is going down without handing its resources over, and lrmd stops every
/// resource that runs before it exits — a resource must not outlive the stack that keeps it
/// single.
pub async fn run(
    options: LrmdOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), LrmdError> {
    let parent = nix::unistd::getppid();
    let _only_lrmd_here = leftovers_gone(&options.state_dir).await?;
    let store = store::Store::open(&options.state_dir)?;
    std::fs::create_dir_all(&options.executor.dirs.rsc_tmp).map_err(|e| store::StoreError {
        path: options.executor.dirs.rsc_tmp.clone(),
        message: e.to_string(),
    })?;
    let (executor, mut results) = Executor::new(options.executor.clone(), store);
    executor.recover().await;
    let connection = zbus::connection::Builder::address(options.bus_address.as_str())
        .method_timeout(hbapi::bus::METHOD_TIMEOUT)
        .serve_at(
            names::lrmd::OBJECT_PATH,
            LrmdInterface {
                executor: executor.clone(),
                stop_timeouts: std::sync::Arc::new(options.stop_timeouts.clone()),
            },
        )
        .name(names::lrmd::BUS_NAME)
        .build()
        .await?;
    let emitter =
        zbus::object_server::SignalEmitter::new(&connection, names::lrmd::OBJECT_PATH)?.into_owned();
    tracing::info!(resources = executor.all().len(), "lrmd started");
    // Under systemd (Type=notify); the master gives its children no notify socket.
    let _ = hbapi::notify::notify("READY=1");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(result) = results.recv() => {
                log_result(&options.node, &result);
                if let Err(error) = LrmdInterface::operation_completed(&emitter, result).await {
                    tracing::warn!("OperationCompleted not sent: {error}");
                }
            }
        }
    }
    if master_gone(parent).await {
        tracing::error!("the heartbeat master is gone: stopping every resource before lrmd exits");
        let timeouts = &options.stop_timeouts;
        let failed = executor
            .stop_everything(|resource| timeouts.get(resource).copied().unwrap_or(DEFAULT_STOP_TIMEOUT))
            .await;
        if !failed.is_empty() {
            tracing::error!(
                ?failed,
                "resources left running: only fencing can make them safe now"
            );
        }
    }
    tracing::info!("lrmd stopping");
    Ok(())
}

/// Waits until no other lrmd runs on this state directory — the one of a master that was
/// killed may still be stopping the resources it ran — and keeps it so: the returned lock
/// lives as long as this lrmd. Without the wait, a new lrmd would probe a resource still
/// being stopped as running, and report it so long after it stopped.
async fn leftovers_gone(state_dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>, LrmdError> {
    use nix::fcntl::{Flock, FlockArg};
    let path = state_dir.join("lrmd.lock");
    let fail = |message: String| {
        LrmdError::Store(store::StoreError {
            path: path.clone(),
            message,
        })
    };
    std::fs::create_dir_all(state_dir).map_err(|e| fail(e.to_string()))?;
    // Created once, then held open read-only: a file open for writing would keep the state
    // directory's file system from being remounted read-only (a failing disk).
    if !path.exists() {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| fail(e.to_string()))?;
    }
    let mut file = std::fs::File::open(&path).map_err(|e| fail(e.to_string()))?;
    let mut told = false;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((returned, nix::errno::Errno::EWOULDBLOCK)) => {
                if !told {
                    tracing::warn!(
                        "another lrmd still runs on {}: waiting for it to finish stopping what it ran",
                        state_dir.display()
                    );
                    told = true;
                }
                file = returned;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err((_, errno)) => return Err(fail(errno.to_string())),
        }
    }
}

/// Whether the master that started lrmd (`parent`) is gone or going: lrmd was handed to
/// another parent, or the master's main thread has exited (a zombie while its other threads
/// die — the moment the parent-death signal arrives). Watched briefly, since a SIGTERM from
/// a master that is alive and stopping the node in order looks the same at first.
async fn master_gone(parent: nix::unistd::Pid) -> bool {
    for _ in 0..10 {
        if nix::unistd::getppid() != parent {
            return true;
        }
        let state = std::fs::read_to_string(format!("/proc/{parent}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
            });
        if !matches!(state.as_deref(), Some(s) if s != "Z" && s != "X") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// `lrmd`'s entry point: settings from the master's environment.
pub fn main() -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut max_parallel = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--max-parallel" => match args
                .next()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
            {
                Some(n) => max_parallel = n,
                None => {
                    eprintln!("lrmd: --max-parallel needs a number above 0");
                    return ExitCode::from(2);
                }
            },
            "--help" | "-h" => {
                println!("usage: lrmd [--max-parallel N]\nStarted by the heartbeat master, which passes the node's directories and bus in the environment (HB_CONFIG_DIR, HB_STATE_DIR, HB_RUN_DIR, HB_BUS_ADDRESS); OCF_ROOT and HB_INIT_DIR override where agents are looked up.");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("lrmd: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    let debug = std::env::var(names::env::DEBUG)
        .ok()
        .and_then(|v| v.parse::<u8>().ok())
        .unwrap_or(0);
    // The configuration for ha.cf's log destinations and the resources' stop timeouts.
    let config = hbapi::config::load_dir(std::path::Path::new(&hbapi::daemon::env_or(
        names::env::CONFIG_DIR,
        "/etc/ha.d",
    )))
    .map(|loaded| loaded.config)
    .ok();
    let logging = config.as_ref().map(|c| c.logging.clone()).unwrap_or_default();
    let stop_timeouts = config
        .iter()
        .flat_map(|c| c.groups.iter())
        .flat_map(|g| g.resources.iter())
        .map(|r| (r.id.clone(), r.ops.stop_timeout))
        .collect();
    hbapi::logging::init_with("lrmd", hbapi::logging::level_for_debug(debug), &logging);
    let (run_dir, bus_address) = match hbapi::daemon::bus("lrmd") {
        Ok(bus) => bus,
        Err(code) => return code,
    };
    let options = LrmdOptions {
        node: hbapi::daemon::env_or(names::env::NODE_NAME, ""),
        bus_address,
        state_dir: PathBuf::from(hbapi::daemon::env_or(names::env::STATE_DIR, "/var/lib/heartbeat")),
        executor: ExecutorOptions {
            dirs: AgentDirs {
                config_dir: PathBuf::from(hbapi::daemon::env_or(names::env::CONFIG_DIR, "/etc/ha.d")),
                ocf_root: PathBuf::from(hbapi::daemon::env_or("OCF_ROOT", "/usr/lib/ocf")),
                init_dir: PathBuf::from(hbapi::daemon::env_or("HB_INIT_DIR", "/etc/init.d")),
                // Per node, so that several nodes on one machine keep apart their agents' state.
                rsc_tmp: run_dir.join("rsctmp"),
                freeha_bindir: config.as_ref().map_or_else(
                    || PathBuf::from(hbapi::config::defaults::FREEHA_BINDIR),
                    |c| c.freeha_bindir.clone(),
                ),
            },
            max_parallel,
            kill_grace: Duration::from_secs(5),
        },
        stop_timeouts,
    };
    hbapi::daemon::block_on("lrmd", async move {
        hbapi::daemon::follow_log_level();
        let shutdown = hbapi::daemon::terminated();
        match run(options, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{error}");
                ExitCode::FAILURE
            }
        }
    })
}
