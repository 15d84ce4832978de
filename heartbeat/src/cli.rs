//! The `heartbeat` command line, compatible with Heartbeat's (`-k`, `-s`, `-r`) plus
//! `--check` and `--to-toml`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::sync::mpsc;

use hbapi::config::{self, parse_time, Source};

use super::bus::BusChoice;
use super::iface::Command;
use super::policy::RespawnPolicy;
use super::{running_pid, MasterOptions};

/// LSB status codes (what `heartbeat -s` exits with).
pub mod lsb_status {
    /// Running.
    pub const OK: u8 = 0;
    /// Dead, but the pid file exists.
    pub const DEAD_WITH_PID_FILE: u8 = 1;
    /// Not running.
    pub const STOPPED: u8 = 3;
    /// Status unknown.
    pub const UNKNOWN: u8 = 4;
    /// An action (reload) on a service that is not running.
    pub const NOT_RUNNING: u8 = 7;
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_time(text)
}

/// Heartbeat cluster master: supervises the cluster daemons on this node.
#[derive(Debug, Parser)]
#[command(name = "heartbeat", version = hbapi::VERSION)]
pub struct Args {
    /// Configuration directory (ha.cf, haresources, authkeys, or ha.toml).
    #[arg(long, value_name = "DIR", default_value = "/etc/ha.d", env = "HB_CONFIG_DIR")]
    pub config_dir: PathBuf,
    /// This node's name (default: `uname -n`, lower-cased).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// State directory.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/heartbeat",
        env = "HB_STATE_DIR"
    )]
    pub state_dir: PathBuf,
    /// Run directory (pid file, bus socket, bus address).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/run/heartbeat",
        env = "HB_RUN_DIR"
    )]
    pub run_dir: PathBuf,
    /// Which bus: auto, system, private (embedded busd), dbus-daemon, or a D-Bus address.
    #[arg(long, value_name = "BUS", default_value = "auto", value_parser = |s: &str| s.parse::<BusChoice>())]
    pub bus: BusChoice,
    /// Where the core daemons (hbcomm, lrmd, stonithd, crmd) are installed (default: beside
    /// this program).
    #[arg(long, value_name = "DIR")]
    pub daemon_dir: Option<PathBuf>,
    /// Stop the running heartbeat gracefully and wait until it has stopped.
    #[arg(short = 'k', long = "kill", group = "mode")]
    pub kill: bool,
    /// Report whether heartbeat runs (exit 0 running, 3 stopped, 1 dead with a pid file).
    #[arg(short = 's', long = "status", group = "mode")]
    pub status: bool,
    /// Make the running heartbeat reread its configuration (as SIGHUP).
    #[arg(short = 'r', long = "reload", group = "mode")]
    pub reload: bool,
    /// Validate the configuration, print warnings and errors, and exit.
    #[arg(long, group = "mode")]
    pub check: bool,
    /// Print the ha.toml equivalent of the configuration and exit.
    #[arg(long, group = "mode")]
    pub to_toml: bool,
    /// Leave the core daemons (hbcomm, lrmd, stonithd, crmd) to systemd's units instead of
    /// starting and respawning them (the master still provides the bus address, its
    /// interface, FreeHA's signals and the respawn lines).
    #[arg(long)]
    pub no_core_daemons: bool,
    /// Force this node to take every group once it is up (FreeHA's `-m`; the decision maker
    /// stops them elsewhere first).
    #[arg(short = 'm', long = "force-start")]
    pub force_start: bool,
    /// Where crmd writes every node's state (FreeHA's `-l PATH`; default RUN_DIR/status).
    /// A bare `-l` is Heartbeat's "run at low priority", which needs nothing here: the
    /// daemons never switch to real-time scheduling.
    #[arg(short = 'l', long = "status-file", value_name = "PATH", num_args = 0..=1)]
    pub status_file: Option<Option<PathBuf>>,
    /// More debugging output (repeatable).
    #[arg(short = 'd', action = clap::ArgAction::Count)]
    pub debug: u8,
    /// Delay before the restart after a second quick death (doubles after each).
    #[arg(long, value_name = "TIME", default_value = "100ms", value_parser = duration)]
    pub respawn_base_delay: Duration,
    /// Longest delay between restarts of a crash-looping child.
    #[arg(long, value_name = "TIME", default_value = "5", value_parser = duration)]
    pub respawn_max_delay: Duration,
    /// Time a child gets to stop after SIGTERM before SIGKILL.
    #[arg(long, value_name = "TIME", default_value = "10", value_parser = duration)]
    pub stop_timeout: Duration,
}

fn default_node() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

fn print_diagnostics(loaded_warnings: &[config::Diagnostic]) {
    for warning in loaded_warnings {
        eprintln!("warning: {warning}");
    }
}

fn print_errors(error: &config::ConfigError) {
    for diagnostic in &error.errors {
        eprintln!("error: {diagnostic}");
    }
}

