//! How the client and the node wait between retries: exponential backoff
//! with jitter (backon's), which also tells the delay it will wait next, so
//! that a caller can give up before a wait that would overrun a deadline.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Delays that double from `min` up to `max`, each plus a random jitter of
/// up to as much again, so that clients that failed together do not retry
/// together.
#[derive(Debug)]
pub struct Backoff {
    delays: ExponentialBackoff,
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        let next = delays.next().unwrap_or(max);
        Backoff { delays, next, max }
    }

    /// The client's: 25 ms to 1 s.
    pub fn client() -> Self {
        Backoff::new(Duration::from_millis(25), Duration::from_secs(1))
    }

    /// The commit watch's: 10 ms to 100 ms. Every effect the gatekeeper
    /// holds waits for the watch to come back after a leader dies (until
    /// the new leader is elected, the nodes still name the dead one), and
    /// the watch is one stream per gatekeeper: retrying it often costs a
    /// few status requests a second.
    pub fn commit_watch() -> Self {
        Backoff::new(Duration::from_millis(10), Duration::from_millis(100))
    }

    /// The delay the next wait will take.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Takes the next delay (for a caller that schedules it itself) and
    /// moves on to the one after.
    pub fn advance(&mut self) -> Duration {
        let now = self.next;
        self.next = self.delays.next().unwrap_or(self.max);
        now
    }

    /// Waits the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.advance()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_at_most_as_much_again_in_jitter() {
        let (min, max) = (Duration::from_millis(25), Duration::from_secs(1));
        let mut b = Backoff::new(min, max);
        let mut base = min;
        for _ in 0..12 {
            let d = b.advance();
            assert!(d >= base && d <= base * 2, "{d:?} for a base of {base:?}");
            base = (base * 2).min(max);
        }
    }
}
