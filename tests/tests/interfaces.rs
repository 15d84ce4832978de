//! The interfaces each daemon serves must match the XML checked in under
//! `hbapi/interfaces/`, so that the bus API cannot drift silently. After an intended change,
//! regenerate with `HB_UPDATE_INTERFACES=1 cargo test -p hb-lab --test interfaces`.

use std::path::PathBuf;

use hb_lab::NodeBuilder;

fn interface_block(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<interface name=\"{name}\">"))?;
    let end = xml[start..].find("</interface>")? + start + "</interface>".len();
    Some(
        xml[start..end]
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n")
            + "\n",
    )
}

async fn check(node: &hb_lab::Node, bus_name: &str, path: &str, interface: &str) {
    let proxy = zbus::fdo::IntrospectableProxy::builder(&node.connection)
        .destination(bus_name.to_owned())
        .path(path.to_owned())
        .build()
        .await
        .unwrap();
    let xml = proxy.introspect().await.unwrap();
    let served = interface_block(&xml, interface).unwrap_or_else(|| panic!("{interface} not served:\n{xml}"));
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../hbapi/interfaces")
        .join(format!("{interface}.xml"));
    if std::env::var_os("HB_UPDATE_INTERFACES").is_some() {
        std::fs::write(&file, &served).unwrap();
    }
    let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(
        served,
        checked_in,
        "served interface differs from {}",
        file.display()
    );
}

#[tokio::test]
async fn the_master_serves_the_checked_in_interface() {
    let node = NodeBuilder::new("alpha").start().await;
    use hbapi::names::master;
    check(&node, master::BUS_NAME, master::OBJECT_PATH, master::INTERFACE).await;
}

#[tokio::test]
async fn hbcomm_serves_the_checked_in_interface() {
    let nodes = hb_lab::start_cluster(&["alpha", "bravo"], |b| b).await;
    use hbapi::names::comm;
    check(&nodes[0], comm::BUS_NAME, comm::OBJECT_PATH, comm::INTERFACE).await;
}

#[tokio::test]
async fn lrmd_serves_the_checked_in_interface() {
    let nodes = hb_lab::start_cluster(&["alpha", "bravo"], |b| b).await;
    use hbapi::names::lrmd;
    check(&nodes[0], lrmd::BUS_NAME, lrmd::OBJECT_PATH, lrmd::INTERFACE).await;
}

#[tokio::test]
async fn stonithd_serves_the_checked_in_interface() {
    let nodes = hb_lab::start_cluster(&["alpha", "bravo"], |b| b).await;
    use hbapi::names::stonithd;
    check(
        &nodes[0],
        stonithd::BUS_NAME,
        stonithd::OBJECT_PATH,
        stonithd::INTERFACE,
    )
    .await;
}

#[tokio::test]
async fn crmd_serves_the_checked_in_interface() {
    let nodes = hb_lab::start_cluster(&["alpha", "bravo"], |b| b).await;
    use hbapi::names::crmd;
    check(&nodes[0], crmd::BUS_NAME, crmd::OBJECT_PATH, crmd::INTERFACE).await;
}

#[tokio::test]
async fn ipfail_serves_the_checked_in_interface() {
    let nodes = hb_lab::start_cluster(&["alpha", "bravo"], |b| {
        b.ha_cf("ping 127.0.0.1")
            .ha_cf("respawn hacluster /usr/lib/heartbeat/ipfail")
    })
    .await;
    use hbapi::names::ipfail;
    let child = nodes[0].wait_child("ipfail", |c| c.state == "running").await;
    hb_lab::wait_name_owner(&nodes[0].connection, ipfail::BUS_NAME, child.pid).await;
    check(
        &nodes[0],
        ipfail::BUS_NAME,
        ipfail::OBJECT_PATH,
        ipfail::INTERFACE,
    )
    .await;
}
