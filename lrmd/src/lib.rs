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
    /// Bus address.
    pub bus_address: String,
    /// State directory (history lives in its `lrmd/`).
    pub state_dir: PathBuf,
    /// Agents and their directories.
    pub executor: ExecutorOptions,
}

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
pub async fn run(
    options: LrmdOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), LrmdError> {
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
            },
        )
        .name(names::lrmd::BUS_NAME)
        .build()
        .await?;
    let emitter =
        zbus::object_server::SignalEmitter::new(&connection, names::lrmd::OBJECT_PATH)?.into_owned();
    tracing::info!(resources = executor.all().len(), "lrmd started");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(result) = results.recv() => {
                if let Err(error) = LrmdInterface::operation_completed(&emitter, result).await {
                    tracing::warn!("OperationCompleted not sent: {error}");
                }
            }
        }
    }
    tracing::info!("lrmd stopping");
    Ok(())
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
    // The configuration only for ha.cf's log destinations: lrmd needs nothing else from it.
    let logging = hbapi::config::load_dir(std::path::Path::new(&hbapi::daemon::env_or(
        names::env::CONFIG_DIR,
        "/etc/ha.d",
    )))
    .map(|loaded| loaded.config.logging)
    .unwrap_or_default();
    hbapi::logging::init_with("lrmd", hbapi::logging::level_for_debug(debug), &logging);
    let run_dir = PathBuf::from(hbapi::daemon::env_or(names::env::RUN_DIR, "/run/heartbeat"));
    let Some(bus_address) = hbapi::bus::find_address(&run_dir) else {
        tracing::error!("no bus address: lrmd is started by the heartbeat master");
        return ExitCode::from(100);
    };
    let options = LrmdOptions {
        bus_address,
        state_dir: PathBuf::from(hbapi::daemon::env_or(names::env::STATE_DIR, "/var/lib/heartbeat")),
        executor: ExecutorOptions {
            dirs: AgentDirs {
                config_dir: PathBuf::from(hbapi::daemon::env_or(names::env::CONFIG_DIR, "/etc/ha.d")),
                ocf_root: PathBuf::from(hbapi::daemon::env_or("OCF_ROOT", "/usr/lib/ocf")),
                init_dir: PathBuf::from(hbapi::daemon::env_or("HB_INIT_DIR", "/etc/init.d")),
                // Per node, so that several nodes on one machine keep apart their agents' state.
                rsc_tmp: run_dir.join("rsctmp"),
            },
            max_parallel,
            kill_grace: Duration::from_secs(5),
        },
    };
    hbapi::daemon::block_on("lrmd", async move {
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
