//! What a node's tasks and its gRPC services share: the Raft instance in
//! service (or why there is none), the limits, the peers' addresses, and
//! the commit view the leader publishes.

use std::collections::BTreeMap;
use std::sync::Arc;

use config::{EventlogConfig, ReplicaId};
use eventlog_client::MessageLimits;
use openraft::rt::WatchReceiver;
use tokio::sync::watch;

use crate::authz::Authz;
use crate::ids::NodeId;
use crate::raft::Raft;
use crate::sm::StateMachine;
use crate::storage::LogStore;
use crate::types::CommitState;

/// Largest event, batch, message and snapshot the node accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_event_bytes: u64,
    pub max_batch_bytes: u64,
    /// Every gRPC message's, from the two above.
    pub messages: MessageLimits,
    /// An installed snapshot's (`eventlog.max_snapshot_bytes`): a larger
    /// one is refused as it arrives, and its partial file deleted.
    pub max_snapshot_bytes: u64,
}

impl Limits {
    pub fn new(config: &EventlogConfig) -> Self {
        Limits {
            max_event_bytes: config.max_event_bytes as u64,
            max_batch_bytes: config.batch.max_bytes as u64,
            messages: MessageLimits::from_config(config),
            max_snapshot_bytes: config.max_snapshot_bytes,
        }
    }
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
        leader: Option<NodeId>,
    },
    Leader(CommitState),
}

/// What the services share.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub id: ReplicaId,
    pub current: watch::Receiver<Option<Running>>,
    /// Why Raft is not running, while it is not.
    pub down: watch::Receiver<Option<String>>,
    pub limits: Limits,
    /// The config's replicas: addresses for leader hints before the
    /// membership is known.
    pub peers: Arc<BTreeMap<NodeId, String>>,
    /// Who may do what.
    pub authz: Authz,
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
    pub fn addr_of(&self, running: Option<&Running>, id: NodeId) -> String {
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
