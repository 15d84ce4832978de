//! Whether the core daemons are alive, not merely running.
//!
//! A process can exist and do nothing: stopped (SIGSTOP), deadlocked, stuck. hbcomm in that
//! state sends no heartbeats and its peers take the node's groups while they still run here;
//! crmd in that state decides nothing. Two kinds of evidence, priced by what they cost an idle
//! node:
//!
//! - **Stopped**: a child that stops or continues sends its parent SIGCHLD; the master then
//!   reads the core daemons' states in /proc (no timer, no daemon woken). Stopped (`T`, `t`)
//!   for longer than [`Liveness::deadline`] — half a deadtime, at least [`MIN_DEADLINE`] — is
//!   hung: a stopped hbcomm is replaced before its peers declare the node dead.
//! - **Silent**: every [`Liveness::ping_interval`] the master pings each daemon on the bus
//!   (`org.freedesktop.DBus.Peer.Ping`, answered from the daemon's own runtime). One that
//!   answered since its start and then stays silent for [`Liveness::ping_deadline`] is hung
//!   (a deadlock, a runtime that no longer runs). A daemon that never answered is still
//!   starting (lrmd may be waiting for the one of a killed master to finish its stops).
//!
//! A hung daemon is killed and respawned; systemd's watchdog is fed only while none is hung.
//! This is the pure part: observations and the time in, verdicts out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The shortest deadline for a stopped daemon: a busy machine can hold a process for a moment.
pub const MIN_DEADLINE: Duration = Duration::from_millis(500);

/// The shortest deadline for a silent one (pings are the costly evidence: few of them).
pub const MIN_PING_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
struct Daemon {
    started: Option<Instant>,
    last_answer: Option<Instant>,
    stopped_since: Option<Instant>,
}

/// Observations of the core daemons, judged against the deadlines.
#[derive(Debug, Clone)]
pub struct Liveness {
    deadline: Duration,
    ping_deadline: Duration,
    daemons: BTreeMap<String, Daemon>,
}

impl Liveness {
    /// Deadlines from the deadtime: half of it for a stopped daemon (at least
    /// [`MIN_DEADLINE`]), twice it for a silent one (at least [`MIN_PING_DEADLINE`]).
    pub fn new(deadtime: Duration) -> Self {
        Liveness {
            deadline: (deadtime / 2).max(MIN_DEADLINE),
            ping_deadline: (deadtime * 2).max(MIN_PING_DEADLINE),
            daemons: BTreeMap::new(),
        }
    }

    /// How long a daemon may stay stopped.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// How long a daemon that answered may stay silent.
    pub fn ping_deadline(&self) -> Duration {
        self.ping_deadline
    }

    /// When the next verdict on a stopped daemon falls due, if one is stopped.
    pub fn next_verdict(&self) -> Option<Instant> {
        self.daemons
            .values()
            .filter_map(|state| state.stopped_since)
            .min()
            .map(|since| since + self.deadline)
    }

    /// How often to ping them.
    pub fn ping_interval(&self) -> Duration {
        self.ping_deadline / 4
    }

    /// A new process of `daemon` started at `now`: nothing is known of it yet.
    pub fn started(&mut self, daemon: &str, now: Instant) {
        self.daemons.insert(
            daemon.to_owned(),
            Daemon {
                started: Some(now),
                ..Daemon::default()
            },
        );
    }

    /// `daemon` is not running (stopped by the master, or between a death and a respawn).
    pub fn gone(&mut self, daemon: &str) {
        self.daemons.remove(daemon);
    }

    /// `daemon` answered a ping sent at `asked` (an answer to a ping sent before its current
    /// process started says nothing about that process).
    pub fn answered(&mut self, daemon: &str, asked: Instant) {
        if let Some(state) = self.daemons.get_mut(daemon) {
            if state.started.is_some_and(|s| asked >= s) && state.last_answer.is_none_or(|l| asked > l) {
                state.last_answer = Some(asked);
            }
        }
    }

    /// What /proc said of `daemon` at `now`: whether it is stopped.
    pub fn observed(&mut self, daemon: &str, stopped: bool, now: Instant) {
        if let Some(state) = self.daemons.get_mut(daemon) {
            state.stopped_since = match (stopped, state.stopped_since) {
                (false, _) => None,
                (true, Some(since)) => Some(since),
                (true, None) => Some(now),
            };
        }
    }

