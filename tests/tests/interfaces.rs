//! The interfaces each daemon serves on a running node, on the real bus, match the XML
//! checked in under `hbapi/interfaces/` (each daemon's own test checks the same without a
//! node, and checks the hbapi proxy too). The XML is the contract: a change to an interface
//! is written there first.

async fn check(node: &hb_lab::Node, bus_name: &str, path: &str, interface: &str) {
    let proxy = zbus::fdo::IntrospectableProxy::builder(&node.connection)
        .destination(bus_name.to_owned())
        .path(path.to_owned())
        .build()
        .await
        .unwrap();
    let xml = proxy.introspect().await.unwrap();
    let served = zbus_xml::Node::try_from(xml.as_str()).unwrap();
    let served = served
        .interfaces()
        .iter()
        .find(|i| i.name().as_str() == interface)
        .map(hbapi::contract::shape)
        .unwrap_or_else(|| panic!("{interface} not served:\n{xml}"));
    let checked_in = hbapi::contract::checked_in(interface).unwrap();
    let difference = hbapi::contract::difference(&served, &checked_in);
    assert!(
        difference.is_empty(),
        "{interface} on the bus differs from {}:\n{difference}",
        hbapi::contract::xml_path(interface).display()
    );
}

#[tokio::test]
async fn the_master_serves_the_checked_in_interface() {
    let node = hb_lab::NodeBuilder::new("alpha").start().await;
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
