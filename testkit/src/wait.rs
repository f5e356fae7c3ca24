//! Waiting for a condition with a deadline: the one poll loop of every test,
//! benchmark and the demo. On time-out it says what it waited for, for how
//! long, and what the probe saw last.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`until`] asks again.
pub const POLL: Duration = Duration::from_millis(50);

/// When to give up: an [`Instant`], or a [`Duration`] from now.
pub trait Deadline {
    fn instant(self) -> Instant;
}

impl Deadline for Instant {
    fn instant(self) -> Instant {
        self
    }
}

impl Deadline for Duration {
    fn instant(self) -> Instant {
        Instant::now() + self
    }
}

/// What a probe says: done with a value, or not yet (and, if it can tell,
/// what it saw).
pub trait Outcome<T> {
    fn into_outcome(self) -> Result<T, Option<String>>;
}

impl<T> Outcome<T> for Option<T> {
    fn into_outcome(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: fmt::Display> Outcome<T> for Result<T, E> {
    fn into_outcome(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

impl Outcome<()> for bool {
    fn into_outcome(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

/// A wait that ran out of time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what}{}", last.as_ref().map(|l| format!(" (last: {l})")).unwrap_or_default())]
pub struct TimedOut {
    pub what: String,
    pub waited: Duration,
    /// What the probe said the last time, if it said anything.
    pub last: Option<String>,
}

impl From<TimedOut> for std::io::Error {
    fn from(e: TimedOut) -> Self {
        std::io::Error::new(std::io::ErrorKind::TimedOut, e)
    }
}

/// Asks `probe` every [`POLL`] until it is done, or `deadline` passes; the
/// probe is asked at least once, and once more at the deadline.
pub fn until<T, O: Outcome<T>>(
    deadline: impl Deadline,
    what: impl fmt::Display,
    probe: impl FnMut() -> O,
) -> Result<T, TimedOut> {
    every(POLL, deadline, what, probe)
}

/// [`until`], asking every `interval` (finer where a benchmark times by it).
pub fn every<T, O: Outcome<T>>(
    interval: Duration,
    deadline: impl Deadline,
    what: impl fmt::Display,
    mut probe: impl FnMut() -> O,
) -> Result<T, TimedOut> {
    let wait = Wait::new(deadline, interval);
    loop {
        match wait.judge(probe(), &what) {
            Ok(done) => return done,
            Err(pause) => std::thread::sleep(pause),
        }
    }
}

/// [`until`] for an async probe, sleeping on tokio's timer in between.
pub async fn until_async<T, O: Outcome<T>, F: Future<Output = O>>(
    deadline: impl Deadline,
    what: impl fmt::Display,
    mut probe: impl FnMut() -> F,
) -> Result<T, TimedOut> {
    let wait = Wait::new(deadline, POLL);
    loop {
        match wait.judge(probe().await, &what) {
            Ok(done) => return done,
            Err(pause) => tokio::time::sleep(pause).await,
        }
    }
}

/// One wait's clock: what each answer means, and how long to pause.
struct Wait {
    started: Instant,
    deadline: Instant,
    interval: Duration,
}

impl Wait {
    fn new(deadline: impl Deadline, interval: Duration) -> Wait {
        Wait {
            started: Instant::now(),
            deadline: deadline.instant(),
            interval,
        }
    }

    /// The wait's end (done, or out of time), or how long to pause before
    /// asking again: never past the deadline, so the probe's last chance
    /// comes at it.
    fn judge<T, O: Outcome<T>>(
        &self,
        answer: O,
        what: &impl fmt::Display,
    ) -> Result<Result<T, TimedOut>, Duration> {
        let now = Instant::now();
        match answer.into_outcome() {
            Ok(t) => Ok(Ok(t)),
            Err(last) if now >= self.deadline => Ok(Err(TimedOut {
                what: what.to_string(),
                waited: now - self.started,
                last,
            })),
            Err(_) => Err(self.interval.min(self.deadline - now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_what_the_probe_found() {
        let mut n = 0;
        let got = until(Duration::from_secs(5), "three asks", || {
            n += 1;
            (n == 3).then_some(n * 10)
        });
        assert_eq!(got.unwrap(), 30);
    }

    #[test]
    fn a_time_out_names_the_wait_and_the_last_answer() {
        let e = until(Duration::from_millis(120), "x to be 1", || {
            Err::<(), _>("x is 0")
        })
        .unwrap_err();
        assert!(e.waited >= Duration::from_millis(120), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "timed out after {:?} waiting for x to be 1 (last: x is 0)",
                e.waited
            )
        );
        // A probe that was never true is still asked at the deadline.
        let mut asked = 0;
        let past = Instant::now() - Duration::from_secs(1);
        assert!(
            until(past, "nothing", || {
                asked += 1;
                false
            })
            .is_err()
        );
        assert_eq!(asked, 1);
    }

    #[test]
    fn async_probes_wait_the_same_way() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut n = 0;
        let got = rt.block_on(until_async(Duration::from_secs(5), "two asks", || {
            n += 1;
            let done = n == 2;
            async move { done }
        }));
        assert!(got.is_ok());
        let e = rt
            .block_on(until_async(Duration::from_millis(60), "never", || async {
                None::<()>
            }))
            .unwrap_err();
        assert_eq!(e.what, "never");
    }
}
