//! The heartbeat links of a configuration checked against this host, before anything opens
//! them: a ucast peer must resolve and not be this node (every node can share one ha.cf), a
//! serial device must be a tty, and some link must be left. hbcomm runs it before it opens
//! its links; the master runs it too (`heartbeat --check`, and before any daemon starts), so
//! that a configuration hbcomm would refuse stops the start with its reason.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::config::{ClusterConfig, Medium};

/// A link that cannot be used, with the ha.cf line it comes from.
#[derive(Debug, thiserror::Error)]
#[error("{medium}: {message}")]
pub struct LinkError {
    /// The ha.cf line.
    pub medium: String,
    /// What went wrong.
    pub message: String,
}

/// This node's addresses: `bind` when given (several nodes share the host, each with its own
/// address), else every address of the host.
pub fn local_addresses(bind: Option<IpAddr>) -> BTreeSet<IpAddr> {
    if let Some(bind) = bind {
        return BTreeSet::from([bind]);
    }
    nix::ifaddrs::getifaddrs()
        .map(|list| {
            list.filter_map(|ifaddr| {
                let address = ifaddr.address?;
                if let Some(v4) = address.as_sockaddr_in() {
                    Some(IpAddr::V4(v4.ip()))
                } else {
                    address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                }
            })
            .collect()
        })
        .unwrap_or_default()
}

/// A ucast peer's address: the literal, or the first of the family its name resolves to.
pub fn resolve(peer: &str, ipv6: bool) -> Option<IpAddr> {
    if let Ok(address) = peer.parse::<IpAddr>() {
        return Some(address);
    }
    use std::net::ToSocketAddrs;
    (peer, 0)
        .to_socket_addrs()
        .ok()?
        .map(|a| a.ip())
        .find(|ip| ip.is_ipv6() == ipv6)
}

/// Whether `device` is a tty a serial link can use.
pub fn check_serial_device(device: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let metadata = std::fs::metadata(device).map_err(|e| format!("{device}: {e}"))?;
    if !metadata.file_type().is_char_device() {
        return Err(format!("{device} is not a character device (a tty)"));
    }
    Ok(())
}

/// Checks every link of `config` for a node bound to `bind` (or to every address).
pub fn check(config: &ClusterConfig, bind: Option<IpAddr>) -> Result<(), LinkError> {
    // On Corosync the links are Corosync's (ha.cf's media lines are not used).
    if config.engine != crate::config::Engine::Heartbeat {
        return Ok(());
    }
    let own = local_addresses(bind);
    let mut usable = 0;
    for medium in &config.media {
        match medium {
            Medium::Ucast { peer, ipv6, .. } => {
                let Some(address) = resolve(peer, *ipv6) else {
                    return Err(LinkError {
                        medium: medium.to_string(),
                        message: format!("cannot resolve {peer}"),
                    });
                };
                if !own.contains(&address) {
                    usable += 1;
                }
            }
            Medium::Bcast { .. } | Medium::Mcast { .. } => usable += 1,
            Medium::Serial { device } => {
                check_serial_device(device).map_err(|message| LinkError {
                    medium: medium.to_string(),
                    message,
                })?;
                usable += 1;
            }
        }
    }
    if usable == 0 {
        return Err(LinkError {
            medium: "ha.cf".into(),
            message: format!(
                "no heartbeat link is left once the lines naming this node's own addresses ({}) are skipped",
                own.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    Ok(())
}
