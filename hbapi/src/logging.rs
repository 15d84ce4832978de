//! Logging set-up shared by every daemon: journald when its socket exists, else stderr.

use std::path::Path;

use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// The level a Heartbeat `debug N` maps to.
pub fn level_for_debug(debug: u8) -> &'static str {
    match debug {
        0 => "info",
        1 => "debug",
        _ => "trace",
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_level`. Safe to call twice
/// (the second call does nothing).
pub fn init(identifier: &str, default_level: &str) {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let journald = if Path::new(JOURNALD_SOCKET).exists() && std::env::var_os("HB_LOG_STDERR").is_none() {
        tracing_journald::layer().ok().map(|layer| {
            layer
                .with_syslog_identifier(identifier.to_owned())
                .with_filter(filter())
        })
    } else {
        None
    };
    let stderr = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_filter(filter())
    });
    let _ = tracing_subscriber::registry()
        .with(journald)
        .with(stderr)
        .try_init();
}
