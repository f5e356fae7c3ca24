//! The leader's clock for event timestamps: wall time, but never going
//! backwards along the log, whatever the host's clock does (SPEC §8).

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, strictly increasing.
#[derive(Debug, Default)]
pub struct Clock {
    last_us: u64,
}

impl Clock {
    /// A timestamp later than every one given or observed before.
    pub fn now_us(&mut self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.last_us = wall.max(self.last_us + 1);
        self.last_us
    }

    /// Notes a timestamp from the log, so that a new leader stamps after
    /// the old one even if its own clock is behind.
    pub fn observe(&mut self, us: u64) {
        self.last_us = self.last_us.max(us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_back_even_after_a_future_timestamp() {
        let mut clock = Clock::default();
        let a = clock.now_us();
        let b = clock.now_us();
        assert!(b > a);
        let future = b + 3_600_000_000;
        clock.observe(future);
        assert_eq!(clock.now_us(), future + 1);
        clock.observe(5);
        assert_eq!(clock.now_us(), future + 2);
    }
}
