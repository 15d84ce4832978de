//! Datagram sockets the runtime watches for reading only.
//!
//! tokio's `UdpSocket` asks epoll for write readiness as well as read readiness: every packet
//! sent then woke the daemon a second time when the kernel released the packet's buffer — one
//! wake-up per heartbeat for nothing. Link sockets here only receive (heartbeats leave by the
//! links' connected sockets, `media::Destination`); ping sockets also send their echoes, without
//! waiting: a full send buffer drops the packet and the caller counts it, as Heartbeat does (the
//! next one follows one keepalive later).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A non-blocking datagram socket (UDP, or an ICMP socket seen as one) registered for reading.
#[derive(Debug)]
pub struct DatagramSocket {
    fd: AsyncFd<UdpSocket>,
}

impl DatagramSocket {
    /// Makes `socket` non-blocking and registers it with the runtime.
    pub fn new(socket: UdpSocket) -> io::Result<DatagramSocket> {
        socket.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns the socket, whose descriptor stays open and the same for as
        // long as the AsyncFd lives.
        let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(DatagramSocket { fd })
    }

    /// Sends one datagram now; `WouldBlock` when the send buffer is full.
    pub fn send_to(&self, packet: &[u8], destination: SocketAddr) -> io::Result<usize> {
        self.fd.get_ref().send_to(packet, destination)
    }

    /// The next datagram, into `buffer` (a longer one is cut to its size, as `recv_from` does).
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            // A `WouldBlock` clears the readiness and the loop registers for the next one.
            if let Ok(result) = guard.try_io(|socket| socket.get_ref().recv_from(buffer)) {
                return Poll::Ready(result);
            }
        }
    }

    /// Waits for the next datagram.
    pub async fn recv_from(&self, buffer: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_recv_from(cx, buffer)).await
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }
}

/// The next datagram on any of `sockets`: the index of the socket and the result. The search
/// starts at `first` so that the caller can take the sockets in turn and a busy link (or a
/// flood on one) cannot starve the others.
pub fn poll_any(
    sockets: &[&DatagramSocket],
    first: usize,
    cx: &mut Context<'_>,
    buffer: &mut [u8],
) -> Poll<(usize, io::Result<(usize, SocketAddr)>)> {
    let count = sockets.len();
    for offset in 0..count {
        let index = (first + offset) % count;
        if let Poll::Ready(result) = sockets[index].poll_recv_from(cx, buffer) {
            return Poll::Ready((index, result));
        }
    }
    Poll::Pending
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (DatagramSocket, DatagramSocket) {
        let open = || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            DatagramSocket::new(socket).unwrap()
        };
        (open(), open())
    }

    #[tokio::test]
    async fn datagrams_arrive_whole_and_in_turn() {
        let (first, second) = pair();
        let (sender, _) = pair();
        let mut buffer = [0u8; 64];
        sender.send_to(b"to first", first.local_addr().unwrap()).unwrap();
        sender
            .send_to(b"to second", second.local_addr().unwrap())
            .unwrap();
        let (length, from) = first.recv_from(&mut buffer).await.unwrap();
        assert_eq!(&buffer[..length], b"to first");
        assert_eq!(from, sender.local_addr().unwrap());

        // Both have a datagram waiting: starting at 1 takes the second socket's first.
        sender
            .send_to(b"again first", first.local_addr().unwrap())
            .unwrap();
        let sockets = [&first, &second];
        let mut order = Vec::new();
        for start in [1, 0] {
            let (index, result) = std::future::poll_fn(|cx| poll_any(&sockets, start, cx, &mut buffer)).await;
            let (length, _) = result.unwrap();
            order.push((index, buffer[..length].to_vec()));
        }
        assert_eq!(
            order,
            vec![(1, b"to second".to_vec()), (0, b"again first".to_vec())]
        );

        // Nothing left: a receive must wait, not return something stale.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let polled = poll_any(&sockets, 0, &mut cx, &mut buffer);
        assert!(polled.is_pending(), "a datagram out of nowhere: {polled:?}");
    }
}
