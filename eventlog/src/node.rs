//! One event log node: its storage, its Raft instance, its gRPC services,
//! and the tasks that keep them going: forming the cluster, publishing the
//! commit state, truncating behind the watermarks, and restarting Raft from
//! disk after a storage failure (a full disk, say).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::{Config, Key, ReplicaId};
use openraft::rt::WatchReceiver;
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use crate::auth::{Signer, Verifier};
use crate::client::Client;
use crate::metrics as m;
use crate::network::{Channels, Network};
use crate::proto::event_log_server::EventLogServer;
use crate::proto::raft_server::RaftServer;
use crate::raft::Raft;
use crate::service::{ApiService, RaftService};
use crate::sm::{BadSnapshot, StateMachine};
use crate::storage::{LogOptions, LogStore, OpenError, Tracker};
use crate::types::{CommitState, EventNum};

/// What a node needs to run.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub id: ReplicaId,
    pub config: Config,
    /// Overrides `eventlog.data_dir`.
    pub data_dir: Option<PathBuf>,
    pub log: LogOptions,
    /// Serve Prometheus metrics on the replica's `eventlog_metrics` address.
    pub serve_metrics: bool,
}

impl NodeOptions {
    pub fn new(config: Config, id: ReplicaId) -> Self {
        NodeOptions {
            id,
            config,
            data_dir: None,
            log: LogOptions::default(),
            serve_metrics: true,
        }
    }

    /// `<data_dir>/replica-<id>`.
    pub fn node_dir(&self) -> PathBuf {
        match &self.data_dir {
            Some(d) => config::node_dir(d, self.id),
            None => self.config.eventlog.node_dir(self.id),
        }
    }
}

/// Why a node stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("replica {0} is not in the config's [[replicas]]")]
    UnknownReplica(ReplicaId),
    #[error(transparent)]
    Key(#[from] config::KeyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] OpenError),
    #[error(transparent)]
    Snapshot(#[from] BadSnapshot),
    #[error("{0}")]
    Metrics(String),
    #[error("the Raft node failed to start: {0}")]
    Raft(String),
    #[error("the gRPC server failed: {0}")]
    Serve(String),
}

/// Largest event and batch the node accepts (from `[eventlog]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_event_bytes: u64,
    pub max_batch_bytes: u64,
}

/// The Raft instance in service, with its storage.
#[derive(Clone)]
pub(crate) struct Running {
    pub raft: Raft,
    pub sm: StateMachine,
    pub log: LogStore,
    pub commit: watch::Receiver<CommitView>,
}

/// What the commit watch says on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitView {
    /// Only the leader knows every voter's progress.
    NotLeader {
        leader: Option<u64>,
    },
    Leader(CommitState),
}

/// What the services share.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub id: u64,
    pub current: watch::Receiver<Option<Running>>,
    /// Why Raft is not running, while it is not.
    pub down: watch::Receiver<Option<String>>,
    pub limits: Limits,
    /// The config's replicas: addresses for leader hints before the
    /// membership is known.
    pub peers: Arc<BTreeMap<u64, String>>,
}

impl Ctx {
    pub fn running(&self) -> Result<Running, String> {
        self.current.borrow().clone().ok_or_else(|| {
            self.down
                .borrow()
                .clone()
                .unwrap_or_else(|| "the node is starting".into())
        })
    }

    /// The address of node `id`: from the membership, else the config.
    pub fn addr_of(&self, running: Option<&Running>, id: u64) -> String {
        running
            .and_then(|r| {
                r.raft
                    .metrics()
                    .borrow_watched()
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.addr.clone())
            })
            .or_else(|| self.peers.get(&id).cloned())
            .unwrap_or_default()
    }
}

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
        max_payload_entries: 64,
        enable_pre_vote: Some(true),
        install_snapshot_timeout: 10_000,
        ..Default::default()
    }
}

