//! One event log node: its storage, its Raft instance, its gRPC services,
//! and the tasks that keep them going.
//!
//! - `server`: the gRPC server (Raft traffic, the event log API, admin).
//! - `supervisor`: starts Raft on the node's disk; stops the node when its
//!   storage fails (restarts Raft from disk, with backoff, on a full disk).
//! - `bootstrap`: forms the cluster, once.
//! - `publish`, `commit`: the commit view the leader publishes (a pure
//!   function of Raft's metrics, the state machine and the disk), and the
//!   node's gauges.
//! - `compact`: snapshots and log purges behind the watermarks.

mod bootstrap;
mod commit;
mod compact;
mod publish;
pub(crate) use publish::other_voters;
mod server;
mod supervisor;
#[cfg(test)]
pub(crate) use supervisor::open_storage;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use config::{Config, ReplicaId};
use tokio::sync::{oneshot, watch};
use trust::Credentials;

use crate::app::{Ctx, Limits};
use crate::authz::{Authz, Epochs};
use crate::ids::NodeId;
use crate::metrics as m;
pub use crate::metrics::MetricsError;
use crate::sm::BadSnapshot;
use crate::storage::{LogOptions, OpenError};

/// What a node needs to run.
#[derive(Clone)]
pub struct NodeOptions {
    pub id: ReplicaId,
    pub config: Config,
    /// The replica's certificate: its node serves with it and presents it to
    /// its peers.
    pub credentials: Credentials,
    /// Who holds which epoch (etcd's leader key).
    pub epochs: Arc<dyn Epochs>,
    /// Overrides `eventlog.data_dir`.
    pub data_dir: Option<PathBuf>,
    pub log: LogOptions,
    /// Serve Prometheus metrics on the replica's `eventlog_metrics` address.
    pub serve_metrics: bool,
}

impl NodeOptions {
    pub fn new(
        config: Config,
        id: ReplicaId,
        credentials: Credentials,
        epochs: Arc<dyn Epochs>,
    ) -> Self {
        NodeOptions {
            id,
            config,
            credentials,
            epochs,
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
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] OpenError),
    #[error(transparent)]
    Snapshot(#[from] BadSnapshot),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("the Raft node failed to start: {0}")]
    Raft(#[source] StartError),
    #[error("the gRPC server failed: {0}")]
    Serve(#[source] ServeError),
    #[error(
        "the event log's storage failed: {0}; the node stops rather than trust what it wrote \
         since its last good fdatasync (after a failed one the kernel may keep pages that never \
         reached the disk). Check the disk; restarted, the node recovers from what is on it"
    )]
    StorageFailed(String),
}

/// Why Raft did not start on the node's storage.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The task that opens the log panicked.
    #[error(transparent)]
    Open(tokio::task::JoinError),
    #[error("cannot read the log back: {0}")]
    Replay(#[source] std::io::Error),
    #[error(transparent)]
    Config(#[from] openraft::ConfigError),
    #[error(transparent)]
    Fatal(#[from] openraft::errors::Fatal<crate::raft::TypeConfig>),
}

/// Why the gRPC server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the node until `shutdown` completes (then stops cleanly) or it
/// cannot go on.
pub async fn run(opts: NodeOptions, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let me = opts
        .config
        .replica(opts.id)
        .ok_or(NodeError::UnknownReplica(opts.id))?
        .clone();
    if opts.serve_metrics {
        m::serve(me.eventlog_metrics)?;
    }
    let listener = tokio::net::TcpListener::bind(me.eventlog)
        .await
        .map_err(|source| NodeError::Bind {
            addr: me.eventlog,
            source,
        })?;
    let node_dir = opts.node_dir();
    tracing::info!(replica = %opts.id, listen = %me.eventlog, dir = %node_dir.display(), "event log node starting");

    // The first start must succeed: a damaged log or snapshot stops the node
    // before it serves anything.
    let raft = supervisor::Supervisor::new(&opts, node_dir);
    let first = raft.start().await?;

    let (current_tx, current_rx) = watch::channel(None);
    let (down_tx, down_rx) = watch::channel(None);
    let ctx = Ctx {
        id: opts.id,
        current: current_rx,
        down: down_rx,
        limits: Limits::new(&opts.config.eventlog),
        peers: Arc::new(
            opts.config
                .replicas
                .iter()
                .map(|r| (NodeId::from(r.id), r.eventlog.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        authz: Authz::new(opts.epochs.clone()),
    };
    let (stop_server, stopped) = oneshot::channel();
    let server = server::spawn(listener, &ctx, &opts.credentials, stopped);

    let ran = raft.run(first, current_tx, down_tx, shutdown).await;

    let _ = stop_server.send(());
    let served = match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(NodeError::Serve(e.into())),
        Err(e) => Err(NodeError::Serve(e.into())),
    };
    ran.and(served)
}
