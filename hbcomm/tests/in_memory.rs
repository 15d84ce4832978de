//! Two and three sans-I/O nodes ([`hbcomm::node::Node`]) against each other over a simulated
//! network on a virtual clock: loss, duplication and reordering chosen by a seeded generator,
//! partitions and crashes by the test. No sockets, no namespaces, no sleeps: a test of ten
//! virtual minutes runs in milliseconds, and a failing seed replays exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use hbapi::comm::Counter;
use hbapi::config::{parse_authkeys, parse_ha_cf, ClusterConfig};
use hbcomm::membership::NodeStatus;
use hbcomm::node::{Effect, Identity, Node, Send};
use hbcomm::wire::Authenticator;

const LINK: &str = "eth0";

fn config(nodes: &[&str], extra: &str) -> ClusterConfig {
    let ha_cf = format!(
        "keepalive 200ms\ndeadtime 2\nwarntime 1\ninitdead 4\nudpport 694\nbcast eth0\nnode {}\n{extra}",
        nodes.join(" ")
    );
    let (mut config, _) = parse_ha_cf(Path::new("ha.cf"), &ha_cf).expect("ha.cf");
    let (auth, _) =
        parse_authkeys(Path::new("authkeys"), "auth 1\n1 sha256 in-memory-secret\n").expect("authkeys");
    config.auth = auth;
    config
}

/// splitmix64: a small seeded generator, so that a failing run is replayed by its seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn below(&mut self, limit: u64) -> u64 {
        if limit == 0 {
            0
        } else {
            self.next() % limit
        }
    }
}

/// What the network does to each copy of a packet.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    loss_percent: u64,
    duplicate_percent: u64,
    /// Each copy takes 0..jitter on top of `latency`: later packets overtake earlier ones.
    jitter: Duration,
}

/// What one node did, as seen from its effects.
#[derive(Debug, Default)]
struct Record {
    delivered: Vec<(String, String, HashMap<String, String>)>,
    statuses: Vec<(Duration, String, NodeStatus)>,
    counters: BTreeMap<&'static str, u64>,
    mismatches: Vec<String>,
    no_local_heartbeat: u32,
}

impl Record {
    fn count(&self, counter: Counter) -> u64 {
        self.counters.get(counter.as_str()).copied().unwrap_or(0)
    }

    fn deaths_of(&self, node: &str) -> Vec<Duration> {
        self.statuses
            .iter()
            .filter(|(_, name, status)| name == node && *status == NodeStatus::Dead)
            .map(|(at, _, _)| *at)
            .collect()
    }

    /// The body field `n` of every message of `msg_type` from `sender`, in delivery order.
    fn numbers_from(&self, sender: &str, msg_type: &str) -> Vec<u64> {
        self.delivered
            .iter()
            .filter(|(from, kind, _)| from == sender && kind == msg_type)
            .filter_map(|(_, _, body)| body.get("n")?.parse().ok())
            .collect()
    }
}

struct Member {
    node: Node,
    /// When its keepalive timer fires next.
    keepalive_at: Instant,
    /// Crashed: receives and sends nothing, its timers are dead.
    crashed: bool,
    /// Not scheduled: its timers and the packets sent to it wait until it runs again.
    paused: bool,
    record: Record,
}

struct Flight {
    arrives: Instant,
    order: u64,
    to: usize,
    from: usize,
    packet: Vec<u8>,
}

/// Nodes on one simulated segment, on a virtual clock.
struct Net {
    start: Instant,
    now: Instant,
    keepalive: Duration,
    members: Vec<Member>,
    flights: Vec<Flight>,
    sent_order: u64,
    random: Random,
    faults: Faults,
    latency: Duration,
    /// Pairs (from, to) whose packets are dropped: a partition, one direction at a time.
    cut: Vec<(usize, usize)>,
    /// Every packet any node sent, to replay later.
    wiretap: Vec<(usize, Vec<u8>)>,
}

fn fixed_wall_clock() -> u64 {
    1_800_000_000
}

