//! A timer precise to microseconds for the batch linger: tokio's timers
//! fire on millisecond ticks, so a 1 ms linger would last up to 2 ms.
//! A Linux timerfd, polled by tokio, fires on time.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

pub(crate) struct LingerTimer {
    fd: AsyncFd<OwnedFd>,
    armed: Option<Instant>,
}

impl LingerTimer {
    pub fn new() -> io::Result<Self> {
        // SAFETY: timerfd_create takes no pointers; the fd it returns is
        // owned by the OwnedFd from here on.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the OwnedFd is a valid, open descriptor that stays open
        // and unchanged for as long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
        Ok(LingerTimer { fd, armed: None })
    }

    /// Fires at `at` (or disarms with `None`).
    pub fn arm(&mut self, at: Option<Instant>) -> io::Result<()> {
        if self.armed == at {
            return Ok(());
        }
        let value = match at {
            None => libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            Some(at) => {
                // A zero value would disarm: a deadline already past fires
                // after a nanosecond.
                let d = at
                    .saturating_duration_since(Instant::now())
                    .max(std::time::Duration::from_nanos(1));
                libc::timespec {
                    tv_sec: d.as_secs() as libc::time_t,
                    tv_nsec: d.subsec_nanos() as libc::c_long,
                }
            }
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not wanted.
        let r =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
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
                // SAFETY: reads 8 bytes into a buffer of 8.
                let n = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
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
