//! Positions in the Raft log.

use std::fmt;

use serde::Serialize;

/// An entry's index in a node's Raft log (openraft's log index). It is not
/// an [`EventNum`](crate::EventNum): an entry holds a batch of events, a
/// fence, a watermark or a membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct LogIndex(pub u64);

impl LogIndex {
    pub const fn get(self) -> u64 {
        self.0
    }

    /// How many entries a replica that has `matched` on its disk is behind a
    /// log whose last entry is `last` (`None`: no entry).
    pub fn lag(last: Option<LogIndex>, matched: Option<LogIndex>) -> u64 {
        last.map_or(0, LogIndex::get)
            .saturating_sub(matched.map_or(0, LogIndex::get))
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_entries_behind_and_never_goes_negative() {
        assert_eq!(LogIndex::lag(Some(LogIndex(10)), Some(LogIndex(7))), 3);
        assert_eq!(LogIndex::lag(Some(LogIndex(10)), None), 10);
        assert_eq!(LogIndex::lag(None, None), 0);
        assert_eq!(LogIndex::lag(Some(LogIndex(3)), Some(LogIndex(5))), 0);
    }
}
