//! openraft's log store on raft-log: the Raft log, the vote and the
//! committed index in checksummed, fdatasync'ed chunk files.
//!
//! raft-log buffers writes in memory and hands them to one flush thread,
//! which writes everything queued while the previous fdatasync ran and
//! syncs it with one more (group commit). openraft 0.10 does not wait for a
//! flush before submitting the next append, so concurrent batches share
//! fsyncs; an append is acknowledged (its callback called) only after the
//! fdatasync that covers it returned.
//!
//! Any failed write or fdatasync is recorded in the store's [`Failures`]:
//! the node stops on it (see `fsync`), and at its next start syncs the
//! files and drops their cached pages before reading them back.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use eventlog_client::LogIndex;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::codeq::Span;
use raft_log::{DumpApi, RaftLog};
use tokio::sync::{oneshot, watch};

use super::codec::{Flushed, Lid, Payload, Rl, VoteRec};
use super::durable::Tracker;
use super::fsync::{self, Failures};
use crate::metrics as m;
use crate::raft::{Entry, LogId, TypeConfig, Vote};

/// Tunables of the on-disk log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// A chunk file is closed and a new one started past this size; purging
    /// frees disk space a whole chunk at a time.
    pub chunk_max_size: usize,
    /// How long the flush thread waits for more writes to join a batch once
    /// it has one. Writes that queue while an fdatasync runs join the next
    /// one regardless.
    pub flush_batch_wait: Duration,
    /// Most entries and bytes kept in memory for replication and reads.
    pub cache_max_items: usize,
    pub cache_max_bytes: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            chunk_max_size: 256 << 20,
            flush_batch_wait: Duration::from_micros(10),
            cache_max_items: 100_000,
            cache_max_bytes: 256 << 20,
        }
    }
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "corrupt record in {file} at byte {offset}: {source}; it is not a torn tail (records or \
         data follow it), so the node refuses to start: move the replica's data directory away \
         and restart it empty to rebuild it from its peers"
    )]
    Corrupt {
        file: PathBuf,
        offset: u64,
        /// What raft-log found there.
        source: io::Error,
    },
    #[error("cannot open the log in {dir}: {source}")]
    Io { dir: PathBuf, source: io::Error },
    #[error(
        "cannot make {file} durable before reading it back: {source}; the disk is failing, \
         or a write before this start did not reach it: check the disk (and the kernel log), \
         then restart the node"
    )]
    Sync { file: PathBuf, source: io::Error },
}

