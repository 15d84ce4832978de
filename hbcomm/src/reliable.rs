//! Reliable cluster messages, as two pure parts with the time passed in.
//!
//! Every message a node sends — heartbeats included, as in Heartbeat — takes the next number
//! of one per-generation sequence. [`SendHistory`] keeps the recent packets so that a peer that
//! missed some can ask for them again (Heartbeat's `NS_rexmit`); [`Inbound`] puts each sender's
//! messages back in order, holds what arrives after a gap, asks for the gap, and gives it up
//! when the sender cannot fill it. Clients thus see each message once, in the order it was
//! sent; a gap that cannot be filled is reported, never silently skipped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Heartbeat keeps 500 messages for retransmission (MAXMSGHIST).
pub const HISTORY_MESSAGES: usize = 500;
/// And never more than this many bytes of them (cluster messages may be large).
pub const HISTORY_BYTES: usize = 4 << 20;
/// Messages held behind a gap per sender before the gap is given up.
pub const HELD_PER_SENDER: usize = 1024;

/// The packets this node sent recently, by sequence number.
#[derive(Debug)]
pub struct SendHistory {
    packets: VecDeque<Sent>,
    bytes: usize,
    resend_spacing: Duration,
}

#[derive(Debug)]
struct Sent {
    seq: u64,
    packet: Vec<u8>,
    resent_at: Option<Instant>,
}

/// The answer to a retransmission request for one sequence number.
#[derive(Debug, PartialEq, Eq)]
pub enum Resend<'a> {
    /// Send this packet again.
    Packet(&'a [u8]),
    /// Sent again less than `resend_spacing` ago (several peers asked): skip.
    Recently,
    /// No longer (or never) held: tell the requester (`NS_nak_rexmit`).
    Unknown,
}

impl SendHistory {
    /// `resend_spacing`: the least time between two retransmissions of one packet
    /// (Heartbeat's `max_rexmit_delay`).
    pub fn new(resend_spacing: Duration) -> Self {
        SendHistory {
            packets: VecDeque::new(),
            bytes: 0,
            resend_spacing,
        }
    }

    /// Records a packet just sent with `seq` (sequence numbers only grow).
    pub fn record(&mut self, seq: u64, packet: Vec<u8>) {
        self.bytes += packet.len();
        self.packets.push_back(Sent {
            seq,
            packet,
            resent_at: None,
        });
        while self.packets.len() > HISTORY_MESSAGES || self.bytes > HISTORY_BYTES {
            match self.packets.pop_front() {
                Some(old) => self.bytes -= old.packet.len(),
                None => break,
            }
        }
    }

    /// What to do about a request for `seq` at `now`.
    pub fn resend(&mut self, seq: u64, now: Instant) -> Resend<'_> {
        let Ok(index) = self.packets.binary_search_by_key(&seq, |sent| sent.seq) else {
            return Resend::Unknown;
        };
        let spacing = self.resend_spacing;
        let sent = &mut self.packets[index];
        if sent
            .resent_at
            .is_some_and(|at| now.saturating_duration_since(at) < spacing)
        {
            return Resend::Recently;
        }
        sent.resent_at = Some(now);
        Resend::Packet(&sent.packet)
    }

    /// How many packets are held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }
}

/// Bounds what retransmission requests (`NS_rexmit`) can make this node send. They carry no
/// sequence number, so the replay guard cannot see a captured request sent again: each
/// requester gets one answer (the packet, or `NS_nak_rexmit`) per sequence number per
/// `spacing` (Heartbeat's `max_rexmit_delay`), and at most `budget` answers per `spacing` in
/// all, so that neither a replayed request nor a stream of them turns into a stream of
/// signed broadcasts.
#[derive(Debug)]
pub struct AnswerLimiter {
    spacing: Duration,
    budget: usize,
    requesters: HashMap<String, Answered>,
}

#[derive(Debug, Default)]
struct Answered {
    /// Answers given within the last `spacing`, oldest first.
    recent: VecDeque<(Instant, u64)>,
}

