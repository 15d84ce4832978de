//! Event-sequence scenarios for crmd's partition core: every tests/events/*.evt is a cluster
//! of [`crmd::partition::Partition`] cores on a virtual clock, wired by a simulated world
//! (messages, membership as hbcomm would report it, lrmd's work, a fence device), driven by
//! the file's timed lines; what the cores decide, start and stop is compared with the file's
//! expected part (see tests/events/README.md). `HB_UPDATE_SCENARIOS=1` rewrites the expected
//! parts instead of failing.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crmd::partition::{Command, Effect, Event, GroupOutcome, Partition, Work};
use crmd::policy::Scope;
use hbapi::comm::NodeStatus;
use hbapi::config::{AutoFailback, ClusterConfig, Style, Timing};

/// Where the expected part of a scenario starts.
const EXPECTED: &str = "--- expected";

/// Something the world does at a time.
#[derive(Debug, Clone)]
enum Happening {
    /// An event for one node's core.
    Core { node: String, event: Event },
    /// A local operation ends.
    WorkDone {
        node: String,
        group: String,
        work: Work,
        incarnation: u32,
    },
    /// A fence ends.
    FenceDone {
        node: String,
        target: String,
        op_id: u64,
    },
    /// A line of the scenario.
    Line { number: usize, words: Vec<String> },
    /// A node's clock asks for a tick.
    Tick { node: String, incarnation: u32 },
    /// A stalled node runs again.
    StallEnd {
        node: String,
        incarnation: u32,
        silent: Duration,
    },
    /// A node's watchdog runs out unless it was fed since `starved_at`.
    WatchdogExpires {
        node: String,
        incarnation: u32,
        starved_at: Duration,
    },
}

