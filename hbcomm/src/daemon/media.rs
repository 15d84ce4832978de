//! Heartbeat links: UDP sockets for the ha.cf media.
//!
//! Each device used by bcast/ucast lines gets one socket on `udpport`, bound to the device
//! (SO_BINDTODEVICE) so that a packet's link is known; each mcast line gets its own socket in
//! its group. A ucast line naming one of this node's own addresses is skipped, so every node
//! can share one ha.cf. `bind` (for several nodes on one host, e.g. 127.0.0.2) binds to that
//! address instead of a device.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use super::socket::DatagramSocket;

use hbapi::config::{ClusterConfig, Medium};

/// Receive buffer asked for on every link socket.
const RECEIVE_BUFFER: usize = 4 << 20;

/// One link: where we send and the socket we receive on.
#[derive(Debug)]
pub struct Link {
    /// Heartbeat's link name (the device, or the tty of a serial link).
    pub name: String,
    /// A serial link (its packets come from the tty, not from an address).
    pub serial: bool,
    /// The socket we receive on (bound to `udpport`; a serial link's loopback end).
    pub socket: DatagramSocket,
    /// Where heartbeats go.
    pub destinations: Vec<Destination>,
}

/// One place heartbeats go, and a socket connected to it that sends them from a port of its
/// own, as Heartbeat's write sockets do. A connected socket keeps its route: the kernel does
/// not look it up again for every packet.
#[derive(Debug)]
pub struct Destination {
    /// The peer, broadcast address or group.
    pub address: SocketAddr,
    socket: std::net::UdpSocket,
}

impl Destination {
    /// A destination sending on `socket`, connected to `address`.
    pub(crate) fn new(address: SocketAddr, socket: std::net::UdpSocket) -> Destination {
        Destination { address, socket }
    }

    /// Sends one packet now; `WouldBlock` when the send buffer is full.
    pub fn send(&self, packet: &[u8]) -> std::io::Result<usize> {
        match self.socket.send(packet) {
            // A connected socket reports an earlier ICMP "port unreachable" (the peer's
            // hbcomm restarting) on the next send, in place of sending it.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => self.socket.send(packet),
            sent => sent,
        }
    }
}

/// A socket sending to `address` from `local` (any port), out of `device` when given;
/// `setup` sets what the medium needs (broadcast, multicast interface, TTL) before it connects.
fn destination(
    medium: &str,
    address: SocketAddr,
    local: IpAddr,
    device: Option<&str>,
    setup: impl FnOnce(&Socket) -> std::io::Result<()>,
) -> Result<Destination, MediaError> {
    let fail = |error: std::io::Error| MediaError {
        medium: medium.to_owned(),
        message: format!("cannot open a socket sending to {address}: {error}"),
    };
    let domain = if address.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(fail)?;
    socket.set_cloexec(true).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    if let Some(device) = device {
        // The receiving socket already warned when the device cannot be bound.
        let _ = socket.bind_device(Some(device.as_bytes()));
    }
    socket.bind(&SocketAddr::new(local, 0).into()).map_err(fail)?;
    // Nothing is read from this socket: the kernel's smallest buffer bounds what a stranger
    // sending to its port (from the peer's address) can leave there.
    let _ = socket.set_recv_buffer_size(0);
    setup(&socket).map_err(fail)?;
    socket.connect(&address.into()).map_err(fail)?;
    Ok(Destination {
        address,
        socket: socket.into(),
    })
}

/// Errors opening the links.
/// A link that cannot be used (checked or opened), with its ha.cf line.
pub use hbapi::links::LinkError as MediaError;

/// The device's broadcast address. An address added without one (`ip addr add A/N`, no
/// `brd`) reports the address itself (or 0.0.0.0), which would send every heartbeat to this
/// host alone: none then (the caller broadcasts to 255.255.255.255 on the device).
fn broadcast_address(device: &str) -> Option<Ipv4Addr> {
    let ipv4 = |address: Option<&nix::sys::socket::SockaddrStorage>| {
        address.and_then(|a| a.as_sockaddr_in().map(|s| s.ip()))
    };
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifaddr| {
        let own = ipv4(ifaddr.address.as_ref())?;
        (ifaddr.interface_name == device)
            .then(|| ipv4(ifaddr.broadcast.as_ref()))
            .flatten()
            .filter(|broadcast| !broadcast.is_unspecified() && *broadcast != own)
    })
}

fn device_ipv4(device: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifaddr| {
        (ifaddr.interface_name == device)
            .then(|| ifaddr.address.and_then(|a| a.as_sockaddr_in().map(|s| s.ip())))
            .flatten()
    })
}

/// Whether other sockets may share a receiving socket's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    /// No one (ucast: nobody else may read what peers send to this address).
    Exclusive,
    /// Sockets of the same user only (SO_REUSEPORT, never SO_REUSEADDR: with the latter a
    /// local user could bind the same port and take unicast heartbeats). Broadcast and
    /// multicast are delivered to every such socket, so nodes sharing a host can share the
    /// group's port.
    SameUser,
}

