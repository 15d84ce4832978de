//! The fault-injection harness: each fault is played on a fresh cluster of complete nodes in a
//! network namespace of its own (so iptables rules touch nothing else), every node in a cgroup
//! of its own (so that a crash, a hang or a fence is the whole node at once, agents included),
//! and judged afterwards from the start/stop ledger the test agent writes and from what the
//! nodes said on their buses while it happened.
//!
//! The resources are two heartbeat-class groups, `Ledger::web` (alpha's) and `Ledger::db`
//! (bravo's). The agent fails, or hangs in, an operation when a marker file tells it to. The
//! lab's fence device is a cluster-glue external plugin that kills a node's cgroup — what
//! pulling its power does — and which can be told to fail, hang or lie.
//!
//! The invariants, checked for every fault:
//! - no resource ever starts on a node while the ledger has it running on another (a node's
//!   resources end when it stops them or when it is powered off: fenced, or crashed by the
//!   harness);
//! - `web` runs again within its budget when the fault takes it away (the node's death, its
//!   lost network, a failed agent), and stays where it is when the fault should not move it;
//! - after the fault heals, every live node reports the same members and decision maker;
//! - when the cluster is stopped, no process of any node is left and nothing runs.
//!
//! Needs root (namespaces, iptables, cgroups, mounts, the clock).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hbapi::comm::CommProxy;
use hbapi::crmd::CrmdProxy;

use crate::ledger::Lab;
use crate::netns::Namespace;
use crate::{bin, start_cluster, BusKind, Node};

/// ha.cf's deadtime in every fault cluster (keepalive 200 ms).
pub const DEADTIME: Duration = Duration::from_secs(1);
/// Start, stop and monitor timeouts of the test agent.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a move may take: deadtime, then (three nodes, no fencing) the lost node's stop
/// timeout and deadtime again, then the start — with room for a loaded machine.
const MOVE_BUDGET: Duration = Duration::from_secs(8);
/// How long "nothing should happen" is watched. Waiting for an event that must not come is the
/// one place a window is the test.
const QUIET_WINDOW: Duration = Duration::from_secs(3);

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
}

impl Shape {
    fn names(self) -> &'static [&'static str] {
        match self {
            Shape::Quorum3 | Shape::Fencing3 | Shape::Watchdog3 => &["alpha", "bravo", "charlie"],
            Shape::Fencing2 => &["alpha", "bravo"],
        }
    }

    fn fencing(self) -> bool {
        matches!(self, Shape::Fencing3 | Shape::Fencing2)
    }

    fn watchdog(self) -> bool {
        self == Shape::Watchdog3
    }

    fn label(self) -> &'static str {
        match self {
            Shape::Quorum3 => "3 nodes, quorum",
            Shape::Fencing3 => "3 nodes, fencing",
            Shape::Fencing2 => "2 nodes, fencing",
            Shape::Watchdog3 => "3 nodes, watchdog",
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
        };
        format!("{kind}/{shape}")
    }

    /// What a correct cluster does about it.
    fn expect(&self) -> Expect {
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

/// What a correct cluster does about a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
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
    fn victim(self) -> Option<&'static str> {
        match self {
            Expect::Moves { victim } | Expect::Runs { victim } => victim,
            Expect::DoubleStart => Some("alpha"),
            _ => None,
        }
    }
}

/// The outcome of one fault.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Invariant violations, as sentences.
    pub violations: Vec<String>,
    /// From the fault to the first survivor declaring the victim dead.
    pub detection: Option<Duration>,
    /// From the fault to web started again on another node.
    pub recovery: Option<Duration>,
    /// Nodes declared dead that the fault did not touch (by nodes it did not touch).
    pub false_deaths: u32,
    /// Starts and stops the fault did not call for.
    pub unnecessary_restarts: u32,
    /// Whether violations were the expected result (the checker's own test).
    pub violations_expected: bool,
}

/// The prefix that starts a command inside the cgroup at `path` (v1 or v2): `sh -c …` moving
/// itself in, then exec.
pub fn enter_cgroup(path: &std::path::Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"".into(),
        path.display().to_string(),
    ]
}

/// A cgroup (v2) holding one lab node: frozen and thawed, or killed, as one.
pub struct Cgroup {
    /// Its directory.
    pub path: PathBuf,
}

/// The cgroup2 hierarchy mounted once more on a temporary directory: `ip netns exec` gives
/// the nodes a /sys of their own without the host's cgroup mounts, while a mount under /tmp
/// made before they start is seen by them at the same path — the power switch, run by a
/// node's stonithd, reaches the other nodes' cgroups there.
pub struct CgroupMount {
    dir: tempfile::TempDir,
}