struct Scheduled {
    at: Duration,
    seq: u64,
    what: Happening,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One simulated node.
struct SimNode {
    core: Option<Partition>,
    /// Bumped at every start, so that stale work and ticks of an earlier run are dropped.
    incarnation: u32,
    /// Whom this node's hbcomm hears.
    hears: BTreeSet<String>,
    /// Pending tick time.
    tick_at: Option<Duration>,
    /// Since when its watchdog is not fed (crmd's watchdog state holds it, or it stalls).
    starved_at: Option<Duration>,
    /// Until when the whole node is not scheduled: what reaches it waits.
    frozen_until: Option<Duration>,
}

/// The scenario's settings.
struct Settings {
    nodes: Vec<String>,
    groups: Vec<(String, String)>,
    auto_failback: AutoFailback,
    fencing: bool,
    style: Style,
    timing: Timing,
    stop_timeout: Duration,
    lost_node_wait: Option<Duration>,
    watchdog: bool,
    oops_timeout: Duration,
    work_time: Duration,
    latency: Duration,
    fence_time: Duration,
    migration_threshold: u32,
}

struct World {
    settings: Settings,
    config: Arc<ClusterConfig>,
    base: Instant,
    now: Duration,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    nodes: BTreeMap<String, SimNode>,
    /// One-way cuts: (from, to) pairs whose packets are lost.
    cuts: BTreeSet<(String, String)>,
    /// Where each group runs (the ledger's view), node → groups.
    running: BTreeMap<String, BTreeSet<String>>,
    /// Operations that will fail: (node, group, "start"|"stop").
    failing: BTreeSet<(String, String, String)>,
    fence_fails: bool,
    next_fence: u64,
    trace: Vec<String>,
    /// Whether two holders are a violation (fencing or quorum configured).
    exclusive: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |at| text.split_at(at));
    let value: f64 = number.parse().map_err(|_| format!("bad duration {text:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        _ => return Err(format!("bad duration unit in {text:?}")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

fn scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text).ok_or_else(|| format!("bad scope {text:?}"))
}

impl World {
    fn new(settings: Settings) -> Self {
        let config = Arc::new(config_of(&settings));
        let exclusive = settings.fencing || settings.nodes.len() >= 3;
        World {
            nodes: settings
                .nodes
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        SimNode {
                            core: None,
                            incarnation: 0,
                            hears: BTreeSet::new(),
                            tick_at: None,
                            starved_at: None,
                            frozen_until: None,
                        },
                    )
                })
                .collect(),
            settings,
            config,
            base: Instant::now(),
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            cuts: BTreeSet::new(),
            running: BTreeMap::new(),
            failing: BTreeSet::new(),
            fence_fails: false,
            next_fence: 1,
            trace: Vec::new(),
            exclusive,
        }
    }

    fn schedule(&mut self, after: Duration, what: Happening) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at: self.now + after,
            seq: self.seq,
            what,
        });
    }

    fn log(&mut self, text: String) {
        let line = format!("{:>7.3} {text}", self.now.as_secs_f64());
        self.trace.push(line);
    }

    fn alive(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|n| n.core.is_some())
    }

    fn reaches(&self, from: &str, to: &str) -> bool {
        from == to || !self.cuts.contains(&(from.to_owned(), to.to_owned()))
    }

    /// Feeds an event to a node's core, then settles it and carries out the effects.
    fn feed(&mut self, node: &str, event: Event) {
        if let Some(until) = self.nodes.get(node).and_then(|n| n.frozen_until) {
            if until > self.now {
                let after = until - self.now;
                self.schedule(
                    after,
                    Happening::Core {
                        node: node.to_owned(),
                        event,
                    },
                );
                return;
            }
        }
        let now = self.base + self.now;
        let Some(core) = self.nodes.get_mut(node).and_then(|n| n.core.as_mut()) else {
            return;
        };
        let mut effects = core.handle(now, event);
        effects.extend(core.settle(now));
        let (groups_here, hold) = core.watchdog_state();
        self.carry(node, effects);
        self.arm_tick(node);
        self.watch_dog(node, groups_here && !hold.is_empty());
    }

    /// hbcomm feeds the watchdog unless crmd holds it; unfed for its timeout, the node resets.
    fn watch_dog(&mut self, node: &str, starving: bool) {
        let Some(timeout) = self.config.watchdog_timeout() else {
            return;
        };
        let now = self.now;
        let Some(sim) = self.nodes.get_mut(node) else {
            return;
        };
        match (starving, sim.starved_at) {
            (true, None) => {
                sim.starved_at = Some(now);
                let incarnation = sim.incarnation;
                self.log(format!("{node}'s watchdog is no longer fed"));
                self.schedule(
                    timeout,
                    Happening::WatchdogExpires {
                        node: node.to_owned(),
                        incarnation,
                        starved_at: now,
                    },
                );
            }
            (false, Some(_)) => {
                sim.starved_at = None;
                self.log(format!("{node}'s watchdog is fed again"));
            }
            _ => {}
        }
    }

    fn arm_tick(&mut self, node: &str) {
        let Some(sim) = self.nodes.get_mut(node) else {
            return;
        };
        let Some(core) = sim.core.as_ref() else { return };
        let at = core.next_deadline().saturating_duration_since(self.base);
        let at = at.max(self.now + Duration::from_millis(1));
        if sim.tick_at.is_some_and(|pending| pending <= at) {
            return;
        }
        sim.tick_at = Some(at);
        let incarnation = sim.incarnation;
        let after = at - self.now;
        self.schedule(
            after,
            Happening::Tick {
                node: node.to_owned(),
                incarnation,
            },
        );
    }

    fn carry(&mut self, node: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Broadcast(message) => {
                    let receivers: Vec<String> = self.nodes.keys().cloned().collect();
                    for to in receivers {
                        if !self.reaches(node, &to) {
                            continue;
                        }
                        let after = if to == node {
                            Duration::ZERO
                        } else {
                            self.settings.latency
                        };
                        self.schedule(
                            after,
                            Happening::Core {
                                node: to,
                                event: Event::Message {
                                    from: node.to_owned(),
                                    message: message.clone(),
                                },
                            },
                        );
                    }
                }
                Effect::SendV1(message) => {
                    panic!("{node}: the partition core never speaks the v1 protocol: {message:?}")
                }
                Effect::Carry { group, work } => {
                    let incarnation = self.nodes[node].incarnation;
                    if matches!(work, Work::Start | Work::Restart) {
                        // The ledger records a start when it begins: from then on it may run.
                        if work == Work::Start {
                            self.ledger_start(node, &group);
                        }
                    }
                    let time = if work == Work::Restart {
                        self.settings.work_time * 2
                    } else {
                        self.settings.work_time
                    };
                    self.schedule(
                        time,
                        Happening::WorkDone {
                            node: node.to_owned(),
                            group,
                            work,
                            incarnation,
                        },
                    );
                }
                Effect::Fence { node: target, .. } => {
                    let op_id = self.next_fence;
                    self.next_fence += 1;
                    self.schedule(
                        Duration::ZERO,
                        Happening::Core {
                            node: node.to_owned(),
                            event: Event::FenceRequested {
                                node: target.clone(),
                                result: Ok(op_id),
                            },
                        },
                    );
                    self.schedule(
                        self.settings.fence_time,
                        Happening::FenceDone {
                            node: node.to_owned(),
                            target,
                            op_id,
                        },
                    );
                }
                Effect::GroupChanged { .. } => {}
                Effect::Decided { decision, trigger } => {
                    self.log(format!("{node} decided {decision} (after: {trigger})"));
                }
                Effect::TransitionCompleted { actions } => {
                    self.log(format!("{node} transition complete ({actions} actions)"));
                }
                Effect::Left { clean } => {
                    self.log(format!(
                        "{node} left ({})",
                        if clean { "clean" } else { "GROUPS LEFT RUNNING" }
                    ));
                    self.power_off(node, clean);
                }
            }
        }
    }

    fn ledger_start(&mut self, node: &str, group: &str) {
        let elsewhere: Vec<String> = self
            .running
            .iter()
            .filter(|(n, groups)| n.as_str() != node && groups.contains(group))
            .map(|(n, _)| n.clone())
            .collect();
        if elsewhere.is_empty() {
            self.log(format!("{node} starts {group}"));
        } else if self.exclusive {
            self.log(format!(
                "{node} starts {group} -- VIOLATION: also running on {}",
                elsewhere.join(",")
            ));
        } else {
            self.log(format!(
                "{node} starts {group} -- split brain: also running on {}",
                elsewhere.join(",")
            ));
        }
        self.running
            .entry(node.to_owned())
            .or_default()
            .insert(group.to_owned());
    }

    /// A node's daemons are gone: with `clean`, it said so (Heartbeat's shutdown notice);
    /// otherwise peers find out at deadtime.
    fn power_off(&mut self, node: &str, clean: bool) {
        if let Some(sim) = self.nodes.get_mut(node) {
            sim.core = None;
            sim.tick_at = None;
            sim.hears.clear();
        }
        let peers: Vec<String> = self.nodes.keys().filter(|n| *n != node).cloned().collect();
        for peer in peers {
            if !self.nodes[&peer].hears.contains(node) {
                continue;
            }
            let after = if clean {
                self.settings.latency
            } else {
                self.settings.timing.deadtime
            };
            self.lose(&peer, node, after);
        }
    }

    /// `peer` declares `lost` dead after `after`.
    fn lose(&mut self, peer: &str, lost: &str, after: Duration) {
        if let Some(sim) = self.nodes.get_mut(peer) {
            sim.hears.remove(lost);
        }
        self.schedule(
            after,
            Happening::Core {
                node: peer.to_owned(),
                event: Event::NodeStatus {
                    node: lost.to_owned(),
                    status: NodeStatus::Dead,
                },
            },
        );
    }

    fn start_node(&mut self, node: &str) {
        let running: Vec<String> = self
            .running
            .get(node)
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default();
        let alive: Vec<String> = self.nodes.keys().filter(|n| self.alive(n)).cloned().collect();
        let mut members = Vec::new();
        for other in self.nodes.keys() {
            if other == node {
                continue;
            }
            let heard = alive.contains(other) && self.reaches(other, node);
            members.push((
                other.clone(),
                if heard {
                    NodeStatus::Active
                } else {
                    NodeStatus::Init
                },
            ));
        }
        let was_alive = self.alive(node);
        let base = self.base;
        let now = base + self.now;
        if let Some(sim) = self.nodes.get_mut(node) {
            sim.incarnation += 1;
            sim.starved_at = None;
            sim.core = Some(Partition::new(node, self.config.clone(), now));
            sim.tick_at = None;
            sim.hears = members
                .iter()
                .filter(|(_, s)| *s == NodeStatus::Active)
                .map(|(n, _)| n.clone())
                .collect();
        }
        if was_alive {
            // crmd alone restarted (respawned): hbcomm's membership is unchanged.
            self.log(format!("{node} restarts crmd"));
            self.feed(node, Event::Started { running, members });
            return;
        }
        // Its peers hear it; nodes it does not hear are declared dead at initdead.
        for other in alive {
            if self.reaches(node, &other) {
                if let Some(sim) = self.nodes.get_mut(&other) {
                    sim.hears.insert(node.to_owned());
                }
                self.schedule(
                    self.settings.latency,
                    Happening::Core {
                        node: other,
                        event: Event::NodeStatus {
                            node: node.to_owned(),
                            status: NodeStatus::Active,
                        },
                    },
                );
            }
        }
        self.log(format!("{node} starts its daemons"));
        self.feed(node, Event::Started { running, members });
        let unheard: Vec<String> = self
            .nodes
            .keys()
            .filter(|n| *n != node && !self.nodes[node].hears.contains(*n))
            .cloned()
            .collect();
        for other in unheard {
            self.schedule(
                self.settings.timing.initdead,
                Happening::Line {
                    number: 0,
                    words: vec!["initdead".into(), node.to_owned(), other],
                },
            );
        }
    }

    fn line(&mut self, number: usize, words: &[String]) -> Result<(), String> {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let error = |what: &str| format!("line {number}: {what}: {}", words.join(" "));
        let names: BTreeSet<String> = self.nodes.keys().cloned().collect();
        let known = |n: &str| names.contains(n);
        match w.as_slice() {
            ["start", nodes @ ..] => {
                for node in nodes {
                    if !known(node) {
                        return Err(error("unknown node"));
                    }
                    self.start_node(node);
                }
            }
            ["initdead", node, other] => {
                // Still unheard when initdead passes: declared dead.
                if self.alive(node) && !self.nodes[*node].hears.contains(*other) {
                    self.feed(
                        node,
                        Event::NodeStatus {
                            node: (*other).to_owned(),
                            status: NodeStatus::Dead,
                        },
                    );
                }
            }
            ["running", node, groups @ ..] => {
                for group in groups {
                    self.running
                        .entry((*node).to_owned())
                        .or_default()
                        .insert((*group).to_owned());
                }
            }
            ["stall", node, length] => {
                if !known(node) {
                    return Err(error("unknown node"));
                }
                let silent = parse_duration(length).map_err(|e| error(&e))?;
                self.log(format!(
                    "{node} is not scheduled for {:.1} s",
                    silent.as_secs_f64()
                ));
                self.stall(node, silent);
            }
            ["engine-quorum", node, verdict] => {
                if !known(node) {
                    return Err(error("unknown node"));
                }
                let quorate = match *verdict {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(error("expected yes or no")),
                };
                self.log(format!("Corosync tells {node}: quorate {verdict}"));
                self.feed(node, Event::EngineQuorum { quorate });
            }
            ["crash", node] => {
                if !known(node) {
                    return Err(error("unknown node"));
                }
                self.log(format!("{node} crashes (everything on it ends)"));
                self.running.remove(*node);
                self.power_off(node, false);
            }
            ["stop", node] => {
                self.log(format!("{node}: heartbeat -k"));
                self.feed(node, Event::Shutdown);
            }
            ["standby", node, mode] => {
                let scope = scope(mode).map_err(|e| error(&e))?;
                self.log(format!("{node}: hb_standby {mode}"));
                self.feed(node, Event::Command(Command::Standby(scope, 0)));
            }
            ["takeover", node, mode] => {
                let scope = scope(mode).map_err(|e| error(&e))?;
                self.log(format!("{node}: hb_takeover {mode}"));
                self.feed(node, Event::Command(Command::Takeover(scope, 0)));
            }
            ["cleanup", node, rest @ ..] => {
                let group = rest.first().map(|g| (*g).to_owned());
                self.log(format!(
                    "{node}: hb_cleanup {}",
                    group.as_deref().unwrap_or("--all")
                ));
                self.feed(node, Event::Command(Command::Cleanup { group, uid: 0 }));
            }
            ["move", node, group, to] => {
                self.log(format!("{node}: move {group} to {to}"));
                let to = if *to == "-" {
                    String::new()
                } else {
                    (*to).to_owned()
                };
                self.feed(
                    node,
                    Event::Command(Command::Move {
                        group: (*group).to_owned(),
                        node: to,
                        uid: 0,
                    }),
                );
            }
            ["ipfail", node, "give-up"] | ["ipfail", node, "take-back"] => {
                let give_up = w[2] == "give-up";
                self.log(format!("{node}: ipfail {}", w[2]));
                self.feed(
                    node,
                    Event::Command(Command::Connectivity {
                        give_up,
                        reason: "ping nodes".into(),
                        uid: 0,
                    }),
                );
            }
            ["sighup", node] => {
                self.log(format!("{node}: SIGHUP (FreeHA: stop services)"));
                self.feed(node, Event::Command(Command::StopServices(0)));
            }
            ["sigusr1", node] => {
                self.log(format!("{node}: SIGUSR1 (FreeHA: force start)"));
                self.feed(node, Event::Command(Command::ForceStart(0)));
            }
            ["sigusr2", node] => {
                self.log(format!("{node}: SIGUSR2 (FreeHA: clear error)"));
                self.feed(node, Event::Command(Command::ClearError(0)));
            }
            ["fail", op @ ("start" | "stop"), node, group] => {
                self.failing
                    .insert(((*node).to_owned(), (*group).to_owned(), (*op).to_owned()));
            }
            ["fix", node, group] => {
                self.failing.retain(|(n, g, _)| n != node || g != group);
            }
            ["monitor-fails", node, group] => {
                self.log(format!("{node}: monitor of {group} fails"));
                self.feed(
                    node,
                    Event::MonitorFailed {
                        resource: (*group).to_owned(),
                        result: "not running".into(),
                    },
                );
            }
            ["fence-fails"] => self.fence_fails = true,
            ["fence-works"] => self.fence_fails = false,
            ["cut", a, b] => {
                self.log(format!("link {a} <-> {b} cut"));
                self.cut(a, b);
                self.cut(b, a);
            }
            ["cut", a, "->", b] => {
                self.log(format!("link {a} -> {b} cut"));
                self.cut(a, b);
            }
            ["heal"] => {
                self.log("every link healed".into());
                let cuts = std::mem::take(&mut self.cuts);
                for (from, to) in cuts {
                    if self.alive(&from) && self.alive(&to) {
                        self.hear_again(&to, &from);
                    }
                }
            }
            _ => return Err(error("unknown line")),
        }
        Ok(())
    }

    /// The whole node stops running for `silent`: peers declare it dead after deadtime; its
    /// watchdog, unfed, resets it after its timeout; if it runs again first, its hbcomm
    /// reports no local heartbeat (past deadtime) and its peers hear it again.
    fn stall(&mut self, node: &str, silent: Duration) {
        let now = self.now;
        let timeout = self.config.watchdog_timeout();
        let Some(sim) = self.nodes.get_mut(node) else {
            return;
        };
        if sim.core.is_none() {
            return;
        }
        sim.frozen_until = Some(now + silent);
        let incarnation = sim.incarnation;
        if let (Some(timeout), None) = (timeout, sim.starved_at) {
            sim.starved_at = Some(now);
            self.schedule(
                timeout,
                Happening::WatchdogExpires {
                    node: node.to_owned(),
                    incarnation,
                    starved_at: now,
                },
            );
        }
        if silent > self.settings.timing.deadtime {
            let peers: Vec<String> = self
                .nodes
                .iter()
                .filter(|(name, peer)| *name != node && peer.hears.contains(node))
                .map(|(name, _)| name.clone())
                .collect();
            for peer in peers {
                self.lose(&peer, node, self.settings.timing.deadtime);
            }
        }
        self.schedule(
            silent,
            Happening::StallEnd {
                node: node.to_owned(),
                incarnation,
                silent,
            },
        );
    }

    /// `peer`'s hbcomm hears `node` again with its next heartbeat.
    fn hear_again(&mut self, peer: &str, node: &str) {
        if let Some(sim) = self.nodes.get_mut(peer) {
            sim.hears.insert(node.to_owned());
        }
        self.schedule(
            self.settings.timing.keepalive,
            Happening::Core {
                node: peer.to_owned(),
                event: Event::NodeStatus {
                    node: node.to_owned(),
                    status: NodeStatus::Active,
                },
            },
        );
    }

    fn cut(&mut self, from: &str, to: &str) {
        if self.cuts.insert((from.to_owned(), to.to_owned())) && self.alive(from) && self.alive(to) {
            self.lose(to, from, self.settings.timing.deadtime);
        }
    }

    fn run_until(&mut self, end: Duration) -> Result<(), String> {
        while let Some(next) = self.queue.peek() {
            if next.at > end {
                break;
            }
            let Some(Scheduled { at, what, .. }) = self.queue.pop() else {
                break;
            };
            self.now = at;
            match what {
                Happening::Core { node, event } => {
                    // A loss already undone (the node restarted and is heard again) is not
                    // reported: hbcomm would hear its new heartbeats first.
                    if let Event::NodeStatus { node: lost, status } = &event {
                        if *status == NodeStatus::Dead
                            && self.nodes.get(&node).is_some_and(|n| n.hears.contains(lost))
                        {
                            continue;
                        }
                    }
                    self.feed(&node, event)
                }
                Happening::Line { number, words } => self.line(number, &words)?,
                Happening::StallEnd {
                    node,
                    incarnation,
                    silent,
                } => {
                    let Some(sim) = self.nodes.get_mut(&node) else {
                        continue;
                    };
                    if sim.incarnation != incarnation || sim.core.is_none() {
                        continue;
                    }
                    sim.frozen_until = None;
                    let crmd_starves = sim.core.as_ref().is_some_and(|core| {
                        let (groups_here, hold) = core.watchdog_state();
                        groups_here && !hold.is_empty()
                    });
                    if !crmd_starves {
                        sim.starved_at = None;
                    }
                    self.log(format!("{node} runs again"));
                    if silent > self.settings.timing.deadtime {
                        let peers: Vec<String> = self
                            .nodes
                            .keys()
                            .filter(|peer| **peer != node && self.alive(peer) && self.reaches(&node, peer))
                            .cloned()
                            .collect();
                        for peer in peers {
                            self.hear_again(&peer, &node);
                        }
                        self.feed(&node, Event::NoLocalHeartbeat { silent });
                    }
                }
                Happening::WatchdogExpires {
                    node,
                    incarnation,
                    starved_at,
                } => {
                    let Some(sim) = self.nodes.get_mut(&node) else {
                        continue;
                    };
                    if sim.incarnation != incarnation
                        || sim.starved_at != Some(starved_at)
                        || sim.core.is_none()
                    {
                        continue;
                    }
                    sim.starved_at = None;
                    self.log(format!("{node} is reset by its watchdog (everything on it ends)"));
                    self.running.remove(&node);
                    self.power_off(&node, false);
                }
                Happening::Tick { node, incarnation } => {
                    let Some(sim) = self.nodes.get_mut(&node) else {
                        continue;
                    };
                    if sim.incarnation != incarnation || sim.tick_at != Some(at) {
                        continue;
                    }
                    sim.tick_at = None;
                    self.feed(&node, Event::Tick);
                }
                Happening::WorkDone {
                    node,
                    group,
                    work,
                    incarnation,
                } => {
                    if self
                        .nodes
                        .get(&node)
                        .is_none_or(|n| n.incarnation != incarnation || n.core.is_none())
                    {
                        continue;
                    }
                    let fails = |op: &str| {
                        self.failing
                            .contains(&(node.clone(), group.clone(), op.to_owned()))
                    };
                    let outcome = match work {
                        Work::Start if fails("start") => GroupOutcome::StartFailed,
                        Work::Start => GroupOutcome::Started,
                        Work::Stop | Work::Restart if fails("stop") => GroupOutcome::StopFailed,
                        Work::Stop => GroupOutcome::Stopped,
                        Work::Restart => GroupOutcome::Started,
                    };
                    match outcome {
                        GroupOutcome::Started => {
                            if work == Work::Restart {
                                self.log(format!("{node} restarts {group}"));
                            }
                        }
                        GroupOutcome::StartFailed => {
                            self.log(format!("{node} start of {group} FAILED"));
                            if let Some(groups) = self.running.get_mut(&node) {
                                groups.remove(&group);
                            }
                        }
                        GroupOutcome::Stopped => {
                            self.log(format!("{node} stops {group}"));
                            if let Some(groups) = self.running.get_mut(&node) {
                                groups.remove(&group);
                            }
                        }
                        GroupOutcome::StopFailed => self.log(format!("{node} stop of {group} FAILED")),
                    }
                    self.feed(&node, Event::LocalDone { group, outcome });
                }
                Happening::FenceDone { node, target, op_id } => {
                    let ok = !self.fence_fails;
                    if ok {
                        self.log(format!("{target} is fenced (powered off)"));
                        self.running.remove(&target);
                        if self.alive(&target) {
                            self.power_off(&target, false);
                        }
                    } else {
                        self.log(format!("fencing {target} FAILED"));
                    }
                    self.feed(
                        &node,
                        Event::FenceFinished {
                            op_id,
                            ok,
                            message: String::new(),
                        },
                    );
                }
            }
        }
        self.now = end;
        Ok(())
    }

    fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (group, _) in &self.settings.groups {
            let on: Vec<&str> = self
                .running
                .iter()
                .filter(|(_, groups)| groups.contains(group))
                .map(|(n, _)| n.as_str())
                .collect();
            lines.push(format!(
                "end: {group} on {}",
                if on.is_empty() {
                    "nobody".to_owned()
                } else {
                    on.join(",")
                }
            ));
        }
        for (name, sim) in &self.nodes {
            if let Some(core) = &sim.core {
                let holds = core.holds();
                for hold in holds {
                    lines.push(format!(
                        "end: {name} holds {} of {} ({}, {:.1} s left)",
                        hold.groups.join(","),
                        hold.node,
                        hold.kind,
                        hold.remaining.as_secs_f64()
                    ));
                }
            }
        }
        lines
    }
}

