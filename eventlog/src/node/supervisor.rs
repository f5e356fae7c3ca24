//! Raft on the node's disk: starting it, publishing it to the services
//! while it runs, and when its storage fails, stopping the node (a failed
//! fsync, any I/O error) or restarting Raft from disk with backoff (a full
//! disk).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventlog_client::{Backoff, Channels, Client, MessageLimits};
use openraft::rt::WatchReceiver;
use openraft::{BasicNode, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{NodeError, NodeOptions, StartError, bootstrap, compact, publish};
use crate::app::{CommitView, Running};
use crate::ids::NodeId;
use crate::metrics as m;
use crate::network::Network;
use crate::raft::{MAX_PAYLOAD_ENTRIES, Raft};
use crate::sm::StateMachine;
use crate::storage::fsync::{self, Failure, Failures};
use crate::storage::{LogOptions, LogStore, OpenError, Tracker};

fn raft_config(cluster: &str) -> openraft::Config {
    openraft::Config {
        cluster_name: cluster.to_string(),
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        // Snapshots are built when the purge point moves (see `compact`).
        snapshot_policy: SnapshotPolicy::Never,
        // ... and the log is purged only below the purge point.
        max_in_snapshot_log_to_keep: u64::MAX,
        purge_batch_size: 1,
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        enable_pre_vote: Some(true),
        install_snapshot_timeout: 10_000,
        ..Default::default()
    }
}

/// Starts and restarts Raft for one node.
/// Opens a node's storage from what is really on disk (each file synced
/// and dropped from the page cache first, `fsync::settle`): the snapshot,
/// then the log, replayed into the tracker of what is flushed. Blocking.
pub(crate) fn open_storage(
    node_dir: &Path,
    log_opts: &LogOptions,
) -> Result<(LogStore, StateMachine), NodeError> {
    let failures = Failures::default();
    let snapshots = node_dir.join("snapshots");
    fsync::settle(&snapshots)
        .map_err(|(file, source)| NodeError::Log(OpenError::Sync { file, source }))?;
    let sm = StateMachine::open(&snapshots, failures.clone())?;
    let log_dir = node_dir.join("log");
    let marker = node_dir.join(fsync::FAILED_MARKER);
    let raw = match LogStore::open(&log_dir, log_opts) {
        Err(OpenError::Corrupt {
            file,
            offset,
            source,
        }) if marker.exists() => {
            tracing::error!(
                file = %file.display(),
                offset,
                "the last run stopped on a failed write or fdatasync ({}), which left a hole \
                 here ({source}): cutting the log there; nothing from it on was acknowledged, \
                 and the peers send it again",
                std::fs::read_to_string(&marker).unwrap_or_default().trim(),
            );
            let cut = crate::storage::cut_after_failure(&file, offset).map_err(|source| {
                NodeError::Log(OpenError::Io {
                    dir: log_dir.clone(),
                    source,
                })
            })?;
            if !cut.is_empty() {
                tracing::warn!(chunks = ?cut, "deleted the log's chunks after the hole");
            }
            LogStore::open(&log_dir, log_opts)?
        }
        opened => opened?,
    };
    let pos = sm.position();
    let next = pos.next_index();
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    tracker.lock().unwrap().reset(next, pos.fence);
    let log = LogStore::new(raw, tracker, failures);
    log.replay_into_tracker(next)
        .map_err(|e| NodeError::Raft(StartError::Replay(e)))?;
    sm.attach_log(log.clone());
    if marker.exists() {
        std::fs::remove_file(&marker)
            .and_then(|()| fsync::sync_dir(node_dir))
            .map_err(|source| {
                NodeError::Log(OpenError::Sync {
                    file: marker,
                    source,
                })
            })?;
    }
    Ok((log, sm))
}

pub(super) struct Supervisor<'a> {
    opts: &'a NodeOptions,
    node_dir: PathBuf,
    /// Raft traffic's connections to peers, kept across restarts.
    channels: Channels,
}

impl<'a> Supervisor<'a> {
    pub fn new(opts: &'a NodeOptions, node_dir: PathBuf) -> Self {
        Supervisor {
            opts,
            node_dir,
            channels: Channels::new(opts.credentials.clone()),
        }
    }

