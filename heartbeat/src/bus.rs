//! Providing the cluster bus: the system bus, an embedded busd, a dbus-daemon we spawn, or an
//! address given by the user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

/// What `--bus` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusChoice {
    /// The system bus when reachable, else a private bus.
    Auto,
    /// The system bus.
    System,
    /// An embedded busd at RUN_DIR/bus.sock.
    Private,
    /// A dbus-daemon spawned with a generated configuration.
    DbusDaemon,
    /// Any D-Bus address.
    Address(String),
}

impl FromStr for BusChoice {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "auto" => BusChoice::Auto,
            "system" => BusChoice::System,
            "private" => BusChoice::Private,
            "dbus-daemon" => BusChoice::DbusDaemon,
            address if address.contains(':') => BusChoice::Address(address.to_owned()),
            other => {
                return Err(format!(
                    "expected auto, system, private, dbus-daemon or a D-Bus address (like unix:path=/run/x), found {other:?}"
                ))
            }
        })
    }
}

/// Errors while providing the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The embedded bus failed.
    #[error("embedded bus at {path}: {message}")]
    Busd {
        /// Socket path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// dbus-daemon failed.
    #[error("dbus-daemon: {0}")]
    DbusDaemon(String),
    /// Filesystem trouble in the run directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The system bus socket, as libdbus finds it.
pub fn system_bus_address() -> String {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .unwrap_or_else(|_| "unix:path=/run/dbus/system_bus_socket".to_owned())
}

fn system_bus_reachable() -> bool {
    let address = system_bus_address();
    let Some(path) = address.strip_prefix("unix:path=") else {
        return false;
    };
    let path = path.split(',').next().unwrap_or(path);
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// A bus we provide, kept alive until [`ProvidedBus::stop`].
pub struct ProvidedBus {
    /// Address clients connect to.
    pub address: String,
    /// What kind it is, for logs and status.
    pub kind: &'static str,
    keeper: Keeper,
}

enum Keeper {
    None,
    Busd {
        stop: Option<oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    DbusDaemon(tokio::process::Child),
}

impl ProvidedBus {
    /// Stops the bus if we run it, and waits until it has.
    pub async fn stop(mut self) {
        match &mut self.keeper {
            Keeper::None => {}
            Keeper::Busd { stop, thread } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                }
            }
            Keeper::DbusDaemon(child) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }

    /// Resolves when a bus we run dies on its own (never for buses we do not run).
    pub async fn died(&mut self) -> String {
        match &mut self.keeper {
            Keeper::DbusDaemon(child) => match child.wait().await {
                Ok(status) => format!("dbus-daemon exited ({status})"),
                Err(error) => format!("dbus-daemon: {error}"),
            },
            Keeper::Busd { thread, .. } => loop {
                if thread.as_ref().is_none_or(|t| t.is_finished()) {
                    return "the embedded bus stopped".into();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            },
            Keeper::None => std::future::pending().await,
        }
    }
}

/// Provides the bus `choice` asks for, with its socket (if ours) in `run_dir`.
pub async fn provide(choice: &BusChoice, run_dir: &Path) -> Result<ProvidedBus, BusError> {
    let socket = run_dir.join(hbapi::names::run_files::BUS_SOCKET);
    match choice {
        BusChoice::Auto if system_bus_reachable() => Ok(ProvidedBus {
            address: system_bus_address(),
            kind: "system",
            keeper: Keeper::None,
        }),
        BusChoice::Auto | BusChoice::Private => start_busd(&socket).await,
        BusChoice::System => Ok(ProvidedBus {
            address: system_bus_address(),
            kind: "system",
            keeper: Keeper::None,
        }),
        BusChoice::DbusDaemon => start_dbus_daemon(run_dir, &socket).await,
        BusChoice::Address(address) => Ok(ProvidedBus {
            address: address.clone(),
            kind: "external",
            keeper: Keeper::None,
        }),
    }
}

fn remove_stale_socket(socket: &Path) -> Result<(), BusError> {
    match std::fs::remove_file(socket) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BusError::Io {
            path: socket.to_path_buf(),
            source,
        }),
    }
}

/// Mode 0660, group `haclient` when it exists: root and the cluster group reach the bus (a
/// respawn line run as `hacluster` among them), nobody else.
fn restrict_socket(socket: &Path) -> Result<(), BusError> {
    let io = |source| BusError::Io {
        path: socket.to_path_buf(),
        source,
    };
    if let Ok(Some(group)) = nix::unistd::Group::from_name(hbapi::CLUSTER_GROUP) {
        nix::unistd::chown(socket, None, Some(group.gid)).map_err(|errno| io(std::io::Error::from(errno)))?;
    }
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660)).map_err(io)
}

