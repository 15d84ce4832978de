//! The master with real processes on a real bus (embedded busd and dbus-daemon).

use hb_lab::{ledger, processes_in_group, starts, wait_name_owner, BusKind, NodeBuilder};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const CHILD_NAME: &str = "org.heartbeatrs.test.Child";

async fn respawned_child_comes_back(bus: BusKind) {
    let ledger_path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let node = NodeBuilder::new("alpha")
        .bus(bus)
        .test_child(&format!("--name {CHILD_NAME} --ledger {}", ledger_path.display()))
        .start()
        .await;
    let first = node.wait_child("hb-testchild", |c| c.state == "running").await;
    assert_eq!(first.restarts, 0);
    assert!(!first.core);
    wait_name_owner(&node.connection, CHILD_NAME, first.pid).await;

    kill(Pid::from_raw(first.pid as i32), Signal::SIGKILL).unwrap();
    let second = node
        .wait_child("hb-testchild", |c| c.state == "running" && c.restarts == 1)
        .await;
    assert_ne!(second.pid, first.pid);
    assert_eq!(second.last_exit, "signal SIGKILL");

    // The new process owns the bus name again.
    wait_name_owner(&node.connection, CHILD_NAME, second.pid).await;
    let starts: Vec<u32> = ledger(&ledger_path)
        .into_iter()
        .filter(|(e, _)| e == "start")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(starts, [first.pid, second.pid]);
}

#[tokio::test]
async fn respawned_child_comes_back_on_busd() {
    respawned_child_comes_back(BusKind::Busd).await;
}

#[tokio::test]
async fn respawned_child_comes_back_on_dbus_daemon() {
    respawned_child_comes_back(BusKind::DbusDaemon).await;
}

#[tokio::test]
async fn exit_100_is_not_respawned() {
    let ledger_path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let node = NodeBuilder::new("alpha")
        .test_child(&format!(
            "--exit-after-ms 20 --code 100 --ledger {}",
            ledger_path.display()
        ))
        .start()
        .await;
    let child = node.wait_child("hb-testchild", |c| c.state == "exited").await;
    assert_eq!(child.restarts, 0);
    assert_eq!(child.last_exit, "exit 100");
    assert_eq!(child.pid, 0);
    // Asked again later, the master still has it down.
    let children = node.master().await.list_children().await.unwrap();
    assert_eq!(children[0].state, "exited");
    assert_eq!(starts(&ledger_path), 1);
}