    /// Opens the snapshot and the log and starts Raft on them.
    pub async fn start(&self) -> Result<Running, NodeError> {
        let (dir, log_opts) = (self.node_dir.clone(), self.opts.log.clone());
        let (log, sm) = tokio::task::spawn_blocking(move || open_storage(&dir, &log_opts))
            .await
            .map_err(|e| NodeError::Raft(StartError::Open(e)))??;

        let network = Network {
            channels: self.channels.clone(),
            limits: MessageLimits::from_config(&self.opts.config.eventlog),
        };
        let config = raft_config(&self.opts.config.cluster)
            .validate()
            .map_err(|e| NodeError::Raft(e.into()))?;
        let raft = Raft::new(
            NodeId::from(self.opts.id),
            Arc::new(config),
            network,
            log.clone(),
            sm.clone(),
        )
        .await
        .map_err(|e| NodeError::Raft(e.into()))?;
        let (commit_tx, commit) = watch::channel(CommitView::NotLeader { leader: None });
        let running = Running {
            raft,
            sm,
            log,
            commit,
        };
        tokio::spawn(publish::publish_commits(running.clone(), commit_tx));
        Ok(running)
    }

    /// Runs Raft, starting from `first`, until `shutdown` completes (then
    /// `Ok`) or its storage fails in a way only a new process can recover
    /// from: the services see it in `current` while it runs, and why it
    /// does not in `down`.
    pub async fn run(
        &self,
        first: Running,
        current: watch::Sender<Option<Running>>,
        down: watch::Sender<Option<String>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NodeError> {
        let client = Client::new(&self.opts.config, self.opts.credentials.clone());
        let mut shutdown = std::pin::pin!(shutdown);
        let mut next = Some(first);
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            let running = match next.take() {
                Some(r) => r,
                None => match self.start().await {
                    Ok(r) => r,
                    Err(e) => {
                        // Storage that fails to reopen after a failure (the
                        // disk is still full, say): keep trying until it works.
                        let wait = backoff.peek();
                        tracing::error!("cannot restart Raft: {e}; retrying in {wait:?}");
                        down.send_replace(Some(format!("storage failed: {e}")));
                        tokio::select! {
                            _ = backoff.wait() => {}
                            _ = &mut shutdown => return Ok(()),
                        }
                        continue;
                    }
                },
            };
            let tasks = self.spawn_tasks(&running, &client);
            current.send_replace(Some(running.clone()));
            down.send_replace(None);

            let failures = running.log.failures().clone();
            let fatal = tokio::select! {
                f = wait_fatal(&running.raft) => Some(f),
                f = wait_failure(&failures) => Some(f.to_string()),
                _ = &mut shutdown => None,
            };
            current.send_replace(None);
            for t in tasks {
                t.abort();
            }
            let Running { raft, log, sm, .. } = running;
            match fatal {
                None => {
                    tracing::info!("shutting down");
                    let _ = raft.shutdown().await;
                    if let Err(e) = log.sync() {
                        tracing::warn!("final flush of the log failed: {e}");
                    }
                    return Ok(());
                }
                Some(why) => {
                    let failure = failures.get();
                    if after_failure(failure.as_ref()) == AfterFailure::Stop {
                        let why = failure.map_or(why, |f| f.to_string());
                        tracing::error!(
                            "the event log's storage failed ({why}): stopping the node"
                        );
                        down.send_replace(Some(format!("storage failed: {why}")));
                        let _ = raft.shutdown().await;
                        fsync::mark_failed(&self.node_dir, &why);
                        return Err(NodeError::StorageFailed(why));
                    }
                    tracing::error!("Raft stopped: {why}; restarting it from disk");
                    m::restarts();
                    down.send_replace(Some(format!("storage failed: {why}")));
                    let _ = raft.shutdown().await;
                    drop((raft, log, sm));
                    // The same delay as the last failed start waited: only
                    // failed starts lengthen it.
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.peek()) => {}
                        _ = &mut shutdown => return Ok(()),
                    }
                }
            }
        }
    }

    /// The tasks that run beside Raft: compaction, and on the replica with
    /// the lowest id, forming the cluster.
    fn spawn_tasks(&self, running: &Running, client: &Client) -> Vec<JoinHandle<()>> {
        let opts = self.opts;
        let lowest = opts.config.replicas.iter().map(|r| r.id).min();
        let mut tasks = vec![tokio::spawn(compact::compact(
            running.raft.clone(),
            running.sm.clone(),
        ))];
        if lowest == Some(opts.id) {
            let members: BTreeMap<NodeId, BasicNode> = opts
                .config
                .replicas
                .iter()
                .map(|r| {
                    let node = BasicNode {
                        addr: r.eventlog.to_string(),
                    };
                    (NodeId::from(r.id), node)
                })
                .collect();
            tasks.push(tokio::spawn(bootstrap::initialize(
                running.raft.clone(),
                client.clone(),
                opts.id,
                members,
                opts.config.quorum(),
            )));
        }
        tasks
    }
}

