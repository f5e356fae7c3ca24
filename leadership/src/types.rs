//! Positions in the ship's log, leadership terms, and how durable the log is:
//! what the event log, the replicas and the gatekeeper all speak of.

use std::fmt;

use config::Optimism;
use serde::{Deserialize, Serialize};

/// An event's number in the ship's log: 1 for the first event, no gaps.
/// [`EventNum::NONE`] (0) stands for "before the first event".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct EventNum(pub u64);

impl EventNum {
    pub const NONE: EventNum = EventNum(0);

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The number after this one. No log reaches `u64::MAX` events; a
    /// number that claims to be there (a bad input) stays there rather
    /// than wrapping to 0 or panicking.
    pub const fn next(self) -> EventNum {
        EventNum(self.0.saturating_add(1))
    }
}

impl fmt::Display for EventNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A leadership term: the etcd creation revision of that term's leader key.
/// etcd revisions only grow, so a later leader always has a larger epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

impl Epoch {
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How far the log is durable, as the event log publishes it to the
/// gatekeeper (docs/SPEC.md §3, §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommitState {
    /// The last event on a quorum of disks and applied.
    pub committed: EventNum,
    /// The highest epoch fenced into the log as of `committed`.
    pub epoch: Epoch,
    /// The last event on the Raft leader's own disk.
    pub leader_durable: EventNum,
    /// The last event on every voter's disk.
    pub all_durable: EventNum,
}

impl CommitState {
    /// The last event whose effects may leave under `policy`.
    pub fn releasable(&self, policy: Optimism) -> EventNum {
        match policy {
            Optimism::Quorum => self.committed,
            Optimism::Leader => self.leader_durable.max(self.committed),
            Optimism::All => self.all_durable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releasable_follows_the_policy() {
        let s = CommitState {
            committed: EventNum(10),
            epoch: Epoch(3),
            leader_durable: EventNum(12),
            all_durable: EventNum(8),
        };
        assert_eq!(s.releasable(Optimism::Quorum), EventNum(10));
        assert_eq!(s.releasable(Optimism::Leader), EventNum(12));
        assert_eq!(s.releasable(Optimism::All), EventNum(8));
    }
}
