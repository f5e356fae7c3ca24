//! The bound on envelopes that need no commit (event 0: STUN answers,
//! forwarding): a token bucket the leader's agent and the gatekeeper each
//! keep (docs/SPEC.md §6.4).

use tokio::time::Instant;

/// `rate` packets a second, in bursts of up to a second's worth.
#[derive(Debug, Clone)]
pub struct StatelessBudget {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl StatelessBudget {
    /// A full bucket at `now`.
    pub fn new(rate: u32, now: Instant) -> Self {
        StatelessBudget {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            at: now,
        }
    }

    /// Takes one packet's worth at `now`, if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_of_a_seconds_worth_then_the_rate() {
        let start = Instant::now();
        let mut budget = StatelessBudget::new(10, start);
        assert_eq!((0..100).filter(|_| budget.take(start)).count(), 10);
        let later = start + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| budget.take(later)).count(), 5);
        // A clock read out of order refills nothing.
        assert!(!budget.take(start));
        // Idle for long: still only a second's worth.
        let much_later = later + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| budget.take(much_later)).count(), 10);
    }
}