fn seconds(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// The cluster's configuration, through ha.toml's own reader.
fn config_of(settings: &Settings) -> ClusterConfig {
    let quoted = |items: &[String]| {
        items
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "[cluster]\nnodes = [{}]\nkeepalive = \"{}\"\ndeadtime = \"{}\"\ninitdead = \"{}\"\nauto_failback = \"{}\"\nstyle = \"{}\"\noops_timeout = \"{}\"\n",
        quoted(&settings.nodes),
        seconds(settings.timing.keepalive),
        seconds(settings.timing.deadtime),
        seconds(settings.timing.initdead),
        settings.auto_failback.as_str(),
        settings.style.as_str(),
        seconds(settings.oops_timeout),
    );
    if let Some(wait) = settings.lost_node_wait {
        text.push_str(&format!("lost_node_wait = \"{}\"\n", seconds(wait)));
    }
    if settings.watchdog {
        text.push_str("watchdog = \"/dev/watchdog\"\n");
    }
    text.push_str("\n[[link]]\ntype = \"ucast\"\ndevice = \"lo\"\npeers = [\"127.0.0.9\"]\n");
    text.push_str("\n[auth]\nactive = 1\nkeys = [{ id = 1, method = \"sha256\", secret = \"scenario\" }]\n");
    if settings.fencing {
        text.push_str("\n[[stonith]]\ntype = \"null\"\nhost = \"*\"\nparams = [\"hostlist=any\"]\n");
    }
    for (name, preferred) in &settings.groups {
        text.push_str(&format!(
            "\n[[group]]\npreferred_node = {preferred:?}\nresources = [{{ agent = {name:?}, stop_timeout = \"{}\", migration_threshold = {} }}]\n",
            seconds(settings.stop_timeout),
            settings.migration_threshold,
        ));
    }
    let no_file = |_: &str| -> hbapi::config::Parsed<hbapi::config::AuthKeys> {
        Err(hbapi::config::ConfigError::file(Path::new("authkeys"), "none"))
    };
    match hbapi::config::parse_toml(Path::new("scenario.toml"), &text, &no_file) {
        Ok((config, _)) => config,
        Err(error) => panic!("scenario configuration:\n{text}\n{error}"),
    }
}

/// A scenario as read: its settings, its timed lines (time, line number, words), when it
/// ends, and its expected part.
struct Scenario {
    settings: Settings,
    lines: Vec<(Duration, usize, Vec<String>)>,
    end: Duration,
    expected: Option<String>,
}

/// Reads a scenario.
fn parse(text: &str) -> Result<Scenario, String> {
    let (input, expected) = match text.find(EXPECTED) {
        Some(at) => (
            &text[..at],
            Some(text[at + EXPECTED.len()..].trim_start_matches('\n').to_owned()),
        ),
        None => (text, None),
    };
    let mut settings = Settings {
        nodes: Vec::new(),
        groups: Vec::new(),
        auto_failback: AutoFailback::Off,
        fencing: false,
        style: Style::Heartbeat,
        timing: Timing {
            keepalive: Duration::from_millis(200),
            deadtime: Duration::from_secs(1),
            warntime: Duration::from_millis(500),
            initdead: Duration::from_secs(2),
            deadping: Duration::from_secs(1),
        },
        stop_timeout: Duration::from_secs(20),
        lost_node_wait: None,
        watchdog: false,
        oops_timeout: Duration::from_secs(30),
        work_time: Duration::from_millis(10),
        latency: Duration::from_millis(1),
        fence_time: Duration::from_millis(100),
        migration_threshold: 1,
    };
    let mut lines = Vec::new();
    let mut clock = Duration::ZERO;
    let mut end = None;
    for (index, raw) in input.lines().enumerate() {
        let number = index + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        let error = |what: &str| format!("line {number}: {what}: {raw:?}");
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["nodes", names @ ..] => settings.nodes = names.iter().map(|n| (*n).to_owned()).collect(),
            ["group", name, "preferred", node] => {
                settings.groups.push(((*name).to_owned(), (*node).to_owned()))
            }
            ["auto_failback", value] => {
                settings.auto_failback = value.parse().map_err(|_| error("auto_failback on|off|legacy"))?
            }
            ["fencing", "yes"] => settings.fencing = true,
            ["watchdog", "yes"] => settings.watchdog = true,
            ["style", "freeha"] => settings.style = Style::FreeHa,
            ["deadtime", value] => settings.timing.deadtime = parse_duration(value).map_err(|e| error(&e))?,
            ["initdead", value] => settings.timing.initdead = parse_duration(value).map_err(|e| error(&e))?,
            ["stop_timeout", value] => {
                settings.stop_timeout = parse_duration(value).map_err(|e| error(&e))?
            }
            ["lost_node_wait", value] => {
                settings.lost_node_wait = Some(parse_duration(value).map_err(|e| error(&e))?)
            }
            ["oops_timeout", value] => {
                settings.oops_timeout = parse_duration(value).map_err(|e| error(&e))?
            }
            ["work_time", value] => settings.work_time = parse_duration(value).map_err(|e| error(&e))?,
            ["fence_time", value] => settings.fence_time = parse_duration(value).map_err(|e| error(&e))?,
            ["migration_threshold", value] => {
                settings.migration_threshold = value.parse().map_err(|_| error("a number"))?
            }
            ["at", time, rest @ ..] => {
                clock = parse_duration(time).map_err(|e| error(&e))?;
                if !rest.is_empty() {
                    lines.push((clock, number, rest.iter().map(|w| (*w).to_owned()).collect()));
                }
            }
            ["end", time] => end = Some(parse_duration(time).map_err(|e| error(&e))?),
            _ => lines.push((clock, number, words.clone())),
        }
    }
    if settings.nodes.is_empty() {
        return Err("no nodes line".into());
    }
    let end = end.unwrap_or(clock + Duration::from_secs(10));
    Ok(Scenario {
        settings,
        lines,
        end,
        expected,
    })
}

