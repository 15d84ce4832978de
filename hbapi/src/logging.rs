//! Logging set-up shared by every daemon: journald when its socket exists (each event's
//! fields — node, resource, operation, rc, decision… — become journal fields), else stderr;
//! plus what ha.cf asks for, as Heartbeat does: `logfile` (informational messages and up),
//! `debugfile` (everything down to debug), and `logfacility` (syslog through /dev/log,
//! `none` for no syslog).

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer, Registry};

use crate::config::Logging;

const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// Where syslog listens.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// The level a Heartbeat `debug N` maps to.
pub fn level_for_debug(debug: u8) -> &'static str {
    match debug {
        0 => "info",
        1 => "debug",
        _ => "trace",
    }
}

/// Syslog's facility number for a Heartbeat `logfacility` name (`None`: not a facility).
pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Sends each formatted event to syslog as one datagram, `<PRI>ident[pid]: message`.
#[derive(Clone)]
pub struct SyslogWriter {
    socket: Arc<UnixDatagram>,
    target: PathBuf,
    facility: u8,
    identifier: String,
}

impl SyslogWriter {
    /// A writer to the syslog socket at `target`.
    pub fn new(target: &Path, facility: u8, identifier: &str) -> std::io::Result<Self> {
        Ok(SyslogWriter {
            socket: Arc::new(UnixDatagram::unbound()?),
            target: target.to_path_buf(),
            facility,
            identifier: identifier.to_owned(),
        })
    }
}

/// One event on its way to syslog.
pub struct SyslogEvent {
    writer: SyslogWriter,
    priority: u8,
    buffer: Vec<u8>,
}

impl Write for SyslogEvent {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogEvent {
    fn drop(&mut self) {
        let message = String::from_utf8_lossy(&self.buffer);
        let datagram = format!(
            "<{}>{}[{}]: {}",
            self.priority,
            self.writer.identifier,
            std::process::id(),
            message.trim_end()
        );
        // Syslog may be gone or full: logging must never stop the daemon.
        let _ = self
            .writer
            .socket
            .send_to(datagram.as_bytes(), &self.writer.target);
    }
}

impl SyslogWriter {
    fn event(&self, level: &Level) -> SyslogEvent {
        SyslogEvent {
            writer: self.clone(),
            priority: self.facility * 8 + severity(level),
            buffer: Vec::new(),
        }
    }
}

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogEvent;

    fn make_writer(&'a self) -> Self::Writer {
        self.event(&Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        self.event(meta.level())
    }
}

/// A log file opened for appending, shared by the events written to it.
#[derive(Clone)]
struct LogFile(Arc<Mutex<std::fs::File>>);

impl Write for LogFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut file = self.0.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn open_log(path: &str) -> Option<LogFile> {
    match std::fs::OpenOptions::new().create(true).append(true).open(path) {
        Ok(file) => Some(LogFile(Arc::new(Mutex::new(file)))),
        Err(error) => {
            eprintln!("cannot open log file {path}: {error}");
            None
        }
    }
}

/// The filters of the outputs that follow the debug level.
static LEVEL_HANDLES: std::sync::Mutex<Vec<tracing_subscriber::reload::Handle<EnvFilter, Registry>>> =
    std::sync::Mutex::new(Vec::new());

/// Sets the level of every output but ha.cf's `debugfile` to what Heartbeat's `debug` number
/// means ([`level_for_debug`]), at once.
pub fn set_debug(number: u8) {
    let level = level_for_debug(number);
    for handle in LEVEL_HANDLES.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = handle.reload(EnvFilter::new(level));
    }
    tracing::info!(debug = number, "debug level now {number} ({level})");
}

/// For a daemon the master started: follows the debug level as Heartbeat's daemons do —
/// SIGUSR1 raises it, SIGUSR2 lowers it, SIGHUP sets it to ha.cf's `debug` again (the master
/// sends SIGHUP after a reload). Starts from `debug`; runs until the process ends.
pub async fn follow_level_signals(config_dir: std::path::PathBuf, mut debug: u8) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hangup), Ok(mut raise), Ok(mut lower)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        tracing::warn!("cannot catch SIGHUP/SIGUSR1/SIGUSR2: the log level stays where it is");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = raise.recv() => debug = debug.saturating_add(1),
            _ = lower.recv() => debug = debug.saturating_sub(1),
            _ = hangup.recv() => match crate::config::load_dir(&config_dir) {
                Ok(loaded) => debug = loaded.config.logging.debug,
                Err(error) => {
                    tracing::warn!("SIGHUP: configuration unreadable, debug level unchanged: {error}");
                    continue;
                }
            },
        }
        set_debug(debug);
    }
}

