//! What every daemon's `main` does the same way: settings from the master's environment, a
//! single-threaded runtime, and SIGTERM as the shutdown signal.

use std::future::Future;
use std::process::ExitCode;

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