    /// The master itself did not run until `now` (the node was frozen, or starved): nothing
    /// seen or not seen meanwhile counts against the daemons.
    pub fn master_resumed(&mut self, now: Instant) {
        for state in self.daemons.values_mut() {
            if state.last_answer.is_some() {
                state.last_answer = Some(now);
            }
            state.stopped_since = None;
        }
    }

    /// The daemons hung at `now`, with why.
    pub fn hung(&self, now: Instant) -> Vec<(String, String)> {
        self.daemons
            .iter()
            .filter_map(|(name, state)| {
                if let Some(since) = state.stopped_since {
                    let stopped = now.saturating_duration_since(since);
                    if stopped > self.deadline {
                        return Some((name.clone(), format!("stopped for {stopped:?}")));
                    }
                }
                let silent = now.saturating_duration_since(state.last_answer?);
                (silent > self.ping_deadline)
                    .then(|| (name.clone(), format!("no answer on the bus for {silent:?}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(hung: Vec<(String, String)>) -> Vec<String> {
        hung.into_iter().map(|(name, _)| name).collect()
    }

    #[test]
    fn a_stopped_daemon_is_hung_after_half_a_deadtime() {
        let t0 = Instant::now();
        let mut liveness = Liveness::new(Duration::from_secs(2));
        assert_eq!(liveness.deadline(), Duration::from_secs(1));
        liveness.started("hbcomm", t0);
        assert_eq!(liveness.next_verdict(), None);
        liveness.observed("hbcomm", true, t0 + Duration::from_millis(100));
        assert_eq!(liveness.next_verdict(), Some(t0 + Duration::from_millis(1100)));
        liveness.observed("hbcomm", true, t0 + Duration::from_millis(600));
        assert!(
            liveness.hung(t0 + Duration::from_millis(1100)).is_empty(),
            "exactly the deadline"
        );
        let hung = liveness.hung(t0 + Duration::from_millis(1101));
        assert_eq!(hung[0].0, "hbcomm");
        assert!(hung[0].1.starts_with("stopped for"), "{hung:?}");
        // Continued (SIGCONT) in time: nothing.
        liveness.observed("hbcomm", false, t0 + Duration::from_millis(1200));
        assert!(liveness.hung(t0 + Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn a_silent_daemon_is_hung_only_after_it_answered_and_the_ping_deadline_passed() {
        let t0 = Instant::now();
        let mut liveness = Liveness::new(Duration::from_secs(1));
        assert_eq!(liveness.ping_deadline(), MIN_PING_DEADLINE);
        assert_eq!(liveness.ping_interval(), MIN_PING_DEADLINE / 4);
        liveness.started("crmd", t0);
        // Still starting (no answer yet): never hung, however long.
        assert!(liveness.hung(t0 + Duration::from_secs(600)).is_empty());
        liveness.answered("crmd", t0 + Duration::from_secs(1));
        liveness.answered("crmd", t0 + Duration::from_millis(500));
        assert!(liveness.hung(t0 + Duration::from_secs(31)).is_empty());
        assert_eq!(names(liveness.hung(t0 + Duration::from_millis(31_001))), ["crmd"]);
        // Respawned: the new process starts afresh; a late answer to a ping sent to the old
        // one does not count for it.
        liveness.gone("crmd");
        liveness.started("crmd", t0 + Duration::from_secs(20));
        liveness.answered("crmd", t0 + Duration::from_secs(19));
        assert!(liveness.hung(t0 + Duration::from_secs(600)).is_empty());
        assert_eq!(
            Liveness::new(Duration::from_secs(60)).ping_deadline(),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn nothing_counts_from_a_time_the_master_did_not_run() {
        let t0 = Instant::now();
        let mut liveness = Liveness::new(Duration::from_secs(1));
        liveness.started("lrmd", t0);
        liveness.started("hbcomm", t0);
        liveness.answered("lrmd", t0);
        liveness.observed("hbcomm", true, t0);
        let thawed = t0 + Duration::from_secs(60);
        assert_eq!(names(liveness.hung(thawed)), ["hbcomm", "lrmd"]);
        liveness.master_resumed(thawed);
        assert!(liveness.hung(thawed + Duration::from_millis(400)).is_empty());
    }
}
