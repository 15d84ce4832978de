//! The faults, the cluster shapes they are played on, and what a correct cluster does about each.

/// The cluster a fault is played on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Three nodes, no fence device: quorum is what keeps a lost node's resources single.
    Quorum3,
    /// Three nodes with the lab power switch.
    Fencing3,
    /// Two nodes with the lab power switch.
    Fencing2,
    /// Three nodes, no fence device, each with the lab's watchdog ([`crate::watchdog`]).
    Watchdog3,
    /// Three nodes on Corosync 3 (`engine corosync`, [`crate::corosync`]), no fence device:
    /// Corosync's quorum keeps a lost node's resources single.
    Corosync3,
}

impl Shape {
    pub(super) fn names(self) -> &'static [&'static str] {
        match self {
            Shape::Quorum3 | Shape::Fencing3 | Shape::Watchdog3 | Shape::Corosync3 => {
                &["alpha", "bravo", "charlie"]
            }
            Shape::Fencing2 => &["alpha", "bravo"],
        }
    }

    pub(super) fn fencing(self) -> bool {
        matches!(self, Shape::Fencing3 | Shape::Fencing2)
    }

    pub(super) fn watchdog(self) -> bool {
        self == Shape::Watchdog3
    }

    pub(super) fn corosync(self) -> bool {
        self == Shape::Corosync3
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Shape::Quorum3 => "3 nodes, quorum",
            Shape::Fencing3 => "3 nodes, fencing",
            Shape::Fencing2 => "2 nodes, fencing",
            Shape::Watchdog3 => "3 nodes, watchdog",
            Shape::Corosync3 => "3 nodes, Corosync",
        }
    }
}

/// What is done to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every process of alpha killed at once.
    Crash,
    /// Every process of alpha's cluster stack killed at once while web keeps running there
    /// (`killall -9` of the stack: the service's own processes survive it).
    StackKill,
    /// alpha frozen past deadtime but thawed before its peers' wait for its own stop is over
    /// (no fencing, no watchdog): no local heartbeat, and alpha must give web up.
    LongStall,
    /// alpha frozen (cgroup freezer) past deadtime, then thawed.
    Hang,
    /// alpha frozen for less than deadtime.
    Stall,
    /// alpha cut off from the others both ways, then healed.
    Partition,
    /// alpha hears nobody while everyone hears alpha, then healed.
    AsymmetricPartition,
    /// Nobody hears alpha while alpha hears everyone, then healed.
    UnheardNode,
    /// This percentage of heartbeat packets dropped on arrival.
    Loss(u8),
    /// Every heartbeat packet arrives twice.
    Duplicates,
    /// Three seconds of captured traffic sent again three seconds later.
    Replay,
    /// Forged, truncated, oversized and random packets from an address with no key.
    Flood,
    /// A signed retransmission request from bravo to alpha (as if captured and sent again)
    /// replayed 100 times a second for 3 s: alpha's answers must stay within one per sequence
    /// number per max_rexmit_delay and 64 per max_rexmit_delay in all.
    RexmitReplay,
    /// This child daemon of alpha killed with SIGKILL (the master respawns it).
    KillDaemon(&'static str),
    /// alpha's master killed with SIGKILL.
    KillMaster,
    /// A respawn line on alpha whose program exits at once, over and over.
    CrashLoop,
    /// alpha crashes and bravo's agent fails to start web.
    StartFails,
    /// web dies behind alpha's back (its monitor finds it stopped).
    MonitorFails,
    /// alpha's agent fails to stop web when an operator moves it.
    StopFails,
    /// bravo's agent hangs starting web when an operator moves it there.
    StartHangs,
    /// alpha's agent hangs stopping web when an operator moves it.
    StopHangs,
    /// alpha hangs and the fence device fails until it is repaired 4 s later.
    FenceFails,
    /// alpha hangs and the fence device hangs until it is repaired 4 s later.
    FenceHangs,
    /// alpha hangs and the fence device reports success without acting: the checker must
    /// see the double start (its own test).
    FenceLies,
    /// alpha's ping node stops answering (ipfail moves web).
    PingLoss,
    /// The wall clock jumps by this many hours, then back.
    ClockJump(i8),
    /// alpha's state directory becomes read-only, then web is moved.
    StateReadOnly,
    /// alpha's state directory fills up, then web is moved.
    StateFull,
    /// alpha's bus daemon (dbus-daemon) killed.
    BusKilled,
}

