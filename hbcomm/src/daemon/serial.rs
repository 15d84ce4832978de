//! Serial links (ha.cf `serial` and `baud`, FAQ 9 and 13): Heartbeat 3.0.6's framing on a tty,
//! so that a null-modem cable to a Heartbeat node works as one more heartbeat path.
//!
//! On the line a packet is Heartbeat's classic text form: a `>>>` line, `name=value` lines, a
//! `<<<` line; a message that form cannot carry (crmd's lists hold newlines) goes in the
//! netstring form, framed by its lengths. The tty is raw (8 bits, no echo, no flow
//! characters; unlike Heartbeat's `ttysetup` the eighth bit and carriage returns are kept, as
//! netstrings carry binary fields); packets go out in 512-byte fragments
//! with the time one fragment takes at the configured speed between them (the far side reads
//! one character at a time). Whatever comes before a `>>>` line is skipped, as Heartbeat
//! skips it: a half packet left on the line at start-up disappears there, and a mangled one
//! fails authentication and is counted and logged with the other rejects (FAQ 13).
//!
//! Each serial link reaches the daemon's loop like the UDP links do: a connected pair of
//! loopback UDP sockets carries whole packets between the loop and this module's two tasks
//! (one reading and framing, one writing fragments), so the loop receives and sends on every
//! link the same way. Only the two ends of the pair can use it (connected sockets accept
//! datagrams from their peer alone), and packets are authenticated after it as before.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::sys::termios::{self, BaudRate, ControlFlags, InputFlags, LocalFlags, OutputFlags, SetArg};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::media::{Destination, Link, MediaError};
use super::socket::DatagramSocket;
use crate::wire::{Authenticator, Format};

/// Heartbeat's fragment size on a tty.
const FRAGMENT: usize = 512;
/// How long one fragment may wait to be written before the line is flushed (Heartbeat's
/// 500 ms write alarm).
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
const START: &[u8] = b">>>";
const END: &[u8] = b"<<<";
const NETSTRING_START: &[u8] = b"###";

/// Splits the byte stream of a tty into packets: Heartbeat's classic text form (a `>>>` line to
/// a `<<<` line) and the netstring form (`###` line, length-prefixed fields, `%%%` line, the
/// length-prefixed signature), which carries what the text form cannot (newlines in values).
#[derive(Debug)]
pub struct Framer {
    state: State,
    line: Vec<u8>,
    frame: Vec<u8>,
    limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between packets: lines are skipped until a start line.
    Seeking,
    /// Inside a text packet.
    Classic,
    /// Netstring form: reading a field's length (or the `%%%` line).
    Length {
        value: usize,
        digits: usize,
        trailer: bool,
    },
    /// Netstring form: reading `remaining` bytes of a field, then its comma.
    Body { remaining: usize, trailer: bool },
    /// Netstring form: the `%%%` line.
    Marker { seen: usize },
}

/// What the framer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// A whole packet as it was sent.
    Packet(Vec<u8>),
    /// A packet longer than the limit, dropped.
    Oversized,
}

impl Framer {
    /// A framer dropping packets longer than `limit` bytes.
    pub fn new(limit: usize) -> Framer {
        Framer {
            state: State::Seeking,
            line: Vec::new(),
            frame: Vec::new(),
            limit,
        }
    }

