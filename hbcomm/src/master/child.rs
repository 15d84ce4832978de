//! Starting and signalling supervised processes.
//!
//! Each child gets a process group of its own (so that stopping it stops whatever it forked),
//! runs as the user its respawn line names, and is sent SIGTERM if the master dies before it
//! (so that a new master never finds stray daemons holding the bus names).

use std::path::PathBuf;
use std::process::Stdio;

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

/// Starts `spec` with `env` added to the master's environment.
pub fn spawn(spec: &ChildSpec, env: &[(String, String)]) -> Result<tokio::process::Child, String> {
    let credentials = match &spec.user {
        Some(user) => Some(credentials(user)?),
        None => None,
    };
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Readiness and the watchdog are the master's to report, not its children's.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null());
    if let Some(credentials) = &credentials {
        command
            .env("HOME", &credentials.home)
            .env("USER", &credentials.name)
            .env("LOGNAME", &credentials.name);
    }
    let master = nix::unistd::getpid();
    let switch_user = credentials
        .as_ref()
        .filter(|c| c.uid != nix::unistd::geteuid())
        .map(|c| (c.uid, c.gid, c.groups.clone()));
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
    command
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", spec.program.display()))
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