/// The Raft log of one node. Cloning shares it (replication tasks read
/// through clones).
#[derive(Clone)]
pub(crate) struct LogStore {
    log: Arc<Mutex<RaftLog<Rl>>>,
    tracker: Arc<Mutex<Tracker>>,
    /// The last index on disk, for whoever computes the commit state.
    flushed_tx: Arc<watch::Sender<Option<LogIndex>>>,
    /// A committed index was written but no fdatasync has covered it yet.
    commit_unsynced: Arc<AtomicBool>,
    /// The first write or fdatasync that failed.
    failures: Failures,
    /// Tests: the next flush fails with this error instead of its result.
    #[cfg(test)]
    fault: Arc<Mutex<Option<io::Error>>>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`. Its files are made durable and
    /// their cached pages dropped first, so that everything read back is
    /// on disk (a process that stopped before its fdatasync, or after a
    /// failed one, left pages in the cache that are not). A torn tail left
    /// by a crash is cut; a damaged record anywhere else is an error naming
    /// the file and the byte.
    pub fn open(dir: &Path, options: &LogOptions) -> Result<RaftLog<Rl>, OpenError> {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Io {
            dir: dir.to_path_buf(),
            source,
        })?;
        fsync::settle(dir).map_err(|(file, source)| OpenError::Sync { file, source })?;
        let config = Arc::new(raft_log::Config {
            wal: raft_log::chunked_wal::Config {
                dir: dir.to_string_lossy().into_owned(),
                chunk_max_size: Some(options.chunk_max_size),
                flush_batch_wait: Some(options.flush_batch_wait),
                truncate_incomplete_record: Some(true),
                ..Default::default()
            },
            log_cache_max_items: Some(options.cache_max_items),
            log_cache_capacity: Some(options.cache_max_bytes),
        });
        RaftLog::<Rl>::open(config.clone()).map_err(|source| match locate_damage(&config) {
            Some((file, offset, source)) => OpenError::Corrupt {
                file,
                offset,
                source,
            },
            None => OpenError::Io {
                dir: dir.to_path_buf(),
                source,
            },
        })
    }

    pub fn new(log: RaftLog<Rl>, tracker: Arc<Mutex<Tracker>>, failures: Failures) -> Self {
        let flushed = tracker.lock().unwrap().flushed_index();
        LogStore {
            log: Arc::new(Mutex::new(log)),
            tracker,
            flushed_tx: Arc::new(watch::channel(flushed).0),
            commit_unsynced: Arc::new(AtomicBool::new(false)),
            failures,
            #[cfg(test)]
            fault: Arc::default(),
        }
    }

    /// Hands everything queued to the flush thread with an fdatasync (none
    /// if the debug switch skips it); `then` gets the result once it is
    /// done, after a failure has been recorded as `what`'s.
    fn flush(
        &self,
        log: &mut RaftLog<Rl>,
        what: &'static str,
        then: impl FnOnce(io::Result<()>) + Send + 'static,
    ) -> io::Result<()> {
        let failures = self.failures.clone();
        #[cfg(test)]
        let fault = self.fault.lock().unwrap().take();
        let done = move |res: io::Result<()>| {
            #[cfg(test)]
            let res = match fault {
                Some(e) => Err(e),
                None => res,
            };
            if let Err(e) = &res {
                failures.report(what, e);
            }
            then(res);
        };
        log.flush(!fsync::skip_fdatasync(), Some(Flushed::new(done)))
            .inspect_err(self.failures.on(what))
    }

    /// The last log index known to be on disk, as it changes.
    pub fn watch_flushed(&self) -> watch::Receiver<Option<LogIndex>> {
        self.flushed_tx.subscribe()
    }

    pub fn tracker(&self) -> &Arc<Mutex<Tracker>> {
        &self.tracker
    }

    /// The first write or fdatasync that failed, as it happens.
    pub fn failures(&self) -> &Failures {
        &self.failures
    }

    fn lock(&self) -> MutexGuard<'_, RaftLog<Rl>> {
        // A panic while holding the lock leaves raft-log's in-memory state
        // unknown: nothing more may be written.
        self.log.lock().expect("the log store lock is poisoned")
    }

    /// Makes the last committed index durable if no append's fdatasync has
    /// (called a few times a second: under load appends do it for free).
    pub fn sync_committed(&self) {
        if self.commit_unsynced.swap(false, Ordering::AcqRel) {
            let mut log = self.lock();
            // A failure is recorded (and stops the node) either way.
            let _ = self.flush(&mut log, "commit", drop);
        }
    }

    /// Publishes raft-log's flush-thread figures as metrics.
    pub fn export_stats(&self) {
        let (f, size) = {
            let log = self.lock();
            (log.stat().flush_metrics, log.on_disk_size())
        };
        m::log_stats(&m::LogStats {
            fsyncs: f.sync_batch_count,
            writes: f.write_request_count,
            fsync_seconds: f.sync_us as f64 / 1e6,
            fsync_p50: f.sync_percentiles.p50_us as f64 / 1e6,
            fsync_p99: f.sync_percentiles.p99_us as f64 / 1e6,
            disk_bytes: size,
        });
    }

    /// Feeds the tracker every entry after `index` (on open, and after a
    /// snapshot replaced the state machine). Everything it reads counts as
    /// on disk: `open` made the files durable and dropped their cached
    /// pages, and a failed fdatasync since stops the node.
    pub fn replay_into_tracker(&self, from: LogIndex) -> io::Result<()> {
        let log = self.lock();
        let mut tracker = self.tracker.lock().unwrap();
        let last = log.log_state().last().map(|l| LogIndex(l.0.index));
        // A snapshot past the log's end (a follower far behind, or re-added)
        // leaves nothing to replay; raft-log panics on a reversed range.
        if let Some(last) = last.filter(|l| l.get() >= from.get()) {
            for item in log.read(from.get(), last.get() + 1) {
                let (lid, payload) = item.inspect_err(self.failures.on("read"))?;
                tracker.append(LogIndex(lid.0.index), &payload.payload);
            }
            tracker.flushed(last);
        }
        drop(tracker);
        self.flushed_tx.send_replace(last);
        Ok(())
    }

    /// Waits until the flush thread has written everything queued (used at
    /// shutdown so that raft-log's files are closed cleanly).
    pub fn sync(&self) -> io::Result<()> {
        let rx = {
            let mut log = self.lock();
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            self.flush(&mut log, "flush", move |r| drop(tx.send(r)))?;
            rx
        };
        rx.recv().map_err(io::Error::other)?
    }

    /// Queues the pending records with an fdatasync; the receiver says when
    /// it is done.
    fn flush_signal(
        &self,
        log: &mut RaftLog<Rl>,
        what: &'static str,
    ) -> io::Result<oneshot::Receiver<io::Result<()>>> {
        let (tx, rx) = oneshot::channel();
        self.flush(log, what, move |r| drop(tx.send(r)))?;
        Ok(rx)
    }
}

async fn wait_flush(rx: oneshot::Receiver<io::Result<()>>) -> io::Result<()> {
    rx.await
        .unwrap_or_else(|_| Err(io::Error::other("the flush worker stopped")))
}

/// Finds the first record raft-log cannot decode: `(file, byte, why)`.
/// Cuts the log at byte `offset` of chunk `file` and deletes the chunks
/// after it. Only for a log whose node stopped on a failed write or
/// fdatasync (`fsync::FAILED_MARKER`): the failed write left a hole there,
/// and writes queued behind it reached the disk later (the next start's
/// fsync). Nothing from the hole on was acknowledged, as the node
/// acknowledges only what a successful fdatasync covered and stops at the
/// first failure, so its peers give it those entries again. Returns the
/// chunks deleted.
pub(crate) fn cut_after_failure(file: &Path, offset: u64) -> io::Result<Vec<PathBuf>> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut later: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        // Chunk names are fixed-width offsets: later chunks sort after.
        .filter(|p| p.file_name() > file.file_name())
        .collect();
    later.sort();
    for chunk in &later {
        std::fs::remove_file(chunk)?;
    }
    let f = std::fs::OpenOptions::new().write(true).open(file)?;
    f.set_len(offset)?;
    fsync::sync_all(&f)?;
    fsync::sync_dir(dir)?;
    Ok(later)
}

fn locate_damage(config: &Arc<raft_log::Config>) -> Option<(PathBuf, u64, io::Error)> {
    let dump = raft_log::Dump::<Rl>::new(config.clone()).ok()?;
    let mut found = None;
    let mut end_of_good = 0u64;
    let mut current = None;
    let _ = dump.write_with(|chunk, _i, res| {
        if current != Some(chunk) {
            current = Some(chunk);
            end_of_good = 0;
        }
        match res {
            Ok((seg, _)) => end_of_good = seg.end().0,
            Err(e) if found.is_none() => {
                found = Some((PathBuf::from(config.wal.chunk_path(chunk)), end_of_good, e));
            }
            Err(_) => {}
        }
        Ok(())
    });
    found
}

fn to_range(range: impl RangeBounds<u64>) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i + 1,
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(i) => i + 1,
        Bound::Excluded(i) => *i,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let (from, to) = to_range(range);
        let log = self.lock();
        log.read(from, to)
            .map(|item| {
                let (lid, payload) = item?;
                Ok(Entry {
                    log_id: lid.0,
                    payload: payload.payload,
                })
            })
            .collect::<io::Result<Vec<_>>>()
            .inspect_err(self.failures.on("read"))
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(self.lock().log_state().vote().map(|v| v.0))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let log = self.lock();
        let st = log.log_state();
        let purged = st.purged().map(|l| l.0);
        Ok(LogState {
            last_log_id: st.last().map(|l| l.0).or(purged),
            last_purged_log_id: purged,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let rx = {
            let mut log = self.lock();
            log.save_vote(VoteRec(*vote))
                .inspect_err(self.failures.on("vote"))?;
            self.flush_signal(&mut log, "vote")?
        };
        wait_flush(rx).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        let Some(committed) = committed else {
            return Ok(());
        };
        let mut log = self.lock();
        log.commit(Lid(committed))
            .inspect_err(self.failures.on("commit"))?;
        // The next append's fdatasync covers it (raft-log syncs a batch if
        // any write in it asks to), or `sync_committed` does within a
        // fraction of a second. Raft's safety does not depend on it; a
        // restart re-applies up to it before hearing from a leader.
        self.commit_unsynced.store(true, Ordering::Release);
        let failures = self.failures.clone();
        let written = move |res: io::Result<()>| {
            if let Err(e) = res {
                failures.report("commit", &e);
            }
        };
        log.flush(false, Some(Flushed::new(written)))
            .inspect_err(self.failures.on("commit"))
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.lock().log_state().committed().map(|l| l.0))
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut log = self.lock();
        let mut last = None;
        {
            let mut tracker = self.tracker.lock().unwrap();
            let records = entries.into_iter().map(|e| {
                tracker.append(LogIndex(e.log_id.index), &e.payload);
                last = Some(LogIndex(e.log_id.index));
                (Lid(e.log_id), Payload::new(e.payload))
            });
            log.append(records)
                .inspect_err(self.failures.on("append"))?;
        }
        let Some(last) = last else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let tracker = self.tracker.clone();
        let flushed_tx = self.flushed_tx.clone();
        let started = Instant::now();
        // This fdatasync covers every record queued before it.
        self.commit_unsynced.store(false, Ordering::Release);
        self.flush(&mut log, "append", move |res| {
            m::log_flush(started.elapsed());
            // A failure is recorded already; nothing after it counts.
            if res.is_ok() {
                tracker.lock().unwrap().flushed(last);
                flushed_tx.send_if_modified(|f| {
                    let newer = f.is_none_or(|f| f < last);
                    if newer {
                        *f = Some(last);
                    }
                    newer
                });
            }
            callback.io_completed(res);
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let mut log = self.lock();
        let index = last_log_id.as_ref().map(|l| LogIndex(l.index));
        // Nothing after it: raft-log would look the entry up and fail, and a
        // failed truncation stops the node.
        let last = log.log_state().last().map(|l| l.0.index);
        if index.is_some_and(|i| last.is_none_or(|l| i.get() >= l)) {
            return Ok(());
        }
        log.truncate(index.map_or(0, |i| i.get() + 1))
            .inspect_err(self.failures.on("truncate"))?;
        self.tracker.lock().unwrap().truncate_after(index);
        self.flushed_tx
            .send_modify(|f| *f = index.and_then(|i| f.map(|f| f.min(i))));
        self.flush(&mut log, "truncate", drop)
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let mut log = self.lock();
        let index = LogIndex(log_id.index);
        log.purge(Lid(log_id))
            .inspect_err(self.failures.on("purge"))?;
        self.tracker.lock().unwrap().purge(index);
        m::log_purged(index);
        // The chunk files wholly below the purge point are removed once this
        // flush makes the purge record durable.
        self.flush(&mut log, "purge", drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Batch, Command, NewEvent};
    use crate::types::{Epoch, EventNum};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId {
                leader_id: openraft::impls::leader_id_adv::LeaderId {
                    term: 1,
                    node_id: crate::ids::NodeId(1),
                },
                index,
            },
            payload: openraft::EntryPayload::Normal(Command::Append(Batch {
                epoch: Epoch(1),
                first: EventNum(index),
                events: vec![NewEvent {
                    mug: index as u32,
                    data: bytes::Bytes::from(vec![index as u8; 100]),
                }],
                retry: false,
                by: None,
            })),
        }
    }

    fn open(dir: &Path) -> Result<LogStore, OpenError> {
        let log = LogStore::open(dir, &LogOptions::default())?;
        Ok(LogStore::new(log, Arc::default(), Failures::default()))
    }

    async fn append(store: &mut LogStore, range: std::ops::Range<u64>) {
        store
            .append(range.map(entry), IOFlushed::noop())
            .await
            .unwrap();
        store.sync().unwrap();
    }

    /// Where entry `n`'s event data (100 bytes of `n`, `entry`) lies in a
    /// chunk's bytes.
    fn data_of(bytes: &[u8], n: u8) -> usize {
        bytes
            .windows(100)
            .position(|w| w.iter().all(|b| *b == n))
            .expect("the entry is in the chunk")
    }

    fn chunk_file(dir: &Path) -> PathBuf {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        files.sort();
        files.pop().unwrap()
    }

    async fn indexes(store: &mut LogStore) -> Vec<u64> {
        store
            .try_get_log_entries(0..100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }

    #[tokio::test]
    async fn entries_vote_and_commit_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path()).unwrap();
            append(&mut store, 1..6).await;
            let vote = Vote {
                leader_id: openraft::impls::leader_id_adv::LeaderId {
                    term: 3,
                    node_id: crate::ids::NodeId(2),
                },
                committed: true,
            };
            store.save_vote(&vote).await.unwrap();
            store.save_committed(Some(entry(4).log_id)).await.unwrap();
            store.sync().unwrap();
        }
        let mut store = open(dir.path()).unwrap();
        assert_eq!(indexes(&mut store).await, [1, 2, 3, 4, 5]);
        assert_eq!(store.read_vote().await.unwrap().unwrap().leader_id.term, 3);
        assert_eq!(store.read_committed().await.unwrap().unwrap().index, 4);
        let e = &store.try_get_log_entries(3..4).await.unwrap()[0];
        assert_eq!(e, &entry(3));
    }

    #[tokio::test]
    async fn replaying_from_past_the_logs_end_reads_nothing() {
        // A snapshot installed (or restored at start) beyond the log's last
        // entry: a follower that was far behind, or re-added.
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path()).unwrap();
        append(&mut store, 1..4).await;
        store.sync().unwrap();
        store
            .tracker()
            .lock()
            .unwrap()
            .reset(LogIndex(10), Default::default());
        store.replay_into_tracker(LogIndex(10)).unwrap();
        assert_eq!(indexes(&mut store).await, [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_at_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path()).unwrap();
            append(&mut store, 1..6).await;
            store.sync().unwrap();
        }
        // A crash in the middle of writing the last record.
        let file = chunk_file(dir.path());
        let len = std::fs::metadata(&file).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(len - 30)
            .unwrap();
        let mut store = open(dir.path()).unwrap();
        assert_eq!(indexes(&mut store).await, [1, 2, 3, 4]);
        // And the log goes on from there.
        append(&mut store, 5..7).await;
        assert_eq!(indexes(&mut store).await, [1, 2, 3, 4, 5, 6]);
    }

    #[tokio::test]
    async fn a_zero_filled_tail_is_cut_at_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path()).unwrap();
            append(&mut store, 1..4).await;
            store.sync().unwrap();
        }
        // ext4 with data=writeback can extend a file before its data lands.
        let file = chunk_file(dir.path());
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.extend_from_slice(&[0u8; 4096]);
        std::fs::write(&file, bytes).unwrap();
        let mut store = open(dir.path()).unwrap();
        assert_eq!(indexes(&mut store).await, [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_damaged_record_in_the_middle_stops_the_node_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path()).unwrap();
            append(&mut store, 1..6).await;
            store.sync().unwrap();
        }
        let file = chunk_file(dir.path());
        let mut bytes = std::fs::read(&file).unwrap();
        // Entry 3's event data sits in the middle of the file.
        let at = data_of(&bytes, 3);
        bytes[at + 50] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        let err = open(dir.path()).err().expect("a damaged log must not open");
        let OpenError::Corrupt {
            file: f, offset, ..
        } = &err
        else {
            panic!("expected Corrupt, got {err}")
        };
        assert_eq!(f, &file);
        assert!(
            (offset..&(offset + 200)).contains(&&(at as u64)),
            "offset {offset} should point at the record holding byte {at}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("byte {offset}")), "{msg}");
    }

    #[tokio::test]
    async fn after_a_failed_fdatasync_the_log_is_cut_at_the_hole_it_left() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path()).unwrap();
            append(&mut store, 1..6).await;
            store.sync().unwrap();
        }
        // Entry 3's record never reached the disk (its fdatasync failed);
        // entries 4 and 5, queued behind it, did (the restart's fsync).
        let file = chunk_file(dir.path());
        let mut bytes = std::fs::read(&file).unwrap();
        let at = data_of(&bytes, 3);
        bytes[at..at + 100].fill(0);
        std::fs::write(&file, &bytes).unwrap();
        let Err(OpenError::Corrupt {
            file: f, offset, ..
        }) = open(dir.path())
        else {
            panic!("a log with a hole must not open as it is")
        };
        assert_eq!(
            cut_after_failure(&f, offset).unwrap(),
            Vec::<PathBuf>::new()
        );
        let mut store = open(dir.path()).unwrap();
        assert_eq!(indexes(&mut store).await, [1, 2]);
        append(&mut store, 3..5).await;
        assert_eq!(indexes(&mut store).await, [1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_failed_fdatasync_is_recorded_and_nothing_after_it_counts_as_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path()).unwrap();
        store
            .tracker()
            .lock()
            .unwrap()
            .reset(LogIndex(1), Default::default());
        append(&mut store, 1..3).await;
        assert_eq!(store.failures().get(), None);
        *store.fault.lock().unwrap() = Some(io::Error::from_raw_os_error(libc::EIO));
        use openraft::type_config::TypeConfigExt;
        let (tx, rx) = TypeConfig::oneshot();
        store
            .append((3..5).map(entry), IOFlushed::signal(tx))
            .await
            .unwrap();
        let acked = rx.await.unwrap();
        assert!(acked.is_err(), "the append was acknowledged: {acked:?}");
        let failure = store.failures().get().expect("the failure is recorded");
        assert_eq!(failure.what, "append");
        assert_eq!(failure.kind, io::Error::from_raw_os_error(libc::EIO).kind());
        assert_eq!(
            store.tracker().lock().unwrap().flushed_index(),
            Some(LogIndex(2))
        );
        assert_eq!(*store.watch_flushed().borrow(), Some(LogIndex(2)));
    }

    #[tokio::test]
    async fn truncation_and_purge_follow_raft() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path()).unwrap();
        append(&mut store, 1..8).await;
        store.truncate_after(Some(entry(5).log_id)).await.unwrap();
        assert_eq!(indexes(&mut store).await, [1, 2, 3, 4, 5]);
        store.purge(entry(2).log_id).await.unwrap();
        assert_eq!(indexes(&mut store).await, [3, 4, 5]);
        let st = store.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.unwrap().index, 2);
        assert_eq!(st.last_log_id.unwrap().index, 5);
        store.sync().unwrap();
        drop(store);
        let mut store = open(dir.path()).unwrap();
        assert_eq!(indexes(&mut store).await, [3, 4, 5]);
    }
}