/// One fault on one cluster shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What is done.
    pub kind: Kind,
    /// To which cluster.
    pub shape: Shape,
}

impl Fault {
    /// Its name in tables and on the command line, e.g. `crash/fencing3`.
    pub fn name(&self) -> String {
        let kind = match self.kind {
            Kind::Loss(percent) => format!("loss-{percent}%"),
            Kind::KillDaemon(daemon) => format!("kill-{daemon}"),
            Kind::ClockJump(hours) => format!("clock{hours:+}h"),
            other => {
                let debug = format!("{other:?}");
                let mut name = String::new();
                for (index, c) in debug.chars().enumerate() {
                    if c.is_uppercase() && index > 0 {
                        name.push('-');
                    }
                    name.push(c.to_ascii_lowercase());
                }
                name
            }
        };
        let shape = match self.shape {
            Shape::Quorum3 => "quorum3",
            Shape::Fencing3 => "fencing3",
            Shape::Fencing2 => "fencing2",
            Shape::Watchdog3 => "watchdog3",
            Shape::Corosync3 => "corosync3",
        };
        format!("{kind}/{shape}")
    }

    /// What a correct cluster does about it.
    pub(super) fn expect(&self) -> Expect {
        use Kind::*;
        let alpha = Some("alpha");
        match (self.kind, self.shape.fencing()) {
            (Crash | Hang | Partition | KillMaster | StartFails, _) => Expect::Moves { victim: alpha },
            (FenceFails | FenceHangs, _) => Expect::Moves { victim: alpha },
            (StopFails | StopHangs, true) => Expect::Moves { victim: alpha },
            (StopFails | StopHangs, false) => Expect::Blocked,
            (MonitorFails | PingLoss | StateReadOnly | StateFull, _) => Expect::Moves { victim: None },
            (StartHangs | AsymmetricPartition | UnheardNode | BusKilled, _) => Expect::Runs { victim: alpha },
            (Loss(percent), _) if percent >= 40 => Expect::Runs { victim: None },
            (FenceLies, _) => Expect::DoubleStart,
            // Without fencing or a watchdog nothing ends web on alpha: the gap the watchdog
            // closes, shown.
            (StackKill, _) if self.shape == Shape::Quorum3 => Expect::DoubleStart,
            (StackKill, _) => Expect::Moves { victim: alpha },
            (LongStall, _) => Expect::Runs { victim: alpha },
            // Corosync gone is alpha's failure: it stops web, its peers take it over.
            (KillDaemon("corosync"), _) => Expect::Moves { victim: alpha },
            _ => Expect::Stays,
        }
    }
}