fn udp_socket(
    medium: &str,
    bind: SocketAddr,
    device: Option<&str>,
    sharing: Sharing,
) -> Result<Socket, MediaError> {
    let fail = |message: String| MediaError {
        medium: medium.to_owned(),
        message,
    };
    let domain = if bind.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| fail(e.to_string()))?;
    if sharing == Sharing::SameUser {
        socket.set_reuse_port(true).map_err(|e| fail(e.to_string()))?;
    }
    socket.set_cloexec(true).map_err(|e| fail(e.to_string()))?;
    // Room for a burst (a flood, or many nodes at once) while the loop is busy.
    if let Err(error) = socket.set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::debug!(medium, "cannot enlarge the receive buffer: {error}");
    }
    if let Some(device) = device {
        // As Heartbeat: a link that cannot be tied to its device is not opened (receiving on
        // every device would take heartbeats from networks the line does not name).
        socket
            .bind_device(Some(device.as_bytes()))
            .map_err(|e| fail(format!("cannot bind to device {device}: {e}")))?;
    }
    socket
        .bind(&bind.into())
        .map_err(|e| fail(format!("cannot bind {bind}: {e}")))?;
    socket.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
    Ok(socket)
}

fn register(socket: Socket, medium: &str) -> Result<DatagramSocket, MediaError> {
    DatagramSocket::new(socket.into()).map_err(|e| MediaError {
        medium: medium.to_owned(),
        message: e.to_string(),
    })
}