#[tokio::test]
async fn crash_loop_gives_up_and_says_so() {
    let ledger_path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let node = NodeBuilder::new("alpha")
        .master_arg("--respawn-base-delay=1ms")
        .master_arg("--respawn-max-delay=4ms")
        .test_child(&format!(
            "--exit-after-ms 1 --code 1 --ledger {}",
            ledger_path.display()
        ))
        .start()
        .await;
    let child = node.wait_child("hb-testchild", |c| c.state == "gave-up").await;
    // Heartbeat's rule: more than 10 deaths, each soon after its start.
    assert_eq!(child.restarts, 10);
    assert_eq!(child.last_exit, "exit 1");
    assert_eq!(starts(&ledger_path), 11);

    let (code, stdout, _) = node.heartbeat_cli(&["-s"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("hb-testchild gave-up"), "{stdout}");
    assert!(stdout.contains("gave up: it died too often"), "{stdout}");

    // An operator can clear the give-up.
    node.master().await.restart_child("hb-testchild").await.unwrap();
    node.wait_child("hb-testchild", |c| c.state != "gave-up").await;
    let error = node
        .master()
        .await
        .restart_child("no-such-child")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no child named"), "{error}");
}

#[tokio::test]
async fn sigterm_stops_everything_in_reverse_order_with_no_orphan() {
    let ledger_path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let first_path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let testchild = hb_lab::bin("hb-testchild");
    // Two copies of the program get distinct names (hb-testchild, hb-testchild-2).
    let mut node = NodeBuilder::new("alpha")
        .master_arg("--stop-timeout=300ms")
        .test_child(&format!(
            "--name {CHILD_NAME}.First --ledger {} --fork-grandchild",
            first_path.display()
        ))
        .ha_cf(format!(
            "respawn root {} --name {CHILD_NAME}.Second --ledger {} --ignore-term --fork-grandchild",
            testchild.display(),
            ledger_path.display()
        ))
        .start()
        .await;
    let first = node.wait_child("hb-testchild", |c| c.state == "running").await;
    let second = node.wait_child("hb-testchild-2", |c| c.state == "running").await;
    // Owning their names, they have forked their grandchildren and handle SIGTERM.
    wait_name_owner(&node.connection, &format!("{CHILD_NAME}.First"), first.pid).await;
    wait_name_owner(&node.connection, &format!("{CHILD_NAME}.Second"), second.pid).await;
    assert!(
        processes_in_group(first.pid).len() >= 2,
        "the grandchild shares its parent's group"
    );

    let status = node.terminate().await;
    assert!(status.success(), "{status:?}");
    // The second child ignored SIGTERM: it was killed after the stop timeout; the first, started
    // earlier, was stopped only after it.
    let second_events = ledger(&ledger_path);
    assert!(
        second_events.iter().any(|(e, _)| e == "ignored-term"),
        "{second_events:?}"
    );
    let first_events = ledger(&first_path);
    assert!(first_events.iter().any(|(e, _)| e == "stop"), "{first_events:?}");
    let ignored_at = std::fs::metadata(&ledger_path).unwrap().modified().unwrap();
    let stopped_at = std::fs::metadata(&first_path).unwrap().modified().unwrap();
    assert!(
        ignored_at <= stopped_at,
        "children must stop in reverse start order"
    );
    for pid in [first.pid, second.pid] {
        assert_eq!(
            processes_in_group(pid),
            Vec::<u32>::new(),
            "process group {pid} left behind"
        );
    }
    assert!(!node.run_dir.join("heartbeat.pid").exists());
    assert!(
        !node.run_dir.join("bus.sock").exists(),
        "the private bus socket is removed"
    );
}

#[tokio::test]
async fn shutdown_over_the_bus_and_status_codes() {
    let mut node = NodeBuilder::new("alpha").bus(BusKind::DbusDaemon).start().await;
    let (code, stdout, _) = node.heartbeat_cli(&["-s"]).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.starts_with(&format!(
            "heartbeat OK [pid {} et al] is running on alpha [alpha]...",
            node.master_pid()
        )),
        "{stdout}"
    );
    let master = node.master().await;
    assert_eq!(master.node_name().await.unwrap(), "alpha");
    assert_eq!(master.pid().await.unwrap(), node.master_pid());
    master.shutdown().await.unwrap();
    assert!(node.wait_exit().await.success());
    let (code, stdout, _) = node.heartbeat_cli(&["-s"]).await;
    assert_eq!((code, stdout.as_str()), (3, "heartbeat is stopped. No process\n"));
}

