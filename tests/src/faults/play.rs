//! Playing a fault and judging the cluster by the ledger and the buses.

use std::time::{Duration, Instant};

use super::*;

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
        corosync,
        ..
    } = cluster;
    for watcher in watchers {
        watcher.abort();
    }
    tokio::task::spawn_blocking(move || drop(nodes))
        .await
        .expect("stop nodes");
    // Corosync goes after the nodes, as its unit stops after heartbeat's.
    tokio::task::spawn_blocking(move || drop(corosync))
        .await
        .expect("stop Corosync");
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
pub(super) async fn inject(fault: Fault, cluster: &Cluster) -> Result<(), String> {
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
        Kind::KillDaemon("corosync") => {
            let corosync = cluster.corosync.as_ref().ok_or("no Corosync in this cluster")?;
            corosync.kill(0);
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
pub(super) async fn heal(fault: Fault, cluster: &Cluster) -> Result<(), String> {
    match fault.kind {
        Kind::Hang | Kind::FenceFails | Kind::FenceHangs => cluster.cgroups[0].freeze(false),
        Kind::FenceLies => {
            cluster.cgroups[0].freeze(false);
            tokio::time::sleep(QUIET_WINDOW).await;
        }
        Kind::KillDaemon("corosync") => {
            // Started again (in alpha's cgroup): alpha's hbcomm connects again and alpha
            // rejoins as after a partition.
            let index = cluster.index("alpha");
            let corosync = cluster.corosync.as_ref().ok_or("no Corosync in this cluster")?;
            corosync.start(index, &cluster.cgroups[index].wrapper());
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