/// Opens every link of `config` (checked first with [`check`]).
pub fn open(
    config: &ClusterConfig,
    bind: Option<IpAddr>,
    authenticator: &crate::wire::Authenticator,
) -> Result<Vec<Link>, MediaError> {
    hbapi::links::check(config, bind)?;
    let own = hbapi::links::local_addresses(bind);
    let port = config.udp_port;
    let mut links: Vec<Link> = Vec::new();
    for medium in &config.media {
        let description = medium.to_string();
        match medium {
            Medium::Ucast { device, peer, ipv6 } => {
                let Some(peer) = hbapi::links::resolve(peer, *ipv6) else {
                    return Err(MediaError {
                        medium: description,
                        message: format!("cannot resolve {peer}"),
                    });
                };
                if own.contains(&peer) {
                    tracing::debug!(medium = %description, "names this node's own address; skipped");
                    continue;
                }
                let any: IpAddr = if *ipv6 {
                    Ipv6Addr::UNSPECIFIED.into()
                } else {
                    Ipv4Addr::UNSPECIFIED.into()
                };
                let local = bind.filter(|b| b.is_ipv6() == *ipv6).unwrap_or(any);
                let sender = destination(
                    &description,
                    SocketAddr::new(peer, port),
                    local,
                    bind.is_none().then_some(device.as_str()),
                    |_| Ok(()),
                )?;
                if let Some(link) = links.iter_mut().find(|l| {
                    l.name == *device
                        && l.socket.local_addr().is_ok_and(|a| a.is_ipv6() == *ipv6)
                        && !l.destinations.iter().any(|d| d.address.ip().is_multicast())
                }) {
                    link.destinations.push(sender);
                    continue;
                }
                let socket = udp_socket(
                    &description,
                    SocketAddr::new(local, port),
                    bind.is_none().then_some(device.as_str()),
                    Sharing::Exclusive,
                )?;
                links.push(Link {
                    name: device.clone(),
                    serial: false,
                    socket: register(socket, &description)?,
                    destinations: vec![sender],
                });
            }
            Medium::Bcast { device } => {
                let broadcast = broadcast_address(device).unwrap_or(Ipv4Addr::BROADCAST);
                let local = bind.unwrap_or(Ipv4Addr::UNSPECIFIED.into());
                let socket = udp_socket(
                    &description,
                    SocketAddr::new(local, port),
                    bind.is_none().then_some(device.as_str()),
                    Sharing::SameUser,
                )?;
                let sender = destination(
                    &description,
                    SocketAddr::new(broadcast.into(), port),
                    local,
                    bind.is_none().then_some(device.as_str()),
                    |socket| socket.set_broadcast(true),
                )?;
                links.push(Link {
                    name: device.clone(),
                    serial: false,
                    socket: register(socket, &description)?,
                    destinations: vec![sender],
                });
            }
            Medium::Serial { device } => links.push(super::serial::open(
                device,
                config.baud,
                &description,
                authenticator.clone(),
            )?),
            Medium::Mcast {
                device,
                group,
                port: group_port,
                ttl,
                loopback,
            } => {
                let fail = |e: std::io::Error| MediaError {
                    medium: description.clone(),
                    message: e.to_string(),
                };
                let address = SocketAddr::new(*group, *group_port);
                let (socket, sender) = match group {
                    IpAddr::V4(group_v4) => {
                        // Bound to the group, not the wildcard: another cluster's group on the
                        // same port (FAQ 15) never reaches this socket.
                        let socket = udp_socket(&description, address, None, Sharing::SameUser)?;
                        socket.set_multicast_all_v4(false).map_err(fail)?;
                        let interface = device_ipv4(device).unwrap_or(Ipv4Addr::UNSPECIFIED);
                        socket.join_multicast_v4(group_v4, &interface).map_err(fail)?;
                        let local = bind
                            .filter(IpAddr::is_ipv4)
                            .unwrap_or(Ipv4Addr::UNSPECIFIED.into());
                        let sender = destination(&description, address, local, None, |socket| {
                            socket.set_multicast_if_v4(&interface)?;
                            socket.set_multicast_ttl_v4(u32::from(*ttl))?;
                            socket.set_multicast_loop_v4(*loopback)
                        })?;
                        (socket, sender)
                    }
                    IpAddr::V6(group_v6) => {
                        let index = nix::net::if_::if_nametoindex(device.as_str()).unwrap_or(0);
                        // An interface- or link-local group (ff01::/16, ff02::/16) is bound
                        // with its interface as the scope.
                        let scope = if group_v6.segments()[0] & 0x000f <= 2 {
                            index
                        } else {
                            0
                        };
                        let bound =
                            SocketAddr::V6(std::net::SocketAddrV6::new(*group_v6, *group_port, 0, scope));
                        let socket = udp_socket(&description, bound, None, Sharing::SameUser)?;
                        socket.set_multicast_all_v6(false).map_err(fail)?;
                        socket.join_multicast_v6(group_v6, index).map_err(fail)?;
                        let local = bind
                            .filter(IpAddr::is_ipv6)
                            .unwrap_or(Ipv6Addr::UNSPECIFIED.into());
                        let sender = destination(&description, address, local, None, |socket| {
                            socket.set_multicast_if_v6(index)?;
                            socket.set_multicast_hops_v6(u32::from(*ttl))?;
                            socket.set_multicast_loop_v6(*loopback)
                        })?;
                        (socket, sender)
                    }
                };
                links.push(Link {
                    name: device.clone(),
                    serial: false,
                    socket: register(socket, &description)?,
                    destinations: vec![sender],
                });
            }
        }
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_is_not_listening_does_not_cost_every_other_heartbeat() {
        // A port nobody listens on: each packet comes back as ICMP "port unreachable", which
        // a connected socket reports on the following send.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .unwrap();
        let sender = destination("test", closed, Ipv4Addr::LOCALHOST.into(), None, |_| Ok(())).unwrap();
        for attempt in 0..4 {
            let sent = sender.send(b"heartbeat");
            assert!(sent.is_ok(), "send {attempt}: {sent:?}");
        }
    }

    fn free_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .map(|address| address.port())
            .unwrap()
    }

    /// A local user binding a heartbeat port (possible when udpport ≥ 1024 or
    /// ip_unprivileged_port_start is 0, as in many containers) to read unicast heartbeats.
    fn stranger_binds(address: SocketAddr, as_nobody: bool) -> bool {
        use nix::sys::wait::{waitpid, WaitStatus};
        use nix::unistd::{fork, ForkResult, Gid, Uid};
        let attempt = || {
            let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.bind(&address.into())
        };
        if !as_nobody {
            return attempt().is_ok();
        }
        // SAFETY: the child only makes system calls and exits.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let dropped = nix::unistd::setgid(Gid::from_raw(65534))
                    .and_then(|()| nix::unistd::setuid(Uid::from_raw(65534)));
                let code = match (dropped, attempt()) {
                    (Ok(()), Ok(())) => 0,
                    (Ok(()), Err(_)) => 1,
                    (Err(_), _) => 2,
                };
                // SAFETY: exits the forked child without running the parent's destructors.
                unsafe { nix::libc::_exit(code) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, 0) => true,
                WaitStatus::Exited(_, 1) => false,
                other => panic!("the stranger could not become nobody: {other:?}"),
            },
        }
    }

    #[test]
    fn nobody_else_can_bind_a_heartbeat_port() {
        let ucast = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let _link = udp_socket("ucast lo 127.0.0.1", ucast, None, Sharing::Exclusive).unwrap();
        assert!(
            !stranger_binds(ucast, false),
            "a second socket bound a ucast port"
        );
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, ucast.port()));
        assert!(
            !stranger_binds(any, false),
            "a wildcard socket bound beside a ucast port"
        );

        // Broadcast and multicast ports are shared by the nodes of one host (one user), and
        // by no one else.
        let group = SocketAddr::from((Ipv4Addr::UNSPECIFIED, free_port()));
        let _link = udp_socket("mcast lo 239.0.0.1", group, None, Sharing::SameUser).unwrap();
        let _second_node = udp_socket("mcast lo 239.0.0.1", group, None, Sharing::SameUser).unwrap();
        if nix::unistd::Uid::effective().is_root() {
            assert!(
                !stranger_binds(group, true),
                "nobody bound a multicast heartbeat port"
            );
        }
    }

    #[test]
    fn a_link_that_cannot_be_tied_to_its_device_is_not_opened() {
        let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, free_port()));
        let error = udp_socket(
            "ucast nosuchdev0 10.0.0.2",
            address,
            Some("nosuchdev0"),
            Sharing::Exclusive,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(error.contains("cannot bind to device nosuchdev0"), "{error}");
    }
}
