//! Whether the core daemons are alive, not merely running.
//!
//! A process can exist and do nothing: stopped (SIGSTOP), deadlocked, stuck in the kernel.
//! hbcomm in that state stops sending heartbeats and its peers take the node's groups while
//! they still run here; crmd in that state answers nothing and decides nothing. So the master
//! pings each core daemon on the bus (`org.freedesktop.DBus.Peer.Ping` to its well-known name,
//! which zbus answers from the daemon's own runtime) every quarter deadtime, and a daemon that
//! answered once since its start and then stays silent for [`Liveness::deadline`] is hung: the
//! master kills it, and the respawn policy brings a fresh one (the daemons find their state
//! again). A daemon that never answered is still starting (lrmd may be waiting for the one of a
//! killed master to finish its stops), not hung. systemd's watchdog is fed only while no core
//! daemon is hung, so a hung stack is acted on by systemd (and a hardware watchdog) too.
//!
//! This is the pure part: answers and the time in, verdicts out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The shortest deadline: a busy machine can stall a daemon for a moment without it being
/// hung (the load benchmark saturates both cores at a deadtime of 100 ms).
pub const MIN_DEADLINE: Duration = Duration::from_millis(500);

/// The longest interval between pings.
pub const MAX_INTERVAL: Duration = Duration::from_secs(5);

/// Answers of the core daemons, judged against a deadline.
#[derive(Debug, Clone)]
pub struct Liveness {
    deadline: Duration,
    /// Per daemon: when its current process started, and when it last answered.
    daemons: BTreeMap<String, (Instant, Option<Instant>)>,
}

impl Liveness {
    /// Judged against half the deadtime (at least [`MIN_DEADLINE`]): a hung hbcomm is replaced
    /// before its peers declare the node dead.
    pub fn new(deadtime: Duration) -> Self {
        Liveness {
            deadline: (deadtime / 2).max(MIN_DEADLINE),
            daemons: BTreeMap::new(),
        }
    }

    /// How long a daemon may stay silent.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// How often to ask.
    pub fn interval(&self) -> Duration {
        (self.deadline / 2).min(MAX_INTERVAL)
    }

    /// A new process of `daemon` started at `now`: it has not answered yet.
    pub fn started(&mut self, daemon: &str, now: Instant) {
        self.daemons.insert(daemon.to_owned(), (now, None));
    }

    /// `daemon` answered a ping sent at `asked` (an answer to a ping sent before its current
    /// process started says nothing about that process).
    pub fn answered(&mut self, daemon: &str, asked: Instant) {
        if let Some((started, last)) = self.daemons.get_mut(daemon) {
            if asked >= *started && last.is_none_or(|l| asked > l) {
                *last = Some(asked);
            }
        }
    }

    /// `daemon` is not running (stopped, or between its death and its respawn).
    pub fn gone(&mut self, daemon: &str) {
        self.daemons.remove(daemon);
    }

    /// The daemons hung at `now`: they answered since their start, then not for the deadline.
    pub fn hung(&self, now: Instant) -> Vec<String> {
        self.daemons
            .iter()
            .filter(|(_, (_, last))| last.is_some_and(|l| now.saturating_duration_since(l) > self.deadline))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// How long `daemon` has been silent, for the log.
    pub fn silent_for(&self, daemon: &str, now: Instant) -> Option<Duration> {
        let (_, last) = self.daemons.get(daemon)?;
        last.map(|l| now.saturating_duration_since(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_is_hung_only_after_it_answered_and_then_stayed_silent_past_the_deadline() {
        let t0 = Instant::now();
        let mut liveness = Liveness::new(Duration::from_secs(2));
        assert_eq!(liveness.deadline(), Duration::from_secs(1));
        assert_eq!(liveness.interval(), Duration::from_millis(500));
        liveness.started("hbcomm", t0);
        // Still starting (no answer yet): never hung, however long.
        assert!(liveness.hung(t0 + Duration::from_secs(60)).is_empty());
        liveness.answered("hbcomm", t0 + Duration::from_millis(100));
        assert!(
            liveness.hung(t0 + Duration::from_millis(1100)).is_empty(),
            "exactly the deadline"
        );
        assert_eq!(liveness.hung(t0 + Duration::from_millis(1101)), ["hbcomm"]);
        // Killed and respawned: the new process starts afresh; a late answer to a ping sent to
        // the old one does not count for it.
        liveness.gone("hbcomm");
        assert!(liveness.hung(t0 + Duration::from_secs(5)).is_empty());
        liveness.started("hbcomm", t0 + Duration::from_secs(5));
        liveness.answered("hbcomm", t0 + Duration::from_secs(4));
        assert!(liveness.hung(t0 + Duration::from_secs(60)).is_empty());
        liveness.answered("hbcomm", t0 + Duration::from_secs(6));
        assert_eq!(
            liveness.silent_for("hbcomm", t0 + Duration::from_secs(7)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn answers_out_of_order_keep_the_latest_and_short_deadtimes_get_the_floor() {
        let t0 = Instant::now();
        let mut liveness = Liveness::new(Duration::from_millis(100));
        assert_eq!(liveness.deadline(), MIN_DEADLINE);
        liveness.started("crmd", t0);
        liveness.answered("crmd", t0 + Duration::from_millis(400));
        liveness.answered("crmd", t0 + Duration::from_millis(100));
        assert!(liveness.hung(t0 + Duration::from_millis(900)).is_empty());
        assert_eq!(liveness.hung(t0 + Duration::from_millis(901)), ["crmd"]);
        assert!(Liveness::new(Duration::from_secs(600)).interval() <= MAX_INTERVAL);
    }
}
