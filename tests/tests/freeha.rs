//! FreeHA's operations manual (RUNNING) on complete nodes: services from `starthasrv` /
//! `stophasrv` / `monitorhasrv`, the status file at `-l PATH`, `stophasrv` run by hand taken
//! as a failure, the ERRORED flag and its SIGUSR2, `-m`, and a restart within the oops window —
//! all with real signals and judged from the ledger the scripts keep.

use std::time::Duration;

use hb_lab::groups::{changes, wait_group, wait_status, wait_status_file};
use hb_lab::ledger::Lab;
use hb_lab::{start_cluster, Node};
use hbapi::crmd::CrmdProxy;
use nix::sys::signal::Signal;

fn signal(node: &Node, signal: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(node.master_pid() as i32), signal).unwrap();
}

#[tokio::test]
async fn stophasrv_by_hand_is_a_failure_and_sigusr2_clears_only_the_error_flag() {
    let lab = Lab::new();
    let status_dir = tempfile::tempdir().unwrap();
    let status_file = status_dir.path().join("freehad");
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        let b = if b.name() == "alpha" {
            b.master_arg("-l").master_arg(status_file.display().to_string())
        } else {
            b
        };
        lab.configure_freeha(b, Duration::from_secs(30), Some(Duration::from_millis(300)))
    })
    .await;
    // RUNNING: the alphabetically first node runs the services; `-l` puts the status there.
    wait_status_file(&status_file, &["alpha ACTIVE hasrv", "bravo IDLE"]).await;
    // The status file says ACTIVE once the start is ordered; the service runs once its
    // script has (a stophasrv by hand before that finds nothing to stop).
    lab.wait_for("alpha", "start").await;
    assert!(
        !nodes[0].run_dir.join(hbapi::names::run_files::STATUS).exists(),
        "-l PATH replaces the status file in the run directory"
    );

    // "Use the stophasrv script to do a clean shutdown of services on node 1. Since the demon
    // itself did not initiate the shutdown, it will interpret that as a failure of services.
    // A secondary node will then shortly take over services."
    let mut at_bravo = changes(&nodes[1]).await;
    let by_hand = std::process::Command::new(nodes[0].path("freeha/stophasrv"))
        .status()
        .unwrap();
    assert!(by_hand.success());
    wait_group(&mut at_bravo, "hasrv", "started").await;
    wait_status_file(&status_file, &["alpha ERRORED", "bravo ACTIVE hasrv"]).await;
    wait_status(&nodes[1], &["alpha ERRORED", "bravo ACTIVE hasrv"]).await;

    // "If you just wish to clear the error flag, kill -USR2": alpha may run services again,
    // and nothing moves — the services "safely remain on that other node".
    signal(&nodes[0], Signal::SIGUSR2);
    // alpha decides (it is the decision maker) in the pass that writes its status file.
    wait_status_file(&status_file, &["alpha IDLE", "bravo ACTIVE hasrv"]).await;
    let history = CrmdProxy::new(&nodes[0].connection)
        .await
        .unwrap()
        .history()
        .await
        .unwrap();
    assert!(
        !history.iter().any(|d| d.trigger.starts_with("clear error")),
        "SIGUSR2 moved the service: {history:?}"
    );
    wait_status(&nodes[1], &["alpha IDLE", "bravo ACTIVE hasrv"]).await;

    // And alpha really may run it again: when bravo stops its services (SIGHUP), they come
    // back to alpha.
    let mut at_alpha = changes(&nodes[0]).await;
    signal(&nodes[1], Signal::SIGHUP);
    wait_group(&mut at_alpha, "hasrv", "started").await;
    lab.assert_never_twice(&[]);
    assert_eq!(
        lab.events(),
        [
            "alpha start",
            "alpha stop",
            "bravo start",
            "bravo stop",
            "alpha start"
        ]
    );
}

#[tokio::test]
async fn minus_m_forces_the_services_onto_its_node_stopping_them_elsewhere_first() {
    let lab = Lab::new();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        let b = if b.name() == "bravo" {
            b.master_arg("-m")
        } else {
            b
        };
        lab.configure_freeha(b, Duration::from_secs(30), None)
    })
    .await;
    // RUNNING: "To force starting services when starting up freehad, use the -m flag."
    // bravo is not the alphabetically first node, yet it ends up running them.
    wait_status(&nodes[0], &["alpha IDLE", "bravo ACTIVE hasrv"]).await;
    lab.wait_for("bravo", "start").await;
    // FreeHA would not look at other nodes; here the decision maker stops them there first.
    lab.assert_never_twice(&[]);
    assert_eq!(
        lab.running(),
        [("hasrv".to_owned(), "bravo".to_owned())].into(),
        "{:?}",
        lab.events()
    );
    let history = CrmdProxy::new(&nodes[0].connection)
        .await
        .unwrap()
        .history()
        .await
        .unwrap();
    assert!(
        history.iter().any(|d| d.decision == "start hasrv bravo"),
        "{history:?}"
    );
}
