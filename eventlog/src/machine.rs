//! The replicated state: the events above the purge point, the fence, and
//! the replicas' checkpoint watermarks (docs/SPEC.md §5, §6.2). Pure and in
//! memory; `sm` makes it openraft's state machine and keeps its snapshots.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, Read, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::command::{Batch, Command, Outcome};
use crate::fence::{FenceState, Rejection};
use crate::types::{Epoch, Event, EventNum};

/// An event as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    epoch: Epoch,
    mug: u32,
    data: Bytes,
    /// The Raft log index of the entry that brought it: the log may be
    /// purged up to just below the first event still held.
    index: u64,
}

/// The event log as every node applies it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    fence: FenceState,
    /// Events up to here are deleted; `events[0]` is `purge_point + 1`.
    purge_point: EventNum,
    events: VecDeque<Stored>,
    watermarks: BTreeMap<u32, EventNum>,
    voters: BTreeSet<u32>,
    data_bytes: u64,
}

impl Machine {
    pub fn fence(&self) -> FenceState {
        self.fence
    }

    pub fn purge_point(&self) -> EventNum {
        self.purge_point
    }

    pub fn watermarks(&self) -> &BTreeMap<u32, EventNum> {
        &self.watermarks
    }

    /// Events held (above the purge point) and their bytes.
    pub fn held(&self) -> (usize, u64) {
        (self.events.len(), self.data_bytes)
    }

    /// Applies the command of the entry at log `index`.
    pub fn apply(&mut self, index: u64, command: &Command) -> Outcome {
        match command {
            Command::Append(batch) => self.append(index, batch),
            Command::Watermark { replica, event } => {
                if *event > self.fence.last {
                    return Outcome::WatermarkAhead {
                        last: self.fence.last,
                    };
                }
                self.watermarks.insert(*replica, *event);
                self.advance_purge_point();
                Outcome::Watermark {
                    purge_point: self.purge_point,
                }
            }
        }
    }

    fn append(&mut self, index: u64, batch: &Batch) -> Outcome {
        match self
            .fence
            .check(batch.epoch, batch.first, batch.count(), batch.by)
        {
            Ok(next) => {
                for e in &batch.events {
                    self.data_bytes += e.data.len() as u64;
                    self.events.push_back(Stored {
                        epoch: batch.epoch,
                        mug: e.mug,
                        data: e.data.clone(),
                        index,
                    });
                }
                self.fence = next;
                Outcome::Stored { last: next.last }
            }
            Err(Rejection::Duplicate { .. }) if batch.retry && self.holds(batch) => {
                Outcome::Stored {
                    last: EventNum(batch.first.get() + batch.count() - 1),
                }
            }
            Err(r) => Outcome::Rejected(r),
        }
    }

    /// Whether the log holds exactly this batch's events: a retried batch
    /// that was stored the first time.
    fn holds(&self, batch: &Batch) -> bool {
        batch.events.iter().enumerate().all(|(i, e)| {
            self.stored(EventNum(batch.first.get() + i as u64))
                .is_some_and(|s| s.epoch == batch.epoch && s.mug == e.mug && s.data == e.data)
        })
    }

    /// The current voters: purging waits for each one's watermark, and
    /// watermarks of replicas that left are forgotten.
    pub fn set_voters(&mut self, voters: impl IntoIterator<Item = u32>) {
        self.voters = voters.into_iter().collect();
        self.watermarks.retain(|r, _| self.voters.contains(r));
        self.advance_purge_point();
    }

    /// Purge point = the lowest watermark among the voters (a voter that
    /// never reported counts as 0); it never moves back.
    fn advance_purge_point(&mut self) {
        let lowest = self
            .voters
            .iter()
            .map(|v| self.watermarks.get(v).copied().unwrap_or(EventNum::NONE))
            .min()
            .unwrap_or(EventNum::NONE);
        while self.purge_point < lowest {
            let gone = self
                .events
                .pop_front()
                .expect("purge point stays at or below the last event");
            self.data_bytes -= gone.data.len() as u64;
            self.purge_point = self.purge_point.next();
        }
    }

    fn stored(&self, num: EventNum) -> Option<&Stored> {
        let i = num.get().checked_sub(self.purge_point.get() + 1)?;
        self.events.get(usize::try_from(i).ok()?)
    }