/// The default run: every fault once.
pub fn default_faults() -> Vec<Fault> {
    use Kind::*;
    use Shape::*;
    let mut faults = vec![
        Fault {
            kind: Crash,
            shape: Quorum3,
        },
        Fault {
            kind: Crash,
            shape: Fencing3,
        },
        Fault {
            kind: Crash,
            shape: Fencing2,
        },
        Fault {
            kind: Hang,
            shape: Fencing3,
        },
        Fault {
            kind: Stall,
            shape: Quorum3,
        },
        Fault {
            kind: Partition,
            shape: Quorum3,
        },
        Fault {
            kind: Partition,
            shape: Fencing3,
        },
        Fault {
            kind: AsymmetricPartition,
            shape: Quorum3,
        },
        Fault {
            kind: UnheardNode,
            shape: Quorum3,
        },
    ];
    for percent in [1, 5, 20, 40] {
        faults.push(Fault {
            kind: Loss(percent),
            shape: Quorum3,
        });
    }
    for (kind, shape) in [
        (StackKill, Quorum3),
        (StackKill, Fencing3),
        (StackKill, Watchdog3),
        (LongStall, Quorum3),
        (Hang, Watchdog3),
        (Stall, Watchdog3),
        (Partition, Watchdog3),
        (KillDaemon("crmd"), Watchdog3),
        (KillDaemon("hbcomm"), Watchdog3),
    ] {
        faults.push(Fault { kind, shape });
    }
    faults.extend([
        Fault {
            kind: Duplicates,
            shape: Quorum3,
        },
        Fault {
            kind: Replay,
            shape: Quorum3,
        },
        Fault {
            kind: Flood,
            shape: Quorum3,
        },
        Fault {
            kind: RexmitReplay,
            shape: Quorum3,
        },
    ]);
    for daemon in ["hbcomm", "lrmd", "stonithd", "crmd"] {
        faults.push(Fault {
            kind: KillDaemon(daemon),
            shape: Fencing3,
        });
    }
    faults.extend([
        Fault {
            kind: KillMaster,
            shape: Quorum3,
        },
        Fault {
            kind: CrashLoop,
            shape: Quorum3,
        },
        Fault {
            kind: StartFails,
            shape: Quorum3,
        },
        Fault {
            kind: MonitorFails,
            shape: Quorum3,
        },
        Fault {
            kind: StopFails,
            shape: Quorum3,
        },
        Fault {
            kind: StopFails,
            shape: Fencing3,
        },
        Fault {
            kind: StartHangs,
            shape: Quorum3,
        },
        Fault {
            kind: StopHangs,
            shape: Fencing3,
        },
        Fault {
            kind: FenceFails,
            shape: Fencing3,
        },
        Fault {
            kind: FenceHangs,
            shape: Fencing3,
        },
        Fault {
            kind: FenceLies,
            shape: Fencing3,
        },
        Fault {
            kind: PingLoss,
            shape: Quorum3,
        },
        Fault {
            kind: ClockJump(1),
            shape: Quorum3,
        },
        Fault {
            kind: ClockJump(-1),
            shape: Quorum3,
        },
        Fault {
            kind: StateReadOnly,
            shape: Quorum3,
        },
        Fault {
            kind: StateFull,
            shape: Quorum3,
        },
        Fault {
            kind: BusKilled,
            shape: Quorum3,
        },
    ]);
    faults
}

/// The faults played on Corosync (`hb_lab::corosync`): a node's crash, its partition, and
/// the daemons killed — Corosync itself among them.
pub fn corosync_faults() -> Vec<Fault> {
    use Kind::*;
    [
        Crash,
        Partition,
        KillDaemon("hbcomm"),
        KillDaemon("crmd"),
        KillDaemon("lrmd"),
        KillDaemon("corosync"),
        KillMaster,
    ]
    .into_iter()
    .map(|kind| Fault {
        kind,
        shape: Shape::Corosync3,
    })
    .collect()
}

/// What a correct cluster does about a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// Nothing moves, nobody is declared dead.
    Stays,
    /// web starts on another node within the budget; `victim` may be declared dead.
    Moves { victim: Option<&'static str> },
    /// web runs somewhere at the end (where is the cluster's choice).
    Runs { victim: Option<&'static str> },
    /// web's stop failed and there is no fencing: it must start nowhere else.
    Blocked,
    /// The fault defeats the cluster's guarantee on purpose: the checker must report it.
    DoubleStart,
}

impl Expect {
    pub(super) fn victim(self) -> Option<&'static str> {
        match self {
            Expect::Moves { victim } | Expect::Runs { victim } => victim,
            Expect::DoubleStart => Some("alpha"),
            _ => None,
        }
    }
}
