//! A fresh cluster for one fault: nodes in cgroups in a namespace, watched as the fault plays.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hbapi::comm::CommProxy;
use hbapi::crmd::CrmdProxy;

use crate::ledger::Lab;
use crate::netns::Namespace;
use crate::{bin, start_cluster, BusKind, Node};

use super::*;

/// A node status change one node reported: (when, observer, node, new status).
pub(super) type Seen = (Instant, String, String, String);

/// A cluster for one fault.
pub struct Cluster {
    /// Its nodes, in `Shape::names` order.
    pub nodes: Vec<Node>,
    pub(super) cgroups: Vec<Cgroup>,
    /// Its namespace.
    pub namespace: Namespace,
    /// Its ledger.
    pub lab: Lab,
    pub(super) device: tempfile::TempDir,
    pub(super) mount: CgroupMount,
    /// The lab's watchdog of each node (Shape::Watchdog3), in node order.
    pub(super) watchdogs: Vec<crate::watchdog::StandIn>,
    pub(super) seen: Arc<Mutex<Vec<Seen>>>,
    /// The Corosync instances (Shape::Corosync3), one per node, in its cgroup.
    pub(super) corosync: Option<crate::corosync::CorosyncLab>,
    /// Ledger lines with when the harness first saw them.
    pub(super) ledger_seen: Arc<Mutex<Vec<(Instant, String)>>>,
    pub(super) watchers: Vec<tokio::task::JoinHandle<()>>,
    pub(super) port: u16,
}

impl Cluster {
    /// Starts the cluster `fault` is played on, with what the fault needs set up before.
    pub(super) async fn start(fault: Fault) -> Cluster {
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
        let corosync = fault.shape.corosync().then(|| {
            let corosync = crate::corosync::CorosyncLab::new(names, &format!("f{}", next_tag()));
            for (index, cgroup) in cgroups.iter().enumerate() {
                corosync.start(index, &cgroup.wrapper());
            }
            for index in 0..names.len() {
                corosync
                    .wait_quorate(index, Duration::from_secs(30))
                    .expect("Corosync quorate");
            }
            corosync
        });
        let index = std::cell::Cell::new(0usize);
        let script = ledger_agent(&lab);
        let nodes = start_cluster(names, |builder| {
            let me = index.get();
            index.set(me + 1);
            let mut wrapper = cgroups[me].wrapper();
            match &corosync {
                // Each node beside its Corosync, in that instance's network namespace.
                Some(corosync) => wrapper.extend(corosync.wrapper(me)),
                None => wrapper.extend(namespace.wrapper().iter().map(|s| s.to_string())),
            }
            let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
            let mut builder = builder
                .wrapper(&wrapper)
                .haresources("alpha Ledger::web\nbravo Ledger::db\n")
                .resource_script("Ledger", &script)
                .resource_ops("Ledger::web", ops)
                .resource_ops("Ledger::db", ops);
            if corosync.is_some() {
                builder = builder.links(Vec::new()).ha_cf("engine corosync");
            }
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
            corosync,
            ledger_seen: Default::default(),
            watchers: Vec::new(),
            port,
        };
        cluster.watch().await;
        cluster
    }

    /// Records every node status change each node reports, and every ledger line when it
    /// appears.
    pub(super) async fn watch(&mut self) {
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

    pub(super) fn index(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.node == name).expect("node")
    }

    /// Waits until web runs on alpha, db on bravo (when there is a bravo with it), and every
    /// node sees every other active.
    pub(super) async fn steady(&self) -> Result<(), String> {
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
    pub(super) async fn agreement(&self) -> Result<(), String> {
        let mut views = Vec::new();
        for (node, cgroup) in self.nodes.iter().zip(&self.cgroups) {
            // A node of which nothing is left but Corosync (its stack was killed) is no
            // member either.
            let stack_left = cgroup.procs().iter().any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() != "corosync")
            });
            if !stack_left {
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
    pub(super) async fn wait_moved(&self, within: Duration) -> Option<Instant> {
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
    pub(super) async fn power_off(&self, name: &str) {
        let index = self.index(name);
        self.cgroups[index].kill().await;
        append(&self.lab.ledger, &format!("{name} off all"));
    }

    /// Drops UDP heartbeat traffic between `name` and every other node: into `name`, out of
    /// it, or both ways.
    pub(super) fn cut(&self, name: &str, into: bool, out_of: bool) {
        if let Some(corosync) = &self.corosync {
            corosync.isolate(self.index(name), into, out_of, true);
            return;
        }
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
    pub(super) fn heal(&self) {
        if let Some(corosync) = &self.corosync {
            corosync.heal();
        }
        self.namespace.exec(&["iptables", "-F", "INPUT"]);
    }

    /// Runs hb-faultkit inside the namespace; returns what it printed.
    pub(super) async fn faultkit(&self, args: &[String]) -> String {
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
    pub(super) async fn restarts(&self) -> Vec<(String, String, u32)> {
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

    pub(super) async fn move_web(&self, to: &str) -> Result<(), String> {
        let crmd = CrmdProxy::new(&self.nodes[0].connection)
            .await
            .map_err(|e| e.to_string())?;
        crmd.move_group("Ledger::web", to)
            .await
            .map_err(|e| format!("MoveGroup: {e}"))
    }
}

pub(super) fn next_tag() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub(super) fn marker(lab: &Lab, name: &str) {
    std::fs::write(lab.state.join(name), "").expect("marker");
}

pub(super) fn append(path: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{line}");
    }
}

/// Moves the wall clock (CLOCK_REALTIME) by `seconds`.
pub(super) fn jump_clock(seconds: i64) -> Result<(), String> {
    use nix::time::{clock_gettime, clock_settime, ClockId};
    let now = clock_gettime(ClockId::CLOCK_REALTIME).map_err(|e| e.to_string())?;
    let moved = nix::sys::time::TimeSpec::new(now.tv_sec() + seconds, now.tv_nsec());
    clock_settime(ClockId::CLOCK_REALTIME, moved)
        .map_err(|e| format!("clock_settime (needs CAP_SYS_TIME): {e}"))
}