    pub fn get(&self, num: EventNum) -> Option<Event> {
        self.stored(num).map(|s| Event {
            num,
            epoch: s.epoch,
            mug: s.mug,
            data: s.data.clone(),
        })
    }

    /// Events from `from` up to `to`, at most `max_bytes` of data (but at
    /// least one event if there is one).
    pub fn read(&self, from: EventNum, to: EventNum, max_bytes: usize) -> Vec<Event> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut n = from;
        while n <= to {
            let Some(e) = self.get(n) else { break };
            bytes += e.data.len();
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(e);
            n = n.next();
        }
        out
    }

    /// The Raft log index of the first entry that still holds an event above
    /// the purge point: every entry before it may be purged.
    pub fn first_needed_index(&self) -> Option<u64> {
        self.events.front().map(|s| s.index)
    }

    /// Writes the snapshot file: `meta` (openraft's snapshot metadata,
    /// opaque here), the state, every event held, and a BLAKE3 hash of all
    /// of it.
    pub fn write_snapshot(&self, meta: &[u8], w: impl Write) -> io::Result<u64> {
        let mut w = HashWriter::new(w);
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_be_bytes())?;
        write_blob(&mut w, meta)?;
        let header = Header {
            fence: self.fence,
            purge_point: self.purge_point,
            watermarks: self.watermarks.clone(),
            voters: self.voters.clone(),
            events: self.events.len() as u64,
        };
        write_blob(
            &mut w,
            &postcard::to_stdvec(&header).map_err(io::Error::other)?,
        )?;
        for s in &self.events {
            w.write_all(&s.epoch.get().to_be_bytes())?;
            w.write_all(&s.mug.to_be_bytes())?;
            w.write_all(&s.index.to_be_bytes())?;
            write_blob(&mut w, &s.data)?;
        }
        let hash = w.hasher.finalize();
        w.inner.write_all(hash.as_bytes())?;
        Ok(w.written + 32)
    }

    /// Reads a snapshot written by [`Machine::write_snapshot`]: the metadata
    /// blob and the state. Any damage is an error saying at which byte.
    pub fn read_snapshot(r: impl Read) -> Result<(Vec<u8>, Machine), SnapshotError> {
        let mut r = HashReader::new(r);
        let mut magic = [0u8; 8];
        r.read(&mut magic)?;
        if &magic != MAGIC {
            return Err(SnapshotError::Corrupt {
                offset: 0,
                what: "not a Seguro event log snapshot (bad magic)".into(),
            });
        }
        let version = u32::from_be_bytes(r.array()?);
        if !(1..=VERSION).contains(&version) {
            return Err(r.corrupt(format!("unknown snapshot version {version}")));
        }
        let meta = r.blob()?;
        let header_at = r.offset;
        let blob = r.blob()?;
        let undecodable = |source| SnapshotError::Undecodable {
            offset: header_at,
            part: "header",
            source,
        };
        let header: Header = if version == 1 {
            postcard::from_bytes::<HeaderV1>(&blob)
                .map_err(undecodable)?
                .into()
        } else {
            postcard::from_bytes(&blob).map_err(undecodable)?
        };
        let mut m = Machine {
            fence: header.fence,
            purge_point: header.purge_point,
            events: VecDeque::new(),
            watermarks: header.watermarks,
            voters: header.voters,
            data_bytes: 0,
        };
        if header.purge_point.get().checked_add(header.events) != Some(header.fence.last.get()) {
            return Err(SnapshotError::Corrupt {
                offset: header_at,
                what: "event count does not match the fence".into(),
            });
        }
        for _ in 0..header.events {
            let epoch = Epoch(u64::from_be_bytes(r.array()?));
            let mug = u32::from_be_bytes(r.array()?);
            let index = u64::from_be_bytes(r.array()?);
            let data = Bytes::from(r.blob()?);
            m.data_bytes += data.len() as u64;
            m.events.push_back(Stored {
                epoch,
                mug,
                data,
                index,
            });
        }
        let expected = r.hasher.finalize();
        let at = r.offset;
        let mut found = [0u8; 32];
        r.inner
            .read_exact(&mut found)
            .map_err(|e| SnapshotError::from_read(e, at))?;
        if blake3::Hash::from_bytes(found) != expected {
            return Err(SnapshotError::Corrupt {
                offset: at,
                what: "checksum mismatch".into(),
            });
        }
        Ok((meta, m))
    }
}

