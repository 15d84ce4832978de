//! `stonithd`: fencing for the cluster. It runs the devices of the `fencing` library
//! (cluster-glue's stonith plugins, fence-agents and the built-ins), one fence per target at a
//! time with retries and a recorded history ([`fencer`]), for callers on the bus ([`iface`]).

pub mod fencer;
pub mod iface;

use std::path::{Path, PathBuf};

use hbapi::config::{ClusterConfig, StonithSpec};
use hbapi::names;

use crate::fencer::{Event, Fencer};
use crate::iface::StonithInterface;
use fencing::{read_config_file, Device, PluginDirs};

/// The devices this node may use: `stonith_host` lines for it or for `*`, and `stonith`
/// lines with their configuration files. Each problem is reported with its line.
pub async fn devices_from_config(
    config: &ClusterConfig,
    local_node: &str,
    dirs: &PluginDirs,
) -> (Vec<Device>, Vec<String>) {
    let mut devices = Vec::new();
    let mut problems = Vec::new();
    for (index, spec) in config.stonith.iter().enumerate() {
        let (device_type, text, line) = match spec {
            StonithSpec::Host {
                from,
                device_type,
                params,
            } => {
                if from != "*" && !from.eq_ignore_ascii_case(local_node) {
                    continue;
                }
                (
                    device_type,
                    Ok(params.join(" ")),
                    format!("stonith_host {from} {device_type} …"),
                )
            }
            StonithSpec::ConfigFile {
                device_type,
                config_file,
            } => (
                device_type,
                read_config_file(Path::new(config_file)),
                format!("stonith {device_type} {config_file}"),
            ),
        };
        let id = format!("{device_type}#{}", index + 1);
        let built = async {
            let names = fencing::resolve(device_type, dirs)?.config_names().await?;
            let params = fencing::parse_params(&text?, &names)?;
            Device::new(&id, device_type, params, dirs)
        };
        match built.await {
            Ok(device) => devices.push(device),
            Err(error) => problems.push(format!("ha.cf {line}: {error}")),
        }
    }
    (devices, problems)
}

/// How stonithd is run.
#[derive(Debug, Clone)]
pub struct StonithdOptions {
    /// This node.
    pub node: String,
    /// Bus address.
    pub bus_address: String,
    /// State directory (history in its `stonithd/`).
    pub state_dir: PathBuf,
    /// Plugin directories.
    pub dirs: PluginDirs,
}

/// Runs stonithd until `shutdown` resolves.
pub async fn run(
    options: StonithdOptions,
    devices: Vec<Device>,
    shutdown: impl std::future::Future<Output = ()>,
) -> zbus::Result<()> {
    let (fencer, mut events) = Fencer::new(&options.node, devices, &options.state_dir);
    let connection = zbus::connection::Builder::address(options.bus_address.as_str())
        .method_timeout(hbapi::bus::METHOD_TIMEOUT)
        .serve_at(
            names::stonithd::OBJECT_PATH,
            StonithInterface {
                fencer: fencer.clone(),
                dirs: options.dirs.clone(),
            },
        )
        .name(names::stonithd::BUS_NAME)
        .build()
        .await?;
    let emitter =
        zbus::object_server::SignalEmitter::new(&connection, names::stonithd::OBJECT_PATH)?.into_owned();
    tracing::info!("stonithd started");
    // Under systemd (Type=notify); the master gives its children no notify socket.
    let _ = hbapi::notify::notify("READY=1");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(event) = events.recv() => {
                let sent = match event {
                    Event::Started { op_id, target, action, reason } => {
                        StonithInterface::fence_started(&emitter, op_id, &target, &action, &reason).await
                    }
                    Event::Finished(record) => StonithInterface::fence_finished(&emitter, record).await,
                };
                if let Err(error) = sent {
                    tracing::warn!("signal not sent: {error}");
                }
            }
        }
    }
    tracing::info!("stonithd stopping");
    Ok(())
}

/// `stonithd`'s entry point: settings from the master's environment.
pub fn main() -> std::process::ExitCode {
    use std::process::ExitCode;
    if std::env::args()
        .nth(1)
        .is_some_and(|a| a == "--help" || a == "-h")
    {
        println!("usage: stonithd\nStarted by the heartbeat master, which passes the node and its directories in the environment; devices come from ha.cf's stonith and stonith_host lines (or ha.toml's [[stonith]]).");
        return ExitCode::SUCCESS;
    }
    let loaded = match hbapi::daemon::read_config("stonithd") {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    hbapi::logging::init_with(
        "stonithd",
        hbapi::logging::level_for_debug(loaded.config.logging.debug),
        &loaded.config.logging,
    );
    let (node, (_, bus_address)) = match (
        hbapi::daemon::node_name("stonithd"),
        hbapi::daemon::bus("stonithd"),
    ) {
        (Ok(node), Ok(bus)) => (node, bus),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let options = StonithdOptions {
        node,
        bus_address,
        state_dir: PathBuf::from(hbapi::daemon::env_or(names::env::STATE_DIR, "/var/lib/heartbeat")),
        dirs: PluginDirs::from_env(),
    };
    hbapi::daemon::block_on("stonithd", async move {
        hbapi::daemon::follow_log_level();
        let (devices, problems) = devices_from_config(&loaded.config, &options.node, &options.dirs).await;
        if !problems.is_empty() {
            for problem in &problems {
                tracing::error!("{problem}");
            }
            // A fencing device that cannot be used must not go unnoticed: refuse to run.
            return hbapi::daemon::no_respawn();
        }
        let shutdown = hbapi::daemon::terminated();
        match run(options, devices, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{error}");
                ExitCode::FAILURE
            }
        }
    })
}
