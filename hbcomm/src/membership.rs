//! Membership as a pure state machine: packets heard and clock ticks in, with the time passed
//! in; status changes, link changes and warnings out. No I/O and no clock of its own, so that
//! deadtime edges, warntime, initdead, partitions and rejoins are tested with a virtual clock.
//!
//! Heartbeat's rules: a node not heard for deadtime is dead; one not heard for warntime gets a
//! "late heartbeat" warning first; until a node is heard once after start-up, initdead applies
//! instead of deadtime. A link is up while packets from the node arrive on it; the node is
//! alive while any link hears it. A node heard again after it was declared dead is a node
//! returning after a partition (or a restart), and is reported as such.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hbapi::config::Timing;

pub use hbapi::comm::{NodeKind, NodeStatus};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A packet from `node` arrived on `link`; `status` is what it says of itself.
    Heard {
        /// Sender.
        node: String,
        /// Link it arrived on.
        link: String,
        /// Its own status (`st`).
        status: NodeStatus,
    },
    /// Time passed; check the timers.
    Tick,
    /// `node` said it leaves the cluster (Heartbeat's shutdown notice): dead at once.
    Left {
        /// Node.
        node: String,
    },
    /// This node itself was not scheduled for `gap` (no local heartbeat): the silence of
    /// every peer in that time was its own deafness, not their death. Every timer is moved
    /// on by the gap, so that peers are judged by what they send from now on.
    Stalled {
        /// How long this node was not running.
        gap: Duration,
    },
}

/// What the caller must publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A node changed status.
    NodeStatus {
        /// Node.
        node: String,
        /// Before.
        old: NodeStatus,
        /// Now.
        new: NodeStatus,
    },
    /// A link to a node went up or down.
    LinkStatus {
        /// Node.
        node: String,
        /// Link.
        link: String,
        /// Whether it is up.
        up: bool,
    },
    /// A node's heartbeat is later than warntime.
    LateHeartbeat {
        /// Node.
        node: String,
        /// Time since it was last heard.
        silent_for: Duration,
    },
    /// A heartbeat arrived later than warntime after the node's previous one (FAQ 12: the
    /// real gap, measured when it ends, not when warntime passes).
    LateArrived {
        /// Node.
        node: String,
        /// Link it arrived on.
        link: String,
        /// Time since the node's previous heartbeat.
        gap: Duration,
        /// The longest gap of this node since start.
        longest: Duration,
    },
    /// A node declared dead is heard again.
    Returned {
        /// Node.
        node: String,
        /// How long it was silent.
        silent_for: Duration,
    },
    /// A packet from a node not in the configuration.
    Unknown {
        /// Its name.
        node: String,
    },
}

/// How late a node's heartbeats have been since start: FAQ 12's measure for tuning deadtime.
/// Gaps across a death (a partition, a restart) are not counted: they are not lateness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lateness {
    /// The longest gap between two heartbeats.
    pub longest_gap: Duration,
    /// How many heartbeats came after more than warntime.
    pub late: u64,
}

impl Lateness {
    /// Counts one gap; whether that changed anything.
    fn record(&mut self, gap: Duration, warntime: Duration) -> bool {
        let late = gap > warntime;
        let longer = gap > self.longest_gap;
        self.longest_gap = self.longest_gap.max(gap);
        if late {
            self.late += 1;
        }
        late || longer
    }
}

#[derive(Debug, Clone)]
struct Member {
    kind: NodeKind,
    status: NodeStatus,
    last_heard: Option<Instant>,
    links: BTreeMap<String, Option<Instant>>,
    warned: bool,
    /// Over all links: what deadtime is measured against.
    lateness: Lateness,
    /// Per link, on the packets that link carried.
    link_lateness: BTreeMap<String, Lateness>,
}

/// The membership of one node's view of the cluster.
#[derive(Debug, Clone)]
pub struct Membership {
    local: String,
    timing: Timing,
    started: Instant,
    members: BTreeMap<String, Member>,
    /// Bumped whenever any [`Lateness`] changes, so that the caller republishes only then
    /// (after the first seconds, rarely: a longest gap rarely grows).
    lateness_version: u64,
}

