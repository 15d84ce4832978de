//! The respawn policy, as a pure state machine: events and the current time in, an action out.
//!
//! Heartbeat's rules: a child that exits with status 100 asked not to be respawned; a child that
//! dies more than 10 times, each time within 30 s of its start, is crash-looping and is given
//! up on. heartbeat-rs adds an exponential back-off between quick deaths, so that a crash loop
//! does not burn the CPU while it lasts; the first restart is immediate, which is what keeps a
//! single crash's outage to milliseconds.

use std::time::{Duration, Instant};

pub use hbapi::master::ChildState;

/// Exit status that means "do not respawn me" (Heartbeat's convention).
pub const NO_RESPAWN_EXIT: i32 = hbapi::daemon::EXIT_NO_RESPAWN as i32;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit {code}"),
            Exit::Signal(signal) => match nix::sys::signal::Signal::try_from(*signal) {
                Ok(signal) => write!(f, "signal {}", signal.as_str()),
                Err(_) => write!(f, "signal {signal}"),
            },
        }
    }
}

/// Tunables of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespawnPolicy {
    /// A death this soon after the start counts as quick.
    pub quick_death_window: Duration,
    /// More consecutive quick deaths than this and the child is given up on.
    pub max_quick_deaths: u32,
    /// Delay before the restart after the second consecutive quick death; doubles after each.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for RespawnPolicy {
    fn default() -> Self {
        RespawnPolicy {
            quick_death_window: Duration::from_secs(30),
            max_quick_deaths: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RespawnPolicy {
    /// The delay before restarting after the `quick_deaths`-th consecutive quick death.
    pub fn delay(&self, quick_deaths: u32) -> Duration {
        if quick_deaths <= 1 {
            return Duration::ZERO;
        }
        let doublings = (quick_deaths - 2).min(31);
        self.base_delay
            .checked_mul(1u32 << doublings)
            .map_or(self.max_delay, |delay| delay.min(self.max_delay))
    }
}

/// What happened to a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A process was started.
    Spawned,
    /// Starting a process failed (program missing, user unknown, exec error).
    SpawnFailed,
    /// The process ended.
    Exited(Exit),
    /// The back-off delay is over.
    BackoffElapsed,
    /// The node is stopping: whatever happens from now on, start nothing (the child is
    /// stopped in its turn by [`Event::StopRequested`]; a death or an elapsing back-off
    /// before that leaves it stopped).
    Hold,
    /// Stop it and keep it stopped.
    StopRequested,
    /// Stop it if running, then start it afresh (clears a give-up).
    RestartRequested,
}

/// What the supervisor must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start a process now.
    Spawn,
    /// Start a process after this delay (then feed [`Event::BackoffElapsed`]).
    SpawnAfter(Duration),
    /// Signal the running process to stop.
    Kill,
}

/// The policy's view of one child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildLife {
    /// Current state.
    pub state: ChildState,
    /// Restarts so far (starts after the first).
    pub restarts: u32,
    /// Consecutive quick deaths.
    pub quick_deaths: u32,
    /// How the last process ended.
    pub last_exit: Option<Exit>,
    started_at: Option<Instant>,
    restart_pending: bool,
    ever_started: bool,
    /// Nothing may start any more (the node or this child is being stopped).
    held: bool,
}

impl Default for ChildLife {
    fn default() -> Self {
        ChildLife {
            state: ChildState::Stopped,
            restarts: 0,
            quick_deaths: 0,
            last_exit: None,
            started_at: None,
            restart_pending: false,
            ever_started: false,
            held: false,
        }
    }
}