/// `heartbeat`'s entry point.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let node = match args.node.as_deref().map(config::check_node_name) {
        Some(Ok(node)) => node,
        Some(Err(message)) => {
            eprintln!("heartbeat: --node: {message}");
            return ExitCode::from(2);
        }
        None => default_node(),
    };
    if args.status {
        return status(&args.run_dir, &node);
    }
    if args.kill {
        return stop_running(&args.run_dir, &args.config_dir);
    }
    if args.reload {
        return reload_running(&args.run_dir);
    }

    let loaded = match config::load_dir(&args.config_dir) {
        Ok(loaded) => loaded,
        Err(error) => {
            print_errors(&error);
            eprintln!(
                "heartbeat: configuration in {} refused",
                args.config_dir.display()
            );
            return ExitCode::from(6);
        }
    };
    let daemon_dir = args.daemon_dir.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("/usr/lib/heartbeat-rs"))
    });

    if args.to_toml {
        print_diagnostics(&loaded.warnings);
        let authkeys = match &loaded.source {
            Source::Toml { .. } => config::files::AUTHKEYS,
            Source::Classic { .. } => config::files::AUTHKEYS,
        };
        print!("{}", config::to_toml(&loaded.config, authkeys));
        return ExitCode::SUCCESS;
    }
    if args.check {
        print_diagnostics(&loaded.warnings);
        let mut ok = true;
        if let Err(error) = config::check_local_node(&loaded.config, &node, &loaded.source) {
            print_errors(&error);
            ok = false;
        }
        if let Err(error) = super::check_links(&loaded.config) {
            eprintln!("error: {error}");
            ok = false;
        }
        if let Err(error) = super::preflight(&super::child_specs(
            &loaded.config,
            &daemon_dir,
            !args.no_core_daemons,
        )) {
            eprintln!("error: {error}");
            ok = false;
        }
        if ok {
            println!(
                "configuration OK: {} nodes, {} links, {} resource groups, {} respawn lines",
                loaded.config.nodes.len(),
                loaded.config.media.len(),
                loaded.config.groups.len(),
                loaded.config.respawn.len()
            );
            return ExitCode::SUCCESS;
        }
        return ExitCode::from(6);
    }

    let level = hbapi::logging::level_for_debug(loaded.config.logging.debug.max(args.debug));
    hbapi::logging::init_with("heartbeat", level, &loaded.config.logging);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if let Err(error) = config::check_local_node(&loaded.config, &node, &loaded.source) {
        for diagnostic in &error.errors {
            tracing::error!("{diagnostic}");
        }
        return ExitCode::from(6);
    }
    let starts_hbcomm = super::child_specs(&loaded.config, &daemon_dir, !args.no_core_daemons)
        .iter()
        .any(|spec| spec.core && spec.name == "hbcomm");
    // hbcomm's own check (when this master starts it): refused here with its reason, not
    // left to a crash loop.
    let links_checked = if starts_hbcomm {
        super::check_links(&loaded.config)
    } else {
        Ok(())
    };
    if let Err(error) = links_checked {
        tracing::error!("{error}");
        if !hbapi::logging::logs_to_stderr() {
            eprintln!("heartbeat: {error}");
        }
        return ExitCode::from(6);
    }
    // Children and tools get these paths, and the bus address is built from the run dir: all
    // must be absolute.
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let options = MasterOptions {
        config_dir: absolute(&args.config_dir),
        node,
        state_dir: absolute(&args.state_dir),
        run_dir: absolute(&args.run_dir),
        bus: args.bus.clone(),
        daemon_dir,
        policy: RespawnPolicy {
            base_delay: args.respawn_base_delay,
            max_delay: args.respawn_max_delay,
            ..RespawnPolicy::default()
        },
        stop_timeout: args.stop_timeout,
        core_daemons: !args.no_core_daemons,
        status_file: args.status_file.clone().flatten().map(|path| absolute(&path)),
    };
    // One thread: children are forked from it, and the parent-death signal they carry is tied
    // to the thread that forked them.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("heartbeat: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (commands_tx, commands) = mpsc::unbounded_channel();
        if let Err(error) = forward_signals(commands_tx.clone()) {
            tracing::error!("cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
        if args.force_start {
            let _ = commands_tx.send(Command::ForceStart);
        }
        match super::run(options, loaded, commands_tx, commands).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("heartbeat not started or stopped on error: {error}");
                ExitCode::from(error.exit_status())
            }
        }
    })
}

/// SIGTERM and SIGINT shut down; SIGHUP, SIGUSR1 and SIGUSR2 mean what the configuration's
/// style says (the master's loop decides, with the configuration of the moment).
fn forward_signals(commands: mpsc::UnboundedSender<Command>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut user1 = signal(SignalKind::user_defined1())?;
    let mut user2 = signal(SignalKind::user_defined2())?;
    tokio::spawn(async move {
        loop {
            let command = tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM received"); Command::Shutdown }
                _ = interrupt.recv() => { tracing::info!("SIGINT received"); Command::Shutdown }
                _ = hangup.recv() => { tracing::info!("SIGHUP received"); Command::Hangup }
                _ = user1.recv() => { tracing::info!("SIGUSR1 received"); Command::UserSignal1 }
                _ = user2.recv() => { tracing::info!("SIGUSR2 received"); Command::UserSignal2 }
            };
            if commands.send(command).is_err() {
                break;
            }
        }
    });
    Ok(())
}