impl Net {
    fn new(names: &[&str], seed: u64, faults: Faults) -> Net {
        Net::with_configs(
            names.iter().map(|name| (*name, config(names, ""))).collect(),
            seed,
            faults,
        )
    }

    fn with_configs(nodes: Vec<(&str, ClusterConfig)>, seed: u64, faults: Faults) -> Net {
        let start = Instant::now();
        let keepalive = nodes[0].1.timing.keepalive;
        let members = nodes
            .into_iter()
            .enumerate()
            .map(|(index, (name, config))| {
                let authenticator = Authenticator::from_keys(&config.auth).expect("key");
                let identity = Identity {
                    node: name.to_owned(),
                    uuid: vec![index as u8 + 1; 16],
                    generation: 7,
                };
                let node = Node::new(identity, &config, authenticator, &[LINK.to_owned()], start)
                    .with_wall_clock(fixed_wall_clock);
                Member {
                    node,
                    // Nodes started a little apart, as they would be.
                    keepalive_at: start + Duration::from_millis(37 * index as u64),
                    crashed: false,
                    paused: false,
                    record: Record::default(),
                }
            })
            .collect();
        Net {
            start,
            now: start,
            keepalive,
            members,
            flights: Vec::new(),
            sent_order: 0,
            random: Random(seed),
            faults,
            latency: Duration::from_millis(1),
            cut: Vec::new(),
            wiretap: Vec::new(),
        }
    }

