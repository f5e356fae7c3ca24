//! What goes through Raft: the commands the state machine applies and what
//! applying them returns.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::fence::Rejection;
use crate::types::{Epoch, EventNum};

/// One Raft entry's worth of change to the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A fenced batch of events (a fence if it has none).
    Append(Batch),
    /// A replica's checkpoint watermark (docs/SPEC.md §5).
    Watermark { replica: u32, event: EventNum },
}

/// A batch `{epoch, first event number, events}` as the writer sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub epoch: Epoch,
    pub first: EventNum,
    pub events: Vec<NewEvent>,
    /// The writer lost track of this batch and sent it again: if the log
    /// already holds exactly these events, that is a success.
    pub retry: bool,
}

/// An event as the writer sends it; its number follows from its batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The mug of the ship's state after the event.
    pub mug: u32,
    /// The jammed event.
    pub data: Bytes,
}

/// What applying an entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The batch's events are stored (or it was a fence); `last` is the last
    /// event number in the log.
    Stored { last: EventNum },
    /// The fence refused the batch; nothing changed.
    Rejected(Rejection),
    /// The watermark is recorded; the purge point is now `purge_point`.
    Watermark { purge_point: EventNum },
    /// The watermark is beyond the last event stored, so it cannot be a
    /// checkpoint of this log; nothing changed.
    WatermarkAhead { last: EventNum },
    /// An entry that is not a command (a membership change, a leader's
    /// blank entry).
    Done,
}

impl Batch {
    pub fn count(&self) -> u64 {
        self.events.len() as u64
    }

    /// Bytes of event data in the batch.
    pub fn data_bytes(&self) -> usize {
        self.events.iter().map(|e| e.data.len()).sum()
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Append(b) if b.events.is_empty() => write!(f, "fence(epoch {})", b.epoch),
            Command::Append(b) => write!(
                f,
                "append(epoch {}, events {}..={}{})",
                b.epoch,
                b.first,
                b.first.get().saturating_add(b.count() - 1),
                if b.retry { ", retry" } else { "" }
            ),
            Command::Watermark { replica, event } => {
                write!(f, "watermark(replica {replica}, event {event})")
            }
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}
