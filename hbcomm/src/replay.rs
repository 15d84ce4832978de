//! Replay protection per sender: its generation never goes back, and within a generation a
//! sequence number is accepted once — except that the same packet arriving again soon on
//! another link (redundant links carry every packet) refreshes that link. A copy that comes
//! later than that is a replay: it must not keep a dead node's link looking alive.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How many recent sequence numbers are remembered: as many as a sender keeps for
/// retransmission, so that a retransmitted packet is still judged by number.
const WINDOW: u64 = crate::reliable::HISTORY_MESSAGES as u64;

/// The verdict on one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: process it.
    Fresh,
    /// A copy of a packet accepted moments ago (another link): the link is alive; do not
    /// process the message again.
    Duplicate,
    /// Older generation, too old a sequence number, or a late copy: drop and count.
    Replay,
}

#[derive(Debug, Default)]
struct Sender {
    generation: u32,
    highest: u64,
    seen: BTreeMap<u64, Instant>,
}

/// Per-sender state.
#[derive(Debug)]
pub struct ReplayGuard {
    senders: BTreeMap<String, Sender>,
    duplicate_window: Duration,
}

impl ReplayGuard {
    /// `duplicate_window`: how long after its first arrival a copy still counts as a duplicate
    /// carried by another link (a keepalive is a good bound).
    pub fn new(duplicate_window: Duration) -> Self {
        ReplayGuard {
            senders: BTreeMap::new(),
            duplicate_window,
        }
    }

    /// The newest generation heard from `sender`.
    pub fn generation(&self, sender: &str) -> Option<u32> {
        self.senders.get(sender).map(|s| s.generation)
    }

    /// Judges a packet from `sender` with `generation` and `seq` arriving at `now`.
    pub fn check(&mut self, sender: &str, generation: u32, seq: u64, now: Instant) -> Verdict {
        // Looked up before inserting: a packet from a known sender allocates nothing.
        let state = match self.senders.get_mut(sender) {
            Some(state) => state,
            None => self.senders.entry(sender.to_owned()).or_default(),
        };
        if generation < state.generation {
            return Verdict::Replay;
        }
        if generation > state.generation {
            *state = Sender {
                generation,
                highest: seq,
                seen: BTreeMap::from([(seq, now)]),
            };
            return Verdict::Fresh;
        }
        if seq + WINDOW <= state.highest {
            return Verdict::Replay;
        }
        if let Some(first) = state.seen.get(&seq) {
            return if now.saturating_duration_since(*first) <= self.duplicate_window {
                Verdict::Duplicate
            } else {
                Verdict::Replay
            };
        }
        state.seen.insert(seq, now);
        state.highest = state.highest.max(seq);
        let floor = state.highest.saturating_sub(WINDOW);
        while state
            .seen
            .first_key_value()
            .is_some_and(|(oldest, _)| *oldest <= floor)
        {
            state.seen.pop_first();
        }
        Verdict::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_and_sequences() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut guard = ReplayGuard::new(ms(200));
        assert_eq!(guard.check("b", 5, 10, t0), Verdict::Fresh);
        assert_eq!(
            guard.check("b", 5, 10, t0 + ms(5)),
            Verdict::Duplicate,
            "second link"
        );
        assert_eq!(
            guard.check("b", 5, 10, t0 + ms(900)),
            Verdict::Replay,
            "late copy"
        );
        assert_eq!(guard.check("b", 5, 12, t0 + ms(10)), Verdict::Fresh);
        assert_eq!(
            guard.check("b", 5, 11, t0 + ms(11)),
            Verdict::Fresh,
            "out of order, not seen"
        );
        assert_eq!(
            guard.check("b", 4, 99, t0 + ms(12)),
            Verdict::Replay,
            "older generation"
        );
        assert_eq!(
            guard.check("b", 6, 1, t0 + ms(13)),
            Verdict::Fresh,
            "restart: new generation"
        );
        for seq in 2..(WINDOW + 200) {
            guard.check("b", 6, seq, t0 + ms(20));
        }
        assert_eq!(
            guard.check("b", 6, 3, t0 + ms(21)),
            Verdict::Replay,
            "far below the window"
        );
        assert_eq!(
            guard.check("c", 1, 1, t0),
            Verdict::Fresh,
            "senders are independent"
        );
    }
}