impl AnswerLimiter {
    /// A limiter allowing `budget` answers per requester per `spacing`.
    pub fn new(spacing: Duration, budget: usize) -> Self {
        AnswerLimiter {
            spacing,
            budget,
            requesters: HashMap::new(),
        }
    }

    /// Whether `requester` may be answered about `seq` at `now` (and, if so, it counts).
    /// Callers only ask about members, so the map holds at most one entry per node.
    pub fn allow(&mut self, requester: &str, seq: u64, now: Instant) -> bool {
        let spacing = self.spacing;
        let answered = self.requesters.entry(requester.to_owned()).or_default();
        while answered
            .recent
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= spacing)
        {
            answered.recent.pop_front();
        }
        if answered.recent.len() >= self.budget || answered.recent.iter().any(|(_, s)| *s == seq) {
            return false;
        }
        answered.recent.push_back((now, seq));
        true
    }
}

/// What the receiving side must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundOutput<T> {
    /// Hand this message to clients (in order, once).
    Deliver {
        /// Sender.
        sender: String,
        /// Its sequence number.
        seq: u64,
        /// The message.
        item: T,
    },
    /// Ask `sender` to retransmit `first..=last`.
    Request {
        /// Sender.
        sender: String,
        /// First missing.
        first: u64,
        /// Last missing.
        last: u64,
    },
    /// `first..=last` from `sender` could not be recovered.
    Lost {
        /// Sender.
        sender: String,
        /// First lost.
        first: u64,
        /// Last lost.
        last: u64,
    },
    /// `sender` has had this many messages in order since the last acknowledgement: tell it
    /// (`NS_ackmsg`) so that it may forget them.
    Acknowledge {
        /// Sender.
        sender: String,
        /// Highest sequence number received in order.
        seq: u64,
    },
}

/// Most gaps of one sender asked for at once.
pub const GAPS_PER_REQUEST: usize = 16;

/// Acknowledge every this many in-order messages (Heartbeat's ACK_MSG_DIV).
pub const ACK_EVERY: u64 = 10;

#[derive(Debug)]
struct Order<T> {
    generation: u32,
    next: u64,
    held: BTreeMap<u64, Option<T>>,
    gap_since: Option<Instant>,
    requested_at: Option<Instant>,
}

/// Per-sender ordering of received messages.
#[derive(Debug)]
pub struct Inbound<T> {
    senders: BTreeMap<String, Order<T>>,
    rerequest_after: Duration,
    give_up_after: Duration,
}

impl<T> Inbound<T> {
    /// A gap is asked for again every `rerequest_after` and given up after `give_up_after`.
    pub fn new(rerequest_after: Duration, give_up_after: Duration) -> Self {
        Inbound {
            senders: BTreeMap::new(),
            rerequest_after,
            give_up_after,
        }
    }

    /// A message `seq` of `generation` from `sender` arrived at `now`. `item` is what clients
    /// get (`None` for messages that only occupy a number, such as heartbeats). The caller has
    /// already dropped replays and forgeries.
    pub fn accept(
        &mut self,
        sender: &str,
        generation: u32,
        seq: u64,
        item: Option<T>,
        now: Instant,
    ) -> Vec<InboundOutput<T>> {
        let mut out = Vec::new();
        let order = match self.senders.get_mut(sender) {
            Some(order) if order.generation == generation => order,
            Some(order) if order.generation > generation => return out,
            _ => {
                // First message heard from this run of the sender: what came before is not ours.
                self.senders.insert(
                    sender.to_owned(),
                    Order {
                        generation,
                        next: seq,
                        held: BTreeMap::new(),
                        gap_since: None,
                        requested_at: None,
                    },
                );
                match self.senders.get_mut(sender) {
                    Some(order) => order,
                    None => return out,
                }
            }
        };
        if seq < order.next || order.held.contains_key(&seq) {
            return out;
        }
        if seq > order.next && order.held.len() >= HELD_PER_SENDER {
            // Too far behind to catch up: give up the oldest gap rather than hold forever.
            Self::skip_gap(sender, order, &mut out, now);
        }
        // The highest number seen before this one: a packet beyond it past a hole opens a gap
        // of its own, asked for at once (as Heartbeat does) rather than after the ones below.
        let highest_before = Self::last_held(order).unwrap_or(order.next.saturating_sub(1));
        order.held.insert(seq, item);
        let asked = Self::drain(sender, order, &mut out, now);
        if !asked && seq > order.next && highest_before + 1 < seq && order.gap_since.is_some() {
            out.push(InboundOutput::Request {
                sender: sender.to_owned(),
                first: (highest_before + 1).max(order.next),
                last: seq - 1,
            });
        }
        out
    }