/// Whether [`init_with`] sent the log to stderr (no journal): a message for the operator
/// then needs no second copy there.
pub fn logs_to_stderr() -> bool {
    LOGS_TO_STDERR.load(std::sync::atomic::Ordering::Relaxed)
}

static LOGS_TO_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Installs the global subscriber at `default_level` (`RUST_LOG` overrides it): journald or
/// stderr, plus ha.cf's `logfile`, `debugfile` and `logfacility`. Safe to call twice (the
/// second call does nothing).
pub fn init_with(identifier: &str, default_level: &str, logging: &Logging) {
    let filter = |level: &str| EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // The outputs that follow the debug level carry a filter that can be replaced later.
    let following = |level: &str| {
        let (layer, handle) = tracing_subscriber::reload::Layer::new(filter(level));
        LEVEL_HANDLES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
        layer
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    let journald = (Path::new(JOURNALD_SOCKET).exists() && std::env::var_os("HB_LOG_STDERR").is_none())
        .then(tracing_journald::layer)
        .and_then(Result::ok);
    LOGS_TO_STDERR.store(journald.is_none(), std::sync::atomic::Ordering::Relaxed);
    match journald {
        // Event fields as journal fields of their own name (NODE, RESOURCE, OP, RC), so that
        // `journalctl RESOURCE=web` works as an administrator would type it.
        Some(layer) => layers.push(
            layer
                .with_syslog_identifier(identifier.to_owned())
                .with_field_prefix(None)
                .with_filter(following(default_level))
                .boxed(),
        ),
        None => layers.push(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_filter(following(default_level))
                .boxed(),
        ),
    }
    let to_file = |file: LogFile| {
        tracing_subscriber::fmt::layer()
            .with_writer(move || file.clone())
            .with_ansi(false)
            .with_target(false)
    };
    if let Some(file) = logging.logfile.as_deref().and_then(open_log) {
        layers.push(to_file(file).with_filter(following(default_level)).boxed());
    }
    // ha.cf's debugfile gets everything from debug up, whatever the level of the rest.
    if let Some(file) = logging.debugfile.as_deref().and_then(open_log) {
        layers.push(to_file(file).with_filter(filter("debug")).boxed());
    }
    let syslog = logging
        .facility
        .as_deref()
        .filter(|f| *f != "none")
        .and_then(facility_code)
        .and_then(|facility| SyslogWriter::new(Path::new(SYSLOG_SOCKET), facility, identifier).ok());
    if let Some(writer) = syslog {
        layers.push(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_target(false)
                .without_time()
                .with_filter(following(default_level))
                .boxed(),
        );
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_gets_one_datagram_per_event_with_facility_and_severity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let writer = SyslogWriter::new(&path, facility_code("local0").unwrap(), "crmd").unwrap();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_target(false)
                .without_time(),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(node = "bravo", "node bravo: status dead");
        });
        let mut buffer = [0u8; 512];
        let length = receiver.recv(&mut buffer).unwrap();
        let datagram = String::from_utf8_lossy(&buffer[..length]).into_owned();
        // local0 (16) * 8 + warning (4)
        let expected = format!("<132>crmd[{}]: ", std::process::id());
        assert!(datagram.starts_with(&expected), "{datagram}");
        assert!(
            datagram.contains("node bravo: status dead") && datagram.contains("node=\"bravo\""),
            "{datagram}"
        );
    }

    #[test]
    fn heartbeats_facility_names() {
        assert_eq!(facility_code("daemon"), Some(3));
        assert_eq!(facility_code("local7"), Some(23));
        assert_eq!(facility_code("none"), None);
        assert_eq!(facility_code("bogus"), None);
    }
}
