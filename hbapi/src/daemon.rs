//! What every daemon's `main` does the same way: settings from the master's environment, a
//! single-threaded runtime, and SIGTERM as the shutdown signal.

use std::future::Future;
use std::process::ExitCode;

/// Heartbeat's exit status for "do not respawn me": the process refused its configuration or
/// environment, which a restart would not change. The master never respawns a child that
/// exits with it, and stops the node when a core daemon does.
pub const EXIT_NO_RESPAWN: u8 = 100;

/// [`EXIT_NO_RESPAWN`] as a process's exit code.
pub fn no_respawn() -> ExitCode {
    ExitCode::from(EXIT_NO_RESPAWN)
}

/// The value of an environment variable the master sets, or `default` when unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Resolves when SIGTERM arrives (never, if it cannot be caught).
pub async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Runs `daemon` on a single-threaded runtime; `name` prefixes the error if there is none.
pub fn block_on(name: &str, daemon: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(daemon),
        Err(error) => {
            eprintln!("{name}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Starts following the log level signals (SIGUSR1 up, SIGUSR2 down, SIGHUP back to ha.cf's
/// `debug`) from the level the master set in the environment. Call inside the runtime, before
/// anything that takes long: until then SIGHUP would end the daemon.
pub fn follow_log_level() {
    let config_dir = std::path::PathBuf::from(env_or(crate::names::env::CONFIG_DIR, "/etc/ha.d"));
    let debug = env_or(crate::names::env::DEBUG, "0").parse().unwrap_or(0);
    // Installed now, not when the task first runs: from here on these signals are caught.
    for kind in [
        tokio::signal::unix::SignalKind::hangup(),
        tokio::signal::unix::SignalKind::user_defined1(),
        tokio::signal::unix::SignalKind::user_defined2(),
    ] {
        let _ = tokio::signal::unix::signal(kind);
    }
    tokio::spawn(crate::logging::follow_level_signals(config_dir, debug));
}

/// The configuration directory the master named (`/etc/ha.d` by default), read and checked.
/// Refused: every error on stderr (logging is not set up before the configuration says
/// where it goes) and `Err` with the exit code that stops respawns — a configuration that
/// cannot be read will not read better on a respawn.
pub fn read_config(daemon: &str) -> Result<crate::config::Loaded, ExitCode> {
    read_config_in(
        daemon,
        std::path::Path::new(&env_or(crate::names::env::CONFIG_DIR, "/etc/ha.d")),
    )
}

/// [`read_config`] from a directory given otherwise (a daemon's own flag).
pub fn read_config_in(daemon: &str, config_dir: &std::path::Path) -> Result<crate::config::Loaded, ExitCode> {
    crate::config::load_dir(config_dir).map_err(|error| {
        eprintln!("{daemon}: configuration refused:\n{error}");
        no_respawn()
    })
}

/// This node's name, as the master passes it; missing, logged and `Err` (no respawn).
pub fn node_name(daemon: &str) -> Result<String, ExitCode> {
    std::env::var(crate::names::env::NODE_NAME).map_err(|_| {
        tracing::error!("no node name: {daemon} is started by the heartbeat master");
        no_respawn()
    })
}

/// The node's run directory and the bus the master provides there; no bus, logged and `Err`
/// (no respawn).
pub fn bus(daemon: &str) -> Result<(std::path::PathBuf, String), ExitCode> {
    let run_dir = std::path::PathBuf::from(env_or(crate::names::env::RUN_DIR, "/run/heartbeat"));
    match crate::bus::find_address(&run_dir) {
        Some(address) => Ok((run_dir, address)),
        None => {
            tracing::error!("no bus address: {daemon} is started by the heartbeat master");
            Err(no_respawn())
        }
    }
}
