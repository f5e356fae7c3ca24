//! What goes through Raft: the commands the state machine applies and what
//! applying them returns, and how a command is encoded in a Raft entry.

use std::fmt;

use bytes::Bytes;
use config::ReplicaId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::fence::Rejection;
use crate::types::{Epoch, EventNum};

/// One Raft entry's worth of change to the event log. Encoded as
/// [`wire::Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A fenced batch of events (a fence if it has none).
    Append(Batch),
    /// A replica's checkpoint watermark (docs/SPEC.md §5).
    Watermark { replica: u32, event: EventNum },
}

/// A batch `{epoch, first event number, events}` as the writer sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub epoch: Epoch,
    pub first: EventNum,
    pub events: Vec<NewEvent>,
    /// The writer lost track of this batch and sent it again: if the log
    /// already holds exactly these events, that is a success.
    pub retry: bool,
    /// The replica that sent it (its certificate's identity; `None` in
    /// entries written before writers were recorded).
    pub by: Option<ReplicaId>,
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

/// How commands are laid out in Raft entries (postcard). Variants are only
/// ever added at the end: a log or snapshot written by an older version
/// must still read.
pub(crate) mod wire {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub enum Command {
        /// A batch, before writers were recorded.
        Append(Batch),
        Watermark {
            replica: u32,
            event: EventNum,
        },
        /// A batch and the replica that wrote it.
        AppendBy(Batch, #[serde(with = "super::replica")] ReplicaId),
    }

    #[derive(Serialize, Deserialize)]
    pub struct Batch {
        pub epoch: Epoch,
        pub first: EventNum,
        pub events: Vec<NewEvent>,
        pub retry: bool,
    }

    /// The same layout, borrowed: encoding does not copy the events.
    #[derive(Serialize)]
    #[serde(rename = "Command")]
    pub enum CommandRef<'a> {
        Append(BatchRef<'a>),
        Watermark { replica: u32, event: EventNum },
        AppendBy(BatchRef<'a>, #[serde(with = "super::replica")] ReplicaId),
    }

    #[derive(Serialize)]
    #[serde(rename = "Batch")]
    pub struct BatchRef<'a> {
        pub epoch: Epoch,
        pub first: EventNum,
        pub events: &'a [NewEvent],
        pub retry: bool,
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn batch(b: &Batch) -> wire::BatchRef<'_> {
            wire::BatchRef {
                epoch: b.epoch,
                first: b.first,
                events: &b.events,
                retry: b.retry,
            }
        }
        match self {
            Command::Append(b) => match b.by {
                Some(by) => wire::CommandRef::AppendBy(batch(b), by),
                None => wire::CommandRef::Append(batch(b)),
            },
            Command::Watermark { replica, event } => wire::CommandRef::Watermark {
                replica: *replica,
                event: *event,
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let batch = |b: wire::Batch, by| Batch {
            epoch: b.epoch,
            first: b.first,
            events: b.events,
            retry: b.retry,
            by,
        };
        Ok(match wire::Command::deserialize(d)? {
            wire::Command::Append(b) => Command::Append(batch(b, None)),
            wire::Command::AppendBy(b, by) => Command::Append(batch(b, Some(by))),
            wire::Command::Watermark { replica, event } => Command::Watermark { replica, event },
        })
    }
}

/// A [`ReplicaId`] as its number (never 0).
pub(crate) mod replica {
    use super::*;

    pub fn serialize<S: Serializer>(r: &ReplicaId, s: S) -> Result<S::Ok, S::Error> {
        r.get().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ReplicaId, D::Error> {
        ReplicaId::new(u32::deserialize(d)?).ok_or_else(|| serde::de::Error::custom("replica id 0"))
    }
}

/// An optional [`ReplicaId`] as its number.
pub(crate) mod opt_replica {
    use super::*;

    pub fn serialize<S: Serializer>(r: &Option<ReplicaId>, s: S) -> Result<S::Ok, S::Error> {
        r.map(ReplicaId::get).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ReplicaId>, D::Error> {
        match Option::<u32>::deserialize(d)? {
            None => Ok(None),
            Some(n) => ReplicaId::new(n)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("replica id 0")),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(by: Option<ReplicaId>) -> Command {
        Command::Append(Batch {
            epoch: Epoch(7),
            first: EventNum(3),
            events: vec![NewEvent {
                mug: 9,
                data: Bytes::from_static(b"event"),
            }],
            retry: true,
            by,
        })
    }

    #[test]
    fn commands_round_trip_with_and_without_their_writer() {
        for cmd in [
            batch(ReplicaId::new(2)),
            batch(None),
            Command::Watermark {
                replica: 1,
                event: EventNum(4),
            },
        ] {
            let bytes = postcard::to_stdvec(&cmd).unwrap();
            assert_eq!(postcard::from_bytes::<Command>(&bytes).unwrap(), cmd);
        }
    }

    #[test]
    fn entries_written_before_writers_were_recorded_still_read() {
        // The layout of version 1's `Command::Append(Batch)`, by hand.
        #[derive(Serialize)]
        enum Old {
            Append(wire::Batch),
        }
        let old = Old::Append(wire::Batch {
            epoch: Epoch(7),
            first: EventNum(3),
            events: vec![NewEvent {
                mug: 9,
                data: Bytes::from_static(b"event"),
            }],
            retry: true,
        });
        let bytes = postcard::to_stdvec(&old).unwrap();
        assert_eq!(
            postcard::from_bytes::<Command>(&bytes).unwrap(),
            batch(None)
        );
    }
}
