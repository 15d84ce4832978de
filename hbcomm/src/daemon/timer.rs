//! Kernel timers (timerfd) for hbcomm's two clocks: the keepalive period and the membership's
//! next deadline. tokio's timer wheel wakes the process up early to re-file any timer more than
//! 64 ms away; with a heartbeat every 200 ms and deadlines moving at every packet, that doubled
//! an idle node's wake-ups. A timerfd wakes it exactly when it expires, on the monotonic clock.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// nix's TimerFd, seen by tokio as a raw descriptor.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// One timerfd registered with the runtime.
pub struct FdTimer {
    fd: AsyncFd<Timer>,
}

impl FdTimer {
    /// A disarmed timer on CLOCK_MONOTONIC.
    pub fn new() -> std::io::Result<FdTimer> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: the AsyncFd owns the TimerFd, whose descriptor stays open and the same for
        // as long as the AsyncFd lives.
        let fd = unsafe { AsyncFd::register_with_interest(Timer(timer), Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(FdTimer { fd })
    }

    /// Fires `first` from now (at once for zero: a node starting announces itself at once, as
    /// Heartbeat does), then every `period`.
    pub fn set_periodic(&self, first: Duration, period: Duration) -> std::io::Result<()> {
        // A zero value would disarm the timer: at once is in 1 µs.
        let first = TimeSpec::from_duration(first.max(Duration::from_micros(1)));
        let spec = TimeSpec::from_duration(period.max(Duration::from_micros(1)));
        self.fd.get_ref().0.set(
            Expiration::IntervalDelayed(first, spec),
            TimerSetTimeFlags::empty(),
        )?;
        Ok(())
    }

    /// Fires once at `deadline` (at once if it has passed); `None` disarms it.
    pub fn set_deadline(&self, deadline: Option<Instant>) -> std::io::Result<()> {
        match deadline {
            None => self.fd.get_ref().0.unset()?,
            Some(at) => {
                // A zero value would disarm the timer: a passed deadline fires in 1 µs.
                let after = at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_micros(1));
                self.fd.get_ref().0.set(
                    Expiration::OneShot(TimeSpec::from_duration(after)),
                    TimerSetTimeFlags::empty(),
                )?;
            }
        }
        Ok(())
    }

    /// Waits until the timer fires; returns how many expirations passed.
    pub async fn fired(&self) -> std::io::Result<u64> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut count = [0u8; 8];
            match nix::unistd::read(self.fd.get_ref().0.as_fd(), &mut count) {
                // The read took every expiration: the next one makes the descriptor readable
                // again (a fresh readiness event), so no second read to learn it is empty.
                Ok(8) => {
                    guard.clear_ready();
                    return Ok(u64::from_ne_bytes(count));
                }
                Ok(_) => {
                    guard.clear_ready();
                    return Ok(1);
                }
                Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                Err(error) => return Err(error.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deadlines_and_periods_fire_on_time() {
        let timer = FdTimer::new().unwrap();
        let begun = Instant::now();
        timer
            .set_deadline(Some(begun + Duration::from_millis(30)))
            .unwrap();
        timer.fired().await.unwrap();
        assert!(begun.elapsed() >= Duration::from_millis(30));
        timer.set_deadline(Some(begun)).unwrap();
        timer.fired().await.unwrap();
        timer
            .set_periodic(Duration::ZERO, Duration::from_millis(10))
            .unwrap();
        let begun = Instant::now();
        timer.fired().await.unwrap();
        assert!(
            begun.elapsed() < Duration::from_millis(10),
            "the first one at once"
        );
        for _ in 0..3 {
            timer.fired().await.unwrap();
        }
        assert!(begun.elapsed() >= Duration::from_millis(25));
        timer.set_deadline(None).unwrap();
    }
}
