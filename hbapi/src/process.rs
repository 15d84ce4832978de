//! Running one agent process (resource agents for lrmd, fence agents and stonith plugins for
//! stonithd and `stonith`): its own process group, a clean environment, optional input on
//! stdin, stdout and stderr into one pipe kept to a size cap, a timeout after which the whole
//! group gets SIGTERM and then SIGKILL.
//!
//! The agent's exit is what ends an operation, not the end of its output: an agent that
//! leaves a background child holding the pipe (a daemon that did not close stdout) must not
//! hang lrmd. Once the agent has exited, whatever it wrote is already in the pipe, so one
//! non-blocking read collects it and the pipe is closed. Such a child is left alone after
//! success (starting daemons is what agents do); after a timeout or cancel the whole group is
//! killed so nothing of a hung operation survives.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::net::unix::pipe::Receiver;

use std::path::PathBuf;

/// Whether `path` is a regular file someone may execute.
pub fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The names of the executable files in `dir` that `keep` accepts, sorted (agent and plugin
/// listings).
pub fn executables_in(dir: &std::path::Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| is_executable(&e.path()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| keep(name))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The program.
    pub program: PathBuf,
    /// argv after the program name.
    pub args: Vec<String>,
    /// The whole environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Written to stdin, which is then closed (fence agents read their parameters there, so
    /// that secrets never appear in argv); `/dev/null` when empty.
    pub stdin: Vec<u8>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal (not by us).
    Signalled(i32),
    /// Did not finish in time; its group was killed.
    TimedOut,
    /// Cancelled; its group was killed.
    Cancelled,
    /// Could not be started.
    SpawnFailed(String),
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct Finished {
    /// How it ended.
    pub outcome: Outcome,
    /// The last `output_cap` bytes of stdout and stderr, interleaved as written.
    pub output: String,
    /// Whether output was cut.
    pub truncated: bool,
    /// Wall time from spawn to end.
    pub duration: Duration,
}

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time allowed.
    pub timeout: Duration,
    /// After SIGTERM on timeout, how long before SIGKILL.
    pub kill_grace: Duration,
    /// Output kept (the tail).
    pub output_cap: usize,
}

struct Tail {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > self.cap {
            let excess = self.bytes.len() - self.cap;
            self.bytes.drain(..excess);
            self.truncated = true;
        }
    }
}

/// Reads what is there without waiting; returns false at end of file.
fn read_available(pipe: &Receiver, tail: &mut Tail) -> std::io::Result<bool> {
    let mut buffer = [0u8; 8192];
    loop {
        match pipe.try_read(&mut buffer) {
            Ok(0) => return Ok(false),
            Ok(length) => tail.push(&buffer[..length]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

fn signal_group(pgid: u32, signal: Signal) {
    // 0 would be our own group and 1 init's: never a job's.
    if pgid <= 1 {
        return;
    }
    if let Ok(pgid) = i32::try_from(pgid) {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// Runs `call` under `limits`; `cancel` ends it early. `started` gets the agent's pid (which is
/// also its process group) as soon as it runs, so the caller can persist it.
pub async fn run(
    call: &Job,
    limits: Limits,
    cancel: impl std::future::Future<Output = ()>,
    started: impl FnOnce(u32),
) -> Finished {
    let begun = Instant::now();
    let failed = |message: String| Finished {
        outcome: Outcome::SpawnFailed(message),
        output: String::new(),
        truncated: false,
        duration: begun.elapsed(),
    };
    let (reader, writer) =
        match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
            Ok(pair) => pair,
            Err(error) => return failed(format!("pipe: {error}")),
        };
    // The agent's end must block like any ordinary stdout.
    let _ = nix::fcntl::fcntl(&writer, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()));
    let Ok(writer_copy) = writer.try_clone() else {
        return failed("pipe: cannot duplicate".into());
    };
    let mut command = tokio::process::Command::new(&call.program);
    command
        .args(&call.args)
        .env_clear()
        .envs(call.env.iter().map(|(k, v)| (k, v)))
        .stdin(if call.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer_copy))
        .process_group(0)
        .kill_on_drop(false);
    if let Some(dir) = call.program.parent() {
        command.current_dir(dir);
    }
    let spawned = command.spawn();
    // Our copies of the pipe's write end go with the command: only the agent holds it now.
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => return failed(format!("{}: {error}", call.program.display())),
    };
    let pid = child.id().unwrap_or(0);
    started(pid);
    if let Some(mut input) = child.stdin.take() {
        let data = call.stdin.clone();
        // Written on the side: an agent that does not read its input must not block us.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = input.write_all(&data).await;
        });
    }
    let mut tail = Tail {
        bytes: Vec::new(),
        cap: limits.output_cap,
        truncated: false,
    };
    let reader = match Receiver::from_owned_fd(reader) {
        Ok(reader) => Some(reader),
        Err(error) => {
            tracing::warn!("output of {} not captured: {error}", call.program.display());
            None
        }
    };
    let mut reading = reader.is_some();
    let deadline = tokio::time::sleep(limits.timeout);
    tokio::pin!(deadline);
    tokio::pin!(cancel);
    let outcome = loop {
        tokio::select! {
            status = child.wait() => {
                if let Some(reader) = &reader {
                    let _ = read_available(reader, &mut tail);
                }
                break match status {
                    Ok(status) => match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                        (Some(code), _) => Outcome::Exited(code),
                        (None, Some(signal)) => Outcome::Signalled(signal),
                        (None, None) => Outcome::Signalled(0),
                    },
                    Err(error) => Outcome::SpawnFailed(format!("wait: {error}")),
                };
            }
            readable = async {
                match &reader {
                    Some(reader) => reader.readable().await,
                    None => std::future::pending().await,
                }
            }, if reading => {
                reading = readable.is_ok() && reader.as_ref().is_some_and(|r| read_available(r, &mut tail).unwrap_or(false));
            }
            () = &mut deadline => {
                stop_group(&mut child, pid, limits.kill_grace).await;
                break Outcome::TimedOut;
            }
            () = &mut cancel => {
                stop_group(&mut child, pid, limits.kill_grace).await;
                break Outcome::Cancelled;
            }
        }
    };
    if matches!(outcome, Outcome::TimedOut | Outcome::Cancelled) {
        if let Some(reader) = &reader {
            let _ = read_available(reader, &mut tail);
        }
    }
    Finished {
        outcome,
        output: String::from_utf8_lossy(&tail.bytes).into_owned(),
        truncated: tail.truncated,
        duration: begun.elapsed(),
    }
}

