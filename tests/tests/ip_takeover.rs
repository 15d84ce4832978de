//! IP address takeover end to end (FAQ 7, 8 and 24): a service address moves between two
//! nodes in network namespaces on one bridge, through Heartbeat's own resource.d scripts
//! (Debian's `heartbeat` package: `IPaddr` from the haresources shorthand, and `IPaddr2`)
//! running resource-agents' OCF agents. A third namespace, the client, sees the new holder's
//! gratuitous ARP (tcpdump) and reaches the address at the new holder's MAC after each move;
//! releasing the address leaves the interface and its base address up.

use std::process::Stdio;

use hb_lab::groups::{changes, wait_group};
use hb_lab::mixed::Wire;
use hb_lab::{Node, NodeBuilder};
use tokio::io::AsyncBufReadExt;

const VIP: &str = "10.213.77.100";
/// The VIP as tcpdump compares an ARP packet's sender address (`arp[14:4]`).
const VIP_HEX: &str = "0x0ad54d64";

fn ip(namespace: &str, args: &[&str]) -> String {
    let mut all = vec!["ip", "-n", namespace];
    all.extend_from_slice(args);
    String::from_utf8_lossy(&hb_lab::container::host(&all).stdout).into_owned()
}

fn mac(wire: &Wire, node: &str) -> String {
    let link = ip(wire.namespace(node), &["-o", "link", "show", "eth0"]);
    link.split_whitespace()
        .skip_while(|word| *word != "link/ether")
        .nth(1)
        .expect("eth0 has a MAC")
        .to_owned()
}

fn has_vip(wire: &Wire, node: &str) -> bool {
    ip(wire.namespace(node), &["-o", "-4", "addr", "show", "dev", "eth0"]).contains(&format!("{VIP}/"))
}

/// The client pings the VIP (a few tries: its cached entry may name the old holder until the
/// gratuitous ARP or a new resolution corrects it) and returns the MAC it reached it at.
fn client_reaches(wire: &Wire) -> String {
    let status = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            wire.namespace("client"),
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-w",
            "5",
            VIP,
        ])
        .stdout(Stdio::null())
        .status()
        .expect("ping");
    assert!(status.success(), "the client cannot reach {VIP}");
    let neighbour = ip(wire.namespace("client"), &["neigh", "show", VIP, "dev", "eth0"]);
    neighbour
        .split_whitespace()
        .skip_while(|word| *word != "lladdr")
        .nth(1)
        .unwrap_or_else(|| panic!("no neighbour entry for {VIP}: {neighbour:?}"))
        .to_owned()
}

/// tcpdump in the client's namespace, ready (it said so), waiting for one ARP packet that
/// announces the VIP from `holder_mac`.
async fn watch_announcement(wire: &Wire, holder_mac: &str) -> tokio::process::Child {
    let filter = format!("ether src {holder_mac} and arp and arp[14:4] = {VIP_HEX}");
    let mut tcpdump = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            wire.namespace("client"),
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-l",
            "-c",
            "1",
        ])
        .arg(filter)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("tcpdump (Debian package tcpdump)");
    let mut errors = tokio::io::BufReader::new(tcpdump.stderr.take().expect("stderr")).lines();
    tokio::time::timeout(hb_lab::PATIENCE, async {
        while let Ok(Some(line)) = errors.next_line().await {
            if line.contains("listening on") {
                return;
            }
        }
        panic!("tcpdump ended before it listened");
    })
    .await
    .expect("tcpdump listening");
    tcpdump
}