    /// Takes bytes as they came off the line; returns what they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Framed> {
        let mut out = Vec::new();
        for &byte in bytes {
            if let Some(framed) = self.byte(byte) {
                out.push(framed);
            }
        }
        out
    }

    fn byte(&mut self, byte: u8) -> Option<Framed> {
        match self.state {
            State::Seeking | State::Classic => self.text_byte(byte),
            State::Length {
                value,
                digits,
                trailer,
            } => {
                self.frame.push(byte);
                match byte {
                    b'0'..=b'9' if digits < 6 => {
                        self.state = State::Length {
                            value: value * 10 + usize::from(byte - b'0'),
                            digits: digits + 1,
                            trailer,
                        };
                    }
                    b':' if digits > 0 => {
                        self.state = State::Body {
                            remaining: value,
                            trailer,
                        }
                    }
                    b'%' if digits == 0 && !trailer => self.state = State::Marker { seen: 1 },
                    _ => self.state = State::Seeking,
                }
                self.check_size()
            }
            State::Body { remaining, trailer } => {
                self.frame.push(byte);
                if remaining > 0 {
                    self.state = State::Body {
                        remaining: remaining - 1,
                        trailer,
                    };
                    return self.check_size();
                }
                if byte != b',' {
                    self.state = State::Seeking;
                    return None;
                }
                if trailer {
                    self.state = State::Seeking;
                    return Some(Framed::Packet(std::mem::take(&mut self.frame)));
                }
                self.state = State::Length {
                    value: 0,
                    digits: 0,
                    trailer: false,
                };
                None
            }
            State::Marker { seen } => {
                self.frame.push(byte);
                self.state = match (seen, byte) {
                    (1 | 2, b'%') => State::Marker { seen: seen + 1 },
                    (3, b'\n') => State::Length {
                        value: 0,
                        digits: 0,
                        trailer: true,
                    },
                    _ => State::Seeking,
                };
                None
            }
        }
    }

    fn text_byte(&mut self, byte: u8) -> Option<Framed> {
        if byte != b'\n' {
            // A line longer than a packet may be is noise; keep only its start.
            if self.line.len() <= self.limit {
                self.line.push(byte);
            }
            return None;
        }
        let line = std::mem::take(&mut self.line);
        if line == NETSTRING_START {
            self.frame = b"###\n".to_vec();
            self.state = State::Length {
                value: 0,
                digits: 0,
                trailer: false,
            };
            return None;
        }
        if line.starts_with(START) {
            // A new start inside a packet: the rest of the old one was lost.
            self.frame.clear();
            self.state = State::Classic;
        } else if self.state == State::Seeking {
            return None;
        }
        self.frame.extend_from_slice(&line);
        self.frame.push(b'\n');
        if line.starts_with(END) {
            self.state = State::Seeking;
            return Some(Framed::Packet(std::mem::take(&mut self.frame)));
        }
        self.check_size()
    }

    fn check_size(&mut self) -> Option<Framed> {
        if self.frame.len() <= self.limit {
            return None;
        }
        self.frame.clear();
        self.state = State::Seeking;
        Some(Framed::Oversized)
    }
}

/// The pause between two fragments at `baud`: the time one fragment takes on the line.
pub fn fragment_delay(baud: u32) -> Duration {
    Duration::from_secs_f64(FRAGMENT as f64 * 10.0 / f64::from(baud.max(300)))
}

fn baud_rate(baud: u32) -> BaudRate {
    match baud {
        300 => BaudRate::B300,
        600 => BaudRate::B600,
        1200 => BaudRate::B1200,
        1800 => BaudRate::B1800,
        2400 => BaudRate::B2400,
        4800 => BaudRate::B4800,
        9600 => BaudRate::B9600,
        38_400 => BaudRate::B38400,
        57_600 => BaudRate::B57600,
        115_200 => BaudRate::B115200,
        230_400 => BaudRate::B230400,
        _ => BaudRate::B19200,
    }
}