/// SIGTERM to the group, SIGKILL to whatever of it is left after `grace` (also any child
/// that outlived the agent), and the agent reaped.
async fn stop_group(child: &mut tokio::process::Child, pgid: u32, grace: Duration) {
    signal_group(pgid, Signal::SIGTERM);
    let _ = tokio::time::timeout(grace, child.wait()).await;
    signal_group(pgid, Signal::SIGKILL);
    let _ = child.wait().await;
}

/// Kills what is left of an operation started by an earlier lrmd (found in its state file).
pub fn kill_group(pgid: u32) {
    signal_group(pgid, Signal::SIGKILL);
}

/// Whether `pid` still runs and is the process that started at `start_ticks` (its start time
/// in /proc, so a reused pid is not mistaken for it).
pub fn same_process_alive(pid: u32, start_ticks: u64) -> bool {
    process_start_ticks(pid).is_some_and(|ticks| ticks == start_ticks)
}

/// Live (not zombie) processes whose process group is `pgid`.
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, after)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = after.split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2).and_then(|f| f.parse::<u32>().ok()) == Some(pgid)
        })
        .collect()
}

/// A process's start time (field 22 of /proc/PID/stat), unless it is gone or a zombie.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Job {
        Job {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            stdin: Vec::new(),
        }
    }

    #[tokio::test]
    async fn input_arrives_on_stdin() {
        let mut job = shell("cat");
        job.stdin = b"action=reboot\npassword=secret\n".to_vec();
        let done = run(&job, limits(5000), std::future::pending(), |_| {}).await;
        assert_eq!(done.outcome, Outcome::Exited(0));
        assert_eq!(done.output, "action=reboot\npassword=secret\n");
    }

    fn limits(timeout_ms: u64) -> Limits {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            kill_grace: Duration::from_millis(200),
            output_cap: 64,
        }
    }

    #[tokio::test]
    async fn exit_code_and_output_tail() {
        let done = run(
            &shell("echo out; echo err >&2; seq 1 100; exit 3"),
            limits(5000),
            std::future::pending(),
            |_| {},
        )
        .await;
        assert_eq!(done.outcome, Outcome::Exited(3));
        assert!(done.truncated);
        assert!(done.output.ends_with("99\n100\n"), "{}", done.output);
        assert!(done.output.len() <= 64);
    }

    #[tokio::test]
    async fn a_background_child_holding_stdout_does_not_block() {
        let done = run(
            &shell("sleep 30 & echo started"),
            limits(10_000),
            std::future::pending(),
            |_| {},
        )
        .await;
        assert_eq!(done.outcome, Outcome::Exited(0));
        assert_eq!(done.output, "started\n");
        assert!(done.duration < Duration::from_secs(10), "{:?}", done.duration);
    }

    #[tokio::test]
    async fn a_hanging_agent_and_its_children_are_killed_at_the_timeout() {
        let mut group = 0;
        let done = run(
            &shell("trap '' TERM; sleep 30 & sleep 30; wait"),
            limits(300),
            std::future::pending(),
            |pid| group = pid,
        )
        .await;
        assert_eq!(done.outcome, Outcome::TimedOut);
        assert!(group > 0);
        // SIGKILL is delivered asynchronously: give the kernel a moment to finish them.
        let mut left = live_group_members(group);
        for _ in 0..200 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            left = live_group_members(group);
        }
        assert!(left.is_empty(), "processes of the group survived: {left:?}");
    }

    #[tokio::test]
    async fn cancel_ends_a_run() {
        let done = run(&shell("sleep 30"), limits(30_000), async {}, |_| {}).await;
        assert_eq!(done.outcome, Outcome::Cancelled);
    }

    #[tokio::test]
    async fn a_missing_program_is_reported() {
        let mut call = shell("");
        call.program = "/nonexistent/agent".into();
        let done = run(&call, limits(1000), std::future::pending(), |_| {}).await;
        assert!(
            matches!(done.outcome, Outcome::SpawnFailed(_)),
            "{:?}",
            done.outcome
        );
    }
}
