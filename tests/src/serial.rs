//! A null-modem cable made of two pseudo-terminals: whatever a node writes to one end comes
//! out of the other, through a relay that can also cut the cable and put bytes on the line.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Two tty ends joined back to back.
pub struct NullModem {
    /// The ttys the nodes open (`serial` lines name them).
    pub ends: [PathBuf; 2],
    masters: [Arc<OwnedFd>; 2],
    // Kept open so that a master never reads EIO while no node has its end open.
    _slaves: [OwnedFd; 2],
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    relays: Vec<JoinHandle<()>>,
}

impl NullModem {
    /// A new cable.
    #[allow(clippy::new_without_default)]
    pub fn new() -> NullModem {
        let mut masters = Vec::new();
        let mut slaves = Vec::new();
        let mut ends = Vec::new();
        for _ in 0..2 {
            let pty = nix::pty::openpty(None, None).expect("openpty");
            // Raw from the start: a cooked end would echo what the relay writes back into it.
            let mut line = nix::sys::termios::tcgetattr(&pty.slave).expect("tcgetattr");
            nix::sys::termios::cfmakeraw(&mut line);
            nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &line)
                .expect("tcsetattr");
            ends.push(nix::unistd::ttyname(&pty.slave).expect("ttyname"));
            masters.push(Arc::new(pty.master));
            slaves.push(pty.slave);
        }
        let masters: [Arc<OwnedFd>; 2] = [masters[0].clone(), masters[1].clone()];
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let relays = [(0, 1), (1, 0)]
            .into_iter()
            .map(|(from, to)| {
                let (from, to) = (masters[from].clone(), masters[to].clone());
                let (cut, stop) = (cut.clone(), stop.clone());
                std::thread::spawn(move || relay(&from, &to, &cut, &stop))
            })
            .collect();
        let mut slaves = slaves.into_iter();
        NullModem {
            ends: [ends[0].clone(), ends[1].clone()],
            masters,
            _slaves: [slaves.next().expect("slave"), slaves.next().expect("slave")],
            cut,
            stop,
            relays,
        }
    }

    /// Cuts the cable (`true`: nothing crosses) or mends it.
    pub fn cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    /// Puts `bytes` on the line towards the node at end `side`, as if the other end sent them.
    pub fn inject(&self, side: usize, bytes: &[u8]) {
        write_all(&self.masters[side], bytes);
    }
}

fn write_all(fd: &OwnedFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(error) => panic!("writing to the cable: {error}"),
        }
    }
}

fn relay(from: &OwnedFd, to: &OwnedFd, cut: &AtomicBool, stop: &AtomicBool) {
    let mut buffer = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let mut ready = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
        // Woken at least every 50 ms to see whether the cable is gone.
        if !matches!(poll(&mut ready, PollTimeout::from(50u16)), Ok(n) if n > 0) {
            continue;
        }
        match nix::unistd::read(from, &mut buffer) {
            Ok(0) | Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Ok(length) if !cut.load(Ordering::SeqCst) => write_all(to, &buffer[..length]),
            Ok(_) => {}
        }
    }
}

impl Drop for NullModem {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for relay in self.relays.drain(..) {
            let _ = relay.join();
        }
    }
}
