//! When a node gives up its groups and takes them back, as a pure state machine: counts in,
//! time passed in, a decision out.
//!
//! Heartbeat's ipfail compares two nodes after a fixed 10 s sleep. Here any number of nodes
//! compare: a node that sees fewer ping nodes than some other active node gives up its
//! groups (so they go to the better connected nodes), and takes them back — becomes eligible
//! again — once no active node sees more than it does. Either change must hold for the whole
//! hysteresis before it is acted on, so a flapping link never makes groups ping-pong. When
//! every node sees the same (all lost the targets together), nothing moves.

use std::time::{Duration, Instant};

/// What ipfail asks crmd for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Give up every group here.
    GiveUp,
    /// Become eligible again.
    TakeBack,
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct Policy {
    hysteresis: Duration,
    gave_up: bool,
    /// Since when the counts have said the opposite of `gave_up`.
    contrary_since: Option<Instant>,
}

impl Policy {
    /// A policy that starts given up or not (a respawned ipfail carries on).
    pub fn new(hysteresis: Duration, gave_up: bool) -> Self {
        Policy {
            hysteresis,
            gave_up,
            contrary_since: None,
        }
    }

    /// Whether this node has given up.
    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// Feeds the counts at `now`: `local` is this node's, `peers` the other active nodes'.
    pub fn observe(&mut self, now: Instant, local: u32, peers: &[u32]) -> Option<Decision> {
        let worse_connected = peers.iter().any(|count| *count > local);
        if worse_connected == self.gave_up {
            self.contrary_since = None;
            return None;
        }
        let since = *self.contrary_since.get_or_insert(now);
        if now.duration_since(since) < self.hysteresis {
            return None;
        }
        self.gave_up = worse_connected;
        self.contrary_since = None;
        Some(if worse_connected {
            Decision::GiveUp
        } else {
            Decision::TakeBack
        })
    }

    /// When the counts should be observed again (the end of a pending hysteresis).
    pub fn deadline(&self) -> Option<Instant> {
        self.contrary_since.map(|since| since + self.hysteresis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYSTERESIS: Duration = Duration::from_secs(5);

    #[test]
    fn a_worse_connected_node_gives_up_after_the_hysteresis_and_takes_back_after_another() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut policy = Policy::new(HYSTERESIS, false);
        assert_eq!(policy.observe(at(0), 2, &[2, 2]), None);
        assert_eq!(policy.observe(at(1), 0, &[2, 2]), None);
        assert_eq!(policy.deadline(), Some(at(6)));
        assert_eq!(policy.observe(at(5), 0, &[2, 2]), None);
        assert_eq!(policy.observe(at(6), 0, &[2, 2]), Some(Decision::GiveUp));
        assert!(policy.gave_up());
        assert_eq!(policy.deadline(), None);
        assert_eq!(policy.observe(at(7), 2, &[2, 2]), None);
        assert_eq!(policy.observe(at(12), 2, &[2, 2]), Some(Decision::TakeBack));
    }

    #[test]
    fn a_flap_shorter_than_the_hysteresis_changes_nothing() {
        let start = Instant::now();
        let at = |millis: u64| start + Duration::from_millis(millis);
        let mut policy = Policy::new(HYSTERESIS, false);
        for cycle in 0..20 {
            let base = cycle * 2000;
            assert_eq!(policy.observe(at(base), 1, &[2]), None);
            assert_eq!(policy.observe(at(base + 1000), 2, &[2]), None);
        }
        assert!(!policy.gave_up());
    }

    #[test]
    fn equal_counts_move_nothing_even_when_everyone_lost_the_targets() {
        let start = Instant::now();
        let mut policy = Policy::new(HYSTERESIS, false);
        assert_eq!(policy.observe(start, 0, &[0]), None);
        assert_eq!(policy.observe(start + Duration::from_secs(60), 0, &[0, 0]), None);
        assert_eq!(policy.deadline(), None);
    }

    #[test]
    fn a_node_that_gave_up_takes_back_when_the_others_lose_as_much() {
        let start = Instant::now();
        let mut policy = Policy::new(Duration::ZERO, true);
        assert_eq!(policy.observe(start, 1, &[2]), None);
        assert_eq!(policy.observe(start, 1, &[1]), Some(Decision::TakeBack));
    }

    #[test]
    fn the_best_of_several_peers_counts() {
        let mut policy = Policy::new(Duration::ZERO, false);
        assert_eq!(
            policy.observe(Instant::now(), 1, &[0, 1, 2]),
            Some(Decision::GiveUp)
        );
    }
}