fn play(text: &str) -> Result<(String, Option<String>), String> {
    let Scenario {
        settings,
        lines,
        end,
        expected,
    } = parse(text)?;
    let mut world = World::new(settings);
    for (at, number, words) in lines {
        world.seq += 1;
        world.queue.push(Scheduled {
            at,
            seq: world.seq,
            what: Happening::Line { number, words },
        });
    }
    world.run_until(end)?;
    let mut output = world.trace.clone();
    output.extend(world.summary());
    Ok((output.join("\n") + "\n", expected))
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/events");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "evt"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_event_scenario_gives_its_expected_history() {
    let update = std::env::var_os("HB_UPDATE_SCENARIOS").is_some();
    let files = scenario_files();
    assert!(
        update || files.len() >= 40,
        "only {} event scenarios",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (actual, expected) = match play(&text) {
            Ok(result) => result,
            Err(error) => {
                failures.push(format!("{}: {error}", file.display()));
                continue;
            }
        };
        if update {
            let input = text.split(EXPECTED).next().unwrap_or(&text).trim_end();
            std::fs::write(file, format!("{input}\n\n{EXPECTED}\n{actual}"))
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            continue;
        }
        if actual.contains("VIOLATION") {
            failures.push(format!(
                "{}: two holders of an exclusive group:\n{actual}",
                file.display()
            ));
        }
        match expected {
            Some(expected) if expected == actual => {}
            Some(expected) => failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{actual}",
                file.display()
            )),
            None => failures.push(format!(
                "{}: no expected part (HB_UPDATE_SCENARIOS=1 writes it)",
                file.display()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} event scenarios differ:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// The harness itself must catch two holders: a cluster with fencing whose fence device
/// lies (reports success without powering the node off) is a violation.
#[test]
fn the_checker_reports_two_holders() {
    let text = "nodes alpha bravo charlie\ngroup web preferred alpha\nat 0 start alpha bravo charlie\nat 3 cut alpha bravo\ncut alpha charlie\nend 40\n";
    let (actual, _) = play(text).unwrap();
    // Quorum: alpha, alone, stops web itself; the majority starts it after the wait.
    assert!(!actual.contains("VIOLATION"), "{actual}");
    let mut world_text = String::from(text);
    world_text = world_text.replace(
        "nodes alpha bravo charlie",
        "nodes alpha bravo charlie\nlost_node_wait 0.5",
    );
    world_text = world_text.replace("end 40", "fail stop alpha web\nend 40");
    let (actual, _) = play(&world_text).unwrap();
    assert!(
        actual.contains("VIOLATION"),
        "a lost node that cannot stop and a short wait must show:\n{actual}"
    );
}