    fn index(&self, name: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.node.local() == name)
            .expect("node")
    }

    fn record(&self, name: &str) -> &Record {
        &self.members[self.index(name)].record
    }

    fn node(&self, name: &str) -> &Node {
        &self.members[self.index(name)].node
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn apply(&mut self, from: usize, effects: Vec<Effect>) {
        let elapsed = self.elapsed();
        for effect in effects {
            let member = &mut self.members[from];
            match effect {
                Effect::Send(packet) => self.transmit(from, packet),
                Effect::Count(counter) => *member.record.counters.entry(counter.as_str()).or_default() += 1,
                Effect::Deliver { sender, message } => {
                    member
                        .record
                        .delivered
                        .push((sender, message.msg_type, message.body))
                }
                Effect::NodeStatus { node, new, .. } => member.record.statuses.push((elapsed, node, new)),
                Effect::ConfigMismatch { node, .. } => member.record.mismatches.push(node),
                Effect::NoLocalHeartbeat { .. } => member.record.no_local_heartbeat += 1,
                Effect::Keepalive(first) => member.keepalive_at = self.now + first,
                Effect::LinkStatus { .. }
                | Effect::Beat
                | Effect::Ping
                | Effect::Quorum(_)
                | Effect::MembersChanged
                | Effect::TimingChanged => {}
            }
        }
    }

    fn transmit(&mut self, from: usize, packet: Vec<u8>) {
        self.wiretap.push((from, packet.clone()));
        for to in 0..self.members.len() {
            if to == from || self.cut.contains(&(from, to)) {
                continue;
            }
            if self.random.chance(self.faults.loss_percent) {
                continue;
            }
            let copies = if self.random.chance(self.faults.duplicate_percent) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let jitter = Duration::from_micros(self.random.below(self.faults.jitter.as_micros() as u64));
                self.sent_order += 1;
                self.flights.push(Flight {
                    arrives: self.now + self.latency + jitter,
                    order: self.sent_order,
                    to,
                    from,
                    packet: packet.clone(),
                });
            }
        }
    }

    /// Delivers `packet` to `to` now, as if it came off the wire.
    fn inject(&mut self, to: usize, packet: &[u8]) {
        let now = self.now;
        let effects = self.members[to]
            .node
            .on_datagram(now, LINK, Some([192, 0, 2, 9].into()), packet);
        self.apply(to, effects);
    }

    /// Runs every event until `duration` of virtual time has passed.
    fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        loop {
            let mut next: Option<(Instant, Event)> = None;
            let mut consider = |at: Instant, event: Event| {
                if next.as_ref().is_none_or(|(best, _)| at < *best) {
                    next = Some((at, event));
                }
            };
            for flight in self.flights.iter().filter(|f| !self.members[f.to].paused) {
                consider(flight.arrives, Event::Arrival);
            }
            for (index, member) in self
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| !m.crashed && !m.paused)
            {
                consider(member.keepalive_at, Event::Keepalive(index));
                if let Some(at) = member.node.next_deadline() {
                    consider(at, Event::Deadline(index));
                }
            }
            let Some((at, event)) = next.filter(|(at, _)| *at <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(at);
            let now = self.now;
            match event {
                Event::Arrival => {
                    // Of the packets due now, the one sent first.
                    let index = self
                        .flights
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| f.arrives <= now && !self.members[f.to].paused)
                        .min_by_key(|(_, f)| (f.arrives, f.order))
                        .map(|(index, _)| index)
                        .expect("a flight is due");
                    let flight = self.flights.swap_remove(index);
                    if self.members[flight.to].crashed {
                        continue;
                    }
                    let source = std::net::IpAddr::from([192, 0, 2, flight.from as u8 + 1]);
                    let effects =
                        self.members[flight.to]
                            .node
                            .on_datagram(now, LINK, Some(source), &flight.packet);
                    self.apply(flight.to, effects);
                }
                Event::Keepalive(index) => {
                    self.members[index].keepalive_at = now + self.keepalive;
                    let effects = self.members[index]
                        .node
                        .on_keepalive(now, "0.00 0.00 0.00 1/100 1");
                    self.apply(index, effects);
                }
                Event::Deadline(index) => {
                    let effects = self.members[index].node.on_deadline(now);
                    self.apply(index, effects);
                }
            }
        }
    }

    fn send(&mut self, from: &str, to: Option<&str>, msg_type: &str, body: &[(&str, String)]) -> u64 {
        let index = self.index(from);
        let request = Send {
            to: to.map(str::to_owned),
            msg_type: msg_type.to_owned(),
            body: body.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        };
        let now = self.now;
        let (result, effects) = self.members[index].node.on_send(now, request);
        self.apply(index, effects);
        result.expect("message accepted")
    }

    fn crash(&mut self, name: &str) {
        let index = self.index(name);
        self.members[index].crashed = true;
        self.flights.retain(|f| f.to != index);
    }

    fn partition(&mut self, side_a: &[&str], side_b: &[&str]) {
        for a in side_a {
            for b in side_b {
                let (a, b) = (self.index(a), self.index(b));
                self.cut.push((a, b));
                self.cut.push((b, a));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn all_active(&self) -> bool {
        self.members.iter().all(|m| {
            self.members
                .iter()
                .filter(|other| other.node.local() != m.node.local())
                .all(|other| m.node.status(other.node.local()) == Some(NodeStatus::Active))
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Arrival,
    Keepalive(usize),
    Deadline(usize),
}

fn numbered(n: u64) -> [(&'static str, String); 1] {
    [("n", n.to_string())]
}

#[test]
fn three_nodes_form_a_membership_within_a_few_keepalives() {
    let mut net = Net::new(&["alpha", "bravo", "charlie"], 1, Faults::default());
    net.run_for(Duration::from_millis(500));
    assert!(net.all_active(), "every node sees the others active after 500 ms");
    net.run_for(Duration::from_secs(60));
    for name in ["alpha", "bravo", "charlie"] {
        let record = net.record(name);
        assert!(
            record
                .statuses
                .iter()
                .all(|(_, _, status)| *status == NodeStatus::Active),
            "{name}: no status but active in a quiet minute: {:?}",
            record.statuses
        );
        assert_eq!(record.count(Counter::DroppedForged), 0);
    }
}

#[test]
fn messages_arrive_once_and_in_order_through_loss_duplication_and_reordering() {
    let faults = Faults {
        loss_percent: 20,
        duplicate_percent: 15,
        jitter: Duration::from_millis(40),
    };
    for seed in [3, 17, 4242] {
        let mut net = Net::new(&["alpha", "bravo", "charlie"], seed, faults);
        net.run_for(Duration::from_secs(1));
        assert!(
            net.all_active(),
            "seed {seed}: membership formed despite the faults"
        );
        // 300 messages from alpha and 300 from bravo, 5 ms apart: many are in flight at once,
        // so jitter reorders them.
        for n in 0..300 {
            net.send("alpha", None, "work", &numbered(n));
            net.send("bravo", None, "work", &numbered(n));
            net.run_for(Duration::from_millis(5));
        }
        // Every gap is repaired within deadtime of the last send (virtual time: the same for
        // a seed on every machine).
        let expected: Vec<u64> = (0..300).collect();
        let complete = |net: &Net| {
            ["alpha", "bravo", "charlie"].iter().all(|receiver| {
                ["alpha", "bravo"]
                    .iter()
                    .all(|sender| net.record(receiver).numbers_from(sender, "work") == expected)
            })
        };
        let last_send = net.elapsed();
        while !complete(&net) && net.elapsed() - last_send < Duration::from_secs(10) {
            net.run_for(Duration::from_millis(10));
        }
        let repaired_in = net.elapsed() - last_send;
        eprintln!("seed {seed}: every message everywhere {repaired_in:?} after the last send");
        assert!(
            repaired_in <= Duration::from_secs(2),
            "seed {seed}: repaired in {repaired_in:?}"
        );
        for receiver in ["alpha", "bravo", "charlie"] {
            for sender in ["alpha", "bravo"] {
                assert_eq!(
                    net.record(receiver).numbers_from(sender, "work"),
                    expected,
                    "seed {seed}: {receiver} got {sender}'s messages once each and in order"
                );
            }
        }
        // The faults did happen, and the protocol repaired them.
        let charlie = net.record("charlie");
        assert!(
            charlie.count(Counter::Duplicates) > 0,
            "seed {seed}: duplicates were seen"
        );
        assert!(
            charlie.count(Counter::RexmitRequested) > 0,
            "seed {seed}: gaps were asked for"
        );
        assert_eq!(
            charlie.count(Counter::MessagesLost),
            0,
            "seed {seed}: nothing lost for good"
        );
        let answered = net.record("alpha").count(Counter::RexmitAnswered);
        assert!(answered > 0, "seed {seed}: alpha retransmitted");
        for name in ["alpha", "bravo", "charlie"] {
            assert!(
                net.record(name).deaths_of("alpha").is_empty()
                    && net.record(name).deaths_of("bravo").is_empty(),
                "seed {seed}: 20 % loss with deadtime = 10 keepalives is no death"
            );
        }
    }
}

#[test]
fn a_crashed_node_is_dead_after_deadtime_and_not_before() {
    let mut net = Net::new(&["alpha", "bravo", "charlie"], 5, Faults::default());
    net.run_for(Duration::from_secs(2));
    let crashed_at = net.elapsed();
    net.crash("charlie");
    net.run_for(Duration::from_secs(5));
    let deadtime = Duration::from_secs(2);
    for name in ["alpha", "bravo"] {
        let deaths = net.record(name).deaths_of("charlie");
        assert_eq!(deaths.len(), 1, "{name} declares charlie dead once: {deaths:?}");
        let after = deaths[0] - crashed_at;
        // Its last heartbeat went up to a keepalive before the crash; the check runs within
        // a millisecond of the deadline.
        assert!(
            after >= deadtime - Duration::from_millis(200) && after <= deadtime + Duration::from_millis(5),
            "{name}: dead {after:?} after the crash (deadtime {deadtime:?})"
        );
        assert!(
            net.record(name).deaths_of("alpha").is_empty() && net.record(name).deaths_of("bravo").is_empty()
        );
    }
}

#[test]
fn a_node_that_leaves_is_dead_at_once_even_when_one_notice_is_lost() {
    let faults = Faults {
        loss_percent: 40,
        ..Faults::default()
    };
    let mut net = Net::new(&["alpha", "bravo"], 11, faults);
    net.run_for(Duration::from_secs(2));
    assert!(net.all_active());
    // Through 40 % loss the notice may still be lost twice; seeds where it is not are the
    // point here (a lost notice falls back on deadtime, which the crash test covers).
    let left_at = net.elapsed();
    let index = net.index("bravo");
    let now = net.now;
    let effects = net.members[index].node.leave(now);
    let notices = effects.iter().filter(|e| matches!(e, Effect::Send(_))).count();
    assert_eq!(notices, 2, "the shutdown notice goes twice");
    net.apply(index, effects);
    net.run_for(Duration::from_secs(1));
    let deaths = net.record("alpha").deaths_of("bravo");
    assert_eq!(deaths.len(), 1, "alpha saw bravo leave: {deaths:?}");
    assert!(
        deaths[0] - left_at < Duration::from_millis(300),
        "at once, not after deadtime"
    );
    assert!(
        net.record("alpha")
            .delivered
            .iter()
            .any(|(from, kind, _)| from == "bravo" && kind == "shutdone"),
        "the notice reached clients"
    );
    // A node that left sends no heartbeats: it stays dead.
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.record("alpha").deaths_of("bravo").len(), 1);
    assert_eq!(net.node("alpha").status("bravo"), Some(NodeStatus::Dead));
}

#[test]
fn a_node_that_leaves_and_joins_again_is_a_member_again() {
    let mut net = Net::new(&["alpha", "bravo"], 12, Faults::default());
    net.run_for(Duration::from_secs(2));
    let index = net.index("bravo");
    let now = net.now;
    let effects = net.members[index].node.leave(now);
    net.apply(index, effects);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.node("alpha").status("bravo"), Some(NodeStatus::Dead));
    let now = net.now;
    let effects = net.members[index].node.join(now, 8);
    net.apply(index, effects);
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        net.node("alpha").status("bravo"),
        Some(NodeStatus::Active),
        "back as generation 8"
    );
    net.send("bravo", Some("alpha"), "hello", &numbered(1));
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.record("alpha").numbers_from("bravo", "hello"), vec![1]);
}

#[test]
fn messages_sent_during_a_partition_are_retransmitted_when_it_heals_before_deadtime() {
    let mut net = Net::new(&["alpha", "bravo", "charlie"], 21, Faults::default());
    net.run_for(Duration::from_secs(2));
    net.partition(&["alpha"], &["charlie"]);
    for n in 0..20 {
        net.send("alpha", None, "work", &numbered(n));
        net.run_for(Duration::from_millis(20));
    }
    // 400 ms of silence is within deadtime: a gap, not a death.
    net.heal();
    net.send("alpha", None, "work", &numbered(20));
    net.run_for(Duration::from_secs(3));
    let expected: Vec<u64> = (0..=20).collect();
    assert_eq!(net.record("charlie").numbers_from("alpha", "work"), expected);
    assert!(net.record("charlie").count(Counter::RexmitRequested) > 0);
    assert!(net.record("charlie").deaths_of("alpha").is_empty());
}

#[test]
fn a_partition_longer_than_deadtime_is_a_death_on_both_sides_and_heals() {
    let mut net = Net::new(&["alpha", "bravo", "charlie"], 22, Faults::default());
    net.run_for(Duration::from_secs(2));
    net.partition(&["alpha", "bravo"], &["charlie"]);
    net.run_for(Duration::from_secs(4));
    assert_eq!(net.node("alpha").status("charlie"), Some(NodeStatus::Dead));
    assert_eq!(net.node("charlie").status("alpha"), Some(NodeStatus::Dead));
    assert_eq!(net.node("charlie").status("bravo"), Some(NodeStatus::Dead));
    assert_eq!(net.node("alpha").status("bravo"), Some(NodeStatus::Active));
    net.heal();
    net.run_for(Duration::from_secs(1));
    assert!(net.all_active(), "every node back after the partition heals");
    // Messages after the heal flow again, from numbers the other side never saw the start of.
    net.send("charlie", None, "work", &numbered(99));
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.record("alpha").numbers_from("charlie", "work"), vec![99]);
}

#[test]
fn a_replayed_packet_is_dropped_and_delivers_nothing_twice() {
    let mut net = Net::new(&["alpha", "bravo"], 31, Faults::default());
    net.run_for(Duration::from_secs(1));
    net.send("alpha", None, "work", &numbered(1));
    net.run_for(Duration::from_millis(50));
    let bravo = net.index("bravo");
    let alpha = net.index("alpha");
    let captured: Vec<Vec<u8>> = net
        .wiretap
        .iter()
        .filter(|(from, _)| *from == alpha)
        .map(|(_, packet)| packet.clone())
        .collect();
    net.run_for(Duration::from_secs(5));
    for packet in &captured {
        net.inject(bravo, packet);
    }
    let record = net.record("bravo");
    assert_eq!(record.numbers_from("alpha", "work"), vec![1], "delivered once");
    assert!(record.count(Counter::DroppedReplay) >= captured.len() as u64 - 1);
    assert!(record.deaths_of("alpha").is_empty());
}

#[test]
fn a_forged_packet_is_counted_and_changes_nothing() {
    let mut net = Net::new(&["alpha", "bravo"], 32, Faults::default());
    net.run_for(Duration::from_secs(1));
    let mut forger = config(&["alpha", "bravo"], "");
    let (auth, _) =
        parse_authkeys(Path::new("authkeys"), "auth 1\n1 sha256 another-secret\n").expect("authkeys");
    forger.auth = auth;
    let mut impostor = Node::new(
        Identity {
            node: "alpha".into(),
            uuid: vec![9; 16],
            generation: 99,
        },
        &forger,
        Authenticator::from_keys(&forger.auth).expect("key"),
        &[LINK.to_owned()],
        net.now,
    );
    let (_, effects) = impostor.on_send(
        net.now,
        Send {
            to: None,
            msg_type: "standby".into(),
            body: Vec::new(),
        },
    );
    let bravo = net.index("bravo");
    for effect in effects {
        if let Effect::Send(packet) = effect {
            net.inject(bravo, &packet);
        }
    }
    let record = net.record("bravo");
    assert_eq!(record.count(Counter::DroppedForged), 1);
    assert!(record.delivered.iter().all(|(_, kind, _)| kind != "standby"));
}

#[test]
fn a_peer_with_other_resource_groups_is_reported_once() {
    let names = ["alpha", "bravo"];
    let (groups_a, _) = hbapi::config::parse_haresources(
        Path::new("haresources"),
        "alpha 10.0.0.1\n",
        &names.map(String::from),
    )
    .expect("haresources");
    let mut config_a = config(&names, "");
    config_a.groups = groups_a;
    let config_b = config(&names, "");
    let mut net = Net::with_configs(
        vec![("alpha", config_a), ("bravo", config_b)],
        41,
        Faults::default(),
    );
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.record("bravo").mismatches, vec!["alpha".to_owned()]);
    assert_eq!(net.record("alpha").mismatches, vec!["bravo".to_owned()]);
}

#[test]
fn a_stall_longer_than_deadtime_is_noticed_and_is_not_the_peers_death() {
    let mut net = Net::new(&["alpha", "bravo"], 51, Faults::default());
    net.run_for(Duration::from_secs(2));
    // alpha is not scheduled for 3 s: its timers and packets wait (bravo's heartbeats stay
    // queued, as in a socket's buffer), then it runs again.
    let alpha = net.index("alpha");
    net.members[alpha].paused = true;
    net.run_for(Duration::from_secs(3));
    net.members[alpha].paused = false;
    net.run_for(Duration::from_millis(500));
    let record = net.record("alpha");
    assert_eq!(record.no_local_heartbeat, 1, "the stall is noticed once");
    assert_eq!(record.count(Counter::LocalStalls), 1);
    assert!(
        record.deaths_of("bravo").is_empty(),
        "bravo's silence was alpha's own deafness"
    );
}
