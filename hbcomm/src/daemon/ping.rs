//! Ping pseudo-nodes: ICMP echo to every `ping`, `ping6` and `ping_group` address, once per
//! keepalive as Heartbeat's ping medium does. A reply makes its pseudo-node heard; membership
//! judges silence with deadping.
//!
//! Unprivileged ICMP sockets (`SOCK_DGRAM`, allowed by `net.ipv4.ping_group_range`) are used
//! where the kernel allows them — the kernel then owns the echo identifier and hands each
//! socket only its own replies. Otherwise a raw socket is opened (root or CAP_NET_RAW), which
//! sees every ICMP packet of the host: replies are matched by identifier and sender.
//!
//! A reply counts only when it answers one of the last few echoes sent (by sequence number)
//! and carries the tag that echo carried: a keyed hash, with a secret drawn at start, of the
//! target's address and the sequence number. Anyone on the network can send an echo reply
//! with the ping node's source address; without the tag it cannot keep a dead ping node
//! alive for ipfail.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use sha2::Digest;

use socket2::{Domain, Protocol, Socket, Type};

use super::socket::DatagramSocket;

use hbapi::config::PingNode;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
/// Payload marking our echoes.
const MARK: &[u8; 8] = b"hbrs-png";
/// Bytes of the tag after the mark.
const TAG: usize = 8;
/// Replies to this many of the newest echoes are accepted (a slow reply to the previous
/// round still counts).
pub const REPLY_WINDOW: u16 = 4;

/// One ICMP socket of one address family.
#[derive(Debug)]
pub struct IcmpSocket {
    /// The socket.
    pub socket: Arc<DatagramSocket>,
    /// Raw sockets see IPv4 headers and everyone's ICMP.
    pub raw: bool,
    /// IPv6 (ICMPv6 types, no IP header on raw sockets either).
    pub v6: bool,
}

/// The ping targets and their sockets.
#[derive(Debug)]
pub struct Pinger {
    /// IPv4 socket, when there is an IPv4 target.
    pub v4: Option<IcmpSocket>,
    /// IPv6 socket, when there is an IPv6 target.
    pub v6: Option<IcmpSocket>,
    /// Each address and the pseudo-node it belongs to.
    pub targets: Vec<(IpAddr, String)>,
    /// Echo identifier (raw sockets; the kernel picks it on unprivileged ones).
    pub ident: u16,
    /// Keys the tags of this process's echoes.
    secret: [u8; 16],
    /// The sequence number of the newest echo sent.
    newest: AtomicU16,
}

/// Why ping targets could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("ping: cannot open an ICMP{} socket (neither unprivileged ICMP, see net.ipv4.ping_group_range, nor raw, which needs CAP_NET_RAW): {source}", if *.v6 { "v6" } else { "" })]
pub struct PingError {
    v6: bool,
    source: std::io::Error,
}

fn open_socket(v6: bool, bind: Option<IpAddr>) -> Result<IcmpSocket, PingError> {
    let (domain, protocol) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let (socket, raw) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(socket) => (socket, false),
        Err(_) => (
            Socket::new(domain, Type::RAW, Some(protocol)).map_err(|source| PingError { v6, source })?,
            true,
        ),
    };
    socket
        .set_nonblocking(true)
        .map_err(|source| PingError { v6, source })?;
    // Echoes leave from the node's own address when it has one (several nodes on one host
    // then each get their own replies, and a filter can cut one node off).
    if let Some(address) = bind.filter(|a| a.is_ipv6() == v6) {
        socket
            .bind(&std::net::SocketAddr::new(address, 0).into())
            .map_err(|source| PingError { v6, source })?;
    }
    let socket =
        DatagramSocket::new(std::net::UdpSocket::from(socket)).map_err(|source| PingError { v6, source })?;
    Ok(IcmpSocket {
        socket: Arc::new(socket),
        raw,
        v6,
    })
}

