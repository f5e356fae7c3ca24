//! How Raft entries, votes and log ids are laid out in raft-log's records.
//!
//! raft-log frames each record with a type and a CRC32 over the whole
//! record. A payload here starts with its length followed by a CRC32 of
//! that length: a record cut short by a crash (the length is intact, the
//! bytes after it are missing) reads as a torn tail, which raft-log cuts at
//! restart, while a damaged length reads as corruption, which stops the
//! node instead of silently cutting away every record after it.

use std::io::{self, Read, Write};

use raft_log::codeq::{Decode, Encode};

use crate::ids::NodeId;
use crate::raft::{EntryPayload, LogId, Vote};

/// raft-log's type parameters for the event log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Rl;

impl raft_log::Types for Rl {
    type LogId = Lid;
    type LogPayload = Payload;
    type Vote = VoteRec;
    type Callback = Flushed;
    type UserData = ();

    fn log_index(log_id: &Lid) -> u64 {
        log_id.0.index
    }

    fn payload_size(payload: &Payload) -> u64 {
        payload.size
    }
}

/// A log id: (term, leader node, index), 24 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Lid(pub LogId);

impl Encode for Lid {
    fn encode<W: Write>(&self, mut w: W) -> io::Result<usize> {
        w.write_all(&self.0.leader_id.term.to_be_bytes())?;
        w.write_all(&self.0.leader_id.node_id.0.to_be_bytes())?;
        w.write_all(&self.0.index.to_be_bytes())?;
        Ok(24)
    }
}

impl Decode for Lid {
    fn decode<R: Read>(mut r: R) -> io::Result<Self> {
        let term = read_u64(&mut r)?;
        let node_id = read_u64(&mut r)?;
        let index = read_u64(&mut r)?;
        Ok(Lid(LogId {
            leader_id: openraft::impls::leader_id_adv::LeaderId {
                term,
                node_id: NodeId(node_id),
            },
            index,
        }))
    }
}

/// A vote: (term, node, committed), 17 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VoteRec(pub Vote);

impl PartialOrd for VoteRec {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.0.partial_cmp(&other.0)
    }
}

impl Encode for VoteRec {
    fn encode<W: Write>(&self, mut w: W) -> io::Result<usize> {
        w.write_all(&self.0.leader_id.term.to_be_bytes())?;
        w.write_all(&self.0.leader_id.node_id.0.to_be_bytes())?;
        w.write_all(&[u8::from(self.0.committed)])?;
        Ok(17)
    }
}

impl Decode for VoteRec {
    fn decode<R: Read>(mut r: R) -> io::Result<Self> {
        let term = read_u64(&mut r)?;
        let node_id = read_u64(&mut r)?;
        let mut c = [0u8; 1];
        r.read_exact(&mut c)?;
        let committed = match c[0] {
            0 => false,
            1 => true,
            b => return Err(invalid(format!("vote flag {b} is neither 0 nor 1"))),
        };
        Ok(VoteRec(Vote {
            leader_id: openraft::impls::leader_id_adv::LeaderId {
                term,
                node_id: NodeId(node_id),
            },
            committed,
        }))
    }
}

/// An entry's payload (blank, a command, or a membership change), encoded
/// with postcard behind a checked length.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Payload {
    pub payload: EntryPayload,
    /// Roughly its size in memory, for raft-log's cache accounting.
    pub size: u64,
}

/// No entry is this large: a batch is at most 256 MiB (`eventlog.batch.max_bytes`).
const MAX_PAYLOAD: u32 = 512 << 20;

impl Payload {
    pub fn new(payload: EntryPayload) -> Self {
        let size = match &payload {
            openraft::EntryPayload::Normal(crate::command::Command::Append(b)) => {
                64 + b.data_bytes() as u64 + 16 * b.count()
            }
            _ => 64,
        };
        Payload { payload, size }
    }
}

