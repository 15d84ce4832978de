//! Starting and signalling supervised processes.
//!
//! Each child gets a process group of its own (so that stopping it stops whatever it forked),
//! runs as the user its respawn line names, and is sent SIGTERM if the master dies before it
//! (so that a new master never finds stray daemons holding the bus names).
//!
//! A respawn child (not a core daemon) writes its log to stderr, which the master reads and
//! logs as its own, so that it reaches ha.cf's logfile and the journal even when the child
//! runs as a user that cannot open them. A child run as another user gets a state directory
//! of its own, `STATE_DIR/users/USER`, since the node's state directory is root's.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use hbapi::names;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Gid, Pid, Uid, User};

/// How to start one child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpec {
    /// Unique name in the supervisor.
    pub name: String,
    /// Program path.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// User to run as; `None` keeps the master's.
    pub user: Option<String>,
    /// Whether it is a core daemon.
    pub core: bool,
    /// Time it gets to stop after SIGTERM, when it needs more than the master's default.
    pub stop_timeout: Option<std::time::Duration>,
}

impl ChildSpec {
    /// The command line, for status output.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Who a child runs as, resolved before the fork (the lookups are not safe after it).
#[derive(Debug, Clone)]
struct Credentials {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    home: PathBuf,
    name: String,
}

fn credentials(user: &str) -> Result<Credentials, String> {
    let entry = User::from_name(user)
        .map_err(|error| format!("cannot look up user {user}: {error}"))?
        .ok_or_else(|| format!("user {user} does not exist"))?;
    let c_name = std::ffi::CString::new(user).map_err(|_| format!("bad user name {user:?}"))?;
    let groups = nix::unistd::getgrouplist(&c_name, entry.gid)
        .map_err(|error| format!("cannot list the groups of {user}: {error}"))?;
    Ok(Credentials {
        uid: entry.uid,
        gid: entry.gid,
        groups,
        home: entry.dir,
        name: entry.name,
    })
}

/// Checks that a child can be started (program executable, user known), for `--check` and
/// for start-up, so that such mistakes are configuration errors rather than crash loops.
pub fn preflight(spec: &ChildSpec) -> Result<(), String> {
    if let Some(user) = &spec.user {
        credentials(user)?;
    }
    match nix::unistd::access(&spec.program, nix::unistd::AccessFlags::X_OK) {
        Ok(()) => Ok(()),
        Err(error) => Err(format!("{} is not executable: {error}", spec.program.display())),
    }
}

/// The longest stderr line of a child logged as one event; the rest follows as more.
const STDERR_LINE_LIMIT: u64 = 4096;

/// `STATE_DIR/users/USER`, made for `credentials` (0700, theirs).
fn user_state_dir(state_dir: &Path, credentials: &Credentials) -> Result<PathBuf, String> {
    let users = state_dir.join("users");
    let dir = users.join(&credentials.name);
    let made = |error: std::io::Error| format!("cannot prepare {}: {error}", dir.display());
    std::fs::create_dir_all(&dir).map_err(made)?;
    nix::unistd::chown(&dir, Some(credentials.uid), Some(credentials.gid))
        .map_err(|errno| made(std::io::Error::from(errno)))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(made)?;
    Ok(dir)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

/// A child's stderr line at the level it gave it: our daemons' stderr form is `TIME LEVEL
/// message`; anything else is logged as it is, at info level.
fn split_level(line: &str) -> (Level, &str) {
    let mut rest = line.trim_start();
    let first = rest.split_whitespace().next().unwrap_or("");
    if first.len() >= 20 && first.starts_with(|c: char| c.is_ascii_digit()) && first.contains('T') {
        rest = rest[first.len()..].trim_start();
    }
    let word = rest.split_whitespace().next().unwrap_or("");
    let level = match word {
        "ERROR" => Level::Error,
        "WARN" => Level::Warn,
        "INFO" => Level::Info,
        "DEBUG" | "TRACE" => Level::Debug,
        _ => return (Level::Info, line.trim()),
    };
    (level, rest[word.len()..].trim_start())
}

/// Logs each line `child` writes to stderr as the master's own.
fn forward_stderr(name: String, stderr: tokio::process::ChildStderr) {
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(STDERR_LINE_LIMIT)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    match split_level(text.trim_end()) {
                        (_, "") => {}
                        (Level::Error, message) => tracing::error!(child = %name, "{message}"),
                        (Level::Warn, message) => tracing::warn!(child = %name, "{message}"),
                        (Level::Info, message) => tracing::info!(child = %name, "{message}"),
                        (Level::Debug, message) => tracing::debug!(child = %name, "{message}"),
                    }
                }
            }
        }
    });
}

/// Starts `spec` with `env` added to the master's environment.
pub fn spawn(spec: &ChildSpec, env: &[(String, String)]) -> Result<tokio::process::Child, String> {
    let credentials = match &spec.user {
        Some(user) => Some(credentials(user)?),
        None => None,
    };
    let switch_user = credentials
        .as_ref()
        .filter(|c| c.uid != nix::unistd::geteuid())
        .map(|c| (c.uid, c.gid, c.groups.clone()));
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Readiness and the watchdog are the master's to report, not its children's.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null());
    if !spec.core {
        command
            .stderr(Stdio::piped())
            .env("HB_LOG_STDERR", "1")
            .env("NO_COLOR", "1");
    }
    if let Some(credentials) = &credentials {
        command
            .env("HOME", &credentials.home)
            .env("USER", &credentials.name)
            .env("LOGNAME", &credentials.name);
        let state_dir = env.iter().find(|(name, _)| name == names::env::STATE_DIR);
        if let (Some((_, state_dir)), Some(_)) = (state_dir, &switch_user) {
            let own = user_state_dir(Path::new(state_dir), credentials)?;
            command.env(names::env::STATE_DIR, own);
        }
    }
    let master = nix::unistd::getpid();
    // SAFETY: only async-signal-safe system calls run between fork and exec: setsid, setgroups,
    // setgid, setuid, prctl and getppid; the group list was built before the fork.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            if let Some((uid, gid, groups)) = &switch_user {
                nix::unistd::setgroups(groups)?;
                nix::unistd::setgid(*gid)?;
                nix::unistd::setuid(*uid)?;
            }
            // After the uid change: changing credentials clears the parent-death signal.
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            if nix::unistd::getppid() != master {
                // The master died between fork and prctl.
                return Err(std::io::Error::other("master exited"));
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", spec.program.display()))?;
    if let Some(stderr) = child.stderr.take() {
        forward_stderr(spec.name.clone(), stderr);
    }
    Ok(child)
}

/// Sends `signal` to the child's whole process group; a group already gone is not an error.
pub fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if raw <= 0 {
        return;
    }
    if let Err(error) = killpg(Pid::from_raw(raw), signal) {
        if error != nix::errno::Errno::ESRCH {
            tracing::warn!("cannot send {signal} to process group {pid}: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_stderr_line_keeps_its_level() {
        assert_eq!(
            split_level("2026-12-06T00:05:20.250931Z ERROR configuration refused: no ping"),
            (Level::Error, "configuration refused: no ping")
        );
        assert_eq!(split_level("  WARN  late"), (Level::Warn, "late"));
        assert_eq!(
            split_level("plain text from a script"),
            (Level::Info, "plain text from a script")
        );
        assert_eq!(split_level("2026 is a year"), (Level::Info, "2026 is a year"));
        assert_eq!(split_level(""), (Level::Info, ""));
    }
}