impl Pinger {
    /// Opens what the configured ping nodes need (nothing when there are none).
    pub fn open(ping_nodes: &[PingNode], bind: Option<IpAddr>) -> Result<Option<Pinger>, PingError> {
        let targets: Vec<(IpAddr, String)> = ping_nodes
            .iter()
            .flat_map(|node| {
                let name = node.name();
                let addresses = match node {
                    PingNode::Single { address } => vec![*address],
                    PingNode::Group { addresses, .. } => addresses.clone(),
                };
                addresses.into_iter().map(move |address| (address, name.clone()))
            })
            .collect();
        if targets.is_empty() {
            return Ok(None);
        }
        let v4 = targets
            .iter()
            .any(|(a, _)| a.is_ipv4())
            .then(|| open_socket(false, bind))
            .transpose()?;
        let v6 = targets
            .iter()
            .any(|(a, _)| a.is_ipv6())
            .then(|| open_socket(true, bind))
            .transpose()?;
        Ok(Some(Pinger {
            v4,
            v6,
            targets,
            // Distinguishes this process's echoes from other pingers' on a raw socket.
            ident: (std::process::id() & 0xffff) as u16,
            secret: random_secret(),
            newest: AtomicU16::new(0),
        }))
    }

    /// Sends one echo request to every target; returns how many could not be sent.
    pub fn send_all(&self, seq: u16) -> usize {
        let mut failed = 0;
        for (address, _) in &self.targets {
            let Some(icmp) = (if address.is_ipv4() { &self.v4 } else { &self.v6 }) else {
                continue;
            };
            let packet = echo_request(icmp.v6, self.ident, seq, &self.tag(*address, seq));
            if icmp
                .socket
                .send_to(&packet, SocketAddr::new(*address, 0))
                .is_err()
            {
                failed += 1;
            }
        }
        self.newest.store(seq, Ordering::Relaxed);
        failed
    }

    /// The tag of the echo to `target` with `seq`.
    fn tag(&self, target: IpAddr, seq: u16) -> [u8; TAG] {
        let mut hash = sha2::Sha256::new();
        hash.update(self.secret);
        match target {
            IpAddr::V4(v4) => hash.update(v4.octets()),
            IpAddr::V6(v6) => hash.update(v6.octets()),
        }
        hash.update(seq.to_be_bytes());
        let digest = hash.finalize();
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(&digest[..TAG]);
        tag
    }

    /// The pseudo-node whose echo `bytes`, received on `socket` from `from`, answers: one of
    /// the last [`REPLY_WINDOW`] echoes sent to that address, with its tag.
    pub fn answered(&self, socket: &IcmpSocket, bytes: &[u8], from: IpAddr) -> Option<&str> {
        let (seq, tag) = our_reply(socket, bytes, self.ident)?;
        if self.newest.load(Ordering::Relaxed).wrapping_sub(seq) >= REPLY_WINDOW || tag != self.tag(from, seq)
        {
            return None;
        }
        self.targets
            .iter()
            .find(|(address, _)| *address == from)
            .map(|(_, name)| name.as_str())
    }
}

/// 16 bytes from the kernel's generator; should that fail, something no one off this host can
/// predict to the microsecond (the secret only has to outlive one process).
fn random_secret() -> [u8; 16] {
    use std::io::Read;
    let mut secret = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut secret));
    if let Err(error) = read {
        tracing::warn!("/dev/urandom: {error}; ping tags keyed by time and pid");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let digest =
            sha2::Sha256::digest([now.to_be_bytes(), u128::from(std::process::id()).to_be_bytes()].concat());
        secret.copy_from_slice(&digest[..16]);
    }
    secret
}

