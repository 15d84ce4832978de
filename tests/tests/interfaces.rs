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

#[tokio::test]
async fn the_master_serves_the_checked_in_interface() {
    let node = NodeBuilder::new("alpha").start().await;
    let proxy = zbus::fdo::IntrospectableProxy::builder(&node.connection)
        .destination(hbapi::names::master::BUS_NAME)
        .path(hbapi::names::master::OBJECT_PATH)
        .build()
        .await
        .unwrap();
    let xml = proxy.introspect().await.unwrap();
    let served = interface_block(&xml, hbapi::names::master::INTERFACE)
        .unwrap_or_else(|| panic!("{} not served:\n{xml}", hbapi::names::master::INTERFACE));
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../hbapi/interfaces")
        .join(format!("{}.xml", hbapi::names::master::INTERFACE));
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