/// Runs busd on a thread of its own: busd runs on its own runtime (zruntime), not on ours.
async fn start_busd(socket: &Path) -> Result<ProvidedBus, BusError> {
    remove_stale_socket(socket)?;
    let address = format!("unix:path={}", socket.display());
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let bus_address = address.clone();
    let thread = std::thread::Builder::new()
        .name("busd".into())
        .spawn(move || {
            zruntime::block_on(async move {
                let mut bus = match busd::bus::Bus::for_address(Some(&bus_address)).await {
                    Ok(bus) => bus,
                    Err(error) => {
                        let _ = ready_tx.send(Err(format!("{error:#}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                {
                    let running = std::pin::pin!(bus.run());
                    if let futures_util::future::Either::Left((Err(error), _)) =
                        futures_util::future::select(running, stop_rx).await
                    {
                        tracing::error!("embedded bus stopped: {error:#}");
                    }
                }
                if let Err(error) = bus.cleanup().await {
                    tracing::warn!("embedded bus clean-up: {error:#}");
                }
            })
        })
        .map_err(|source| BusError::Io {
            path: socket.to_path_buf(),
            source,
        })?;
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(message)) => {
            return Err(BusError::Busd {
                path: socket.to_path_buf(),
                message,
            })
        }
        Err(_) => {
            return Err(BusError::Busd {
                path: socket.to_path_buf(),
                message: "bus thread ended before it listened".into(),
            })
        }
    }
    restrict_socket(socket)?;
    Ok(ProvidedBus {
        address,
        kind: "private (embedded busd)",
        keeper: Keeper::Busd {
            stop: Some(stop_tx),
            thread: Some(thread),
        },
    })
}

/// The configuration of a private dbus-daemon: anyone who can reach the socket (mode 0660) may
/// talk; the suite's names may be owned only by root and the cluster user.
pub fn dbus_daemon_config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>heartbeat</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
    <deny own_prefix="{prefix}"/>
  </policy>
  <policy user="root">
    <allow own_prefix="{prefix}"/>
  </policy>
  <policy user="{cluster_user}">
    <allow own_prefix="{prefix}"/>
  </policy>
  <limit name="reply_timeout">{reply_timeout}</limit>
</busconfig>
"#,
        socket = socket.display(),
        prefix = hbapi::names::PREFIX,
        cluster_user = hbapi::CLUSTER_USER,
        reply_timeout = hbapi::bus::METHOD_TIMEOUT.as_millis(),
    )
}

async fn start_dbus_daemon(run_dir: &Path, socket: &Path) -> Result<ProvidedBus, BusError> {
    remove_stale_socket(socket)?;
    let config_path = run_dir.join("dbus-daemon.conf");
    let mut config = dbus_daemon_config(socket);
    // dbus-daemon refuses a policy naming a user that does not exist.
    if !matches!(nix::unistd::User::from_name(hbapi::CLUSTER_USER), Ok(Some(_))) {
        config = config.replace(
            &format!(
                "  <policy user=\"{}\">\n    <allow own_prefix=\"{}\"/>\n  </policy>\n",
                hbapi::CLUSTER_USER,
                hbapi::names::PREFIX
            ),
            "",
        );
    }
    std::fs::write(&config_path, config).map_err(|source| BusError::Io {
        path: config_path.clone(),
        source,
    })?;
    let mut command = tokio::process::Command::new("dbus-daemon");
    command
        .arg(format!("--config-file={}", config_path.display()))
        .arg("--nofork")
        .arg("--nopidfile")
        .arg("--print-address")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // dbus-daemon speaks sd_notify itself; only the master may tell systemd it is ready.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .kill_on_drop(true);
    // SAFETY: setsid and prctl are async-signal-safe. The bus must not outlive the master that
    // provides it, even when the master is killed with SIGKILL.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|error| {
        BusError::DbusDaemon(format!(
            "cannot start dbus-daemon (is the dbus-daemon package installed?): {error}"
        ))
    })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BusError::DbusDaemon("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let printed = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
    match printed {
        Ok(Ok(Some(line))) if line.starts_with("unix:") => {}
        Ok(Ok(other)) => {
            return Err(BusError::DbusDaemon(format!(
                "unexpected start-up output {other:?}"
            )))
        }
        Ok(Err(error)) => return Err(BusError::DbusDaemon(error.to_string())),
        Err(_) => return Err(BusError::DbusDaemon("did not start within 10 s".into())),
    }
    restrict_socket(socket)?;
    Ok(ProvidedBus {
        address: format!("unix:path={}", socket.display()),
        kind: "private (dbus-daemon)",
        keeper: Keeper::DbusDaemon(child),
    })
}