fn status(run_dir: &Path, node: &str) -> ExitCode {
    match running_pid(run_dir) {
        Ok(Some(pid)) => {
            println!("heartbeat OK [pid {pid} et al] is running on {node} [{node}]...");
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(print_children(run_dir)),
                Err(error) => eprintln!("heartbeat: cannot query the children: {error}"),
            }
            ExitCode::from(lsb_status::OK)
        }
        Ok(None) => {
            println!("heartbeat is stopped. No process");
            ExitCode::from(lsb_status::STOPPED)
        }
        Err(Some(pid)) => {
            println!(
                "heartbeat is dead but its pid file ({}) names pid {pid}",
                run_dir.join(hbapi::names::run_files::PID).display()
            );
            ExitCode::from(lsb_status::DEAD_WITH_PID_FILE)
        }
        Err(None) => {
            println!(
                "heartbeat status unknown: unreadable pid file in {}",
                run_dir.display()
            );
            ExitCode::from(lsb_status::UNKNOWN)
        }
    }
}

async fn print_children(run_dir: &Path) {
    let Some(address) = hbapi::bus::find_address(run_dir) else {
        eprintln!("heartbeat: no bus address in {}", run_dir.display());
        return;
    };
    let children = async {
        let connection = hbapi::bus::connect(&address).await?;
        let proxy = hbapi::master::HeartbeatProxy::new(&connection).await?;
        proxy.list_children().await
    };
    match children.await {
        Ok(children) => {
            for child in children {
                let pid = if child.pid == 0 {
                    "-".to_string()
                } else {
                    child.pid.to_string()
                };
                let last = if child.last_exit.is_empty() {
                    String::new()
                } else {
                    format!(", last {}", child.last_exit)
                };
                println!(
                    "  {:<12} {:<9} pid {:<8} restarts {}{}",
                    child.name, child.state, pid, child.restarts, last
                );
                if child.state == hbapi::master::ChildState::GaveUp.as_str() {
                    println!("  {:<12} gave up: it died too often too soon after starting", "");
                }
            }
        }
        Err(error) => eprintln!("heartbeat: cannot query the master on {address}: {error}"),
    }
}

/// The live master's pid, or why there is none (said on stderr).
fn live_master(run_dir: &Path) -> Option<i32> {
    let path = run_dir.join(hbapi::names::run_files::PID);
    match running_pid(run_dir) {
        Ok(Some(pid)) => Some(pid),
        Ok(None) => {
            eprintln!("heartbeat is not running (no {})", path.display());
            None
        }
        Err(Some(pid)) => {
            eprintln!(
                "heartbeat is not running ({} names pid {pid}, which holds no lock on it: left by a master that died)",
                path.display()
            );
            None
        }
        Err(None) => {
            eprintln!("heartbeat is not running ({} is unreadable)", path.display());
            None
        }
    }
}

/// `-r`: SIGHUP to the running master (LSB: 7 when it is not running).
fn reload_running(run_dir: &Path) -> ExitCode {
    let Some(pid) = live_master(run_dir) else {
        return ExitCode::from(lsb_status::NOT_RUNNING);
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("heartbeat: cannot signal pid {pid}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `-k`: SIGTERM to the running master, then its own verdict on the stop (LSB: stopping a
/// stopped service succeeds). Waits for as long as the master may take: every resource's stop
/// timeout, plus a margin for the daemons.
fn stop_running(run_dir: &Path, config_dir: &Path) -> ExitCode {
    let Some(pid) = live_master(run_dir) else {
        return ExitCode::SUCCESS;
    };
    let stops: Duration = config::load_dir(config_dir)
        .map(|loaded| {
            loaded
                .config
                .groups
                .iter()
                .flat_map(|g| g.resources.iter().map(|r| r.ops.stop_timeout))
                .sum()
        })
        .unwrap_or(Duration::ZERO);
    let patience = (stops + Duration::from_secs(60)).max(Duration::from_secs(120));
    let last_stop = run_dir.join(hbapi::names::run_files::LAST_STOP);
    let _ = std::fs::remove_file(&last_stop);
    if let Err(error) =
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
    {
        eprintln!("heartbeat: cannot signal pid {pid}: {error}");
        return ExitCode::FAILURE;
    }
    let deadline = std::time::Instant::now() + patience;
    while super::process_alive(pid) {
        if std::time::Instant::now() > deadline {
            eprintln!("heartbeat: pid {pid} still running after {patience:?}");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match std::fs::read_to_string(&last_stop) {
        Ok(text) => {
            let (status, reason) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
            match status.parse::<u8>() {
                Ok(0) => ExitCode::SUCCESS,
                Ok(status) => {
                    eprintln!("heartbeat: {reason}");
                    ExitCode::from(status)
                }
                Err(_) => {
                    eprintln!("heartbeat: unreadable {}: {text:?}", last_stop.display());
                    ExitCode::FAILURE
                }
            }
        }
        Err(_) => {
            eprintln!("heartbeat: pid {pid} ended without saying how its stop went (killed?)");
            ExitCode::FAILURE
        }
    }
}
