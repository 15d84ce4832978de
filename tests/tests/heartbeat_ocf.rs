//! Heartbeat's OCF wrapper form in haresources, `alpha OCF::Dummy::d1` with the instance file
//! `conf/OCF/Dummy/d1`, run with resource-agents' own Dummy agent (Debian's
//! resource-agents, installed by scripts/test): start, hb_standby, kill -9 of the holder.
//! Dummy's state file (a parameter from the instance file, one per node) says where it runs.

use hb_lab::groups::{changes, wait_group, wait_status};
use hb_lab::start_cluster;

const GROUP: &str = "OCF::Dummy::d1";

#[tokio::test]
async fn an_ocf_agent_named_heartbeats_way_starts_moves_and_fails_over() {
    assert!(
        std::path::Path::new("/usr/lib/ocf/resource.d/heartbeat/Dummy").is_file(),
        "resource-agents' Dummy is missing: install resource-agents (scripts/test does)"
    );
    let states = tempfile::tempdir().unwrap();
    let instance = format!(
        "# Heartbeat's instance file: sourced by its OCF wrapper\nOCF_RESKEY_state={}/{{node}}.state\n",
        states.path().display()
    );
    let running = |node: &str| states.path().join(format!("{node}.state")).exists();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        b.haresources(&format!("alpha {GROUP}\n"))
            .config_file("conf/OCF/Dummy/d1", &instance)
    })
    .await;
    wait_status(&nodes[0], &[&format!("alpha ACTIVE {GROUP}"), "bravo IDLE"]).await;
    let mut at_bravo = changes(&nodes[1]).await;
    // crmd's status may say ACTIVE while the start is still running: wait for Dummy's file.
    let started = tokio::time::timeout(hb_lab::PATIENCE, async {
        while !running("alpha") {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(started.is_ok() && !running("bravo"));

    assert_eq!(nodes[0].tool("hb_standby", &[]).await.0, 0);
    wait_group(&mut at_bravo, GROUP, "started").await;
    assert!(!running("alpha") && running("bravo"));

    let mut at_alpha = changes(&nodes[0]).await;
    nodes[1].crash().await;
    wait_group(&mut at_alpha, GROUP, "started").await;
    assert!(running("alpha"));
    let resources = hbapi::lrmd::LrmdProxy::new(&nodes[0].connection)
        .await
        .unwrap()
        .resources()
        .await
        .unwrap();
    let d1 = resources
        .iter()
        .find(|r| r.resource == GROUP)
        .expect("d1 known to lrmd");
    assert_eq!(
        (
            d1.agent.class.as_str(),
            d1.agent.provider.as_str(),
            d1.agent.agent.as_str()
        ),
        ("ocf", "heartbeat", "Dummy"),
        "{d1:?}"
    );
}
