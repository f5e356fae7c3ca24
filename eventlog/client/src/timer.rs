//! A timer precise to microseconds for the batch linger: tokio's timers
//! fire on millisecond ticks, so a 1 ms linger would last up to 2 ms.
//! A Linux timerfd, polled by tokio, fires on time.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// The timerfd, as tokio's reactor watches it.
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub(crate) struct LingerTimer {
    fd: AsyncFd<Fd>,
    armed: Option<Instant>,
}

impl LingerTimer {
    pub fn new() -> io::Result<Self> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: the TimerFd owns its descriptor, which stays open and
        // unchanged until the AsyncFd (its only owner) drops it.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(timer), Interest::READABLE)? };
        Ok(LingerTimer { fd, armed: None })
    }

    /// Fires at `at` (or disarms with `None`).
    pub fn arm(&mut self, at: Option<Instant>) -> io::Result<()> {
        if self.armed == at {
            return Ok(());
        }
        let timer = &self.fd.get_ref().0;
        match at {
            None => timer.unset()?,
            Some(at) => {
                // A zero value would disarm: a deadline already past fires
                // after a nanosecond.
                let d = at
                    .saturating_duration_since(Instant::now())
                    .max(std::time::Duration::from_nanos(1));
                timer.set(
                    Expiration::OneShot(TimeSpec::from_duration(d)),
                    TimerSetTimeFlags::empty(),
                )?;
            }
        }
        self.armed = at;
        Ok(())
    }

    /// Resolves when the armed deadline passes.
    pub async fn fired(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let read = guard.try_io(|fd| {
                let mut expirations = [0u8; 8];
                nix::unistd::read(fd.get_ref().0.as_fd(), &mut expirations)
                    .map(drop)
                    .map_err(io::Error::from)
            });
            match read {
                Ok(Ok(())) => {
                    self.armed = None;
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e),
                // Not yet: readiness was stale.
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_on_time_to_well_under_a_millisecond() {
        let mut t = LingerTimer::new().unwrap();
        let start = Instant::now();
        t.arm(Some(start + Duration::from_micros(300))).unwrap();
        t.fired().await.unwrap();
        let took = start.elapsed();
        assert!(took >= Duration::from_micros(300), "{took:?}");
        // A generous bound: tokio's own timers would take a whole tick.
        assert!(took < Duration::from_millis(50), "{took:?}");
        t.arm(Some(start)).unwrap();
        t.fired().await.unwrap();
    }
}
