//! Forming the cluster, once, from the config's replicas.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use config::ReplicaId;
use openraft::BasicNode;

use crate::Client;
use crate::ids::NodeId;
use crate::raft::Raft;

/// Forms the cluster from the config's replicas, once, on the replica with
/// the lowest id: only if its own log is empty, no peer has a log, and a
/// quorum of replicas (itself included) confirms that. A replica whose disk
/// was wiped therefore never starts a second cluster beside the first.
pub(super) async fn initialize(
    raft: Raft,
    client: Client,
    me: ReplicaId,
    members: BTreeMap<NodeId, BasicNode>,
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
            if id == NodeId::from(me) {
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
                %peer,
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