/// Opens `device` and sets the line up as Heartbeat's `ttysetup` does.
fn open_tty(device: &str, baud: u32) -> Result<OwnedFd, String> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let fd = open(
        device,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open {device}: {e}"))?;
    let mut line = termios::tcgetattr(&fd).map_err(|e| format!("{device} is not a tty: {e}"))?;
    line.input_flags.remove(
        InputFlags::IGNBRK
            | InputFlags::IXANY
            | InputFlags::IXOFF
            | InputFlags::IXON
            | InputFlags::ICRNL
            | InputFlags::PARMRK,
    );
    // Heartbeat also sets ISTRIP and IGNCR: its text packets are 7-bit and never hold a
    // carriage return. Netstring packets carry binary fields, so every byte is kept here.
    line.input_flags.remove(InputFlags::ISTRIP | InputFlags::IGNCR);
    line.input_flags.insert(InputFlags::INPCK | InputFlags::BRKINT);
    line.output_flags.remove(OutputFlags::OPOST);
    line.control_flags
        .remove(ControlFlags::CSIZE | ControlFlags::PARENB);
    line.control_flags
        .insert(ControlFlags::CS8 | ControlFlags::CREAD | ControlFlags::CLOCAL | ControlFlags::CRTSCTS);
    line.local_flags
        .remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG);
    line.control_chars[termios::SpecialCharacterIndices::VMIN as usize] = 1;
    line.control_chars[termios::SpecialCharacterIndices::VTIME as usize] = 1;
    termios::cfsetspeed(&mut line, baud_rate(baud)).map_err(|e| format!("{device}: speed {baud}: {e}"))?;
    termios::tcsetattr(&fd, SetArg::TCSANOW, &line)
        .map_err(|e| format!("{device}: cannot set the line up: {e}"))?;
    let _ = termios::tcflush(&fd, termios::FlushArg::TCIOFLUSH);
    // Heartbeat sends a break so that the far side flushes a half-read packet.
    let _ = termios::tcsendbreak(&fd, 0);
    Ok(fd)
}

/// Opens the serial link on `device` and starts its two tasks (in the current runtime);
/// returns the link the loop receives and sends on.
pub fn open(
    device: &str,
    baud: u32,
    description: &str,
    authenticator: Authenticator,
) -> Result<Link, MediaError> {
    let fail = |message: String| MediaError {
        medium: description.to_owned(),
        message,
    };
    let tty = open_tty(device, baud).map_err(fail)?;
    let loopback = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0);
    let bind = || UdpSocket::bind(loopback).map_err(|e| fail(format!("loopback socket: {e}")));
    let (daemon_side, line_side) = (bind()?, bind()?);
    let daemon_address = daemon_side.local_addr().map_err(|e| fail(e.to_string()))?;
    let line_address = line_side.local_addr().map_err(|e| fail(e.to_string()))?;
    daemon_side
        .connect(line_address)
        .and_then(|()| line_side.connect(daemon_address))
        .map_err(|e| fail(format!("loopback socket: {e}")))?;
    let sender = daemon_side.try_clone().map_err(|e| fail(e.to_string()))?;
    let reader_fd = tty.try_clone().map_err(|e| fail(e.to_string()))?;
    line_side.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
    let line_side =
        std::sync::Arc::new(tokio::net::UdpSocket::from_std(line_side).map_err(|e| fail(e.to_string()))?);
    // SAFETY: each AsyncFd owns its descriptor (two dups of the tty), which stays open and the
    // same for as long as the AsyncFd lives.
    let reader = unsafe { AsyncFd::register_with_interest(reader_fd, Interest::READABLE) }
        .map_err(|e| fail(e.into_parts().1.to_string()))?;
    let writer = unsafe { AsyncFd::register_with_interest(tty, Interest::WRITABLE) }
        .map_err(|e| fail(e.into_parts().1.to_string()))?;
    tokio::spawn(read_line(reader, line_side.clone(), device.to_owned()));
    tokio::spawn(write_line(
        writer,
        line_side,
        device.to_owned(),
        fragment_delay(baud),
        authenticator,
    ));
    tracing::info!("Starting serial heartbeat on tty {device} ({baud} baud)");
    Ok(Link {
        name: device.to_owned(),
        serial: true,
        socket: DatagramSocket::new(daemon_side).map_err(|e| fail(e.to_string()))?,
        destinations: vec![Destination::new(line_address, sender)],
    })
}