#[tokio::test]
async fn heartbeat_k_stops_the_running_instance() {
    let mut node = NodeBuilder::new("alpha").test_child("").start().await;
    node.wait_child("hb-testchild", |c| c.state == "running").await;
    let (code, _, stderr) = node.heartbeat_cli(&["-k"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(node.wait_exit().await.success());
}

#[tokio::test]
async fn sighup_rereads_respawn_lines() {
    let node = NodeBuilder::new("alpha").start().await;
    assert!(node.master().await.list_children().await.unwrap().is_empty());
    let mut ha_cf = std::fs::read_to_string(node.config_dir.join("ha.cf")).unwrap();
    ha_cf.push_str(&format!(
        "respawn root {}\n",
        hb_lab::bin("hb-testchild").display()
    ));
    std::fs::write(node.config_dir.join("ha.cf"), &ha_cf).unwrap();
    kill(Pid::from_raw(node.master_pid() as i32), Signal::SIGHUP).unwrap();
    node.wait_child("hb-testchild", |c| c.state == "running").await;

    // A broken configuration is refused and the running one kept.
    std::fs::write(node.config_dir.join("ha.cf"), format!("{ha_cf}keepalive 2min\n")).unwrap();
    let error = node.master().await.reload().await.unwrap_err().to_string();
    assert!(
        error.contains("ha.cf:") && error.contains("keepalive: unknown time unit"),
        "{error}"
    );
    assert_eq!(
        node.master().await.list_children().await.unwrap()[0].state,
        "running"
    );
}

#[tokio::test]
async fn unprivileged_callers_are_refused_operator_methods() {
    let node = NodeBuilder::new("alpha").bus(BusKind::DbusDaemon).start().await;
    let master = [
        "org.heartbeatrs.Heartbeat",
        "/org/heartbeatrs/Heartbeat",
        "org.heartbeatrs.Heartbeat1",
    ];
    let (ok, stderr) = node.call_as_nobody(&[&master[..], &["Shutdown"]].concat()).await;
    assert!(!ok);
    assert!(stderr.contains("may not do this"), "{stderr}");
    // Reading is allowed to anyone.
    let (ok, stderr) = node
        .call_as_nobody(&[&master[..], &["ListChildren"]].concat())
        .await;
    assert!(ok, "{stderr}");
    assert_eq!(
        node.master().await.node_name().await.unwrap(),
        "alpha",
        "still running"
    );
}

#[tokio::test]
async fn ha_cf_logfile_and_debugfile_receive_every_daemons_messages() {
    let dir = tempfile::tempdir().unwrap();
    let logfile = dir.path().join("ha-log");
    let debugfile = dir.path().join("ha-debug");
    let nodes = hb_lab::start_cluster(&["alpha", "bravo"], |b| {
        b.ha_cf(format!("logfile {}", logfile.display()))
            .ha_cf(format!("debugfile {}", debugfile.display()))
    })
    .await;
    hb_lab::wait_peer_status(&nodes[0], "bravo", "active").await;
    let log = std::fs::read_to_string(&logfile).unwrap();
    for line in [
        "heartbeat started",
        "hbcomm started",
        "lrmd started",
        "stonithd started",
        "crmd started",
    ] {
        assert!(log.contains(line), "{line:?} missing from the logfile:\n{log}");
    }
    assert!(
        !log.contains("DEBUG"),
        "debug messages belong in the debugfile only:\n{log}"
    );
    let debug = std::fs::read_to_string(&debugfile).unwrap();
    assert!(debug.contains("hbcomm started"), "{debug}");
}

#[tokio::test]
async fn sigusr1_raises_the_debug_level_of_every_daemon_and_sighup_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let logfile = dir.path().join("ha-log");
    let nodes = hb_lab::start_cluster(&["alpha", "bravo"], |b| {
        b.ha_cf(format!("logfile {}", logfile.display()))
    })
    .await;
    hb_lab::wait_peer_status(&nodes[0], "bravo", "active").await;
    let log = || std::fs::read_to_string(&logfile).unwrap_or_default();
    let wait_lines = |text: &'static str, count: usize| {
        let log = &log;
        async move {
            let seen = tokio::time::timeout(hb_lab::PATIENCE, async {
                while log().matches(text).count() < count {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            })
            .await;
            assert!(seen.is_ok(), "never {count} × {text:?}:\n{}", log());
        }
    };
    // A packet nobody signed: hbcomm drops it and says so at debug level only.
    let forged = async || {
        let socket = tokio::net::UdpSocket::bind("127.0.0.9:0").await.unwrap();
        socket
            .send_to(b"###\n5:(0)t=x,%%%\n", ("127.0.0.1", nodes[0].udp_port()))
            .await
            .unwrap();
    };
    forged().await;
    let master = nix::unistd::Pid::from_raw(nodes[0].master_pid() as i32);

    nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGUSR1).unwrap();
    // The master and its four daemons.
    wait_lines("debug level now 1 (debug)", 5).await;
    assert!(
        !log().contains("packet dropped"),
        "dropped before the level rose:\n{}",
        log()
    );
    forged().await;
    wait_lines("packet dropped", 1).await;

    nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_lines("debug level now 0 (info)", 5).await;
    let dropped = log().matches("packet dropped").count();
    forged().await;
    // The next message after the packet proves it was handled: ask hbcomm for its counters.
    let comm = hbapi::comm::CommProxy::new(&nodes[0].connection).await.unwrap();
    let counted = tokio::time::timeout(hb_lab::PATIENCE, async {
        loop {
            let counters = comm.counters().await.unwrap();
            let dropped: u64 = counters
                .iter()
                .filter(|(k, _)| k.starts_with("dropped_"))
                .map(|(_, v)| v)
                .sum();
            if dropped >= 3 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(counted.is_ok(), "{:?}", comm.counters().await);
    assert_eq!(log().matches("packet dropped").count(), dropped, "{}", log());
}

/// Waits until `path`'s ledger has an `event` line.
async fn wait_ledger(path: &std::path::Path, event: &str) {
    let seen = tokio::time::timeout(hb_lab::PATIENCE, async {
        while !ledger(path).iter().any(|(e, _)| e == event) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        seen.is_ok(),
        "never {event:?} in {}: {:?}",
        path.display(),
        ledger(path)
    );
}

/// Supervisor issue, item 1: a crash-looping respawn line whose back-off ends while another
/// child is being stopped. The stop used to start it again with no process to wait for, and
/// hang for ever.
#[tokio::test]
async fn a_stop_returns_when_a_crash_looping_child_is_in_back_off() {
    let looping = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let stubborn = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let mut node = NodeBuilder::new("alpha")
        .master_arg("--respawn-base-delay=200ms")
        .master_arg("--respawn-max-delay=200ms")
        .master_arg("--stop-timeout=1s")
        .test_child(&format!(
            "--exit-after-ms 1 --code 1 --ledger {}",
            looping.display()
        ))
        // Stopped first (last started), it ignores SIGTERM: the stop waits a second on it.
        .test_child(&format!("--ledger {} --ignore-term", stubborn.display()))
        .start()
        .await;
    node.wait_child("hb-testchild", |c| c.state == "backoff").await;
    let stubborn_child = node.wait_child("hb-testchild-2", |c| c.state == "running").await;
    let status = node.terminate().await;
    assert!(status.success(), "{status:?}");
    let starts_at_stop = hb_lab::starts(&looping);
    assert!(ledger(&stubborn).iter().any(|(e, _)| e == "ignored-term"));
    assert_eq!(processes_in_group(stubborn_child.pid), Vec::<u32>::new());
    // Nothing of the crash-looping child runs or starts after the master is gone.
    assert_eq!(hb_lab::starts(&looping), starts_at_stop);
}

/// Item 2: a child killed while another one is being stopped is not started again, and the
/// stop does not wait for it.
#[tokio::test]
async fn a_child_that_dies_during_the_stop_is_not_waited_for() {
    let victim = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let stubborn = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let mut node = NodeBuilder::new("alpha")
        .master_arg("--stop-timeout=2s")
        .test_child(&format!("--ledger {}", victim.display()))
        .test_child(&format!("--ledger {} --ignore-term", stubborn.display()))
        .start()
        .await;
    let first = node.wait_child("hb-testchild", |c| c.state == "running").await;
    node.wait_child("hb-testchild-2", |c| c.state == "running").await;
    kill(Pid::from_raw(node.master_pid() as i32), Signal::SIGTERM).unwrap();
    // The stubborn child has the SIGTERM (and two seconds before its SIGKILL): now the other
    // one dies behind the master's back.
    wait_ledger(&stubborn, "ignored-term").await;
    kill(Pid::from_raw(first.pid as i32), Signal::SIGKILL).unwrap();
    let status = node.wait_exit().await;
    assert!(status.success(), "{status:?}");
    assert_eq!(
        hb_lab::starts(&victim),
        1,
        "restarted during the stop: {:?}",
        ledger(&victim)
    );
}

/// Item 3: start-up is not a blind spot. A core daemon that never takes its bus name keeps the
/// node from being ready, yet a respawn child killed meanwhile comes back at once, and SIGTERM
/// stops the node without waiting for the slow daemon.
#[tokio::test]
async fn during_start_up_deaths_are_respawned_and_sigterm_is_obeyed() {
    let child = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let daemons = tempfile::tempdir().unwrap();
    // A "crmd" that never takes its name: the master waits for it (10 s) before READY=1.
    let slow = daemons.path().join("crmd");
    std::fs::write(&slow, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut builder = NodeBuilder::new("alpha")
        .master_arg("--daemon-dir")
        .master_arg(daemons.path().display().to_string())
        .test_child(&format!("--ledger {}", child.display()));
    builder = builder.core_daemons();
    let mut master = builder.spawn_unready().await;
    wait_ledger(&child, "start").await;
    let first = hb_lab::ledger(&child)[0].1;
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    let restarted = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while hb_lab::starts(&child) < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        restarted.is_ok(),
        "not respawned during start-up: {:?}",
        ledger(&child)
    );
    let asked = std::time::Instant::now();
    let status = master.terminate().await;
    assert!(status.success(), "{status:?}");
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(5),
        "SIGTERM waited for the start-up: {:?}",
        asked.elapsed()
    );
}

/// A configuration directory for node alpha whose only link is a ucast line naming the
/// address alpha binds: every other check passes.
fn only_own_address(dir: &std::path::Path) {
    let builder = NodeBuilder::new("alpha").links(vec!["ucast lo 127.0.0.9".into()]);
    std::fs::write(dir.join("ha.cf"), builder.ha_cf_text()).unwrap();
    std::fs::write(dir.join("haresources"), "").unwrap();
    std::fs::write(dir.join("authkeys"), "auth 1\n1 sha256 key\n").unwrap();
    std::fs::set_permissions(
        dir.join("authkeys"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
}

/// Item 4: what hbcomm would refuse, `--check` refuses, and a start stops at once with the
/// reason on stderr and status 6 — it never crash-loops hbcomm.
#[tokio::test]
async fn a_configuration_hbcomm_refuses_is_refused_by_check_and_at_start() {
    let root = tempfile::tempdir().unwrap();
    let config_dir = root.path().join("ha.d");
    std::fs::create_dir_all(&config_dir).unwrap();
    only_own_address(&config_dir);
    let run = |args: &[&str]| {
        std::process::Command::new(hb_lab::bin("heartbeat"))
            .arg("--config-dir")
            .arg(&config_dir)
            .args(["--node", "alpha", "--bus", "private"])
            .arg("--run-dir")
            .arg(root.path().join("run"))
            .arg("--state-dir")
            .arg(root.path().join("state"))
            .args(args)
            .env("HB_BIND_ADDRESS", "127.0.0.9")
            .env("HB_LOG_STDERR", "1")
            .output()
            .unwrap()
    };
    let checked = run(&["--check"]);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("no heartbeat link is left"), "{stderr}");
    assert!(stderr.contains("127.0.0.9"), "{stderr}");

    let started = run(&[]);
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert_eq!(started.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("no heartbeat link is left"), "{stderr}");
    assert!(!stderr.contains("started"), "nothing may start: {stderr}");
}

/// Item 4, for what only a daemon can find at run time: a core daemon that exits 100 (it
/// refused its configuration or environment) stops the node with a failure status instead of
/// leaving it half up.
#[tokio::test]
async fn a_core_daemon_that_refuses_to_run_stops_the_node() {
    let daemons = tempfile::tempdir().unwrap();
    let refusing = daemons.path().join("lrmd");
    std::fs::write(
        &refusing,
        "#!/bin/sh\necho 'lrmd: state directory unusable' >&2\nexit 100\n",
    )
    .unwrap();
    std::fs::set_permissions(&refusing, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut master = NodeBuilder::new("alpha")
        .master_arg("--daemon-dir")
        .master_arg(daemons.path().display().to_string())
        .core_daemons()
        .spawn_unready()
        .await;
    let status = master.wait_exit().await;
    assert_eq!(status.code(), Some(6), "{status:?}");
}

/// Item 8: a pid file left by a master that died, naming a live unrelated process. `-s` says
/// dead-with-pid-file, `-k` succeeds (stopping a stopped service) without signalling that
/// process, and `-r` says 7 (not running). (A master holding the lock is `-s`'s running case,
/// in every other test.)
#[tokio::test]
async fn a_stale_pid_file_naming_a_live_process_is_never_trusted() {
    let mut bystander = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let node = NodeBuilder::new("alpha").start().await;
    let (run_dir, config_dir) = (node.run_dir.clone(), node.config_dir.clone());
    drop(node);
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(run_dir.join("heartbeat.pid"), format!("{}\n", bystander.id())).unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(hb_lab::bin("heartbeat"))
            .arg("--run-dir")
            .arg(&run_dir)
            .arg("--config-dir")
            .arg(&config_dir)
            .args(["--node", "alpha"])
            .args(args)
            .output()
            .unwrap()
    };
    let status = cli(&["-s"]);
    assert_eq!(status.status.code(), Some(1), "{status:?}");
    let stop = cli(&["-k"]);
    assert_eq!(stop.status.code(), Some(0), "{stop:?}");
    assert!(
        String::from_utf8_lossy(&stop.stderr).contains("holds no lock"),
        "{stop:?}"
    );
    assert_eq!(cli(&["-r"]).status.code(), Some(7));
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander was signalled"
    );
    bystander.kill().unwrap();
    let _ = bystander.wait();
}