const MAGIC: &[u8; 8] = b"SGEVSNAP";
/// 2: the fence records the replica that holds the highest epoch. Version 1
/// is still read (its holder unknown).
const VERSION: u32 = 2;
/// No blob in a snapshot is this large: events are at most 64 MiB.
const MAX_BLOB: u32 = 1 << 30;

#[derive(Serialize, Deserialize)]
struct Header {
    fence: FenceState,
    purge_point: EventNum,
    watermarks: BTreeMap<u32, EventNum>,
    voters: BTreeSet<u32>,
    events: u64,
}

/// Version 1's header: the fence without its holder.
#[derive(Serialize, Deserialize)]
struct HeaderV1 {
    fence: FenceV1,
    purge_point: EventNum,
    watermarks: BTreeMap<u32, EventNum>,
    voters: BTreeSet<u32>,
    events: u64,
}

#[derive(Serialize, Deserialize)]
struct FenceV1 {
    last: EventNum,
    highest: Epoch,
}

impl From<HeaderV1> for Header {
    fn from(h: HeaderV1) -> Self {
        Header {
            fence: FenceState {
                last: h.fence.last,
                highest: h.fence.highest,
                holder: None,
            },
            purge_point: h.purge_point,
            watermarks: h.watermarks,
            voters: h.voters,
            events: h.events,
        }
    }
}

/// A snapshot file that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("corrupt at byte {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    /// A part (`"header"`, `"snapshot metadata"`) that does not decode.
    #[error("corrupt at byte {offset}: bad {part}: {source}")]
    Undecodable {
        offset: u64,
        part: &'static str,
        source: postcard::Error,
    },
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl SnapshotError {
    fn from_read(e: io::Error, offset: u64) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            // Snapshots are renamed into place once whole: a short one is
            // damaged, not torn.
            SnapshotError::Corrupt {
                offset,
                what: "the file ends early".into(),
            }
        } else {
            SnapshotError::Io(e)
        }
    }
}

fn write_blob(w: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len())
        .ok()
        .filter(|l| *l <= MAX_BLOB)
        .ok_or_else(|| io::Error::other("snapshot blob over 1 GiB"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(data)
}

struct HashWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    written: u64,
}

impl<W: Write> HashWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: blake3::Hasher::new(),
            written: 0,
        }
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct HashReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    offset: u64,
}

