//! When this node sends its heartbeat: every keepalive, in step with its peers.
//!
//! An idle node wakes up for its own heartbeat and for each peer's. Nodes whose heartbeats
//! are out of step wake each other up at different moments; nodes in step wake up together,
//! each finding the other's heartbeat as it sends its own. So when a peer's heartbeat arrives
//! and this node's own is due within half a keepalive, the node sends at once and restarts its
//! period from there — aimed a little ahead of the peer's next heartbeat ([`LEAD`]), the time a
//! node takes from its timer to its packet leaving, so that both are awake when the packets
//! cross. A heartbeat may come early this way, never late: a peer's deadtime is untouched.
//!
//! A node already within [`LEAD`] of the peer does nothing, so two nodes in step stay put
//! instead of each pulling the other ahead in turn. Pure: times in, decision out.

use std::time::{Duration, Instant};

/// How far ahead of a peer's expected heartbeat a node in step aims its own.
pub const LEAD: Duration = Duration::from_micros(100);

/// A peer's heartbeat arrived at `arrival`; this node's own is next due at `next_due`. When
/// this node should fall into step: send now, and send the next one after the returned delay
/// (then every `keepalive`). `None`: keep the period (already in step, or the peer is the one
/// behind and will move).
///
/// Ours must be due less than half a keepalive away, so more than half a keepalive has passed
/// since the last one even when that one was itself sent in step: a peer configured with a
/// shorter keepalive can make this node send at most twice as often, never more.
pub fn join_step(next_due: Instant, arrival: Instant, keepalive: Duration) -> Option<Duration> {
    let until_ours = next_due.saturating_duration_since(arrival);
    let window = (keepalive / 2).saturating_sub(LEAD);
    (until_ours > LEAD && until_ours <= window).then(|| greet(keepalive))
}

/// A node heard for the first time, or again after it was declared dead, gets this node's
/// heartbeat at once: it may be waiting to hear this node before it decides anything, and the
/// heartbeats sent before it listened were lost. Send now, and the next one after the returned
/// delay, as when falling into step (the newcomer is in step with us from then on).
pub fn greet(keepalive: Duration) -> Duration {
    keepalive.saturating_sub(LEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEPALIVE: Duration = Duration::from_millis(200);

    /// Nodes started at `phases` (offsets of their first heartbeat), each packet arriving
    /// `latency` after it is sent, run for `rounds` keepalives. Returns each node's send times
    /// and, per node, how many times it fell into step.
    fn simulate(phases: &[Duration], latency: Duration, rounds: u32) -> (Vec<Vec<Instant>>, Vec<u32>) {
        let start = Instant::now();
        let end = start + KEEPALIVE * rounds;
        let mut next_due: Vec<Instant> = phases.iter().map(|p| start + *p).collect();
        let mut sent: Vec<Vec<Instant>> = vec![Vec::new(); phases.len()];
        let mut joins = vec![0; phases.len()];
        // Packets in flight: (arrival, sender).
        let mut in_flight: Vec<(Instant, usize)> = Vec::new();
        loop {
            let tick = next_due
                .iter()
                .enumerate()
                .min_by_key(|(_, at)| **at)
                .map(|(node, at)| (*at, node))
                .unwrap();
            let arrival = in_flight.iter().copied().min();
            match arrival {
                Some((at, sender)) if at <= tick.0 => {
                    in_flight.retain(|p| *p != (at, sender));
                    for node in (0..phases.len()).filter(|n| *n != sender) {
                        if let Some(delay) = join_step(next_due[node], at, KEEPALIVE) {
                            sent[node].push(at);
                            in_flight.push((at + latency, node));
                            next_due[node] = at + delay;
                            joins[node] += 1;
                        }
                    }
                }
                _ => {
                    let (at, node) = tick;
                    if at > end {
                        return (sent, joins);
                    }
                    sent[node].push(at);
                    in_flight.push((at + latency, node));
                    next_due[node] = at + KEEPALIVE;
                }
            }
        }
    }

    #[test]
    fn nodes_fall_into_step_once_never_late_and_stay() {
        for latency_us in [10, 60, 100, 150, 400, 2_000] {
            let latency = Duration::from_micros(latency_us);
            for phases_ms in [
                &[0, 70][..],
                &[0, 130],
                &[0, 99],
                &[0, 40, 150],
                &[0, 60, 120, 180],
            ] {
                let phases: Vec<Duration> = phases_ms.iter().map(|ms| Duration::from_millis(*ms)).collect();
                let (sent, joins) = simulate(&phases, latency, 100);
                let context = format!("latency {latency:?}, phases {phases_ms:?}");
                for times in &sent {
                    for pair in times.windows(2) {
                        assert!(pair[1] - pair[0] <= KEEPALIVE, "{context}: a late heartbeat");
                    }
                }
                // Each node moves at most once per node ahead of it, then stays.
                for count in &joins {
                    assert!(*count < phases.len() as u32 * 2, "{context}: {joins:?} moves");
                }
                // In step: every node's last heartbeat within the latency (or the lead) of the
                // others', in phase (the run may end between two nodes' heartbeats).
                let last: Vec<Instant> = sent.iter().map(|times| *times.last().unwrap()).collect();
                for a in &last {
                    for b in &last {
                        let apart = a.max(b).duration_since(*a.min(b)).as_nanos() % KEEPALIVE.as_nanos();
                        let apart = apart.min(KEEPALIVE.as_nanos() - apart);
                        assert!(
                            apart <= latency.max(LEAD).as_nanos() + 1_000,
                            "{context}: out of step by {apart} ns"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_peer_with_a_shorter_keepalive_at_most_doubles_the_rate() {
        // The peer's heartbeats every 70 ms; ours every 200 ms on our own.
        let start = Instant::now();
        let mut next_due = start + KEEPALIVE;
        let mut sent = 0;
        for beat in 1..=300u32 {
            let arrival = start + Duration::from_millis(70) * beat;
            while next_due <= arrival {
                sent += 1;
                next_due += KEEPALIVE;
            }
            if let Some(delay) = join_step(next_due, arrival, KEEPALIVE) {
                sent += 1;
                next_due = arrival + delay;
            }
        }
        let elapsed = Duration::from_millis(70) * 300;
        let own_pace = elapsed.as_millis() / KEEPALIVE.as_millis();
        assert!(sent as u128 <= 2 * own_pace, "{sent} heartbeats in {elapsed:?}");
    }

    #[test]
    fn a_heartbeat_due_soon_goes_now_others_wait() {
        let now = Instant::now();
        let due = |ms: u64| now + Duration::from_millis(ms);
        assert_eq!(join_step(due(50), now, KEEPALIVE), Some(KEEPALIVE - LEAD));
        assert_eq!(join_step(due(99), now, KEEPALIVE), Some(KEEPALIVE - LEAD));
        assert_eq!(join_step(due(100), now, KEEPALIVE), None, "the peer is behind");
        assert_eq!(join_step(now + LEAD, now, KEEPALIVE), None, "already in step");
        assert_eq!(join_step(now, now + LEAD, KEEPALIVE), None, "ours is overdue");
    }
}
