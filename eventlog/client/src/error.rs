//! The errors callers of the event log see, as typed values.

use std::time::Duration;

use config::ReplicaId;

use crate::types::{Epoch, EventNum};

/// Why an append (or a fence) did not store its batch.
///
/// The fence's verdicts (`StaleEpoch`, `Gap`, `Duplicate`, `EpochReused`;
/// docs/SPEC.md §6.2) and `EpochRegressed` are final: the batch is not in
/// the log. `Unavailable` and `Timeout` mean the
/// client could not find out: the batch may or may not have been stored, and
/// the writer resumes from the first unacknowledged event (§4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("stale epoch: the log has applied epoch {highest}, newer than the batch's")]
    StaleEpoch { highest: Epoch },
    /// The batch's epoch is the log's highest, but another replica fenced
    /// the log at it: etcd handed one epoch to two replicas.
    #[error(
        "epoch {epoch} reused: replica {holder} fenced the log at it, and replica {by} now \
         writes at it; etcd handed the same epoch out twice, so its history went back (restored \
         from an older snapshot, or replaced); see docs/DEPLOY.md, \"etcd restored from an older snapshot\""
    )]
    EpochReused {
        epoch: Epoch,
        holder: ReplicaId,
        by: ReplicaId,
    },
    /// etcd says the writer holds `etcd`, below the log's highest epoch:
    /// no leader can write until etcd's revisions pass `log` again.
    #[error(
        "epoch regressed: etcd says this replica holds epoch {etcd}, but the log has applied \
         epoch {log}; etcd's history went back (restored from an older snapshot, or replaced), \
         and no leader can write until its revisions pass {log} again; see docs/DEPLOY.md, \"etcd restored from an older snapshot\""
    )]
    EpochRegressed { etcd: Epoch, log: Epoch },
    #[error("gap: the batch does not start at the next event number, {expected}")]
    Gap { expected: EventNum },
    #[error("duplicate: the log already holds events up to {last}")]
    Duplicate { last: EventNum },
    #[error("event {event} is {size} bytes, over the limit of {limit} (eventlog.max_event_bytes)")]
    EventTooLarge {
        event: EventNum,
        size: u64,
        limit: u64,
    },
    #[error(
        "the batch from event {first} is {size} bytes, over the limit of {limit} (eventlog.batch.max_bytes)"
    )]
    BatchTooLarge {
        first: EventNum,
        size: u64,
        limit: u64,
    },
    #[error("event {given} appended out of order: the writer's next event is {expected}")]
    OutOfOrder { expected: EventNum, given: EventNum },
    #[error("invalid append: {0}")]
    Invalid(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("the event log is unavailable ({0}); the batch may or may not be stored")]
    Unavailable(String),
    #[error("no commit within {0:?}; the batch may or may not be stored")]
    Timeout(Duration),
}

impl AppendError {
    /// Whether the batch is known not to be in the log.
    pub fn is_rejection(&self) -> bool {
        !matches!(self, AppendError::Unavailable(_) | AppendError::Timeout(_))
    }
}

/// Why a read stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error(
        "events before {first_available} are purged (every replica checkpointed them); restore \
         the ship from a checkpoint at or after {}",
        EventNum(first_available.get().saturating_sub(1))
    )]
    Purged { first_available: EventNum },
    #[error("invalid read: {0}")]
    Invalid(String),
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
}

/// A status, membership or watermark request that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("refused: {0}")]
    Rejected(String),
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}