impl<R: Read> HashReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: blake3::Hasher::new(),
            offset: 0,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        self.inner
            .read_exact(buf)
            .map_err(|e| SnapshotError::from_read(e, self.offset))?;
        self.hasher.update(buf);
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut a = [0u8; N];
        self.read(&mut a)?;
        Ok(a)
    }

    fn blob(&mut self) -> Result<Vec<u8>, SnapshotError> {
        let at = self.offset;
        let len = u32::from_be_bytes(self.array()?);
        if len > MAX_BLOB {
            return Err(SnapshotError::Corrupt {
                offset: at,
                what: format!("length {len} is impossible"),
            });
        }
        // Grow as the bytes arrive: a damaged length must not allocate
        // memory the file does not hold.
        let mut v = Vec::new();
        let mut chunk = [0u8; 64 << 10];
        while v.len() < len as usize {
            let n = chunk.len().min(len as usize - v.len());
            self.read(&mut chunk[..n])?;
            v.extend_from_slice(&chunk[..n]);
        }
        Ok(v)
    }

    fn corrupt(&self, what: impl Into<String>) -> SnapshotError {
        SnapshotError::Corrupt {
            offset: self.offset,
            what: what.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::NewEvent;

    fn batch(epoch: u64, first: u64, n: u64) -> Command {
        Command::Append(Batch {
            epoch: Epoch(epoch),
            first: EventNum(first),
            events: (first..first + n)
                .map(|i| NewEvent {
                    mug: i as u32,
                    data: Bytes::from(format!("event {i}")),
                })
                .collect(),
            retry: false,
            by: None,
        })
    }

    fn watermark(replica: u32, event: u64) -> Command {
        Command::Watermark {
            replica,
            event: EventNum(event),
        }
    }

    fn stored(last: u64) -> Outcome {
        Outcome::Stored {
            last: EventNum(last),
        }
    }

    #[test]
    fn stores_batches_and_reads_them_back_in_order() {
        let mut m = Machine::default();
        assert_eq!(m.apply(1, &batch(3, 1, 2)), stored(2));
        assert_eq!(m.apply(2, &batch(3, 3, 3)), stored(5));
        let events = m.read(EventNum(2), EventNum(4), usize::MAX);
        assert_eq!(
            events.iter().map(|e| e.num.get()).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(events[1].data, Bytes::from("event 3"));
        assert_eq!(events[1].mug, 3);
        assert_eq!(events[1].epoch, Epoch(3));
        assert_eq!(m.held(), (5, 35));
        // Reads stop at the byte budget but always make progress.
        assert_eq!(m.read(EventNum(1), EventNum(5), 1).len(), 1);
        assert_eq!(m.read(EventNum(1), EventNum(5), 14).len(), 2);
    }

    #[test]
    fn a_rejected_batch_changes_nothing() {
        let mut m = Machine::default();
        m.apply(1, &batch(3, 1, 2));
        let before = m.clone();
        assert_eq!(
            m.apply(2, &batch(2, 3, 1)),
            Outcome::Rejected(Rejection::StaleEpoch { highest: Epoch(3) })
        );
        assert_eq!(
            m.apply(3, &batch(3, 5, 1)),
            Outcome::Rejected(Rejection::Gap {
                expected: EventNum(3)
            })
        );
        assert_eq!(
            m.apply(4, &batch(3, 2, 1)),
            Outcome::Rejected(Rejection::Duplicate { last: EventNum(2) })
        );
        assert_eq!(m, before);
    }

    #[test]
    fn a_retried_batch_that_was_stored_succeeds_and_a_different_one_does_not() {
        let mut m = Machine::default();
        m.apply(1, &batch(3, 1, 2));
        m.apply(2, &batch(3, 3, 2));
        let Command::Append(mut again) = batch(3, 1, 2) else {
            unreachable!()
        };
        again.retry = true;
        assert_eq!(m.apply(3, &Command::Append(again.clone())), stored(2));
        again.events[1].mug ^= 1;
        assert_eq!(
            m.apply(4, &Command::Append(again)),
            Outcome::Rejected(Rejection::Duplicate { last: EventNum(4) })
        );
        assert_eq!(m.fence().last, EventNum(4));
    }

    #[test]
    fn the_purge_point_is_the_lowest_voter_watermark() {
        let mut m = Machine::default();
        m.set_voters([1, 2, 3]);
        m.apply(1, &batch(1, 1, 4));
        m.apply(2, &batch(1, 5, 4));
        assert_eq!(
            m.apply(3, &watermark(1, 6)),
            Outcome::Watermark {
                purge_point: EventNum(0)
            }
        );
        m.apply(4, &watermark(2, 3));
        assert_eq!(m.purge_point(), EventNum(0), "replica 3 never reported");
        assert_eq!(
            m.apply(5, &watermark(3, 8)),
            Outcome::Watermark {
                purge_point: EventNum(3)
            }
        );
        assert!(m.get(EventNum(3)).is_none());
        assert_eq!(m.get(EventNum(4)).unwrap().mug, 4);
        assert_eq!(m.first_needed_index(), Some(1));
        m.apply(6, &watermark(2, 7));
        assert_eq!(m.purge_point(), EventNum(6));
        assert_eq!(m.first_needed_index(), Some(2));
        assert_eq!(
            m.apply(7, &watermark(2, 9)),
            Outcome::WatermarkAhead { last: EventNum(8) }
        );
        // A lower watermark never brings deleted events back.
        m.apply(8, &watermark(1, 2));
        assert_eq!(m.purge_point(), EventNum(6));
        // A new voter without a watermark blocks further purging, one that
        // leaves unblocks it.
        m.set_voters([1, 2, 3, 4]);
        m.apply(9, &watermark(1, 8));
        m.apply(10, &watermark(2, 8));
        m.apply(11, &watermark(3, 8));
        assert_eq!(m.purge_point(), EventNum(6));
        m.set_voters([1, 2, 3]);
        assert_eq!(m.purge_point(), EventNum(8));
        assert_eq!(m.first_needed_index(), None);
        assert_eq!(m.held(), (0, 0));
    }

    #[test]
    fn snapshots_round_trip_and_damage_is_located() {
        let mut m = Machine::default();
        m.set_voters([1, 2]);
        m.apply(1, &batch(4, 1, 3));
        m.apply(2, &batch(5, 4, 2));
        m.apply(3, &watermark(1, 2));
        m.apply(4, &watermark(2, 2));
        let mut file = Vec::new();
        let n = m.write_snapshot(b"meta", &mut file).unwrap();
        assert_eq!(n as usize, file.len());
        let (meta, back) = Machine::read_snapshot(&file[..]).unwrap();
        assert_eq!(meta, b"meta");
        assert_eq!(back, m);

        let mut flipped = file.clone();
        for at in [
            20,
            flipped.len() - 40,
            flipped.len() - 35,
            flipped.len() - 1,
        ] {
            flipped[at] ^= 0x40;
            assert!(matches!(
                Machine::read_snapshot(&flipped[..]),
                Err(SnapshotError::Corrupt { .. })
            ));
            flipped[at] ^= 0x40;
        }
        assert!(matches!(
            Machine::read_snapshot(&file[..file.len() - 10]),
            Err(SnapshotError::Corrupt { .. })
        ));
        assert!(matches!(
            Machine::read_snapshot(&b"garbage!garbage!"[..]),
            Err(SnapshotError::Corrupt { offset: 0, .. })
        ));
    }

    fn by(command: Command, replica: u32) -> Command {
        match command {
            Command::Append(mut b) => {
                b.by = config::ReplicaId::new(replica);
                Command::Append(b)
            }
            other => other,
        }
    }

    #[test]
    fn the_epochs_holder_survives_a_snapshot_and_another_replica_is_refused_at_it() {
        let mut m = Machine::default();
        m.apply(1, &by(batch(4, 1, 2), 1));
        let mut file = Vec::new();
        m.write_snapshot(b"meta", &mut file).unwrap();
        let (_, mut back) = Machine::read_snapshot(&file[..]).unwrap();
        assert_eq!(back.fence().holder, config::ReplicaId::new(1));
        assert_eq!(
            back.apply(2, &by(batch(4, 3, 1), 2)),
            Outcome::Rejected(Rejection::EpochReused {
                epoch: Epoch(4),
                holder: config::ReplicaId::new(1).unwrap(),
                by: config::ReplicaId::new(2).unwrap(),
            })
        );
        assert_eq!(back.apply(3, &by(batch(4, 3, 1), 1)), stored(3));
    }

    #[test]
    fn a_version_1_snapshot_still_reads_its_holder_unknown() {
        let mut m = Machine::default();
        m.set_voters([1]);
        m.apply(1, &batch(4, 1, 2));
        // Version 1's layout: the fence without its holder.
        let mut w = HashWriter::new(Vec::new());
        w.write_all(MAGIC).unwrap();
        w.write_all(&1u32.to_be_bytes()).unwrap();
        write_blob(&mut w, b"meta").unwrap();
        let header = HeaderV1 {
            fence: FenceV1 {
                last: m.fence.last,
                highest: m.fence.highest,
            },
            purge_point: m.purge_point,
            watermarks: m.watermarks.clone(),
            voters: m.voters.clone(),
            events: m.events.len() as u64,
        };
        write_blob(&mut w, &postcard::to_stdvec(&header).unwrap()).unwrap();
        for s in &m.events {
            w.write_all(&s.epoch.get().to_be_bytes()).unwrap();
            w.write_all(&s.mug.to_be_bytes()).unwrap();
            w.write_all(&s.index.to_be_bytes()).unwrap();
            write_blob(&mut w, &s.data).unwrap();
        }
        let hash = w.hasher.finalize();
        let mut file = w.inner;
        file.extend_from_slice(hash.as_bytes());
        let (meta, back) = Machine::read_snapshot(&file[..]).unwrap();
        assert_eq!(meta, b"meta");
        assert_eq!(back, m);
        assert_eq!(back.fence().holder, None);
    }
}