/// Reads the tty, frames packets, hands each to the loop.
async fn read_line(tty: AsyncFd<OwnedFd>, loop_side: std::sync::Arc<tokio::net::UdpSocket>, device: String) {
    let mut framer = Framer::new(hbcomm_limit());
    let mut buffer = [0u8; 4096];
    let mut oversized_logged = false;
    loop {
        let Ok(mut guard) = tty.readable().await else {
            return;
        };
        match guard
            .try_io(|fd| nix::unistd::read(fd.get_ref().as_fd(), &mut buffer).map_err(std::io::Error::from))
        {
            Ok(Ok(0)) => {
                // The far end of a pty closed; a real line never says so. Wait for it again.
                guard.clear_ready();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Ok(length)) => {
                for framed in framer.push(&buffer[..length]) {
                    match framed {
                        Framed::Packet(packet) => {
                            let _ = loop_side.try_send(&packet);
                        }
                        Framed::Oversized if !oversized_logged => {
                            oversized_logged = true;
                            tracing::warn!(link = %device, "a packet longer than {} bytes on {device} was dropped", hbcomm_limit());
                        }
                        Framed::Oversized => {}
                    }
                }
            }
            Ok(Err(error)) if error.raw_os_error() == Some(nix::libc::EIO) => {
                // A pty whose other side is not open yet.
                guard.clear_ready();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Err(error)) => {
                tracing::warn!(link = %device, "reading {device}: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_would_block) => {}
        }
    }
}

/// Writes each packet from the loop to the tty in fragments.
async fn write_line(
    tty: AsyncFd<OwnedFd>,
    loop_side: std::sync::Arc<tokio::net::UdpSocket>,
    device: String,
    pause: Duration,
    authenticator: Authenticator,
) {
    let mut packet = vec![0u8; 65_536];
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let Ok(length) = loop_side.recv(&mut packet).await else {
            return;
        };
        let Some(form) = line_form(&packet[..length], &authenticator) else {
            continue;
        };
        // Each packet starts on a line of its own: after a netstring (which ends without a
        // newline) or a half-received packet, the far side finds the next start at once.
        let mut text = Vec::with_capacity(form.len() + 1);
        text.push(b'\n');
        text.extend_from_slice(&form);
        let fragments: Vec<&[u8]> = text.chunks(FRAGMENT).collect();
        for (index, fragment) in fragments.iter().enumerate() {
            if tokio::time::timeout(WRITE_TIMEOUT, write_all(&tty, fragment))
                .await
                .is_err()
            {
                // Nobody reads the far end (no cable, no peer): drop what is queued.
                let _ = termios::tcflush(tty.get_ref(), termios::FlushArg::TCOFLUSH);
                let now = tokio::time::Instant::now();
                if last_warning.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60)) {
                    last_warning = Some(now);
                    tracing::warn!(link = %device, "TTY write timeout on [{device}] (no connection or bad cable?)");
                }
                break;
            }
            if index + 1 < fragments.len() {
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// What goes on the line for one of the loop's packets. Heartbeat's own messages (heartbeats,
/// its protocol messages) in the classic text form, signed again, as Heartbeat's
/// `serial_write` turns netstrings into strings — what a Heartbeat node on the other end
/// reads. A message the text form cannot carry (a newline or a non-ASCII byte in a value, a
/// nested message: crmd's lists) goes as the netstring it is; a Heartbeat node skips it as
/// noise, a heartbeat-rs node reads it.
fn line_form(packet: &[u8], authenticator: &Authenticator) -> Option<Vec<u8>> {
    // The loop's own packet, signed a moment ago: decoded without checking the signature again.
    let limits = crate::wire::Limits::default();
    let framed = crate::wire::frame(packet, &limits).ok()?;
    if framed.format == Format::Classic {
        return Some(packet.to_vec());
    }
    let message = crate::wire::decode(&framed, &limits).ok()?;
    Some(if text_safe(&message) {
        crate::wire::encode(&message, Format::Classic, authenticator)
    } else {
        packet.to_vec()
    })
}

fn text_safe(message: &crate::wire::Message) -> bool {
    message.fields.iter().all(|(name, value)| {
        let printable = |text: &str| text.bytes().all(|b| (0x20..0x7f).contains(&b));
        printable(name)
            && match value {
                crate::wire::Value::Str(text) => printable(text),
                crate::wire::Value::Bin(_) => true,
                crate::wire::Value::Struct(_) => false,
            }
    })
}

async fn write_all(tty: &AsyncFd<OwnedFd>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let Ok(mut guard) = tty.writable().await else {
            return;
        };
        match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), bytes).map_err(std::io::Error::from)) {
            Ok(Ok(written)) => bytes = &bytes[written..],
            Ok(Err(error)) if error.raw_os_error() == Some(nix::libc::EIO) => {
                guard.clear_ready();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Err(_)) => return,
            Err(_would_block) => {}
        }
    }
}

