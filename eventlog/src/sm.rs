//! openraft's state machine: applies committed entries to the [`Machine`],
//! and keeps its snapshots as checksummed files in the node's directory.
//!
//! The machine lives in memory; what makes it durable is the Raft log (every
//! entry since the last snapshot) plus the latest snapshot file. A snapshot
//! is built when the purge point advances, so that the log below it can be
//! purged (docs/SPEC.md §5), and is what a new or wiped replica installs.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use config::ReplicaId;
use eventlog_client::LogIndex;
use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::type_config::alias::SnapshotOf;
use tokio::sync::watch;

use crate::command::{Command, Outcome};
use crate::fence::{FenceState, Rejection};
use crate::machine::{Machine, SnapshotError};
use crate::metrics as m;
use crate::raft::{LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::storage::LogStore;
use crate::storage::fsync::{self, Failures};
use crate::types::EventNum;

/// Where the applied state stands; published after every apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Position {
    /// The last log index applied.
    pub applied: Option<LogIndex>,
    pub fence: FenceState,
    pub purge_point: EventNum,
    /// The first log index still holding an event above the purge point.
    pub first_needed_index: Option<LogIndex>,
}

impl Position {
    /// The first log index not applied yet.
    pub fn next_index(&self) -> LogIndex {
        next_index(self.applied)
    }
}

/// The index after `last` (`None`: before the first entry).
fn next_index(last: Option<LogIndex>) -> LogIndex {
    last.map_or(LogIndex(0), |l| LogIndex(l.get() + 1))
}

struct Applied {
    machine: Machine,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// A snapshot file, open for reading.
pub struct SnapshotData {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
}

/// The state machine, shared by openraft and the API that reads from it.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

struct Inner {
    state: RwLock<Applied>,
    /// `<node dir>/snapshots`.
    dir: PathBuf,
    current: Mutex<Option<(SnapshotMeta, PathBuf)>>,
    position: watch::Sender<Position>,
    log: Mutex<Option<LogStore>>,
    /// A snapshot's failed write or fsync stops the node (see `fsync`).
    failures: Failures,
}

/// A snapshot file that cannot be used: the node does not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "snapshot {file}: {source}; move the replica's data directory away and restart it empty to \
     rebuild it from its peers"
)]
pub struct BadSnapshot {
    pub file: PathBuf,
    pub source: SnapshotError,
}

