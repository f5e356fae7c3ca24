//! The fence: which batches the log accepts (docs/SPEC.md §6.2).
//!
//! One pure function decides a batch's fate from the log's position and the
//! highest epoch applied. The state machine runs it when a batch is applied
//! (the verdict that counts); the log store runs it when a batch reaches a
//! node's disk, to know which events there are valid (§3, `leader_durable`).
//! Both see the same batches in the same order, so they agree.
//!
//! Epochs are etcd create revisions, so one epoch belongs to one replica;
//! the fence remembers which replica wrote at the highest epoch, and
//! refuses another one writing at it (an etcd whose history went back can
//! hand an epoch out twice). Lower epochs are refused whoever writes.

use config::ReplicaId;
use eventlog_client::AppendError;

use crate::types::{Epoch, EventNum};

/// Where the log stands as far as the fence is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct FenceState {
    /// The last event stored.
    pub last: EventNum,
    /// The highest epoch applied.
    pub highest: Epoch,
    /// The replica that fenced or wrote at `highest` (`None`: not known,
    /// a log written before writers were recorded, or no epoch yet).
    #[serde(with = "crate::command::opt_replica")]
    pub holder: Option<ReplicaId>,
}

/// Why the fence refused a batch. A refused batch changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Rejection {
    /// The batch's epoch is older than the highest applied.
    StaleEpoch { highest: Epoch },
    /// The batch's epoch is the highest applied, which another replica
    /// holds.
    EpochReused {
        epoch: Epoch,
        #[serde(with = "crate::command::replica")]
        holder: ReplicaId,
        #[serde(with = "crate::command::replica")]
        by: ReplicaId,
    },
    /// The batch starts beyond the next event number.
    Gap { expected: EventNum },
    /// The batch starts at or below the last event stored.
    Duplicate { last: EventNum },
}

impl FenceState {
    /// The state after a batch of `count` events from `first` in `epoch`
    /// written by replica `by` (`None`: not recorded, an old entry), or why
    /// it is refused. A batch of no events is a fence: it raises the
    /// highest epoch and stores nothing.
    ///
    /// The epoch is checked first, so an old leader learns that it was
    /// superseded rather than where the log ends. `first + count` must not
    /// overflow (the API refuses such requests before they are proposed).
    pub fn check(
        &self,
        epoch: Epoch,
        first: EventNum,
        count: u64,
        by: Option<ReplicaId>,
    ) -> Result<FenceState, Rejection> {
        if epoch < self.highest {
            return Err(Rejection::StaleEpoch {
                highest: self.highest,
            });
        }
        let holder = if epoch == self.highest {
            if let (Some(holder), Some(by)) = (self.holder, by)
                && holder != by
            {
                return Err(Rejection::EpochReused { epoch, holder, by });
            }
            self.holder.or(by)
        } else {
            by
        };
        if count == 0 {
            return Ok(FenceState {
                last: self.last,
                highest: epoch,
                holder,
            });
        }
        let expected = self.last.next();
        if first > expected {
            return Err(Rejection::Gap { expected });
        }
        if first < expected {
            return Err(Rejection::Duplicate { last: self.last });
        }
        Ok(FenceState {
            last: EventNum(first.get() + count - 1),
            highest: epoch,
            holder,
        })
    }
}

impl From<Rejection> for AppendError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::StaleEpoch { highest } => AppendError::StaleEpoch { highest },
            Rejection::EpochReused { epoch, holder, by } => {
                AppendError::EpochReused { epoch, holder, by }
            }
            Rejection::Gap { expected } => AppendError::Gap { expected },
            Rejection::Duplicate { last } => AppendError::Duplicate { last },
        }
    }
}