impl CgroupMount {
    /// Mounts it; panics with the reason when that is impossible (not root, no cgroup2).
    #[allow(clippy::new_without_default)]
    pub fn new() -> CgroupMount {
        let dir = tempfile::Builder::new()
            .prefix("hb-lab-cgroup-")
            .tempdir()
            .expect("tempdir");
        let status = std::process::Command::new("mount")
            .args(["-t", "cgroup2", "none"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "mount -t cgroup2 (needs root and a kernel with cgroup v2)"
        );
        CgroupMount { dir }
    }

    /// A new cgroup `hbrs-TAG-PID` in it.
    pub fn cgroup(&self, tag: &str) -> Cgroup {
        let path = self.dir.path().join(format!("hbrs-{tag}-{}", std::process::id()));
        if !path.exists() {
            std::fs::create_dir(&path)
                .unwrap_or_else(|e| panic!("create {} (needs root): {e}", path.display()));
        }
        Cgroup { path }
    }
}

impl Cgroup {
    /// The processes in it.
    pub fn procs(&self) -> Vec<u32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Freezes (true) or thaws (false) every process in it.
    pub fn freeze(&self, frozen: bool) {
        std::fs::write(self.path.join("cgroup.freeze"), if frozen { "1" } else { "0" })
            .expect("cgroup.freeze");
    }

    /// Kills every process in it and waits until they are gone.
    pub async fn kill(&self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.procs().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The prefix that starts a command inside it.
    fn wrapper(&self) -> Vec<String> {
        enter_cgroup(&self.path)
    }
}

impl Drop for CgroupMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path.join("cgroup.freeze"), "0");
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        for _ in 0..500 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The test agent: the ledger script, plus markers in the state directory that make an
/// operation on one resource fail (`fail-start.NODE.RESOURCE`, `fail-stop.…`), hang
/// (`hang-start.…`, `hang-stop.…`) or the resource die behind the cluster's back
/// (`die.NODE.RESOURCE`: the next status finds it stopped and the ledger says "crash").
fn agent_script(lab: &Lab) -> String {
    format!(
        r#"state={state}/{{node}}.$1.on
resource=$1
marker() {{ [ -e "{state}/$1.{{node}}.$resource" ]; }}
case "$2" in
start)
  marker hang-start && sleep 600
  marker fail-start && exit 1
  touch "$state"; echo "{{node}} start $1" >> {ledger};;
stop)
  marker hang-stop && sleep 600
  marker fail-stop && exit 1
  [ -e "$state" ] && echo "{{node}} stop $1" >> {ledger}; rm -f "$state";;
status)
  if [ -e "$state" ] && marker die; then rm -f "$state" "{state}/die.{{node}}.$1"; echo "{{node}} crash $1" >> {ledger}; fi
  if [ -e "$state" ]; then echo running; else echo stopped; fi;;
esac
exit 0
"#,
        state = lab.state.display(),
        ledger = lab.ledger.display()
    )
}

/// The lab's power switch, in cluster-glue's external plugin protocol: off and reset kill the
/// node's cgroup and write "NODE off all" to the ledger once it is empty. The file `mode` in
/// its directory says how it behaves: works (absent), fails, hangs or lies.
fn power_switch_script(device: &Path, ledger: &Path) -> String {
    format!(
        r#"#!/bin/sh
device={device}
case "$1" in
gethosts) echo "$hostlist" | tr ',' '\n';;
getconfignames) echo hostlist;;
getinfo-devid|getinfo-devname) echo "hb-lab power switch";;
getinfo-devdescr) echo "kills a lab node's cgroup, as pulling its power would";;
getinfo-devurl) echo "https://github.com/heartbeat-rs";;
getinfo-xml) echo "<parameters/>";;
status|on) exit 0;;
off|reset)
  mode=$(cat "$device/mode" 2>/dev/null || echo works)
  echo "$1 $2 $mode" >> "$device/log"
  case "$mode" in
  fails) exit 1;;
  hangs) sleep 600; exit 1;;
  lies) exit 0;;
  esac
  cgroup=$(cat "$device/$2.cgroup") || exit 1
  echo 1 > "$cgroup/cgroup.kill" || exit 1
  tries=0
  while [ -s "$cgroup/cgroup.procs" ] && [ $tries -lt 500 ]; do sleep 0.01; tries=$((tries+1)); done
  [ -s "$cgroup/cgroup.procs" ] && exit 1
  echo "$2 off all" >> {ledger}
  exit 0;;
*) exit 1;;
esac
"#,
        device = device.display(),
        ledger = ledger.display()
    )
}

/// A node status change one node reported: (when, observer, node, new status).
type Seen = (Instant, String, String, String);

/// A cluster for one fault.
pub struct Cluster {
    /// Its nodes, in `Shape::names` order.
    pub nodes: Vec<Node>,
    cgroups: Vec<Cgroup>,
    /// Its namespace.
    pub namespace: Namespace,
    /// Its ledger.
    pub lab: Lab,
    device: tempfile::TempDir,
    mount: CgroupMount,
    /// The lab's watchdog of each node (Shape::Watchdog3), in node order.
    watchdogs: Vec<crate::watchdog::StandIn>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Ledger lines with when the harness first saw them.
    ledger_seen: Arc<Mutex<Vec<(Instant, String)>>>,
    watchers: Vec<tokio::task::JoinHandle<()>>,
    port: u16,
}

