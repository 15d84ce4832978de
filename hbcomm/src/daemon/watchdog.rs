//! The watchdog device (ha.cf's `watchdog`), opened and written as Heartbeat 3.0.6 does:
//! `WDIOC_SETTIMEOUT` to [`hbapi::config::watchdog_timeout`], one byte per tickle, and `V`
//! before a planned close (Linux's magic close, which disarms it). Closed any other way —
//! hbcomm killed, the whole stack gone — the device stays armed and resets the machine.
//! Whether to feed it is [`crate::watchdog::Guard`]'s decision.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, libc_int);

#[allow(non_camel_case_types)]
type libc_int = std::ffi::c_int;

/// How often a failing write is logged.
const WRITE_ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// An open watchdog device.
pub struct Device {
    file: File,
    path: String,
    last_error_logged: Option<Instant>,
}

impl Device {
    /// Opens `path` and sets its timeout. A device that cannot be opened is an error: peers
    /// shorten their wait for a lost node by the watchdog, so running without it would not
    /// be safe. A file that takes no `WDIOC_SETTIMEOUT` (the lab's stand-in, a FIFO) keeps
    /// its own timeout, and the log says so.
    pub fn open(path: &str, timeout: Duration) -> Result<Device, String> {
        // Non-blocking: a FIFO with no reader fails at once (ENXIO) instead of hanging
        // start-up; a device ignores the flag.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| format!("watchdog {path}: cannot open: {e}"))?;
        let mut device = Device {
            file,
            path: path.to_owned(),
            last_error_logged: None,
        };
        let mut seconds = libc_int::try_from(timeout.as_secs()).unwrap_or(libc_int::MAX);
        // SAFETY: the descriptor is open for the life of `device.file`, and `seconds` is a
        // valid c_int the driver reads and writes back.
        match unsafe { wdioc_settimeout(device.file.as_raw_fd(), &mut seconds) } {
            Ok(_) => {
                let mut actual: libc_int = 0;
                // SAFETY: as above; the driver writes one c_int.
                if unsafe { wdioc_gettimeout(device.file.as_raw_fd(), &mut actual) }.is_ok() {
                    seconds = actual;
                }
                tracing::info!(device = path, timeout_s = seconds, "Using watchdog device: {path} (timeout {seconds} s, fed with every heartbeat of this node)");
            }
            Err(nix::errno::Errno::ENOTTY | nix::errno::Errno::EINVAL) => {
                tracing::warn!(device = path, "Using watchdog device: {path}, which takes no timeout (not a watchdog driver: a stand-in?); it must reset this node {} s after the last write, as a driver would", timeout.as_secs());
            }
            Err(error) => {
                tracing::error!(
                    device = path,
                    "WDIOC_SETTIMEOUT: failed to set the watchdog timer of {path} to {} s: {error}",
                    timeout.as_secs()
                );
            }
        }
        device.tickle();
        Ok(device)
    }

    /// One write: the timer starts over.
    pub fn tickle(&mut self) {
        if let Err(error) = self.file.write_all(b"\0") {
            let now = Instant::now();
            if self
                .last_error_logged
                .is_none_or(|at| now.saturating_duration_since(at) >= WRITE_ERROR_LOG_EVERY)
            {
                self.last_error_logged = Some(now);
                tracing::error!(device = %self.path, "watchdog write failure on {}: {error} (this node will be reset if it goes on)", self.path);
            }
        }
    }

    /// Closes the device: disarmed with the magic `V` when `disarm`, else left armed.
    pub fn close(mut self, disarm: bool) {
        if disarm {
            match self.file.write_all(b"V") {
                Ok(()) => {
                    tracing::info!(device = %self.path, "watchdog {} disarmed (magic close)", self.path)
                }
                Err(error) => {
                    tracing::error!(device = %self.path, "watchdog write of the magic character to {} failed: {error}: it stays armed", self.path)
                }
            }
        } else {
            tracing::error!(device = %self.path, "watchdog {} closed ARMED: groups may still run here; this machine resets when it expires", self.path);
        }
    }
}