impl Rejection {
    /// The `reason` label of a refused append.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Rejection::StaleEpoch { .. } => "stale_epoch",
            Rejection::EpochReused { .. } => "epoch_reused",
            Rejection::Gap { .. } => "gap",
            Rejection::Duplicate { .. } => "duplicate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(last: u64, highest: u64) -> FenceState {
        FenceState {
            last: EventNum(last),
            highest: Epoch(highest),
            holder: None,
        }
    }

    fn replica(id: u32) -> Option<ReplicaId> {
        ReplicaId::new(id)
    }

    #[test]
    fn the_next_batch_in_the_current_or_a_newer_epoch_is_stored() {
        assert_eq!(at(0, 0).check(Epoch(5), EventNum(1), 3, None), Ok(at(3, 5)));
        assert_eq!(at(3, 5).check(Epoch(5), EventNum(4), 1, None), Ok(at(4, 5)));
        assert_eq!(at(4, 5).check(Epoch(9), EventNum(5), 2, None), Ok(at(6, 9)));
    }

    #[test]
    fn an_older_epoch_is_refused_before_anything_else() {
        let s = at(10, 7);
        let stale = Err(Rejection::StaleEpoch { highest: Epoch(7) });
        assert_eq!(s.check(Epoch(6), EventNum(11), 1, None), stale);
        assert_eq!(s.check(Epoch(6), EventNum(3), 1, None), stale);
        assert_eq!(s.check(Epoch(6), EventNum(30), 1, None), stale);
        assert_eq!(s.check(Epoch(6), EventNum(0), 0, None), stale);
    }

    #[test]
    fn gaps_and_duplicates_are_refused_with_where_the_log_ends() {
        let s = at(10, 7);
        assert_eq!(
            s.check(Epoch(7), EventNum(12), 1, None),
            Err(Rejection::Gap {
                expected: EventNum(11)
            })
        );
        assert_eq!(
            s.check(Epoch(8), EventNum(10), 2, None),
            Err(Rejection::Duplicate { last: EventNum(10) })
        );
        assert_eq!(
            s.check(Epoch(7), EventNum(1), 1, None),
            Err(Rejection::Duplicate { last: EventNum(10) })
        );
    }

    #[test]
    fn a_fence_raises_the_epoch_and_keeps_the_position() {
        let s = at(10, 7);
        assert_eq!(s.check(Epoch(9), EventNum(0), 0, None), Ok(at(10, 9)));
        assert_eq!(s.check(Epoch(7), EventNum(0), 0, None), Ok(at(10, 7)));
        // Once fenced, the old epoch's next batch is refused.
        let fenced = s.check(Epoch(9), EventNum(0), 0, None).unwrap();
        assert_eq!(
            fenced.check(Epoch(7), EventNum(11), 1, None),
            Err(Rejection::StaleEpoch { highest: Epoch(9) })
        );
    }

    #[test]
    fn two_writers_cannot_interleave() {
        // Writer A (epoch 3) and writer B (epoch 4) both believe they lead and
        // both send batches for events 1..; whatever the order in the log,
        // once one of B's batches is applied A's are refused.
        let mut s = at(0, 0);
        s = s.check(Epoch(3), EventNum(1), 2, None).unwrap(); // A: 1-2
        s = s.check(Epoch(4), EventNum(3), 2, None).unwrap(); // B: 3-4
        assert!(matches!(
            s.check(Epoch(3), EventNum(5), 1, None),
            Err(Rejection::StaleEpoch { .. })
        )); // A: 5
        assert_eq!(s, at(4, 4));
    }

    #[test]
    fn another_replica_writing_at_the_highest_epoch_is_refused() {
        let (a, b) = (replica(1), replica(2));
        let reused = Err(Rejection::EpochReused {
            epoch: Epoch(8),
            holder: a.unwrap(),
            by: b.unwrap(),
        });
        // A fences at 8 and writes.
        let s = at(10, 7).check(Epoch(8), EventNum(0), 0, a).unwrap();
        assert_eq!(s.holder, a);
        let s = s.check(Epoch(8), EventNum(11), 2, a).unwrap();
        assert_eq!((s.last, s.holder), (EventNum(12), a));
        // etcd hands 8 to B as well: neither its fence nor its batch passes.
        assert_eq!(s.check(Epoch(8), EventNum(0), 0, b), reused);
        assert_eq!(s.check(Epoch(8), EventNum(13), 1, b), reused);
        // A goes on; B at a newer epoch takes over, and then A is stale.
        assert!(s.check(Epoch(8), EventNum(13), 1, a).is_ok());
        let t = s.check(Epoch(9), EventNum(0), 0, b).unwrap();
        assert_eq!(t.holder, b);
        assert_eq!(
            t.check(Epoch(8), EventNum(13), 1, a),
            Err(Rejection::StaleEpoch { highest: Epoch(9) })
        );
    }

    #[test]
    fn a_batch_whose_writer_is_not_recorded_keeps_the_holder() {
        let a = replica(1);
        let s = at(10, 7).check(Epoch(8), EventNum(0), 0, a).unwrap();
        // An entry written before writers were recorded.
        let s = s.check(Epoch(8), EventNum(11), 1, None).unwrap();
        assert_eq!(s.holder, a);
        let s = s.check(Epoch(9), EventNum(12), 1, None).unwrap();
        assert_eq!(s.holder, None);
        // Nobody to compare with: the first writer at 9 is recorded.
        let s = s.check(Epoch(9), EventNum(13), 1, replica(2)).unwrap();
        assert_eq!(s.holder, replica(2));
    }
}