impl Membership {
    /// Starts the view at `now`: every peer is `init`, the local node `active`.
    pub fn new(
        local: &str,
        nodes: &[String],
        ping_nodes: &[String],
        links: &[String],
        timing: Timing,
        now: Instant,
    ) -> Self {
        let mut members = BTreeMap::new();
        for node in nodes.iter().filter(|n| n.as_str() != local) {
            members.insert(node.clone(), Member::new(NodeKind::Normal, links));
        }
        for ping in ping_nodes {
            members.insert(
                ping.clone(),
                Member::new(NodeKind::Ping, std::slice::from_ref(ping)),
            );
        }
        Membership {
            local: local.to_owned(),
            timing,
            started: now,
            members,
            lateness_version: 0,
        }
    }

    /// The longest gap between two heartbeats of `node` since start (FAQ 12's measure).
    pub fn longest_gap(&self, node: &str) -> Option<Duration> {
        self.members.get(node).map(|m| m.lateness.longest_gap)
    }

    /// Changes whenever some peer's lateness does.
    pub fn lateness_version(&self) -> u64 {
        self.lateness_version
    }

    /// Each peer (ping nodes aside) with its lateness over all links and per link.
    pub fn lateness(&self) -> impl Iterator<Item = (&str, Lateness, &BTreeMap<String, Lateness>)> {
        self.members
            .iter()
            .filter(|(_, m)| m.kind == NodeKind::Normal)
            .map(|(name, m)| (name.as_str(), m.lateness, &m.link_lateness))
    }

    /// The timers this view runs on.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Status of `node` (the local node is always active).
    pub fn status(&self, node: &str) -> Option<NodeStatus> {
        if node == self.local {
            return Some(NodeStatus::Active);
        }
        self.members.get(node).map(|m| m.status)
    }

    /// Each member with its kind and status.
    pub fn members(&self) -> impl Iterator<Item = (&str, NodeKind, NodeStatus)> {
        self.members
            .iter()
            .map(|(name, m)| (name.as_str(), m.kind, m.status))
    }

    /// Each link of `node` and whether it is up.
    pub fn links(&self, node: &str, now: Instant) -> Vec<(String, bool)> {
        let Some(member) = self.members.get(node) else {
            return Vec::new();
        };
        let deadtime = self.deadtime(member.kind);
        member
            .links
            .iter()
            .map(|(link, heard)| {
                (
                    link.clone(),
                    heard.is_some_and(|at| now.saturating_duration_since(at) <= deadtime),
                )
            })
            .collect()
    }

    /// When the next timer may fire: the caller ticks at or after this.
    pub fn next_deadline(&self) -> Option<Instant> {
        // Called once per loop turn of the daemon: no allocation.
        self.members
            .values()
            .filter(|m| m.status != NodeStatus::Dead)
            .filter_map(|m| {
                let deadtime = self.deadtime(m.kind);
                let Some(at) = m.last_heard else {
                    return Some(self.started + self.initdead(m.kind));
                };
                let warn = (!m.warned && m.kind == NodeKind::Normal).then(|| at + self.timing.warntime);
                let stalest_link = m
                    .links
                    .values()
                    .flatten()
                    .min()
                    .map(|link_at| *link_at + deadtime);
                [Some(at + deadtime), warn, stalest_link]
                    .into_iter()
                    .flatten()
                    .min()
            })
            .min()
    }

    fn deadtime(&self, kind: NodeKind) -> Duration {
        match kind {
            NodeKind::Normal => self.timing.deadtime,
            NodeKind::Ping => self.timing.deadping,
        }
    }

    fn initdead(&self, kind: NodeKind) -> Duration {
        match kind {
            NodeKind::Normal => self.timing.initdead,
            NodeKind::Ping => self.timing.deadping,
        }
    }