impl StateMachine {
    /// Loads the latest snapshot in `dir` (`<node dir>/snapshots`), if any
    /// (the caller settles the directory first, `fsync::settle`).
    pub(crate) fn open(dir: &Path, failures: Failures) -> Result<StateMachine, BadSnapshot> {
        let io_err = |source: io::Error| BadSnapshot {
            file: dir.to_path_buf(),
            source: SnapshotError::Io(source),
        };
        fs::create_dir_all(dir).map_err(io_err)?;
        let mut snaps = Vec::new();
        for e in fs::read_dir(dir).map_err(io_err)? {
            let path = e.map_err(io_err)?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("snap") => snaps.push(path),
                // An install or a build that a crash interrupted.
                Some("tmp") => {
                    let _ = fs::remove_file(&path);
                }
                _ => {}
            }
        }
        snaps.sort();
        let mut applied = Applied {
            machine: Machine::default(),
            last_applied: None,
            membership: StoredMembership::default(),
        };
        let mut current = None;
        if let Some(path) = snaps.pop() {
            let (meta, machine) = read_snapshot_file(&path)?;
            applied = Applied {
                machine,
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            };
            current = Some((meta, path));
            for older in snaps {
                let _ = fs::remove_file(older);
            }
        }
        let sm = StateMachine {
            inner: Arc::new(Inner {
                position: watch::channel(Position::default()).0,
                state: RwLock::new(applied),
                dir: dir.to_path_buf(),
                current: Mutex::new(current),
                log: Mutex::new(None),
                failures,
            }),
        };
        sm.publish();
        Ok(sm)
    }

    /// The log store whose durability tracker must restart from an
    /// installed snapshot.
    pub(crate) fn attach_log(&self, log: LogStore) {
        *self.inner.log.lock().unwrap() = Some(log);
    }

    pub(crate) fn watch_position(&self) -> watch::Receiver<Position> {
        self.inner.position.subscribe()
    }

    pub(crate) fn position(&self) -> Position {
        *self.inner.position.borrow()
    }

    /// Runs `f` on the applied state.
    pub(crate) fn with_machine<T>(&self, f: impl FnOnce(&Machine) -> T) -> T {
        f(&self.inner.state.read().unwrap().machine)
    }

    /// The snapshot's log index, if there is one.
    pub(crate) fn snapshot_index(&self) -> Option<LogIndex> {
        self.inner
            .current
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|(meta, _)| meta.last_log_id.map(|l| LogIndex(l.index)))
    }

    fn publish(&self) {
        let st = self.inner.state.read().unwrap();
        let m = &st.machine;
        let pos = Position {
            applied: st.last_applied.map(|l| LogIndex(l.index)),
            fence: m.fence(),
            purge_point: m.purge_point(),
            first_needed_index: m.first_needed_index().map(LogIndex),
        };
        let (events, bytes) = m.held();
        m::machine(
            pos.fence.last.get(),
            pos.fence.highest.get(),
            pos.purge_point.get(),
            events,
            bytes,
        );
        drop(st);
        self.inner.position.send_if_modified(|p| {
            let changed = *p != pos;
            *p = pos;
            changed
        });
    }

    fn apply_one(&self, entry: &crate::raft::Entry) -> Outcome {
        let mut st = self.inner.state.write().unwrap();
        st.last_applied = Some(entry.log_id);
        let index = entry.log_id.index;
        match &entry.payload {
            openraft::EntryPayload::Blank => Outcome::Done,
            openraft::EntryPayload::Normal(cmd) => {
                let out = st.machine.apply(index, cmd);
                match (&out, cmd) {
                    (Outcome::Stored { .. }, Command::Append(b)) if !b.events.is_empty() => {
                        m::stored(b.count(), b.data_bytes() as u64)
                    }
                    (Outcome::Rejected(r), _) => {
                        if let Rejection::EpochReused { .. } = r {
                            // etcd's history went back; every node says so.
                            let why = eventlog_client::AppendError::from(*r);
                            tracing::error!(index, "{why}");
                        }
                        m::rejected(r.reason())
                    }
                    _ => {}
                }
                out
            }
            openraft::EntryPayload::Membership(mem) => {
                st.membership = StoredMembership::new(Some(entry.log_id), mem.clone());
                let voters = st
                    .membership
                    .voter_ids()
                    .filter_map(|v| ReplicaId::try_from(v).ok())
                    .map(ReplicaId::get)
                    .collect::<Vec<_>>();
                st.machine.set_voters(voters);
                Outcome::Done
            }
        }
    }

    fn remove_older_snapshots(&self, keep: &Path) {
        let Ok(entries) = fs::read_dir(&self.inner.dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p != keep && p.extension().is_some_and(|e| e == "snap") {
                let _ = fs::remove_file(p);
            }
        }
    }

    /// A temporary file in the snapshot directory for a snapshot arriving
    /// from the leader, which may be at most `limit` bytes.
    pub(crate) fn incoming(&self, limit: u64) -> io::Result<Incoming> {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).map_err(io::Error::other)?;
        let path = self
            .inner
            .dir
            .join(format!("incoming-{}.tmp", hex::encode(r)));
        let file = File::options().write(true).create_new(true).open(&path)?;
        Ok(Incoming {
            failures: self.inner.failures.clone(),
            partial: Partial { path, keep: false },
            dir: self.inner.dir.clone(),
            w: BufWriter::with_capacity(1 << 20, file),
            received: 0,
            limit,
        })
    }
}

/// A snapshot arriving from the leader: written to a temporary file as it
/// comes, refused once it passes its limit, checked whole and synced
/// before Raft may install it. Dropped before [`Incoming::finish`] succeeds,
/// its file is deleted.
pub(crate) struct Incoming {
    failures: Failures,
    partial: Partial,
    dir: PathBuf,
    w: BufWriter<File>,
    received: u64,
    limit: u64,
}