async fn announced(tcpdump: tokio::process::Child) -> String {
    let output = tokio::time::timeout(hb_lab::PATIENCE, tcpdump.wait_with_output())
        .await
        .expect("no gratuitous ARP for the VIP from its new holder")
        .expect("tcpdump");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn start(wire: &Wire, name: &str, agent: &str, haresources: &str) -> Node {
    let script = std::fs::read_to_string(format!("/etc/ha.d/resource.d/{agent}"))
        .unwrap_or_else(|e| panic!("/etc/ha.d/resource.d/{agent} (Debian package heartbeat): {e}"));
    NodeBuilder::new(name)
        .nodes(&["alpha", "bravo"])
        .core_daemons()
        .wrapper(&["ip", "netns", "exec", wire.namespace(name)])
        .links(vec![
            "udpport 694".into(),
            "ucast eth0 10.213.77.1".into(),
            "ucast eth0 10.213.77.2".into(),
        ])
        .timing("200ms", "1", "2")
        .haresources(haresources)
        .resource_script(agent, &script)
        .start()
        .await
}

async fn address_moves_and_is_announced(agent: &str, haresources_line: &str, group: &str) {
    let wire = Wire::new(&["alpha", "bravo", "client"]);
    let haresources = format!("{haresources_line}\n");
    let mut alpha = start(&wire, "alpha", agent, &haresources).await;
    let mut alpha_changes = changes(&alpha).await;
    let bravo = start(&wire, "bravo", agent, &haresources).await;
    let (alpha_mac, bravo_mac) = (mac(&wire, "alpha"), mac(&wire, "bravo"));
    wait_group(&mut alpha_changes, group, "started").await;
    assert!(has_vip(&wire, "alpha") && !has_vip(&wire, "bravo"));
    assert_eq!(client_reaches(&wire), alpha_mac);

    // A planned move: bravo announces the address; alpha keeps its interface and own address.
    let tcpdump = watch_announcement(&wire, &bravo_mac).await;
    let mut bravo_changes = changes(&bravo).await;
    let output = std::process::Command::new(hb_lab::bin("hb_standby"))
        .env(hbapi::names::env::RUN_DIR, &alpha.run_dir)
        .env_remove(hbapi::names::env::BUS_ADDRESS)
        .output()
        .expect("hb_standby");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    wait_group(&mut bravo_changes, group, "started").await;
    let seen = announced(tcpdump).await;
    assert!(seen.contains(VIP), "{seen}");
    assert!(has_vip(&wire, "bravo") && !has_vip(&wire, "alpha"));
    let alpha_eth0 = ip(
        wire.namespace("alpha"),
        &["-o", "-4", "addr", "show", "dev", "eth0"],
    );
    assert!(
        alpha_eth0.contains("10.213.77.1/24"),
        "alpha lost its own address: {alpha_eth0}"
    );
    let alpha_link = ip(wire.namespace("alpha"), &["-o", "link", "show", "eth0"]);
    assert!(
        alpha_link.contains(",UP,") || alpha_link.contains("<UP,"),
        "{alpha_link}"
    );
    assert_eq!(client_reaches(&wire), bravo_mac);

    // A crash: bravo's node dies and its host leaves the wire (powered off); alpha takes the
    // address over and announces it.
    let tcpdump = watch_announcement(&wire, &alpha_mac).await;
    let mut alpha_changes = changes(&alpha).await;
    wire.cut("bravo", true);
    bravo.crash().await;
    wait_group(&mut alpha_changes, group, "started").await;
    let seen = announced(tcpdump).await;
    assert!(seen.contains(VIP), "{seen}");
    assert!(has_vip(&wire, "alpha"));
    assert_eq!(client_reaches(&wire), alpha_mac);
    drop(bravo);
    alpha.terminate().await;
    assert!(!has_vip(&wire, "alpha"), "a clean stop releases the address");
}

#[tokio::test]
async fn heartbeats_ipaddr_shorthand_moves_the_address_and_announces_it() {
    // `alpha 10.213.77.100/24/eth0` is Heartbeat's shorthand for IPaddr::10.213.77.100/24/eth0.
    address_moves_and_is_announced(
        "IPaddr",
        "alpha 10.213.77.100/24/eth0",
        "IPaddr::10.213.77.100/24/eth0",
    )
    .await;
}

#[tokio::test]
async fn ipaddr2_moves_the_address_and_announces_it() {
    address_moves_and_is_announced(
        "IPaddr2",
        "alpha IPaddr2::10.213.77.100/24/eth0",
        "IPaddr2::10.213.77.100/24/eth0",
    )
    .await;
}
