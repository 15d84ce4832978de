//! Packet faults for the fault-injection harness, run inside a lab network namespace with
//! `ip netns exec`:
//!
//!     hb-faultkit replay PORT DELAY_MS SECONDS   sends every heartbeat packet seen on lo again,
//!                                                DELAY_MS later (0: duplicates; seconds: replays
//!                                                of captured traffic)
//!     hb-faultkit flood PORT SECONDS TARGET…     forged, truncated, oversized and random
//!                                                packets from an address with no key
//!     hb-faultkit rexmit PORT SECONDS FROM TO SRC DEST
//!                                                a retransmission request signed with the
//!                                                lab's key (as if captured), sent again and
//!                                                again from FROM to TO: half for numbers DEST
//!                                                sent, half for numbers it never sent
//!
//! Each prints how many packets it sent. Needs root (a packet socket).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hbcomm::wire::{encode, Authenticator, Format, Message};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |index: usize| args.get(index).and_then(|a| a.parse::<u64>().ok());
    let result = match (args.first().map(String::as_str), number(1), number(2)) {
        (Some("replay"), Some(port), Some(delay)) => match number(3) {
            Some(seconds) => replay(
                port as u16,
                Duration::from_millis(delay),
                Duration::from_secs(seconds),
            ),
            None => Err("replay PORT DELAY_MS SECONDS".into()),
        },
        (Some("flood"), Some(port), Some(seconds)) => {
            let targets: Result<Vec<Ipv4Addr>, _> = args[3..].iter().map(|a| a.parse()).collect();
            match targets {
                Ok(targets) if !targets.is_empty() => {
                    flood(port as u16, Duration::from_secs(seconds), &targets)
                }
                _ => Err("flood PORT SECONDS TARGET…".into()),
            }
        }
        (Some("rexmit"), Some(port), Some(seconds)) => match &args[3..] {
            [from, to, src, dest] => match (from.parse(), to.parse()) {
                (Ok(from), Ok(to)) => rexmit(port as u16, Duration::from_secs(seconds), from, to, src, dest),
                _ => Err("rexmit: FROM and TO are IPv4 addresses".into()),
            },
            _ => Err("rexmit PORT SECONDS FROM TO SRC DEST".into()),
        },
        _ => Err(
            "usage: hb-faultkit replay PORT DELAY_MS SECONDS | flood PORT SECONDS TARGET… | rexmit PORT SECONDS FROM TO SRC DEST"
                .into(),
        ),
    };
    match result {
        Ok(sent) => {
            println!("{sent}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("hb-faultkit: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A UDP datagram seen leaving a node: (source, destination, payload).
type Seen = (SocketAddrV4, SocketAddrV4, Vec<u8>);

/// Parses an Ethernet frame from lo: an IPv4 UDP datagram to `port`.
fn udp_to(frame: &[u8], port: u16) -> Option<Seen> {
    let ip = frame.get(14..)?;
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let header = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let udp = ip.get(header..total)?;
    let source_port = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let destination_port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    if destination_port != port {
        return None;
    }
    let address = |at: usize| Some(Ipv4Addr::new(*ip.get(at)?, ip[at + 1], ip[at + 2], ip[at + 3]));
    Some((
        SocketAddrV4::new(address(12)?, source_port),
        SocketAddrV4::new(address(16)?, destination_port),
        udp.get(8..)?.to_vec(),
    ))
}

fn replay(port: u16, delay: Duration, seconds: Duration) -> Result<u64, String> {
    use nix::sys::socket::{recvfrom, socket, AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType};
    let capture = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::empty(),
        SockProtocol::EthAll,
    )
    .map_err(|e| format!("packet socket (needs root): {e}"))?;
    nix::sys::socket::setsockopt(
        &capture,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(0, 5_000),
    )
    .map_err(|e| e.to_string())?;
    // One sender per node address, so that a copy comes from where the original did.
    let mut senders: Vec<(Ipv4Addr, UdpSocket)> = Vec::new();
    let mut due: VecDeque<(Instant, Seen)> = VecDeque::new();
    let mut frame = vec![0u8; 70_000];
    let mut sent = 0;
    let end = Instant::now() + seconds;
    while Instant::now() < end + delay {
        if Instant::now() < end {
            if let Ok((length, Some(from))) = recvfrom::<LinkAddr>(capture.as_raw_fd(), &mut frame) {
                // lo shows each packet twice (leaving and arriving): take it leaving.
                let outgoing = from.pkttype() == nix::libc::PACKET_OUTGOING;
                if let Some(seen) = udp_to(&frame[..length], port).filter(|_| outgoing) {
                    let ours = senders
                        .iter()
                        .any(|(_, s)| s.local_addr().is_ok_and(|a| a.port() == seen.0.port()));
                    if !ours {
                        due.push_back((Instant::now() + delay, seen));
                    }
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        while due.front().is_some_and(|(at, _)| *at <= Instant::now()) {
            let Some((_, (source, destination, payload))) = due.pop_front() else {
                break;
            };
            if !senders.iter().any(|(a, _)| *a == *source.ip()) {
                let socket = UdpSocket::bind((*source.ip(), 0)).map_err(|e| format!("bind {source}: {e}"))?;
                senders.push((*source.ip(), socket));
            }
            if let Some((_, socket)) = senders.iter().find(|(a, _)| *a == *source.ip()) {
                if socket.send_to(&payload, destination).is_ok() {
                    sent += 1;
                }
            }
        }
    }
    Ok(sent)
}

/// A small deterministic generator: the flood is the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn flood(port: u16, seconds: Duration, targets: &[Ipv4Addr]) -> Result<u64, String> {
    let socket = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 66), 0)).map_err(|e| format!("bind: {e}"))?;
    let guessed = Authenticator::new(1, hbapi::config::AuthMethod::Sha256, b"guessed key");
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let end = Instant::now() + seconds;
    let mut sent = 0u64;
    while Instant::now() < end {
        for (index, target) in targets.iter().enumerate() {
            let victim = ["alpha", "bravo", "charlie"][index % 3];
            let heartbeat = Message::new()
                .with("t", "status")
                .with("st", "dead")
                .with("src", victim)
                .with("seq", format!("{:x}", random.next() % 1000))
                .with("hg", format!("{:x}", u32::MAX));
            let forged = encode(&heartbeat, Format::Netstring, &guessed);
            let classic = encode(&heartbeat, Format::Classic, &guessed);
            let mut truncated = forged.clone();
            truncated.truncate((random.next() as usize) % forged.len().max(1));
            let garbage: Vec<u8> = (0..(random.next() % 1400) as usize)
                .map(|_| random.next() as u8)
                .collect();
            let oversized = vec![b'#'; 65_000];
            let huge_count = b"###\n99999999:(0)t=status,%%%\n".to_vec();
            for packet in [&forged, &classic, &truncated, &garbage, &oversized, &huge_count] {
                if socket.send_to(packet, (*target, port)).is_ok() {
                    sent += 1;
                }
            }
        }
        // About 2,000 packets a second per target: hostile, not a bandwidth test.
        std::thread::sleep(Duration::from_millis(3));
    }
    Ok(sent)
}

/// Sends signed `NS_rexmit` requests from `src` to `dest` (at `to`) every 10 ms; returns how
/// many were sent.
fn rexmit(
    port: u16,
    seconds: Duration,
    from: Ipv4Addr,
    to: Ipv4Addr,
    src: &str,
    dest: &str,
) -> Result<u64, String> {
    let socket = UdpSocket::bind((from, 0)).map_err(|e| format!("bind {from}: {e}"))?;
    // The key every lab node uses (hb_lab::NodeBuilder::start).
    let key = Authenticator::new(1, hbapi::config::AuthMethod::Sha256, b"hb-lab-test-key");
    let request = |first: u64| {
        let message = Message::new()
            .with("t", "NS_rexmit")
            .with("firstseq", first.to_string())
            .with("lastseq", (first + 63).to_string())
            .with("dest", dest)
            .with("src", src)
            .with("ts", "6b038289")
            .with("ttl", "3");
        encode(&message, Format::Netstring, &key)
    };
    let (held, never_sent) = (request(1), request(1_000_000));
    let end = Instant::now() + seconds;
    let mut sent = 0u64;
    while Instant::now() < end {
        let packet = if sent.is_multiple_of(2) {
            &held
        } else {
            &never_sent
        };
        if socket.send_to(packet, (to, port)).is_ok() {
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(sent)
}