    /// Feeds one input at `now`.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Heard { node, link, status } => {
                if node == self.local {
                    return out;
                }
                let Some(member) = self.members.get_mut(&node) else {
                    out.push(Output::Unknown { node });
                    return out;
                };
                let deadtime = match member.kind {
                    NodeKind::Normal => self.timing.deadtime,
                    NodeKind::Ping => self.timing.deadping,
                };
                let link_heard = member.links.get(&link).copied().flatten();
                let link_was_up = link_heard.is_some_and(|at| now.saturating_duration_since(at) <= deadtime);
                if let (Some(at), NodeKind::Normal, true) = (link_heard, member.kind, link_was_up) {
                    let gap = now.saturating_duration_since(at);
                    // Every heartbeat passes here: look the link up, allocate only the first time.
                    let changed = match member.link_lateness.get_mut(&link) {
                        Some(lateness) => lateness.record(gap, self.timing.warntime),
                        None => {
                            let mut lateness = Lateness::default();
                            lateness.record(gap, self.timing.warntime);
                            member.link_lateness.insert(link.clone(), lateness);
                            true
                        }
                    };
                    if changed {
                        self.lateness_version += 1;
                    }
                }
                match member.links.get_mut(&link) {
                    Some(heard) => *heard = Some(now),
                    None => {
                        member.links.insert(link.clone(), Some(now));
                    }
                }
                if !link_was_up {
                    out.push(Output::LinkStatus {
                        node: node.clone(),
                        link: link.clone(),
                        up: true,
                    });
                }
                let old = member.status;
                if old == NodeStatus::Dead {
                    let silent_for = member
                        .last_heard
                        .map_or(now.saturating_duration_since(self.started), |at| {
                            now.saturating_duration_since(at)
                        });
                    out.push(Output::Returned {
                        node: node.clone(),
                        silent_for,
                    });
                }
                if let (Some(at), NodeKind::Normal, false) =
                    (member.last_heard, member.kind, old == NodeStatus::Dead)
                {
                    let gap = now.saturating_duration_since(at);
                    if member.lateness.record(gap, self.timing.warntime) {
                        self.lateness_version += 1;
                    }
                    if gap > self.timing.warntime {
                        out.push(Output::LateArrived {
                            node: node.clone(),
                            link: link.clone(),
                            gap,
                            longest: member.lateness.longest_gap,
                        });
                    }
                }
                member.last_heard = Some(now);
                member.warned = false;
                let new = match member.kind {
                    NodeKind::Ping => NodeStatus::Ping,
                    NodeKind::Normal if status == NodeStatus::Dead => NodeStatus::Up,
                    NodeKind::Normal => status,
                };
                if new != old {
                    member.status = new;
                    out.push(Output::NodeStatus { node, old, new });
                }
            }
            Input::Left { node } => {
                if let Some(member) = self.members.get_mut(&node) {
                    if member.kind == NodeKind::Normal && member.status != NodeStatus::Dead {
                        let old = member.status;
                        member.status = NodeStatus::Dead;
                        member.warned = false;
                        // Nothing more comes on any link.
                        for (link, heard) in member.links.iter_mut() {
                            if heard.take().is_some() {
                                out.push(Output::LinkStatus {
                                    node: node.clone(),
                                    link: link.clone(),
                                    up: false,
                                });
                            }
                        }
                        out.push(Output::NodeStatus {
                            node,
                            old,
                            new: NodeStatus::Dead,
                        });
                    }
                }
            }
            Input::Stalled { gap } => {
                fn later(at: Instant, gap: Duration, now: Instant) -> Instant {
                    (at + gap).min(now)
                }
                self.started = later(self.started, gap, now);
                for member in self.members.values_mut() {
                    member.last_heard = member.last_heard.map(|at| later(at, gap, now));
                    for heard in member.links.values_mut() {
                        *heard = heard.map(|at| later(at, gap, now));
                    }
                }
            }
            Input::Tick => {
                let timing = self.timing;
                let started = self.started;
                for (name, member) in &mut self.members {
                    let (deadtime, initial) = match member.kind {
                        NodeKind::Normal => (timing.deadtime, timing.initdead),
                        NodeKind::Ping => (timing.deadping, timing.deadping),
                    };
                    for (link, heard) in member.links.iter_mut() {
                        if let Some(at) = *heard {
                            if now.saturating_duration_since(at) > deadtime {
                                *heard = None;
                                out.push(Output::LinkStatus {
                                    node: name.clone(),
                                    link: link.clone(),
                                    up: false,
                                });
                            }
                        }
                    }
                    if member.status == NodeStatus::Dead {
                        continue;
                    }
                    let dead = match member.last_heard {
                        None => now.saturating_duration_since(started) > initial,
                        Some(at) => {
                            let silent = now.saturating_duration_since(at);
                            if silent > timing.warntime
                                && !member.warned
                                && member.kind == NodeKind::Normal
                                && silent <= deadtime
                            {
                                member.warned = true;
                                out.push(Output::LateHeartbeat {
                                    node: name.clone(),
                                    silent_for: silent,
                                });
                            }
                            silent > deadtime
                        }
                    };
                    if dead {
                        let old = member.status;
                        member.status = NodeStatus::Dead;
                        out.push(Output::NodeStatus {
                            node: name.clone(),
                            old,
                            new: NodeStatus::Dead,
                        });
                    }
                }
            }
        }
        out
    }
}