impl ChildLife {
    /// Feeds one event; returns what to do.
    pub fn next(&mut self, event: Event, now: Instant, policy: &RespawnPolicy) -> Option<Action> {
        match event {
            Event::Spawned => {
                if self.ever_started {
                    self.restarts += 1;
                }
                self.ever_started = true;
                self.started_at = Some(now);
                if self.held {
                    // Stopped while it was being started: it goes at once.
                    self.state = ChildState::Stopping;
                    return Some(Action::Kill);
                }
                self.state = ChildState::Running;
                None
            }
            Event::SpawnFailed => {
                self.started_at = Some(now);
                self.death(now, policy)
            }
            Event::Exited(exit) => {
                self.last_exit = Some(exit);
                if self.held {
                    self.restart_pending = false;
                    self.state = ChildState::Stopped;
                    return None;
                }
                if self.state == ChildState::Stopping {
                    if std::mem::take(&mut self.restart_pending) {
                        self.quick_deaths = 0;
                        self.state = ChildState::Starting;
                        return Some(Action::Spawn);
                    }
                    self.state = ChildState::Stopped;
                    return None;
                }
                if exit == Exit::Code(NO_RESPAWN_EXIT) {
                    self.state = ChildState::Exited;
                    return None;
                }
                self.death(now, policy)
            }
            Event::BackoffElapsed => {
                if self.state == ChildState::Backoff && !self.held {
                    self.state = ChildState::Starting;
                    Some(Action::Spawn)
                } else {
                    None
                }
            }
            Event::Hold => {
                self.held = true;
                self.restart_pending = false;
                if self.state == ChildState::Backoff {
                    self.state = ChildState::Stopped;
                }
                None
            }
            Event::StopRequested => {
                self.held = true;
                self.restart_pending = false;
                if self.state == ChildState::Starting {
                    // No process yet: its Spawned (then killed) or SpawnFailed comes next.
                    return None;
                }
                if self.state.is_alive() {
                    self.state = ChildState::Stopping;
                    Some(Action::Kill)
                } else {
                    self.state = ChildState::Stopped;
                    None
                }
            }
            Event::RestartRequested => {
                self.held = false;
                if self.state.is_alive() {
                    self.restart_pending = true;
                    self.state = ChildState::Stopping;
                    Some(Action::Kill)
                } else {
                    self.quick_deaths = 0;
                    self.state = ChildState::Starting;
                    Some(Action::Spawn)
                }
            }
        }
    }

