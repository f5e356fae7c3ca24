//! Raft on the node's disk: starting it, publishing it to the services
//! while it runs, and restarting it from disk, with backoff, when it stops
//! on a fatal error (its storage failed).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
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
use crate::storage::{LogStore, Tracker};

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
        let sm = StateMachine::open(&self.node_dir.join("snapshots"))?;
        let raw = {
            let dir = self.node_dir.join("log");
            let log_opts = self.opts.log.clone();
            tokio::task::spawn_blocking(move || LogStore::open(&dir, &log_opts))
                .await
                .map_err(|e| NodeError::Raft(StartError::Open(e)))??
        };
        let pos = sm.position();
        let next = pos.next_index();
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        tracker.lock().unwrap().reset(next, pos.fence);
        let log = LogStore::new(raw, tracker);
        log.replay_into_tracker(next)
            .map_err(|e| NodeError::Raft(StartError::Replay(e)))?;
        sm.attach_log(log.clone());

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

    /// Runs Raft, starting from `first`, until `shutdown` completes: the
    /// services see it in `current` while it runs, and why it does not in
    /// `down`.
    pub async fn run(
        &self,
        first: Running,
        current: watch::Sender<Option<Running>>,
        down: watch::Sender<Option<String>>,
        shutdown: impl Future<Output = ()>,
    ) {
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
                            _ = &mut shutdown => return,
                        }
                        continue;
                    }
                },
            };
            let tasks = self.spawn_tasks(&running, &client);
            current.send_replace(Some(running.clone()));
            down.send_replace(None);

            let fatal = tokio::select! {
                f = wait_fatal(&running.raft) => Some(f),
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
                    return;
                }
                Some(why) => {
                    tracing::error!("Raft stopped: {why}; restarting it from disk");
                    m::restarts();
                    down.send_replace(Some(format!("storage failed: {why}")));
                    let _ = raft.shutdown().await;
                    drop((raft, log, sm));
                    // The same delay as the last failed start waited: only
                    // failed starts lengthen it.
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.peek()) => {}
                        _ = &mut shutdown => return,
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