    /// The sender says it no longer has `first..=last` (Heartbeat's `NS_nak_rexmit`).
    pub fn unavailable(
        &mut self,
        sender: &str,
        first: u64,
        last: u64,
        now: Instant,
    ) -> Vec<InboundOutput<T>> {
        let mut out = Vec::new();
        if let Some(order) = self.senders.get_mut(sender) {
            if first <= order.next && order.next <= last && !order.held.is_empty() {
                Self::skip_gap(sender, order, &mut out, now);
            }
        }
        out
    }

    /// Timers: ask again for gaps, give up old ones.
    pub fn tick(&mut self, now: Instant) -> Vec<InboundOutput<T>> {
        let mut out = Vec::new();
        for (sender, order) in &mut self.senders {
            let Some(since) = order.gap_since else { continue };
            if now.saturating_duration_since(since) >= self.give_up_after {
                Self::skip_gap(sender, order, &mut out, now);
            } else if order
                .requested_at
                .is_none_or(|at| now.saturating_duration_since(at) >= self.rerequest_after)
            {
                order.requested_at = Some(now);
                Self::request_gaps(sender, order, &mut out);
            }
        }
        out
    }

    /// When [`Inbound::tick`] has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.senders
            .values()
            .filter_map(|order| {
                let since = order.gap_since?;
                let again = order.requested_at.map_or(since, |at| at + self.rerequest_after);
                Some(again.min(since + self.give_up_after))
            })
            .min()
    }

    /// Forgets a sender (declared dead: its next run starts a new generation anyway).
    pub fn forget(&mut self, sender: &str) {
        self.senders.remove(sender);
    }

    fn first_held(order: &Order<T>) -> Option<u64> {
        order.held.keys().next().copied()
    }

    fn last_held(order: &Order<T>) -> Option<u64> {
        order.held.keys().next_back().copied()
    }

    /// Asks for every missing range below the highest held message, the first
    /// [`GAPS_PER_REQUEST`] of them: under loss many gaps are open at once, and asking for one
    /// per round trip would take as many round trips as there are gaps.
    fn request_gaps(sender: &str, order: &Order<T>, out: &mut Vec<InboundOutput<T>>) {
        let mut expected = order.next;
        let mut asked = 0;
        for &held in order.held.keys() {
            if held > expected {
                out.push(InboundOutput::Request {
                    sender: sender.to_owned(),
                    first: expected,
                    last: held - 1,
                });
                asked += 1;
                if asked == GAPS_PER_REQUEST {
                    return;
                }
            }
            expected = held + 1;
        }
    }

    fn skip_gap(sender: &str, order: &mut Order<T>, out: &mut Vec<InboundOutput<T>>, now: Instant) {
        if let Some(held) = Self::first_held(order) {
            if held > order.next {
                out.push(InboundOutput::Lost {
                    sender: sender.to_owned(),
                    first: order.next,
                    last: held - 1,
                });
                order.next = held;
            }
        }
        Self::drain(sender, order, out, now);
    }

    /// Delivers what is now in order; a gap still open after that (or newly opened) is asked
    /// for at once and timed from `now`.
    /// Whether it asked for the gaps.
    fn drain(sender: &str, order: &mut Order<T>, out: &mut Vec<InboundOutput<T>>, now: Instant) -> bool {
        let before = order.next;
        while let Some(item) = order.held.remove(&order.next) {
            let seq = order.next;
            if let Some(item) = item {
                out.push(InboundOutput::Deliver {
                    sender: sender.to_owned(),
                    seq,
                    item,
                });
            }
            if seq.is_multiple_of(ACK_EVERY) {
                out.push(InboundOutput::Acknowledge {
                    sender: sender.to_owned(),
                    seq,
                });
            }
            order.next += 1;
        }
        match Self::first_held(order) {
            None => {
                order.gap_since = None;
                order.requested_at = None;
                false
            }
            Some(_) if order.gap_since.is_none() || order.next != before => {
                order.gap_since = Some(now);
                order.requested_at = Some(now);
                Self::request_gaps(sender, order, out);
                true
            }
            Some(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requester_gets_one_answer_per_seq_per_spacing_and_a_bounded_number_in_all() {
        let spacing = Duration::from_millis(250);
        let mut limiter = AnswerLimiter::new(spacing, 64);
        let start = Instant::now();
        assert!(limiter.allow("bravo", 7, start));
        // The same request again (a replay) within the spacing: nothing.
        assert!(!limiter.allow("bravo", 7, start + Duration::from_millis(100)));
        // Another requester is counted apart.
        assert!(limiter.allow("charlie", 7, start + Duration::from_millis(100)));
        assert!(limiter.allow("bravo", 7, start + spacing));
        // A request for many numbers: at most the budget per spacing.
        let later = start + spacing * 4;
        let allowed = (1000..2000)
            .filter(|seq| limiter.allow("bravo", *seq, later))
            .count();
        assert_eq!(allowed, 64);
        let replayed_for_two_seconds: usize = (0..80)
            .map(|step| later + Duration::from_millis(25 * step))
            .map(|at| {
                (1000..1064)
                    .filter(|seq| limiter.allow("bravo", *seq, at))
                    .count()
            })
            .sum();
        assert!(replayed_for_two_seconds <= 64 * 9, "{replayed_for_two_seconds}");
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn delivered(out: &[InboundOutput<&'static str>]) -> Vec<&'static str> {
        out.iter()
            .filter_map(|o| match o {
                InboundOutput::Deliver { item, .. } => Some(*item),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn in_order_messages_are_delivered_at_once_and_heartbeats_only_take_a_number() {
        let t0 = Instant::now();
        let mut inbound = Inbound::new(ms(250), ms(1000));
        assert_eq!(delivered(&inbound.accept("b", 1, 5, Some("a"), t0)), ["a"]);
        assert!(delivered(&inbound.accept("b", 1, 6, None, t0)).is_empty());
        assert_eq!(delivered(&inbound.accept("b", 1, 7, Some("c"), t0)), ["c"]);
        assert!(
            inbound.accept("b", 1, 7, Some("c"), t0).is_empty(),
            "a copy is not delivered twice"
        );
        assert!(inbound.next_deadline().is_none());
    }

    #[test]
    fn a_gap_is_requested_held_back_and_filled_in_order() {
        let t0 = Instant::now();
        let mut inbound = Inbound::new(ms(250), ms(1000));
        inbound.accept("b", 1, 1, Some("one"), t0);
        let out = inbound.accept("b", 1, 4, Some("four"), t0 + ms(1));
        assert_eq!(
            out,
            vec![InboundOutput::Request {
                sender: "b".into(),
                first: 2,
                last: 3
            }]
        );
        assert!(delivered(&inbound.accept("b", 1, 5, Some("five"), t0 + ms(2))).is_empty());
        assert_eq!(inbound.next_deadline(), Some(t0 + ms(251)));
        assert_eq!(
            inbound.tick(t0 + ms(251)),
            vec![InboundOutput::Request {
                sender: "b".into(),
                first: 2,
                last: 3
            }],
            "asked again after max_rexmit_delay"
        );
        assert!(delivered(&inbound.accept("b", 1, 3, Some("three"), t0 + ms(300))).is_empty());
        assert_eq!(
            delivered(&inbound.accept("b", 1, 2, Some("two"), t0 + ms(301))),
            ["two", "three", "four", "five"]
        );
        assert!(inbound.next_deadline().is_none());
    }

    #[test]
    fn every_gap_is_asked_for_when_it_opens_and_again_together() {
        let t0 = Instant::now();
        let mut inbound = Inbound::new(ms(250), ms(2000));
        inbound.accept("b", 1, 1, Some("one"), t0);
        inbound.accept("b", 1, 4, Some("four"), t0 + ms(1));
        let request = |first, last| InboundOutput::Request {
            sender: "b".into(),
            first,
            last,
        };
        assert_eq!(
            inbound.accept("b", 1, 7, Some("seven"), t0 + ms(2)),
            vec![request(5, 6)],
            "a second gap is asked for at once, not after the first is filled"
        );
        assert!(
            inbound.accept("b", 1, 5, Some("five"), t0 + ms(3)).is_empty(),
            "filling part of a known gap opens none"
        );
        assert_eq!(inbound.tick(t0 + ms(251)), vec![request(2, 3), request(6, 6)]);
        assert_eq!(
            delivered(&inbound.accept("b", 1, 2, Some("two"), t0 + ms(260))),
            ["two"],
            "progress asks for what is still missing"
        );
        assert_eq!(
            inbound.accept("b", 1, 3, Some("three"), t0 + ms(261)),
            vec![
                InboundOutput::Deliver {
                    sender: "b".into(),
                    seq: 3,
                    item: "three"
                },
                InboundOutput::Deliver {
                    sender: "b".into(),
                    seq: 4,
                    item: "four"
                },
                InboundOutput::Deliver {
                    sender: "b".into(),
                    seq: 5,
                    item: "five"
                },
                request(6, 6),
            ]
        );
    }

    #[test]
    fn an_unfillable_gap_is_reported_lost_and_the_rest_delivered() {
        let t0 = Instant::now();
        let mut inbound = Inbound::new(ms(250), ms(1000));
        inbound.accept("b", 1, 1, Some("one"), t0);
        inbound.accept("b", 1, 3, Some("three"), t0);
        let out = inbound.tick(t0 + ms(1000));
        assert_eq!(
            out[0],
            InboundOutput::Lost {
                sender: "b".into(),
                first: 2,
                last: 2
            }
        );
        assert_eq!(delivered(&out), ["three"]);

        inbound.accept("b", 1, 6, Some("six"), t0 + ms(1001));
        let out = inbound.unavailable("b", 4, 5, t0 + ms(1002));
        assert_eq!(
            out[0],
            InboundOutput::Lost {
                sender: "b".into(),
                first: 4,
                last: 5
            }
        );
        assert_eq!(delivered(&out), ["six"]);
    }

    #[test]
    fn a_restarted_sender_starts_afresh_and_an_old_generation_is_ignored() {
        let t0 = Instant::now();
        let mut inbound = Inbound::new(ms(250), ms(1000));
        inbound.accept("b", 1, 100, Some("old run"), t0);
        assert_eq!(
            delivered(&inbound.accept("b", 2, 1, Some("new run"), t0)),
            ["new run"]
        );
        assert!(inbound.accept("b", 1, 101, Some("late"), t0).is_empty());
    }

    #[test]
    fn acknowledgements_every_ten_in_order() {
        let t0 = Instant::now();
        let mut inbound: Inbound<&str> = Inbound::new(ms(250), ms(1000));
        let acks: Vec<u64> = (1..=25)
            .flat_map(|seq| inbound.accept("b", 1, seq, None, t0))
            .filter_map(|o| match o {
                InboundOutput::Acknowledge { seq, .. } => Some(seq),
                _ => None,
            })
            .collect();
        assert_eq!(acks, [10, 20]);
    }

    #[test]
    fn history_resends_once_per_spacing_and_forgets_the_oldest() {
        let t0 = Instant::now();
        let mut history = SendHistory::new(ms(250));
        for seq in 1..=(HISTORY_MESSAGES as u64 + 10) {
            history.record(seq, seq.to_string().into_bytes());
        }
        assert_eq!(history.len(), HISTORY_MESSAGES);
        assert_eq!(history.resend(5, t0), Resend::Unknown, "forgotten");
        assert_eq!(history.resend(100, t0), Resend::Packet(b"100"));
        assert_eq!(history.resend(100, t0 + ms(10)), Resend::Recently);
        assert_eq!(history.resend(100, t0 + ms(260)), Resend::Packet(b"100"));
        history.record(1000, vec![0; HISTORY_BYTES]);
        assert_eq!(history.len(), 1, "bounded by bytes too");
    }
}