/// Runs the node until `shutdown` completes (then stops cleanly) or it
/// cannot go on.
pub async fn run(opts: NodeOptions, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let me = opts
        .config
        .replica(opts.id)
        .ok_or(NodeError::UnknownReplica(opts.id))?
        .clone();
    let key = Key::load(&opts.config.eventlog.secret_file)?;
    if opts.serve_metrics {
        m::serve(me.eventlog_metrics).map_err(NodeError::Metrics)?;
    }
    let listener = tokio::net::TcpListener::bind(me.eventlog)
        .await
        .map_err(|source| NodeError::Bind {
            addr: me.eventlog,
            source,
        })?;
    let id = u64::from(opts.id.get());
    let node_dir = opts.node_dir();
    tracing::info!(replica = id, listen = %me.eventlog, dir = %node_dir.display(), "event log node starting");

    // The first start must succeed: a damaged log or snapshot stops the node
    // before it serves anything.
    let channels = Channels::default();
    let first = start_raft(&opts, &node_dir, &key, &channels).await?;

    let (current_tx, current_rx) = watch::channel(None);
    let (down_tx, down_rx) = watch::channel(None);
    let ctx = Ctx {
        id,
        current: current_rx,
        down: down_rx,
        limits: Limits {
            max_event_bytes: opts.config.eventlog.max_event_bytes as u64,
            max_batch_bytes: opts.config.eventlog.batch.max_bytes as u64,
        },
        peers: Arc::new(
            opts.config
                .replicas
                .iter()
                .map(|r| (u64::from(r.id.get()), r.eventlog.to_string()))
                .collect(),
        ),
    };

    let (stop_server_tx, stop_server_rx) = tokio::sync::oneshot::channel::<()>();
    let verifier = Verifier::new(key.clone());
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(64 << 20)
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(InterceptedService::new(
            RaftServer::new(RaftService::new(ctx.clone()))
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            verifier.clone(),
        ))
        .add_service(InterceptedService::new(
            EventLogServer::new(ApiService::new(ctx.clone()))
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            verifier,
        ))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async {
                let _ = stop_server_rx.await;
            },
        );
    let server = tokio::spawn(server);

    let client = Client::new(&opts.config, key.clone());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next = Some(first);
    let mut backoff = Duration::from_millis(500);
    let result = loop {
        let running = match next.take() {
            Some(r) => r,
            None => match start_raft(&opts, &node_dir, &key, &channels).await {
                Ok(r) => r,
                Err(e) => {
                    // Storage that fails to reopen after a failure (the disk
                    // is still full, say): keep trying until it works.
                    tracing::error!("cannot restart Raft: {e}; retrying in {backoff:?}");
                    down_tx.send_replace(Some(format!("storage failed: {e}")));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = &mut shutdown => break Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        let tasks = spawn_tasks(&opts, &running, &client);
        current_tx.send_replace(Some(running.clone()));
        down_tx.send_replace(None);

        let fatal = tokio::select! {
            f = wait_fatal(&running.raft) => Some(f),
            _ = &mut shutdown => None,
        };
        current_tx.send_replace(None);
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
                break Ok(());
            }
            Some(why) => {
                tracing::error!("Raft stopped: {why}; restarting it from disk");
                m::restarts();
                down_tx.send_replace(Some(format!("storage failed: {why}")));
                let _ = raft.shutdown().await;
                drop((raft, log, sm));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => break Ok(()),
                }
            }
        }
    };
    let _ = stop_server_tx.send(());
    match server.await {
        Ok(Ok(())) => result,
        Ok(Err(e)) => Err(NodeError::Serve(e.to_string())),
        Err(e) => Err(NodeError::Serve(e.to_string())),
    }
}

/// Opens the snapshot and the log and starts Raft on them.
async fn start_raft(
    opts: &NodeOptions,
    node_dir: &Path,
    key: &Key,
    channels: &Channels,
) -> Result<Running, NodeError> {
    let sm = StateMachine::open(&node_dir.join("snapshots"))?;
    let raw = {
        let dir = node_dir.join("log");
        let log_opts = opts.log.clone();
        tokio::task::spawn_blocking(move || LogStore::open(&dir, &log_opts))
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))??
    };
    let pos = sm.position();
    let next = pos.applied.map_or(0, |a| a + 1);
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    tracker.lock().unwrap().reset(next, pos.fence);
    let log = LogStore::new(raw, tracker);
    log.replay_into_tracker(next)
        .map_err(|e| NodeError::Raft(format!("cannot read the log back: {e}")))?;
    sm.attach_log(log.clone());

    let network = Network {
        signer: Signer::new(key.clone(), opts.id.get()),
        channels: channels.clone(),
    };
    let config = Arc::new(
        raft_config(&opts.config.cluster)
            .validate()
            .map_err(|e| NodeError::Raft(e.to_string()))?,
    );
    let raft = Raft::new(
        u64::from(opts.id.get()),
        config,
        network,
        log.clone(),
        sm.clone(),
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;
    let (commit_tx, commit) = watch::channel(CommitView::NotLeader { leader: None });
    let running = Running {
        raft,
        sm,
        log,
        commit,
    };
    tokio::spawn(publish_commits(running.clone(), commit_tx));
    Ok(running)
}