/// An ICMP echo request with our mark and `tag`; the checksum is filled in for IPv4 (the
/// kernel computes ICMPv6 checksums).
pub fn echo_request(v6: bool, ident: u16, seq: u16, tag: &[u8; TAG]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(8 + MARK.len() + TAG);
    packet.push(if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 });
    packet.push(0);
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(MARK);
    packet.extend_from_slice(tag);
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// If `bytes`, received on `socket`, is an echo reply with our mark: its sequence number and
/// tag. `ident` is checked on raw sockets only (the kernel rewrites it on unprivileged ones).
fn our_reply(socket: &IcmpSocket, bytes: &[u8], ident: u16) -> Option<(u16, [u8; TAG])> {
    let icmp = if socket.raw && !socket.v6 {
        // Raw IPv4 sockets deliver the IP header; its length is in the first byte.
        let header = usize::from(bytes.first().map_or(0, |b| b & 0x0f)) * 4;
        if header < 20 {
            return None;
        }
        bytes.get(header..)?
    } else {
        bytes
    };
    if icmp.len() < 8 + MARK.len() + TAG {
        return None;
    }
    let expected = if socket.v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    let ours = icmp[0] == expected
        && (!socket.raw || icmp[4..6] == ident.to_be_bytes())
        && &icmp[8..8 + MARK.len()] == MARK;
    let mut tag = [0u8; TAG];
    tag.copy_from_slice(&icmp[8 + MARK.len()..8 + MARK.len() + TAG]);
    ours.then_some((u16::from_be_bytes([icmp[6], icmp[7]]), tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksum_verifies() {
        let packet = echo_request(false, 0x1234, 7, &[1; TAG]);
        assert_eq!(packet[0], ECHO_REQUEST_V4);
        assert_eq!(checksum(&packet), 0, "a correct checksum sums to zero");
        assert_eq!(&packet[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[tokio::test]
    async fn only_tagged_replies_to_recent_echoes_count() {
        let nodes = [PingNode::Single {
            address: "127.0.0.9".parse().unwrap(),
        }];
        let Ok(Some(pinger)) = Pinger::open(&nodes, None) else {
            // No ICMP socket of any kind here; the daemon would report this at start.
            return;
        };
        let target: IpAddr = "127.0.0.9".parse().unwrap();
        let Some(socket) = &pinger.v4 else {
            panic!("an IPv4 target without an IPv4 socket")
        };
        // Sequence numbers 1..=10 sent (the echoes themselves go to 127.0.0.9).
        for seq in 1..=10 {
            pinger.send_all(seq);
        }
        let reply = |seq: u16, tag: &[u8; TAG]| {
            let mut reply = echo_request(false, pinger.ident, seq, tag);
            reply[0] = ECHO_REPLY_V4;
            if socket.raw {
                let mut ip = vec![0x45u8];
                ip.resize(20, 0);
                ip.extend_from_slice(&reply);
                ip
            } else {
                reply
            }
        };
        let name = nodes[0].name();
        let good = reply(10, &pinger.tag(target, 10));
        assert_eq!(pinger.answered(socket, &good, target), Some(name.as_str()));
        assert_eq!(
            pinger.answered(socket, &reply(8, &pinger.tag(target, 8)), target),
            Some(name.as_str()),
            "a late reply to a recent echo"
        );
        // A forger knows the mark, the identifier and a plausible sequence number, not the tag.
        assert_eq!(
            pinger.answered(socket, &reply(10, &[0; TAG]), target),
            None,
            "forged tag"
        );
        assert_eq!(
            pinger.answered(socket, &reply(3, &pinger.tag(target, 3)), target),
            None,
            "a reply to an echo long gone (a replay)"
        );
        assert_eq!(
            pinger.answered(socket, &reply(11, &pinger.tag(target, 11)), target),
            None,
            "an echo not yet sent"
        );
        let other: IpAddr = "127.0.0.8".parse().unwrap();
        assert_eq!(
            pinger.answered(socket, &reply(10, &pinger.tag(other, 10)), target),
            None,
            "another target's tag"
        );
        let mut request = good.clone();
        request[if socket.raw { 20 } else { 0 }] = ECHO_REQUEST_V4;
        assert_eq!(
            pinger.answered(socket, &request, target),
            None,
            "our own request seen on a raw socket"
        );
        assert_eq!(
            pinger.answered(socket, &good[..good.len() - 1], target),
            None,
            "truncated"
        );
    }
}