/// What the node does once its storage failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterFailure {
    /// Restart Raft in this process from what is on disk.
    Reopen,
    /// Stop the process (non-zero exit); its next start settles the files
    /// and reads back only what is on disk.
    Stop,
}

/// What to do after `failure` (`None`: Raft stopped without a recorded
/// storage failure, a panic in openraft say: openraft's leader panics when
/// a wiped replica rejoins with an empty log, and restarting from disk is
/// what lets a replaced disk rejoin). A full disk (or quota) is reopened
/// in-process too: raft-log reports a failed write and a failed fdatasync
/// alike, and after a failed fdatasync the page cache may hold clean pages
/// that never reached the disk, so any other storage error stops the node.
/// A full disk's failed write leaves nothing cached as clean, and the
/// reopen syncs the files and drops their cached pages before reading
/// them.
pub(super) fn after_failure(failure: Option<&Failure>) -> AfterFailure {
    match failure.map(|f| f.kind) {
        None | Some(std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) => {
            AfterFailure::Reopen
        }
        _ => AfterFailure::Stop,
    }
}

/// Resolves once the log store or the state machine records a failure.
async fn wait_failure(failures: &Failures) -> Failure {
    let mut rx = failures.watch();
    loop {
        if let Some(f) = rx.borrow_and_update().clone() {
            return f;
        }
        if rx.changed().await.is_err() {
            // The sender lives as long as `failures`.
            std::future::pending::<()>().await;
        }
    }
}

/// Resolves when Raft stops on a fatal error (storage failed, panicked).
async fn wait_fatal(raft: &Raft) -> String {
    let mut metrics = raft.metrics();
    loop {
        if let Err(e) = &metrics.borrow_and_update().running_state {
            return e.to_string();
        }
        if metrics.changed().await.is_err() {
            return "Raft stopped".into();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn failed(what: &'static str, err: io::Error) -> Failures {
        let f = Failures::default();
        f.report(what, &err);
        f
    }

    #[test]
    fn a_failed_fdatasync_stops_the_node() {
        let eio = failed("append", io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(after_failure(eio.get().as_ref()), AfterFailure::Stop);
        let snapshot = failed("snapshot", io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(after_failure(snapshot.get().as_ref()), AfterFailure::Stop);
        // raft-log's worker stops after a failure: what fails next says only
        // that, and stops the node too.
        let gone = failed("vote", io::Error::other("Failed to send request"));
        assert_eq!(after_failure(gone.get().as_ref()), AfterFailure::Stop);
    }

    #[test]
    fn raft_stopping_without_a_storage_failure_restarts_it_from_disk() {
        // openraft's leader panics when a wiped replica rejoins empty.
        assert_eq!(after_failure(None), AfterFailure::Reopen);
    }

    #[test]
    fn a_full_disk_reopens_from_disk() {
        let full = failed("append", io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(after_failure(full.get().as_ref()), AfterFailure::Reopen);
        let quota = failed("append", io::Error::from_raw_os_error(libc::EDQUOT));
        assert_eq!(after_failure(quota.get().as_ref()), AfterFailure::Reopen);
    }
}