fn hbcomm_limit() -> usize {
    crate::wire::Limits::default().max_packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_cut_from_the_stream_whatever_the_chunks() {
        let stream = b"garbage from before\nsrc=half\n<<<\n>>>\nt=status\nsrc=bravo\n<<<\n>>>\nt=x\n<<<\n";
        for chunk in [1, 3, 7, stream.len()] {
            let mut framer = Framer::new(1000);
            let framed: Vec<Framed> = stream.chunks(chunk).flat_map(|c| framer.push(c)).collect();
            assert_eq!(
                framed,
                [
                    Framed::Packet(b">>>\nt=status\nsrc=bravo\n<<<\n".to_vec()),
                    Framed::Packet(b">>>\nt=x\n<<<\n".to_vec())
                ],
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn a_lost_end_and_an_oversized_packet_do_not_leak_into_the_next() {
        let mut framer = Framer::new(40);
        let framed = framer.push(b">>>\nsrc=a\n>>>\nsrc=b\n<<<\n>>>\nt=0123456789012345678901234567890123456789\n<<<\n>>>\nt=ok\n<<<\n");
        assert_eq!(
            framed,
            [
                Framed::Packet(b">>>\nsrc=b\n<<<\n".to_vec()),
                Framed::Oversized,
                Framed::Packet(b">>>\nt=ok\n<<<\n".to_vec())
            ]
        );
    }

    #[test]
    fn netstring_packets_are_framed_by_their_lengths_newlines_and_all() {
        let packet = b"###\n6:(0)a=b,9:(0)x=1\n2\n,%%%\n4:1 00,".to_vec();
        let mut stream = b"noise\n>>>\nhalf\n".to_vec();
        stream.extend_from_slice(&packet);
        stream.extend_from_slice(b">>>\nt=x\n<<<\n");
        for chunk in [1, 5, stream.len()] {
            let mut framer = Framer::new(1000);
            let framed: Vec<Framed> = stream.chunks(chunk).flat_map(|c| framer.push(c)).collect();
            assert_eq!(
                framed,
                [
                    Framed::Packet(packet.clone()),
                    Framed::Packet(b">>>\nt=x\n<<<\n".to_vec())
                ],
                "chunks of {chunk}"
            );
        }
        // A length that lies loses its packet, not the next one (each starts on a new line).
        let mut framer = Framer::new(1000);
        let framed = framer.push(b"###\n3:(0)a=b,\n>>>\nt=y\n<<<\n");
        assert_eq!(framed, [Framed::Packet(b">>>\nt=y\n<<<\n".to_vec())]);
    }

    #[test]
    fn a_fragment_waits_as_long_as_the_line_takes_to_carry_it() {
        // 512 bytes of 10 bits (start, 8 data, stop) at 19200 baud.
        assert_eq!(fragment_delay(19_200).as_millis(), 266);
        assert_eq!(fragment_delay(115_200).as_millis(), 44);
    }
}