impl Cluster {
    /// Starts the cluster `fault` is played on, with what the fault needs set up before.
    async fn start(fault: Fault) -> Cluster {
        let namespace = Namespace::new("fault");
        let lab = Lab::new();
        let device = tempfile::tempdir().expect("device dir");
        let names = fault.shape.names();
        let mount = CgroupMount::new();
        let cgroups: Vec<Cgroup> = names
            .iter()
            .map(|n| mount.cgroup(&format!("{n}-{}", next_tag())))
            .collect();
        for (name, cgroup) in names.iter().zip(&cgroups) {
            std::fs::write(
                device.path().join(format!("{name}.cgroup")),
                cgroup.path.display().to_string(),
            )
            .expect("cgroup file");
        }
        let plugin = device.path().join("hblab");
        std::fs::write(&plugin, power_switch_script(device.path(), &lab.ledger)).expect("plugin");
        std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let watchdogs: Vec<crate::watchdog::StandIn> = if fault.shape.watchdog() {
            let timeout = hbapi::config::watchdog_timeout(DEADTIME);
            names
                .iter()
                .zip(&cgroups)
                .map(|(name, cgroup)| {
                    let (node, cgroup, ledger) = (name.to_string(), cgroup.path.clone(), lab.ledger.clone());
                    crate::watchdog::StandIn::new(device.path(), name, timeout, move || {
                        crate::watchdog::reset_cgroup(&node, &cgroup, &ledger)
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        match fault.kind {
            Kind::StartFails => marker(&lab, "fail-start.bravo.web"),
            Kind::StartHangs => marker(&lab, "hang-start.bravo.web"),
            _ => {}
        }

        let ops = hbapi::config::OpSettings {
            monitor_interval: Some(Duration::from_secs(1)),
            monitor_timeout: OP_TIMEOUT,
            start_timeout: OP_TIMEOUT,
            stop_timeout: OP_TIMEOUT,
            ..hbapi::config::OpSettings::default()
        };
        let index = std::cell::Cell::new(0usize);
        let script = agent_script(&lab);
        let nodes = start_cluster(names, |builder| {
            let me = index.get();
            index.set(me + 1);
            let mut wrapper = cgroups[me].wrapper();
            wrapper.extend(namespace.wrapper().iter().map(|s| s.to_string()));
            let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
            let mut builder = builder
                .wrapper(&wrapper)
                .haresources("alpha Ledger::web\nbravo Ledger::db\n")
                .resource_script("Ledger", &script)
                .resource_ops("Ledger::web", ops)
                .resource_ops("Ledger::db", ops);
            if fault.shape.fencing() {
                builder = builder
                    .env("HB_STONITH_EXTERNAL_DIR", &device.path().display().to_string())
                    .ha_cf(format!(
                        "stonith_host * external/hblab hostlist={} pcmk_reboot_timeout=2 pcmk_reboot_retries=0",
                        names.join(",")
                    ));
            }
            if let Some(watchdog) = watchdogs.get(me) {
                builder = builder.ha_cf(format!("watchdog {}", watchdog.path.display()));
            }
            if fault.kind == Kind::PingLoss {
                builder = builder
                    .ha_cf("ping 127.0.0.9")
                    .ha_cf("deadping 1")
                    .ha_cf("respawn hacluster /usr/lib/heartbeat/ipfail --hysteresis 1s");
            }
            if me == 0 {
                match fault.kind {
                    Kind::CrashLoop => builder = builder.ha_cf("respawn root /bin/false"),
                    Kind::StateReadOnly | Kind::StateFull => builder = builder.state_tmpfs("16m"),
                    Kind::BusKilled => builder = builder.bus(BusKind::DbusDaemon),
                    _ => {}
                }
            }
            builder
        })
        .await;
        let port = nodes[0].udp_port();
        let mut cluster = Cluster {
            nodes,
            cgroups,
            namespace,
            lab,
            device,
            mount,
            watchdogs,
            seen: Default::default(),
            ledger_seen: Default::default(),
            watchers: Vec::new(),
            port,
        };
        cluster.watch().await;
        cluster
    }

    /// Records every node status change each node reports, and every ledger line when it
    /// appears.
    async fn watch(&mut self) {
        for node in &self.nodes {
            let proxy = CommProxy::new(&node.connection).await.expect("comm proxy");
            let mut changes = proxy.receive_node_status_changed().await.expect("subscribe");
            let seen = self.seen.clone();
            let observer = node.node.clone();
            self.watchers.push(tokio::spawn(async move {
                while let Some(signal) = changes.next().await {
                    if let Ok(args) = signal.args() {
                        let record = (
                            Instant::now(),
                            observer.clone(),
                            args.node.to_owned(),
                            args.new.to_owned(),
                        );
                        seen.lock().expect("seen").push(record);
                    }
                }
            }));
        }
        let ledger = self.lab.ledger.clone();
        let lines = self.ledger_seen.clone();
        self.watchers.push(tokio::spawn(async move {
            loop {
                let text = std::fs::read_to_string(&ledger).unwrap_or_default();
                {
                    let mut known = lines.lock().expect("ledger lines");
                    let from = known.len();
                    known.extend(
                        text.lines()
                            .skip(from)
                            .map(|line| (Instant::now(), line.to_owned())),
                    );
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }

    fn index(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.node == name).expect("node")
    }

    /// Waits until web runs on alpha, db on bravo (when there is a bravo with it), and every
    /// node sees every other active.
    async fn steady(&self) -> Result<(), String> {
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let running = self.lab.running();
                let placed = running.get("web").map(String::as_str) == Some("alpha")
                    && running.get("db").map(String::as_str) == Some("bravo");
                if placed && self.agreement().await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        ready.map_err(|_| format!("never steady: ledger {:?}", self.lab.events()))
    }

    /// Whether every live node reports the same active members and decision maker.
    async fn agreement(&self) -> Result<(), String> {
        let mut views = Vec::new();
        for (node, cgroup) in self.nodes.iter().zip(&self.cgroups) {
            if cgroup.procs().is_empty() {
                continue;
            }
            let view = async {
                let comm = CommProxy::new(&node.connection).await.ok()?;
                let members: BTreeSet<String> = comm
                    .list_nodes()
                    .await
                    .ok()?
                    .into_iter()
                    .filter(|n| n.kind == "normal" && n.status == "active")
                    .map(|n| n.name)
                    .collect();
                let crmd = CrmdProxy::new(&node.connection).await.ok()?;
                let decision_maker = crmd.decision_maker().await.ok()?;
                Some((members, decision_maker))
            };
            match tokio::time::timeout(Duration::from_secs(2), view).await {
                Ok(Some(view)) => views.push((node.node.clone(), view)),
                _ => views.push((node.node.clone(), (BTreeSet::new(), "(no answer)".into()))),
            }
        }
        let first = views.first().map(|(_, v)| v.clone());
        if views.iter().all(|(_, v)| Some(v) == first.as_ref())
            && first.is_some_and(|(m, d)| !m.is_empty() && !d.is_empty())
        {
            Ok(())
        } else {
            Err(format!("nodes disagree: {views:?}"))
        }
    }

    /// Waits (up to `within`) until web starts on a node other than alpha; returns when.
    async fn wait_moved(&self, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .ledger_seen
                .lock()
                .expect("ledger lines")
                .iter()
                .find(|(_, line)| line.ends_with(" start web") && !line.starts_with("alpha "))
                .map(|(at, _)| *at);
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills alpha's whole cgroup as a power failure would, and says so in the ledger.
    async fn power_off(&self, name: &str) {
        let index = self.index(name);
        self.cgroups[index].kill().await;
        append(&self.lab.ledger, &format!("{name} off all"));
    }

    /// Drops UDP heartbeat traffic between `name` and every other node: into `name`, out of
    /// it, or both ways.
    fn cut(&self, name: &str, into: bool, out_of: bool) {
        let address = format!("127.0.0.{}", self.index(name) + 1);
        let port = self.port.to_string();
        for other in 0..self.nodes.len() {
            let peer = format!("127.0.0.{}", other + 1);
            if peer == address {
                continue;
            }
            let mut pairs = Vec::new();
            if into {
                pairs.push((peer.clone(), address.clone()));
            }
            if out_of {
                pairs.push((address.clone(), peer.clone()));
            }
            for (source, destination) in pairs {
                self.namespace.drop_input(
                    true,
                    &["-p", "udp", "--dport", &port, "-s", &source, "-d", &destination],
                );
            }
        }
    }

    /// Removes every iptables rule.
    fn heal(&self) {
        self.namespace.exec(&["iptables", "-F", "INPUT"]);
    }

    /// Runs hb-faultkit inside the namespace; returns what it printed.
    async fn faultkit(&self, args: &[String]) -> String {
        let output = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.namespace.name])
            .arg(bin("hb-faultkit"))
            .args(args)
            .output()
            .await
            .expect("hb-faultkit");
        assert!(
            output.status.success(),
            "hb-faultkit {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Restarts of the core daemons on every node, by name.
    async fn restarts(&self) -> Vec<(String, String, u32)> {
        let mut all = Vec::new();
        for node in &self.nodes {
            let Ok(proxy) = hbapi::master::HeartbeatProxy::new(&node.connection).await else {
                continue;
            };
            if let Ok(Ok(children)) =
                tokio::time::timeout(Duration::from_secs(2), proxy.list_children()).await
            {
                all.extend(
                    children
                        .into_iter()
                        .filter(|c| c.core)
                        .map(|c| (node.node.clone(), c.name, c.restarts)),
                );
            }
        }
        all
    }

    async fn move_web(&self, to: &str) -> Result<(), String> {
        let crmd = CrmdProxy::new(&self.nodes[0].connection)
            .await
            .map_err(|e| e.to_string())?;
        crmd.move_group("Ledger::web", to)
            .await
            .map_err(|e| format!("MoveGroup: {e}"))
    }
}

fn next_tag() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn marker(lab: &Lab, name: &str) {
    std::fs::write(lab.state.join(name), "").expect("marker");
}

fn append(path: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{line}");
    }
}

/// Moves the wall clock (CLOCK_REALTIME) by `seconds`.
fn jump_clock(seconds: i64) -> Result<(), String> {
    use nix::time::{clock_gettime, clock_settime, ClockId};
    let now = clock_gettime(ClockId::CLOCK_REALTIME).map_err(|e| e.to_string())?;
    let moved = nix::sys::time::TimeSpec::new(now.tv_sec() + seconds, now.tv_nsec());
    clock_settime(ClockId::CLOCK_REALTIME, moved)
        .map_err(|e| format!("clock_settime (needs CAP_SYS_TIME): {e}"))
}

/// Plays `fault` on a fresh cluster and judges it.
pub async fn play(fault: Fault) -> Outcome {
    let cluster = Cluster::start(fault).await;
    let mut outcome = Outcome::default();
    if let Err(error) = cluster.steady().await {
        outcome.violations.push(error);
        return outcome;
    }
    let expect = fault.expect();
    outcome.violations_expected = expect == Expect::DoubleStart;
    let lines_before = cluster.lab.entries().len();
    let restarts_before = cluster.restarts().await;
    let began = Instant::now();
    if let Err(error) = inject(fault, &cluster).await {
        outcome.violations.push(format!("could not inject: {error}"));
    }
    let moved = match expect {
        Expect::Moves { .. } | Expect::Runs { .. } | Expect::DoubleStart => {
            cluster.wait_moved(MOVE_BUDGET).await
        }
        _ => cluster.wait_moved(Duration::ZERO).await,
    };
    outcome.recovery = moved.map(|at| at.saturating_duration_since(began));
    if let Err(error) = heal(fault, &cluster).await {
        outcome.violations.push(format!("could not heal: {error}"));
    }

    // After the fault: the cluster settles and every live node agrees.
    let settled = tokio::time::timeout(Duration::from_secs(20), async {
        while cluster.agreement().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if settled.is_err() {
        outcome.violations.push(format!(
            "20 s after the fault healed: {}",
            cluster.agreement().await.err().unwrap_or_default()
        ));
    }
    // Whatever should run must run (or, blocked, must not have moved) once things settled.
    let running = cluster.lab.running();
    match expect {
        Expect::Stays if running.get("web").map(String::as_str) != Some("alpha") => outcome
            .violations
            .push(format!("web should have stayed on alpha: {running:?}")),
        Expect::Moves { .. } if moved.is_none() => outcome.violations.push(format!(
            "web not started elsewhere within {MOVE_BUDGET:?}: {:?}",
            cluster.lab.events()
        )),
        Expect::Moves { .. } | Expect::Runs { .. } if !running.contains_key("web") => outcome
            .violations
            .push(format!("web runs nowhere after the fault: {running:?}")),
        Expect::Blocked if moved.is_some() => outcome
            .violations
            .push("web started elsewhere although its stop failed and nothing fenced alpha".into()),
        _ => {}
    }
    outcome.violations.extend(cluster.lab.double_starts());
    if fault.kind == Kind::LongStall {
        // No local heartbeat: alpha gives web up, and does not take its own stall for the
        // death of its peers.
        let entries = cluster.lab.entries();
        if !entries[lines_before.min(entries.len())..]
            .iter()
            .any(|(node, event, resource)| node == "alpha" && event == "stop" && resource == "web")
        {
            outcome
                .violations
                .push("alpha kept web after a stall its peers took for its death".into());
        }
        let deaths: Vec<String> = cluster
            .seen
            .lock()
            .expect("seen")
            .iter()
            .filter(|(at, observer, node, status)| {
                *at >= began && observer == "alpha" && node != "alpha" && status == "dead"
            })
            .map(|(_, _, node, _)| node.clone())
            .collect();
        if !deaths.is_empty() {
            outcome
                .violations
                .push(format!("alpha took its own stall for the death of {deaths:?}"));
        }
    }

    // Deaths the fault did not call for, and restarts.
    let victim = expect.victim();
    let seen = cluster.seen.lock().expect("seen").clone();
    for (at, observer, node, status) in seen {
        if at < began || status != "dead" || !cluster.nodes.iter().any(|n| n.node == node) {
            continue;
        }
        if Some(node.as_str()) == victim && Some(observer.as_str()) != victim {
            let after = at.saturating_duration_since(began);
            outcome.detection = Some(outcome.detection.map_or(after, |d| d.min(after)));
        } else if Some(node.as_str()) != victim && Some(observer.as_str()) != victim {
            outcome.false_deaths += 1;
        }
    }
    let entries = cluster.lab.entries();
    for (node, event, resource) in &entries[lines_before.min(entries.len())..] {
        let called_for = match expect {
            Expect::Stays | Expect::Blocked => false,
            _ => resource == "web" || Some(node.as_str()) == victim,
        };
        if !called_for && event == "start" {
            outcome.unnecessary_restarts += 1;
        }
    }
    if matches!(
        fault.kind,
        Kind::Flood | Kind::RexmitReplay | Kind::Duplicates | Kind::Replay | Kind::Loss(_) | Kind::Stall
    ) {
        let after = cluster.restarts().await;
        if after != restarts_before {
            outcome.violations.push(format!(
                "daemons restarted: before {restarts_before:?}, after {after:?}"
            ));
        }
    }

    // Stopping the cluster leaves nothing behind.
    let blocked = expect == Expect::Blocked;
    let Cluster {
        nodes,
        cgroups,
        lab,
        watchers,
        namespace,
        device,
        mount,
        watchdogs,
        ..
    } = cluster;
    for watcher in watchers {
        watcher.abort();
    }
    tokio::task::spawn_blocking(move || drop(nodes))
        .await
        .expect("stop nodes");
    for cgroup in &cgroups {
        let left = cgroup.procs();
        if !left.is_empty() {
            let names: Vec<String> = left
                .iter()
                .map(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                })
                .collect();
            outcome
                .violations
                .push(format!("left running after stop: {names:?}"));
        }
    }
    // A planned stop disarms every watchdog that did not reset its node.
    for (watchdog, name) in watchdogs.iter().zip(fault.shape.names()) {
        if watchdog.reset_at().is_none() && watchdog.armed() {
            outcome
                .violations
                .push(format!("{name}'s watchdog left armed by a planned stop"));
        }
        if watchdog.tickles() == 0 {
            outcome.violations.push(format!("{name}'s watchdog never fed"));
        }
    }
    drop(watchdogs);
    let still = lab.running();
    if !still.is_empty() && !blocked && outcome.violations.is_empty() {
        outcome
            .violations
            .push(format!("still running after the cluster stopped: {still:?}"));
    }
    drop((cgroups, namespace, device));
    drop(mount);
    outcome
}

/// Does the fault.
async fn inject(fault: Fault, cluster: &Cluster) -> Result<(), String> {
    let alpha = &cluster.nodes[0];
    let port = cluster.port.to_string();
    match fault.kind {
        Kind::Crash | Kind::StartFails => cluster.power_off("alpha").await,
        // The ledger keeps web running on alpha: only a power-off (fence, watchdog) ends it.
        Kind::StackKill => cluster.cgroups[0].kill().await,
        // (A SIGSTOP of hbcomm alone is no stall: the master kills a stopped child at once.)
        Kind::LongStall => {
            cluster.cgroups[0].freeze(true);
            // Past deadtime (1 s), short of the peers' wait for alpha's own stop (deadtime
            // plus the 2 s stop timeout): they have not started web when alpha wakes.
            tokio::time::sleep(DEADTIME * 2).await;
            cluster.cgroups[0].freeze(false);
        }
        Kind::Hang => cluster.cgroups[0].freeze(true),
        Kind::FenceLies => {
            std::fs::write(cluster.device.path().join("mode"), "lies").map_err(|e| e.to_string())?;
            cluster.cgroups[0].freeze(true);
        }
        Kind::FenceFails | Kind::FenceHangs => {
            let mode = if fault.kind == Kind::FenceFails {
                "fails"
            } else {
                "hangs"
            };
            std::fs::write(cluster.device.path().join("mode"), mode).map_err(|e| e.to_string())?;
            cluster.cgroups[0].freeze(true);
            // While the device cannot fence, web must start nowhere.
            if cluster.wait_moved(Duration::from_secs(4)).await.is_some() {
                return Err("web started elsewhere while alpha was not fenced".into());
            }
            std::fs::remove_file(cluster.device.path().join("mode")).map_err(|e| e.to_string())?;
        }
        Kind::Stall => {
            cluster.cgroups[0].freeze(true);
            tokio::time::sleep(DEADTIME * 2 / 5).await;
            cluster.cgroups[0].freeze(false);
            tokio::time::sleep(QUIET_WINDOW).await;
        }
        Kind::Partition => cluster.cut("alpha", true, true),
        Kind::AsymmetricPartition => cluster.cut("alpha", true, false),
        Kind::UnheardNode => cluster.cut("alpha", false, true),
        Kind::Loss(percent) => {
            cluster
                .namespace
                .drop_udp(cluster.port, f64::from(percent) / 100.0);
            tokio::time::sleep(QUIET_WINDOW * 2).await;
        }
        Kind::Duplicates | Kind::Replay => {
            // Duplicates: every packet again at once, for 4 s. Replays: 3 s of traffic sent
            // again 3 s later.
            let (delay_ms, seconds) = if fault.kind == Kind::Duplicates {
                ("0", "4")
            } else {
                ("3000", "3")
            };
            let sent = cluster
                .faultkit(&["replay".into(), port, delay_ms.into(), seconds.into()])
                .await;
            if sent.parse::<u64>().unwrap_or(0) == 0 {
                return Err("no packet sent again".into());
            }
        }
        Kind::RexmitReplay => {
            let sent = |counters: &std::collections::HashMap<String, u64>| {
                counters.get("sent").copied().unwrap_or(0)
            };
            let comm = hbapi::comm::CommProxy::new(&alpha.connection)
                .await
                .map_err(|e| e.to_string())?;
            // What alpha sends in 3 s of its own, then what it sends under the replay.
            let quiet_from = comm.counters().await.map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let replay_from = comm.counters().await.map_err(|e| e.to_string())?;
            let replay_began = Instant::now();
            let requests = cluster
                .faultkit(&[
                    "rexmit".into(),
                    port,
                    "3".into(),
                    "127.0.0.2".into(),
                    "127.0.0.1".into(),
                    "bravo".into(),
                    "alpha".into(),
                ])
                .await;
            let replay_to = comm.counters().await.map_err(|e| e.to_string())?;
            let lasted = replay_began.elapsed();
            let own = sent(&replay_from).saturating_sub(sent(&quiet_from));
            let under_replay = sent(&replay_to).saturating_sub(sent(&replay_from));
            // A sliding window of 64 answers per max_rexmit_delay allows at most 64 per
            // window begun while it lasted, plus alpha's own traffic in that time; each answer
            // is one packet per peer (the lab's links are ucast to every other node).
            let peers = cluster.nodes.len() as u64 - 1;
            let spacing = hbapi::config::defaults::MAX_REXMIT_DELAY;
            let windows = (lasted.as_millis() / spacing.as_millis()) as u64 + 1;
            let own_then = own * (lasted.as_millis() as u64) / 3000;
            let bound = own_then * 2 + 64 * windows * peers;
            eprintln!(
                "rexmit replay: alpha sent {under_replay} packets for {requests} requests in {lasted:.1?} (own traffic {own} in 3 s, bound {bound})"
            );
            if under_replay > bound {
                return Err(format!(
                    "alpha sent {under_replay} packets for {requests} replayed requests in {lasted:.1?} (its own traffic: {own} in 3 s; bound {bound})"
                ));
            }
        }
        Kind::Flood => {
            let mut args = vec!["flood".to_owned(), port, "3".into()];
            args.extend((1..=cluster.nodes.len()).map(|i| format!("127.0.0.{i}")));
            cluster.faultkit(&args).await;
        }
        Kind::KillDaemon(daemon) => {
            let old = alpha.child_pid(daemon).await;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(old as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            alpha
                .wait_child(daemon, |c| c.state == "running" && c.pid != old)
                .await;
            tokio::time::sleep(QUIET_WINDOW).await;
        }
        Kind::KillMaster => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(alpha.master_pid() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        Kind::CrashLoop => tokio::time::sleep(QUIET_WINDOW).await,
        Kind::MonitorFails => marker(&cluster.lab, "die.alpha.web"),
        Kind::StopFails | Kind::StopHangs => {
            let hook = if fault.kind == Kind::StopFails {
                "fail-stop.alpha.web"
            } else {
                "hang-stop.alpha.web"
            };
            marker(&cluster.lab, hook);
            cluster.move_web("bravo").await?;
            if !fault.shape.fencing() {
                tokio::time::sleep(QUIET_WINDOW + OP_TIMEOUT).await;
            }
        }
        Kind::StartHangs => cluster.move_web("bravo").await?,
        Kind::PingLoss => {
            // ipfail must have counted before the cut, or there is nothing to compare.
            tokio::time::sleep(Duration::from_secs(3)).await;
            cluster.namespace.cut_pings(Some("127.0.0.1"), true);
        }
        Kind::ClockJump(hours) => {
            jump_clock(i64::from(hours) * 3600)?;
            tokio::time::sleep(QUIET_WINDOW).await;
            jump_clock(-i64::from(hours) * 3600)?;
            tokio::time::sleep(QUIET_WINDOW / 3).await;
        }
        Kind::StateReadOnly => {
            let status = std::process::Command::new("mount")
                .args(["-o", "remount,ro"])
                .arg(&alpha.state_dir)
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("remount read-only failed".into());
            }
            cluster.move_web("bravo").await?;
        }
        Kind::StateFull => {
            let _ = std::process::Command::new("dd")
                .args(["if=/dev/zero", "bs=1M", "count=64"])
                .arg(format!("of={}", alpha.state_dir.join("filler").display()))
                .stderr(std::process::Stdio::null())
                .status();
            cluster.move_web("bravo").await?;
        }
        Kind::BusKilled => {
            let config = alpha.run_dir.join("dbus-daemon.conf");
            let output = std::process::Command::new("pgrep")
                .args(["-f", &format!("dbus-daemon --config-file={}", config.display())])
                .output()
                .map_err(|e| e.to_string())?;
            let pids = String::from_utf8_lossy(&output.stdout).to_string();
            let pid: i32 = pids
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or("no dbus-daemon")?;
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    Ok(())
}

/// Undoes the fault where it can be undone.
async fn heal(fault: Fault, cluster: &Cluster) -> Result<(), String> {
    match fault.kind {
        Kind::Hang | Kind::FenceFails | Kind::FenceHangs => cluster.cgroups[0].freeze(false),
        Kind::FenceLies => {
            cluster.cgroups[0].freeze(false);
            tokio::time::sleep(QUIET_WINDOW).await;
        }
        Kind::Partition | Kind::AsymmetricPartition | Kind::UnheardNode | Kind::Loss(_) | Kind::PingLoss => {
            cluster.heal()
        }
        Kind::StateReadOnly => {
            let status = std::process::Command::new("mount")
                .args(["-o", "remount,rw"])
                .arg(&cluster.nodes[0].state_dir)
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("remount read-write failed".into());
            }
        }
        Kind::StateFull => {
            std::fs::remove_file(cluster.nodes[0].state_dir.join("filler")).map_err(|e| e.to_string())?;
        }
        _ => {}
    }
    Ok(())
}

/// One line of the table: a fault's outcomes over its runs.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// The fault's name.
    pub fault: String,
    /// Which cluster.
    pub shape: String,
    /// Outcomes, one per run.
    pub outcomes: Vec<Outcome>,
}

fn spread(values: &[Duration]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let ms = |d: Duration| d.as_millis();
    format!(
        "{}/{}/{}",
        ms(sorted[0]),
        ms(sorted[sorted.len() / 2]),
        ms(sorted[sorted.len() - 1])
    )
}

/// The table: fault, runs, violations, detection and recovery (min/median/max ms), false
/// deaths, unnecessary restarts; then every violation.
pub fn table(rows: &[Row]) -> String {
    let mut text = format!(
        "{:<28} {:<17} {:>4} {:>10} {:>16} {:>16} {:>6} {:>8}\n",
        "fault", "cluster", "runs", "violations", "detection ms", "recovery ms", "false", "restarts"
    );
    text.push_str(&format!(
        "{:<28} {:<17} {:>4} {:>10} {:>16} {:>16} {:>6} {:>8}\n",
        "", "", "", "", "min/median/max", "min/median/max", "deaths", "unneeded"
    ));
    for row in rows {
        let violations: usize = row.outcomes.iter().map(|o| o.violations.len()).sum();
        let expected = row.outcomes.iter().any(|o| o.violations_expected);
        let detection: Vec<Duration> = row.outcomes.iter().filter_map(|o| o.detection).collect();
        let recovery: Vec<Duration> = row.outcomes.iter().filter_map(|o| o.recovery).collect();
        text.push_str(&format!(
            "{:<28} {:<17} {:>4} {:>10} {:>16} {:>16} {:>6} {:>8}\n",
            row.fault,
            row.shape,
            row.outcomes.len(),
            if expected {
                format!("{violations} (expected)")
            } else {
                violations.to_string()
            },
            spread(&detection),
            spread(&recovery),
            row.outcomes.iter().map(|o| o.false_deaths).sum::<u32>(),
            row.outcomes.iter().map(|o| o.unnecessary_restarts).sum::<u32>(),
        ));
    }
    for row in rows {
        for outcome in &row.outcomes {
            for violation in &outcome.violations {
                text.push_str(&format!("  {}: {violation}\n", row.fault));
            }
        }
    }
    text
}

/// Adds `outcome` to `fault`'s row.
pub fn record(rows: &mut Vec<Row>, fault: Fault, outcome: Outcome) {
    let name = fault.name();
    match rows.iter_mut().find(|r| r.fault == name) {
        Some(row) => row.outcomes.push(outcome),
        None => rows.push(Row {
            fault: name,
            shape: fault.shape.label().into(),
            outcomes: vec![outcome],
        }),
    }
}

/// Whether the rows hold up: no violation except where one was the expected result, and
/// there at least one (the checker caught it).
pub fn passed(rows: &[Row]) -> bool {
    rows.iter().all(|row| {
        row.outcomes.iter().all(|o| {
            if o.violations_expected {
                !o.violations.is_empty()
            } else {
                o.violations.is_empty()
            }
        })
    })
}

/// A small deterministic generator for the randomized run (re-playable by seed).
pub struct Seeded(u64);

impl Seeded {
    /// From a seed (0 is replaced: xorshift needs a bit set).
    pub fn new(seed: u64) -> Seeded {
        Seeded(seed.max(1))
    }

    /// The next number below `bound`.
    pub fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_unique() {
        let faults = default_faults();
        let names: BTreeSet<String> = faults.iter().map(Fault::name).collect();
        assert_eq!(names.len(), faults.len());
        assert!(names.contains("asymmetric-partition/quorum3"), "{names:?}");
        assert!(names.contains("loss-40%/quorum3"));
        assert!(names.contains("clock-1h/quorum3"));
    }

    /// A lying fence (the checker's own test) and a killed stack with neither fencing nor a
    /// watchdog (the gap the watchdog closes) are the only faults expected to break the rules.
    #[test]
    fn only_a_lying_fence_and_an_unguarded_stack_kill_are_expected_to_break_the_rules() {
        let expected: Vec<String> = default_faults()
            .into_iter()
            .filter(|f| f.expect() == Expect::DoubleStart)
            .map(|f| f.name())
            .collect();
        assert_eq!(expected, ["stack-kill/quorum3", "fence-lies/fencing3"]);
    }

    #[test]
    fn a_violation_fails_the_run_unless_it_was_the_point() {
        let fault = Fault {
            kind: Kind::Crash,
            shape: Shape::Quorum3,
        };
        let mut rows = Vec::new();
        record(&mut rows, fault, Outcome::default());
        assert!(passed(&rows));
        record(
            &mut rows,
            fault,
            Outcome {
                violations: vec!["x".into()],
                ..Outcome::default()
            },
        );
        assert!(!passed(&rows));
        assert!(table(&rows).contains("crash/quorum3: x"));
        let lies = Fault {
            kind: Kind::FenceLies,
            shape: Shape::Fencing3,
        };
        let mut rows = Vec::new();
        record(
            &mut rows,
            lies,
            Outcome {
                violations_expected: true,
                ..Outcome::default()
            },
        );
        assert!(
            !passed(&rows),
            "a lying fence the checker did not catch is a failure"
        );
    }
}