impl Member {
    fn new(kind: NodeKind, links: &[String]) -> Self {
        Member {
            kind,
            status: NodeStatus::Init,
            last_heard: None,
            links: links.iter().map(|l| (l.clone(), None)).collect(),
            warned: false,
            lateness: Lateness::default(),
            link_lateness: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn timing() -> Timing {
        Timing {
            keepalive: ms(200),
            deadtime: ms(1000),
            warntime: ms(500),
            initdead: ms(2000),
            deadping: ms(1500),
        }
    }

    fn view(t0: Instant) -> Membership {
        let nodes = vec!["alpha".to_string(), "bravo".into(), "charlie".into()];
        Membership::new(
            "alpha",
            &nodes,
            &["10.0.0.254".to_string()],
            &["eth0".to_string(), "eth1".into()],
            timing(),
            t0,
        )
    }

    fn heard(node: &str, link: &str) -> Input {
        Input::Heard {
            node: node.into(),
            link: link.into(),
            status: NodeStatus::Active,
        }
    }

    #[test]
    fn deadtime_edge_exact_millisecond() {
        let t0 = Instant::now();
        let mut view = view(t0);
        view.handle(heard("bravo", "eth0"), t0);
        // Exactly deadtime of silence: still alive (Heartbeat declares death only past it).
        let out = view.handle(Input::Tick, t0 + ms(1000));
        assert!(
            !out.iter().any(
                |o| matches!(o, Output::NodeStatus { new: NodeStatus::Dead, node, .. } if node == "bravo")
            ),
            "{out:?}"
        );
        let out = view.handle(Input::Tick, t0 + ms(1001));
        assert!(
            out.contains(&Output::NodeStatus {
                node: "bravo".into(),
                old: NodeStatus::Active,
                new: NodeStatus::Dead
            }),
            "{out:?}"
        );
        assert_eq!(view.status("bravo"), Some(NodeStatus::Dead));
    }

    #[test]
    fn warntime_warns_once_before_death() {
        let t0 = Instant::now();
        let mut view = view(t0);
        view.handle(heard("bravo", "eth0"), t0);
        assert!(view.handle(Input::Tick, t0 + ms(500)).is_empty());
        let out = view.handle(Input::Tick, t0 + ms(501));
        assert_eq!(
            out,
            [Output::LateHeartbeat {
                node: "bravo".into(),
                silent_for: ms(501)
            }]
        );
        assert!(
            view.handle(Input::Tick, t0 + ms(700)).is_empty(),
            "warned only once"
        );
        view.handle(heard("bravo", "eth0"), t0 + ms(800));
        let out = view.handle(Input::Tick, t0 + ms(1301));
        assert_eq!(
            out,
            [Output::LateHeartbeat {
                node: "bravo".into(),
                silent_for: ms(501)
            }],
            "re-armed by a heartbeat"
        );
    }

    #[test]
    fn a_late_heartbeat_is_reported_with_its_real_gap_and_the_longest_kept() {
        let t0 = Instant::now();
        let mut view = view(t0);
        view.handle(heard("bravo", "eth0"), t0);
        assert!(view.handle(heard("bravo", "eth0"), t0 + ms(400)).is_empty());
        view.handle(Input::Tick, t0 + ms(901));
        let out = view.handle(heard("bravo", "eth1"), t0 + ms(1240));
        assert_eq!(
            out,
            [
                Output::LinkStatus {
                    node: "bravo".into(),
                    link: "eth1".into(),
                    up: true
                },
                Output::LateArrived {
                    node: "bravo".into(),
                    link: "eth1".into(),
                    gap: ms(840),
                    longest: ms(840)
                }
            ]
        );
        assert_eq!(view.longest_gap("bravo"), Some(ms(840)));
        // eth0 was silent past deadtime: it comes back up with this heartbeat.
        let out = view.handle(heard("bravo", "eth0"), t0 + ms(1840));
        assert_eq!(
            out,
            [
                Output::LinkStatus {
                    node: "bravo".into(),
                    link: "eth0".into(),
                    up: true
                },
                Output::LateArrived {
                    node: "bravo".into(),
                    link: "eth0".into(),
                    gap: ms(600),
                    longest: ms(840)
                }
            ]
        );
        assert_eq!(view.longest_gap("bravo"), Some(ms(840)));
        // Per link only what the link carried while up: eth0's 400 ms, not its 1440 ms outage.
        let (name, overall, links) = view.lateness().next().unwrap();
        assert_eq!(name, "bravo");
        assert_eq!(
            overall,
            Lateness {
                longest_gap: ms(840),
                late: 2
            }
        );
        assert_eq!(
            links.get("eth0"),
            Some(&Lateness {
                longest_gap: ms(400),
                late: 0
            })
        );
        assert_eq!(links.get("eth1"), None, "heard once: no gap yet");
        let version = view.lateness_version();
        assert!(version > 0);
        view.handle(heard("bravo", "eth0"), t0 + ms(1940));
        assert_eq!(
            view.lateness_version(),
            version,
            "a short gap changes nothing to publish"
        );
    }

    #[test]
    fn a_local_stall_is_not_the_peers_death() {
        let t0 = Instant::now();
        let mut view = view(t0);
        view.handle(heard("bravo", "eth0"), t0);
        view.handle(heard("charlie", "eth0"), t0);
        // This node was not scheduled for 3 s: its first look at the clock after it.
        let woke = t0 + ms(3000);
        assert_eq!(view.handle(Input::Stalled { gap: ms(3000) }, woke), vec![]);
        let out = view.handle(Input::Tick, woke);
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::NodeStatus { .. } | Output::LinkStatus { .. })),
            "no death for silence while this node was stopped: {out:?}"
        );
        // Heard again: no late heartbeat is made of this node's own stall.
        let out = view.handle(heard("bravo", "eth0"), woke + ms(200));
        assert!(
            !out.iter().any(|o| matches!(o, Output::LateArrived { .. })),
            "{out:?}"
        );
        // A peer that stays silent after it is declared dead a deadtime later.
        let out = view.handle(Input::Tick, woke + ms(1001));
        assert!(out.contains(&Output::NodeStatus {
            node: "charlie".into(),
            old: NodeStatus::Active,
            new: NodeStatus::Dead
        }));
        assert_eq!(view.status("bravo"), Some(NodeStatus::Active));
    }

    #[test]
    fn initdead_applies_until_first_heard() {
        let t0 = Instant::now();
        let mut view = view(t0);
        assert_eq!(view.status("charlie"), Some(NodeStatus::Init));
        let out = view.handle(Input::Tick, t0 + ms(1500));
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::NodeStatus { node, .. } if node == "charlie")),
            "deadtime does not apply yet"
        );
        let out = view.handle(Input::Tick, t0 + ms(2001));
        assert!(out.contains(&Output::NodeStatus {
            node: "charlie".into(),
            old: NodeStatus::Init,
            new: NodeStatus::Dead
        }));
        // Everyone is dead now: no timer is left to run until someone is heard.
        assert_eq!(view.next_deadline(), None);
    }

    #[test]
    fn a_node_is_alive_while_any_link_hears_it() {
        let t0 = Instant::now();
        let mut view = view(t0);
        let out = view.handle(heard("bravo", "eth0"), t0);
        assert!(out.contains(&Output::LinkStatus {
            node: "bravo".into(),
            link: "eth0".into(),
            up: true
        }));
        view.handle(heard("bravo", "eth1"), t0);
        // eth0 goes silent; eth1 keeps carrying heartbeats.
        let mut now = t0;
        let mut link_down = false;
        for _ in 0..10 {
            now += ms(200);
            view.handle(heard("bravo", "eth1"), now);
            let out = view.handle(Input::Tick, now);
            link_down |= out.contains(&Output::LinkStatus {
                node: "bravo".into(),
                link: "eth0".into(),
                up: false,
            });
            assert!(
                !out.iter()
                    .any(|o| matches!(o, Output::NodeStatus { node, .. } if node == "bravo")),
                "{out:?}"
            );
        }
        assert!(link_down);
        assert_eq!(view.status("bravo"), Some(NodeStatus::Active));
        assert_eq!(
            view.links("bravo", now),
            [("eth0".to_string(), false), ("eth1".to_string(), true)]
        );
    }

    #[test]
    fn partition_and_rejoin_is_reported() {
        let t0 = Instant::now();
        let mut view = view(t0);
        view.handle(heard("bravo", "eth0"), t0);
        view.handle(Input::Tick, t0 + ms(1200));
        assert_eq!(view.status("bravo"), Some(NodeStatus::Dead));
        let out = view.handle(heard("bravo", "eth0"), t0 + ms(5000));
        assert!(
            out.contains(&Output::Returned {
                node: "bravo".into(),
                silent_for: ms(5000)
            }),
            "{out:?}"
        );
        assert!(out.contains(&Output::NodeStatus {
            node: "bravo".into(),
            old: NodeStatus::Dead,
            new: NodeStatus::Active
        }));
    }

    #[test]
    fn ping_nodes_use_deadping_and_unknown_senders_are_flagged() {
        let t0 = Instant::now();
        let mut view = view(t0);
        view.handle(
            Input::Heard {
                node: "10.0.0.254".into(),
                link: "10.0.0.254".into(),
                status: NodeStatus::Active,
            },
            t0,
        );
        assert_eq!(view.status("10.0.0.254"), Some(NodeStatus::Ping));
        view.handle(Input::Tick, t0 + ms(1400));
        assert_eq!(
            view.status("10.0.0.254"),
            Some(NodeStatus::Ping),
            "deadping 1.5 s, not deadtime"
        );
        view.handle(Input::Tick, t0 + ms(1501));
        assert_eq!(view.status("10.0.0.254"), Some(NodeStatus::Dead));
        assert_eq!(
            view.handle(heard("mallory", "eth0"), t0),
            [Output::Unknown {
                node: "mallory".into()
            }]
        );
        assert!(
            view.handle(heard("alpha", "eth0"), t0).is_empty(),
            "our own packets are ignored"
        );
    }

    #[test]
    fn next_deadline_is_the_earliest_timer() {
        let t0 = Instant::now();
        let mut view = view(t0);
        view.handle(heard("bravo", "eth0"), t0 + ms(100));
        // bravo's warntime (600 ms) comes before every initdead (2 s) and deadping.
        assert_eq!(view.next_deadline(), Some(t0 + ms(600)));
    }
}