    fn death(&mut self, now: Instant, policy: &RespawnPolicy) -> Option<Action> {
        if self.held {
            self.state = ChildState::Stopped;
            return None;
        }
        let lived = self
            .started_at
            .map_or(Duration::ZERO, |start| now.saturating_duration_since(start));
        if lived < policy.quick_death_window {
            self.quick_deaths += 1;
        } else {
            self.quick_deaths = 1;
        }
        if self.quick_deaths > policy.max_quick_deaths {
            self.state = ChildState::GaveUp;
            return None;
        }
        let delay = policy.delay(self.quick_deaths);
        if delay.is_zero() {
            self.state = ChildState::Starting;
            Some(Action::Spawn)
        } else {
            self.state = ChildState::Backoff;
            Some(Action::SpawnAfter(delay))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(now: Instant) -> ChildLife {
        let mut life = ChildLife::default();
        let policy = RespawnPolicy::default();
        assert_eq!(
            life.next(Event::RestartRequested, now, &policy),
            Some(Action::Spawn)
        );
        assert_eq!(life.next(Event::Spawned, now, &policy), None);
        life
    }

    #[test]
    fn first_crash_restarts_at_once() {
        let policy = RespawnPolicy::default();
        let t0 = Instant::now();
        let mut life = started(t0);
        let action = life.next(
            Event::Exited(Exit::Signal(9)),
            t0 + Duration::from_secs(1),
            &policy,
        );
        assert_eq!(action, Some(Action::Spawn));
        assert_eq!(life.state, ChildState::Starting);
        life.next(Event::Spawned, t0 + Duration::from_secs(1), &policy);
        assert_eq!(life.restarts, 1);
    }

    #[test]
    fn exit_100_is_not_respawned() {
        let policy = RespawnPolicy::default();
        let t0 = Instant::now();
        let mut life = started(t0);
        assert_eq!(life.next(Event::Exited(Exit::Code(100)), t0, &policy), None);
        assert_eq!(life.state, ChildState::Exited);
        assert_eq!(life.next(Event::BackoffElapsed, t0, &policy), None);
    }

    #[test]
    fn crash_loop_backs_off_then_gives_up_after_the_eleventh_quick_death() {
        let policy = RespawnPolicy::default();
        let mut now = Instant::now();
        let mut life = started(now);
        let mut delays = Vec::new();
        for _ in 0..10 {
            now += Duration::from_secs(2);
            match life.next(Event::Exited(Exit::Code(1)), now, &policy) {
                Some(Action::Spawn) => delays.push(Duration::ZERO),
                Some(Action::SpawnAfter(delay)) => {
                    delays.push(delay);
                    now += delay;
                    assert_eq!(
                        life.next(Event::BackoffElapsed, now, &policy),
                        Some(Action::Spawn)
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
            life.next(Event::Spawned, now, &policy);
        }
        let ms = |m| Duration::from_millis(m);
        assert_eq!(
            delays,
            [
                ms(0),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(5000),
                ms(5000),
                ms(5000)
            ]
        );
        now += Duration::from_secs(2);
        assert_eq!(life.next(Event::Exited(Exit::Code(1)), now, &policy), None);
        assert_eq!(life.state, ChildState::GaveUp);
        // An operator's restart clears the give-up.
        assert_eq!(
            life.next(Event::RestartRequested, now, &policy),
            Some(Action::Spawn)
        );
        assert_eq!(life.quick_deaths, 0);
    }

    #[test]
    fn a_long_run_resets_the_quick_death_count() {
        let policy = RespawnPolicy::default();
        let mut now = Instant::now();
        let mut life = started(now);
        for _ in 0..5 {
            now += Duration::from_secs(1);
            if let Some(Action::SpawnAfter(delay)) = life.next(Event::Exited(Exit::Code(1)), now, &policy) {
                now += delay;
                life.next(Event::BackoffElapsed, now, &policy);
            }
            life.next(Event::Spawned, now, &policy);
        }
        assert_eq!(life.quick_deaths, 5);
        now += Duration::from_secs(31);
        assert_eq!(
            life.next(Event::Exited(Exit::Code(1)), now, &policy),
            Some(Action::Spawn)
        );
        assert_eq!(life.quick_deaths, 1);
    }

    #[test]
    fn deadtime_edge_of_the_window() {
        let policy = RespawnPolicy::default();
        let t0 = Instant::now();
        let mut life = started(t0);
        life.next(
            Event::Exited(Exit::Code(1)),
            t0 + policy.quick_death_window - Duration::from_millis(1),
            &policy,
        );
        assert_eq!(life.quick_deaths, 1);
        life.next(Event::Spawned, t0 + Duration::from_secs(30), &policy);
        life.next(
            Event::Exited(Exit::Code(1)),
            t0 + Duration::from_secs(60),
            &policy,
        );
        assert_eq!(
            life.quick_deaths, 1,
            "a death exactly 30 s after the start is not quick"
        );
    }

    #[test]
    fn stop_keeps_it_down_and_restart_starts_it_after_the_exit() {
        let policy = RespawnPolicy::default();
        let t0 = Instant::now();
        let mut life = started(t0);
        assert_eq!(life.next(Event::StopRequested, t0, &policy), Some(Action::Kill));
        assert_eq!(life.state, ChildState::Stopping);
        assert_eq!(life.next(Event::Exited(Exit::Signal(15)), t0, &policy), None);
        assert_eq!(life.state, ChildState::Stopped);

        let mut life = started(t0);
        assert_eq!(
            life.next(Event::RestartRequested, t0, &policy),
            Some(Action::Kill)
        );
        assert_eq!(
            life.next(Event::Exited(Exit::Signal(15)), t0, &policy),
            Some(Action::Spawn)
        );
    }

    /// The supervisor's orderings that hung `heartbeat -k`: a back-off elapsing, or a child
    /// dying, after the node began to stop but before that child's turn came.
    #[test]
    fn once_the_node_stops_a_death_or_an_elapsed_backoff_starts_nothing() {
        let policy = RespawnPolicy::default();
        let t0 = Instant::now();
        // Crash-looping child in back-off when the stop begins; its timer fires later.
        let mut looping = started(t0);
        looping.next(Event::Exited(Exit::Code(1)), t0, &policy);
        looping.next(Event::Spawned, t0, &policy);
        assert!(matches!(
            looping.next(Event::Exited(Exit::Code(1)), t0, &policy),
            Some(Action::SpawnAfter(_))
        ));
        assert_eq!(looping.next(Event::Hold, t0, &policy), None);
        assert_eq!(looping.state, ChildState::Stopped);
        assert_eq!(looping.next(Event::BackoffElapsed, t0, &policy), None);
        assert_eq!(
            looping.next(Event::StopRequested, t0, &policy),
            None,
            "no process to kill"
        );
        assert_eq!(looping.state, ChildState::Stopped);
        // A running child killed behind the master's back while another one stops.
        let mut killed = started(t0);
        killed.next(Event::Hold, t0, &policy);
        assert_eq!(killed.next(Event::Exited(Exit::Signal(9)), t0, &policy), None);
        assert_eq!(killed.state, ChildState::Stopped);
        assert_eq!(killed.next(Event::StopRequested, t0, &policy), None);
        // A restart (RestartChild, a reload) lifts the hold.
        assert_eq!(
            killed.next(Event::RestartRequested, t0, &policy),
            Some(Action::Spawn)
        );
    }

    /// Every sequence of events the supervisor can feed (up to seven), from a running child:
    /// a kill is asked only of a process that exists, and nothing starts after a hold or a
    /// stop until a restart is asked for.
    #[test]
    fn every_ordering_keeps_kills_to_live_processes_and_holds_held() {
        #[derive(Clone)]
        struct World {
            life: ChildLife,
            process: bool,
            spawn_due: bool,
            backoff_due: bool,
            held: bool,
        }
        let policy = RespawnPolicy::default();
        let t0 = Instant::now();
        let events = [
            Event::Exited(Exit::Code(1)),
            Event::Exited(Exit::Code(NO_RESPAWN_EXIT)),
            Event::Spawned,
            Event::SpawnFailed,
            Event::BackoffElapsed,
            Event::Hold,
            Event::StopRequested,
        ];
        let mut frontier = vec![World {
            life: started(t0),
            process: true,
            spawn_due: false,
            backoff_due: false,
            held: false,
        }];
        let mut explored = 0;
        for depth in 0..7 {
            let mut next_frontier = Vec::new();
            for world in &frontier {
                for event in &events {
                    // Only what the shell can really feed in this world.
                    let possible = match event {
                        Event::Exited(_) => world.process,
                        Event::Spawned | Event::SpawnFailed => world.spawn_due,
                        Event::BackoffElapsed => world.backoff_due,
                        _ => true,
                    };
                    if !possible {
                        continue;
                    }
                    let mut after = world.clone();
                    let now = t0 + Duration::from_secs(depth);
                    match event {
                        Event::Exited(_) => after.process = false,
                        Event::Spawned => {
                            after.process = true;
                            after.spawn_due = false
                        }
                        Event::SpawnFailed => after.spawn_due = false,
                        Event::BackoffElapsed => after.backoff_due = false,
                        Event::Hold | Event::StopRequested => after.held = true,
                        Event::RestartRequested => {}
                    }
                    let action = after.life.next(event.clone(), now, &policy);
                    match action {
                        Some(Action::Kill) => {
                            assert!(after.process, "kill without a process after {event:?}")
                        }
                        Some(Action::Spawn) | Some(Action::SpawnAfter(_)) => {
                            assert!(!after.held, "a start after the hold, on {event:?}");
                            assert!(!after.process, "a second process on {event:?}");
                            if matches!(action, Some(Action::Spawn)) {
                                after.spawn_due = true;
                            } else {
                                after.backoff_due = true;
                            }
                        }
                        None => {}
                    }
                    if after.held && !after.process && !after.spawn_due {
                        assert!(
                            !after.life.state.is_alive(),
                            "held with no process but {:?} (the stop would wait forever)",
                            after.life.state
                        );
                    }
                    explored += 1;
                    next_frontier.push(after);
                }
            }
            frontier = next_frontier;
        }
        assert!(explored > 1000, "{explored}");
    }

    #[test]
    fn exec_failures_count_as_quick_deaths() {
        let policy = RespawnPolicy::default();
        let mut now = Instant::now();
        let mut life = ChildLife::default();
        life.next(Event::RestartRequested, now, &policy);
        let mut gave_up = false;
        for _ in 0..20 {
            match life.next(Event::SpawnFailed, now, &policy) {
                Some(Action::SpawnAfter(delay)) => {
                    now += delay;
                    life.next(Event::BackoffElapsed, now, &policy);
                }
                Some(Action::Spawn) => {}
                None => {
                    gave_up = true;
                    break;
                }
                Some(Action::Kill) => panic!("nothing to kill"),
            }
        }
        assert!(gave_up);
        assert_eq!(life.state, ChildState::GaveUp);
    }
}