fn spawn_tasks(
    opts: &NodeOptions,
    running: &Running,
    client: &Client,
) -> Vec<tokio::task::JoinHandle<()>> {
    let lowest = opts.config.replicas.iter().map(|r| r.id).min();
    let mut tasks = vec![tokio::spawn(compact(
        running.raft.clone(),
        running.sm.clone(),
    ))];
    if lowest == Some(opts.id) {
        let members = opts
            .config
            .replicas
            .iter()
            .map(|r| {
                (
                    u64::from(r.id.get()),
                    BasicNode {
                        addr: r.eventlog.to_string(),
                    },
                )
            })
            .collect();
        tasks.push(tokio::spawn(initialize(
            running.raft.clone(),
            client.clone(),
            opts.id,
            members,
            opts.config.quorum(),
        )));
    }
    tasks
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

/// Forms the cluster from the config's replicas, once, on the replica with
/// the lowest id: only if its own log is empty, no peer has a log, and a
/// quorum of replicas (itself included) confirms that. A replica whose disk
/// was wiped therefore never starts a second cluster beside the first.
async fn initialize(
    raft: Raft,
    client: Client,
    me: ReplicaId,
    members: BTreeMap<u64, BasicNode>,
    quorum: usize,
) {
    loop {
        match raft.is_initialized().await {
            Ok(true) | Err(_) => return,
            Ok(false) => {}
        }
        let mut empty = 1;
        let mut found = None;
        for (&id, node) in &members {
            if id == u64::from(me.get()) {
                continue;
            }
            match client.node_status(&node.addr, Duration::from_secs(1)).await {
                Ok(s) if s.initialized => found = Some(id),
                Ok(_) => empty += 1,
                Err(_) => {}
            }
        }
        if let Some(peer) = found {
            tracing::info!(
                peer,
                "a peer already holds a log: joining the existing cluster, not forming one"
            );
            return;
        }
        if empty >= quorum {
            let ids: BTreeSet<_> = members.keys().copied().collect();
            tracing::info!(voters = ?ids, "forming the cluster");
            match raft.initialize(members.clone()).await {
                Ok(()) => return,
                Err(e) => tracing::info!("initialization not done: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Keeps the commit view and the Raft metrics current.
async fn publish_commits(running: Running, tx: watch::Sender<CommitView>) {
    let Running { raft, sm, log, .. } = running;
    let mut metrics = raft.metrics();
    let mut position = sm.watch_position();
    let mut flushed = log.watch_flushed();
    drop(sm);
    // Gauges are refreshed a few times a second; the view on every change.
    let mut gauges_at = std::time::Instant::now() - Duration::from_secs(1);
    loop {
        let gauges = gauges_at.elapsed() >= Duration::from_millis(250);
        if gauges {
            gauges_at = std::time::Instant::now();
        }
        let view = {
            let mt = metrics.borrow_and_update();
            let pos = *position.borrow_and_update();
            flushed.borrow_and_update();
            let leader = mt.state == ServerState::Leader;
            if gauges {
                log.sync_committed();
                log.export_stats();
                m::raft(
                    mt.current_term,
                    leader,
                    mt.last_log_index,
                    mt.local_committed.map(|l| l.index),
                    mt.last_applied.map(|l| l.index),
                );
            }
            if !leader {
                CommitView::NotLeader {
                    leader: mt.current_leader,
                }
            } else {
                let committed = pos.fence.last;
                let tracker = log.tracker().lock().unwrap();
                let on_disk = |index: Option<u64>| match index {
                    None => Some(EventNum::NONE),
                    Some(i) => tracker.at(i).map(|s| s.last),
                };
                let flushed_index = tracker.flushed_index();
                let leader_durable = on_disk(flushed_index)
                    .unwrap_or(pos.purge_point)
                    .max(committed);
                let last_log = mt.last_log_index.unwrap_or(0);
                let mut lowest = flushed_index;
                for v in mt.membership_config.voter_ids() {
                    if v == mt.id {
                        continue;
                    }
                    let matched = mt
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&v).cloned().flatten())
                        .map(|l| l.index);
                    if gauges {
                        m::replica(v, matched, last_log.saturating_sub(matched.unwrap_or(0)));
                    }
                    lowest = match (lowest, matched) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        _ => None,
                    };
                }
                let all_durable = on_disk(lowest)
                    .unwrap_or(pos.purge_point)
                    .min(leader_durable);
                if gauges {
                    m::replica(
                        mt.id,
                        flushed_index,
                        last_log.saturating_sub(flushed_index.unwrap_or(0)),
                    );
                    m::durable(leader_durable.get(), all_durable.get());
                }
                CommitView::Leader(CommitState {
                    committed,
                    epoch: pos.fence.highest,
                    leader_durable,
                    all_durable,
                })
            }
        };
        tx.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
        tokio::select! {
            r = metrics.changed() => if r.is_err() { return },
            r = position.changed() => if r.is_err() { return },
            r = flushed.changed() => if r.is_err() { return },
            _ = tx.closed() => return,
            // Refresh the gauges when nothing changes, too.
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Truncation behind the watermarks (docs/SPEC.md §5): once the purge point
/// moves, snapshot the state machine (it holds every event above the purge
/// point) and purge the Raft entries whose events all lie at or below it.
async fn compact(raft: Raft, sm: StateMachine) {
    let mut position = sm.watch_position();
    let mut metrics = raft.metrics();
    // What openraft itself knows (it purges only below a snapshot it has
    // been told about, and may put a purge off while it replicates).
    let known = |m: &openraft::RaftMetrics<crate::raft::TypeConfig>| {
        (m.snapshot.map(|l| l.index), m.purged.map(|l| l.index))
    };
    loop {
        let pos = *position.borrow_and_update();
        let upto = if pos.purge_point == EventNum::NONE {
            None
        } else {
            match pos.first_needed_index {
                Some(i) => i.checked_sub(1),
                None => pos.applied,
            }
        };
        let (snapshot, purged) = known(&metrics.borrow_watched());
        if let Some(upto) = upto.filter(|u| purged.is_none_or(|p| *u > p)) {
            if snapshot.is_none_or(|s| s < upto) && raft.trigger().snapshot().await.is_err() {
                return;
            }
            if raft.trigger().purge_log(upto).await.is_err() {
                return;
            }
            // Wait until openraft has the snapshot and has purged; retry
            // (after a second) whatever it has not done in time.
            let done = tokio::time::timeout(Duration::from_secs(60), async {
                let mut asked_with_snapshot = snapshot.is_some_and(|s| s >= upto);
                loop {
                    let (snapshot, purged) = known(&metrics.borrow_and_update());
                    if purged.is_some_and(|p| p >= upto) {
                        return true;
                    }
                    // Asked before openraft had the snapshot, the purge was
                    // refused: ask again, once, now that it has it.
                    if !asked_with_snapshot && snapshot.is_some_and(|s| s >= upto) {
                        asked_with_snapshot = true;
                        if raft.trigger().purge_log(upto).await.is_err() {
                            return false;
                        }
                    }
                    if metrics.changed().await.is_err() {
                        return false;
                    }
                }
            })
            .await;
            match done {
                Ok(true) => {
                    tracing::info!(upto, purge_point = %pos.purge_point, "purged the Raft log");
                }
                Ok(false) => return,
                Err(_) => tracing::warn!(upto, "the Raft log is not purged yet; will retry"),
            }
            // One compaction per second at most: snapshots cost a pass over
            // every event held.
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if position.changed().await.is_err() {
            return;
        }
    }
}