impl Encode for Payload {
    fn encode<W: Write>(&self, mut w: W) -> io::Result<usize> {
        let body = postcard::to_stdvec(&self.payload).map_err(io::Error::other)?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l <= MAX_PAYLOAD)
            .ok_or_else(|| {
                io::Error::other(format!("entry of {} bytes is too large", body.len()))
            })?;
        let len_bytes = len.to_be_bytes();
        w.write_all(&len_bytes)?;
        w.write_all(&crc32fast::hash(&len_bytes).to_be_bytes())?;
        w.write_all(&body)?;
        Ok(8 + body.len())
    }
}

impl Decode for Payload {
    fn decode<R: Read>(mut r: R) -> io::Result<Self> {
        let mut len_bytes = [0u8; 4];
        r.read_exact(&mut len_bytes)?;
        let mut check = [0u8; 4];
        r.read_exact(&mut check)?;
        if crc32fast::hash(&len_bytes).to_be_bytes() != check {
            // Not a short read: the length itself is damaged.
            return Err(invalid("entry length fails its checksum".into()));
        }
        let len = u32::from_be_bytes(len_bytes);
        if len > MAX_PAYLOAD {
            return Err(invalid(format!("entry length {len} is impossible")));
        }
        let mut body = vec![0u8; len as usize];
        r.read_exact(&mut body)?;
        let payload: EntryPayload = postcard::from_bytes(&body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, Undecodable(e)))?;
        Ok(Payload::new(payload))
    }
}

/// An entry whose payload postcard cannot decode.
#[derive(Debug, thiserror::Error)]
#[error("entry does not decode: {0}")]
struct Undecodable(#[source] postcard::Error);

/// What raft-log's flush worker calls once a flush is on disk (or failed).
/// Dropped without being called, it reports that the flush never happened.
pub(crate) struct Flushed(Option<Box<dyn FnOnce(io::Result<()>) + Send>>);

impl Flushed {
    pub fn new(f: impl FnOnce(io::Result<()>) + Send + 'static) -> Self {
        Flushed(Some(Box::new(f)))
    }
}

impl raft_log::Callback for Flushed {
    fn send(mut self, res: io::Result<()>) {
        if let Some(f) = self.0.take() {
            f(res)
        }
    }
}

impl Drop for Flushed {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(io::Error::other(
                "the log's flush worker stopped before this write reached the disk",
            )))
        }
    }
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Batch, Command, NewEvent};
    use crate::types::{Epoch, EventNum};

    fn payload() -> Payload {
        Payload::new(openraft::EntryPayload::Normal(Command::Append(Batch {
            epoch: Epoch(7),
            first: EventNum(1),
            events: vec![NewEvent {
                mug: 9,
                data: bytes::Bytes::from_static(b"hello"),
            }],
            retry: false,
            by: None,
        })))
    }

    #[test]
    fn payloads_round_trip() {
        let p = payload();
        let mut buf = Vec::new();
        let n = p.encode(&mut buf).unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(Payload::decode(&buf[..]).unwrap(), p);
    }

    #[test]
    fn a_short_payload_is_a_torn_tail_and_a_bad_length_is_corruption() {
        let mut buf = Vec::new();
        payload().encode(&mut buf).unwrap();
        let short = Payload::decode(&buf[..buf.len() - 3]).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
        buf[1] ^= 0x10;
        let bad = Payload::decode(&buf[..]).unwrap_err();
        assert_eq!(bad.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn votes_and_log_ids_round_trip() {
        let v = VoteRec(Vote {
            leader_id: openraft::impls::leader_id_adv::LeaderId {
                term: 5,
                node_id: NodeId(3),
            },
            committed: true,
        });
        let mut buf = Vec::new();
        v.encode(&mut buf).unwrap();
        assert_eq!(VoteRec::decode(&buf[..]).unwrap(), v);
        let l = Lid(LogId {
            leader_id: openraft::impls::leader_id_adv::LeaderId {
                term: 2,
                node_id: NodeId(1),
            },
            index: 99,
        });
        let mut buf = Vec::new();
        l.encode(&mut buf).unwrap();
        assert_eq!(Lid::decode(&buf[..]).unwrap(), l);
    }
}