/// Deletes an incoming snapshot's file unless it was kept.
struct Partial {
    path: PathBuf,
    keep: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Why an incoming snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IncomingError {
    #[error("the snapshot is larger than this node takes ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("cannot store the snapshot: {0}")]
    Io(#[from] io::Error),
    #[error("the snapshot arrived damaged: {0}")]
    Damaged(#[source] BadSnapshot),
}

impl Incoming {
    /// Appends the next chunk, unless that takes the snapshot past its
    /// limit.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), IncomingError> {
        let received = self.received.saturating_add(chunk.len() as u64);
        if received > self.limit {
            return Err(IncomingError::TooLarge { limit: self.limit });
        }
        self.w.write_all(chunk)?;
        self.received = received;
        Ok(())
    }

    /// Syncs the file and the directory, and reads the snapshot through to
    /// check its hash: a damaged transfer handed to Raft would stop the
    /// node, refused here the leader sends it again.
    pub fn finish(mut self) -> Result<SnapshotData, IncomingError> {
        let file = self.w.into_inner().map_err(|e| e.into_error())?;
        let synced = fsync::sync_data(&file).and_then(|()| fsync::sync_dir(&self.dir));
        synced.inspect_err(self.failures.on("snapshot"))?;
        drop(file);
        verify_snapshot_file(&self.partial.path).map_err(IncomingError::Damaged)?;
        let file = File::open(&self.partial.path)?;
        self.partial.keep = true;
        Ok(SnapshotData {
            path: self.partial.path.clone(),
            file,
        })
    }
}

fn snapshot_name(meta: &SnapshotMeta) -> String {
    match meta.last_log_id {
        Some(l) => format!(
            "snap-{:020}-{}-{}.snap",
            l.index, l.leader_id.term, l.leader_id.node_id
        ),
        None => "snap-none.snap".into(),
    }
}

fn read_snapshot_file(path: &Path) -> Result<(SnapshotMeta, Machine), BadSnapshot> {
    let bad = |source| BadSnapshot {
        file: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|e| bad(SnapshotError::Io(e)))?;
    decode_snapshot(BufReader::new(file)).map_err(bad)
}

/// Reads a snapshot: openraft's metadata and the machine.
pub(crate) fn decode_snapshot(r: impl io::Read) -> Result<(SnapshotMeta, Machine), SnapshotError> {
    let (meta, machine) = Machine::read_snapshot(r)?;
    let meta: SnapshotMeta =
        postcard::from_bytes(&meta).map_err(|source| SnapshotError::Undecodable {
            offset: 12,
            part: "snapshot metadata",
            source,
        })?;
    Ok((meta, machine))
}

/// Reads a snapshot file through, checking it is whole.
pub(crate) fn verify_snapshot_file(path: &Path) -> Result<(), BadSnapshot> {
    read_snapshot_file(path).map(drop)
}

/// Writes `file` durably: data, then the rename, then the directory.
fn persist(tmp: &Path, file: File, dest: &Path) -> io::Result<()> {
    fsync::sync_all(&file)?;
    drop(file);
    fs::rename(tmp, dest)?;
    fsync::sync_dir(dest.parent().unwrap_or(Path::new(".")))
}

pub struct SnapshotBuilder {
    sm: StateMachine,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<TypeConfig, SnapshotData>> {
        let (meta, machine) = {
            let st = self.sm.inner.state.read().unwrap();
            let meta = SnapshotMeta {
                last_log_id: st.last_applied,
                last_membership: st.membership.clone(),
            };
            // Events are reference-counted: this copies their handles.
            (meta, st.machine.clone())
        };
        let sm = self.sm.clone();
        let meta2 = meta.clone();
        let path = tokio::task::spawn_blocking(move || -> io::Result<PathBuf> {
            let dest = sm.inner.dir.join(snapshot_name(&meta2));
            let tmp = dest.with_extension("tmp");
            let file = File::create(&tmp)?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let meta_blob = postcard::to_stdvec(&meta2).map_err(io::Error::other)?;
            machine.write_snapshot(&meta_blob, &mut w)?;
            w.flush()?;
            let file = w.into_inner().map_err(|e| e.into_error())?;
            persist(&tmp, file, &dest)?;
            *sm.inner.current.lock().unwrap() = Some((meta2, dest.clone()));
            sm.remove_older_snapshots(&dest);
            Ok(dest)
        })
        .await
        .map_err(io::Error::other)?
        .inspect_err(self.sm.inner.failures.on("snapshot"))?;
        m::snapshot_built();
        tracing::info!(snapshot = %path.display(), "built a snapshot");
        let file = File::open(&path)?;
        Ok(Snapshot {
            meta,
            snapshot: SnapshotData { path, file },
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let st = self.inner.state.read().unwrap();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + Send,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let outcome = self.apply_one(&entry);
            if let Some(r) = responder {
                r.send(outcome);
            }
        }
        self.publish();
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder { sm: self.clone() }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> io::Result<()> {
        let sm = self.clone();
        let meta = meta.clone();
        let (meta, machine) =
            tokio::task::spawn_blocking(move || -> io::Result<(SnapshotMeta, Machine)> {
                let SnapshotData { path, file } = snapshot;
                let (embedded, machine) = read_snapshot_file(&path).map_err(io::Error::other)?;
                if embedded.last_log_id != meta.last_log_id {
                    return Err(io::Error::other(format!(
                        "snapshot {} holds log id {:?}, not {:?}",
                        path.display(),
                        embedded.last_log_id,
                        meta.last_log_id
                    )));
                }
                let dest = sm.inner.dir.join(snapshot_name(&meta));
                persist(&path, file, &dest)?;
                *sm.inner.current.lock().unwrap() = Some((meta.clone(), dest.clone()));
                sm.remove_older_snapshots(&dest);
                Ok((meta, machine))
            })
            .await
            .map_err(io::Error::other)?
            .inspect_err(self.inner.failures.on("snapshot"))?;
        let fence = machine.fence();
        {
            let mut st = self.inner.state.write().unwrap();
            st.machine = machine;
            st.last_applied = meta.last_log_id;
            st.membership = meta.last_membership.clone();
        }
        let next = next_index(meta.last_log_id.map(|l| LogIndex(l.index)));
        if let Some(log) = self.inner.log.lock().unwrap().clone() {
            log.tracker().lock().unwrap().reset(next, fence);
            log.replay_into_tracker(next)?;
        }
        m::snapshot_installed();
        tracing::info!(last_log_id = ?meta.last_log_id, "installed a snapshot");
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> io::Result<Option<SnapshotOf<TypeConfig, SnapshotData>>> {
        let current = self.inner.current.lock().unwrap().clone();
        let Some((meta, path)) = current else {
            return Ok(None);
        };
        let file = File::open(&path)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: SnapshotData { path, file },
        }))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::command::{Batch, NewEvent};
    use crate::ids::NodeId;
    use crate::types::Epoch;

    /// A snapshot of three events at log index 5, as the leader sends it.
    fn leader_snapshot() -> (SnapshotMeta, Vec<u8>) {
        let mut machine = Machine::default();
        let batch = Batch {
            epoch: Epoch(2),
            first: EventNum(1),
            events: (0..3)
                .map(|i| NewEvent {
                    mug: i,
                    data: Bytes::from(vec![i as u8; 1000]),
                })
                .collect(),
            retry: false,
            by: None,
        };
        machine.apply(5, &Command::Append(batch));
        let meta = SnapshotMeta {
            last_log_id: Some(LogId {
                leader_id: openraft::impls::leader_id_adv::LeaderId {
                    term: 1,
                    node_id: NodeId(1),
                },
                index: 5,
            }),
            last_membership: StoredMembership::default(),
        };
        let mut bytes = Vec::new();
        let blob = postcard::to_stdvec(&meta).unwrap();
        machine.write_snapshot(&blob, &mut bytes).unwrap();
        (meta, bytes)
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn send(incoming: &mut Incoming, bytes: &[u8]) -> Result<(), IncomingError> {
        bytes.chunks(700).try_for_each(|c| incoming.write(c))
    }

    #[test]
    fn an_oversize_or_damaged_snapshot_is_refused_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path(), Failures::default()).unwrap();
        let (_, bytes) = leader_snapshot();

        let mut incoming = sm.incoming(bytes.len() as u64 - 1).unwrap();
        assert_eq!(files(dir.path()).len(), 1, "written as it arrives");
        let refused = send(&mut incoming, &bytes).unwrap_err();
        assert!(
            matches!(refused, IncomingError::TooLarge { limit } if limit == bytes.len() as u64 - 1),
            "{refused}"
        );
        drop(incoming);
        assert!(files(dir.path()).is_empty());

        let mut damaged = bytes.clone();
        damaged[100] ^= 1;
        let mut incoming = sm.incoming(1 << 20).unwrap();
        send(&mut incoming, &damaged).unwrap();
        assert!(matches!(incoming.finish(), Err(IncomingError::Damaged(_))));
        assert!(files(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_whole_snapshot_within_the_limit_installs() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path(), Failures::default()).unwrap();
        let (meta, bytes) = leader_snapshot();
        let mut incoming = sm.incoming(bytes.len() as u64).unwrap();
        send(&mut incoming, &bytes).unwrap();
        let data = incoming.finish().unwrap();
        sm.install_snapshot(&meta, data).await.unwrap();

        let pos = sm.position();
        assert_eq!(pos.applied, Some(LogIndex(5)));
        assert_eq!(pos.fence.last, EventNum(3));
        assert_eq!(sm.with_machine(|m| m.get(EventNum(2)).unwrap().mug), 1);
        assert_eq!(
            files(dir.path()),
            [format!("snap-{:020}-1-1.snap", 5)],
            "the temporary file became the snapshot"
        );
        // And a restart reads it back.
        let again = StateMachine::open(dir.path(), Failures::default()).unwrap();
        assert_eq!(again.position(), pos);
    }
}
