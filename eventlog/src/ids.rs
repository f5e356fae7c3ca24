//! Who the Raft nodes are: each node's id is the id of the replica that
//! runs it.

use std::fmt;

use config::ReplicaId;
use serde::{Deserialize, Serialize};

/// A Raft node id (openraft's `NodeId`): a [`ReplicaId`], widened to the
/// 64 bits that the log and snapshots on disk hold.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub(crate) u64);

impl From<ReplicaId> for NodeId {
    fn from(id: ReplicaId) -> Self {
        NodeId(u64::from(id.get()))
    }
}

/// A node id that no replica has: 0, or beyond a replica id's 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node {0} is not a replica id")]
pub struct NotAReplica(pub NodeId);

impl TryFrom<NodeId> for ReplicaId {
    type Error = NotAReplica;

    fn try_from(id: NodeId) -> Result<Self, NotAReplica> {
        u32::try_from(id.0)
            .ok()
            .and_then(ReplicaId::new)
            .ok_or(NotAReplica(id))
    }
}

impl NodeId {
    /// The replica id the wire protocol carries for this node; 0 (unknown)
    /// for an id no replica has, which the membership never holds: every
    /// member was added by its replica id.
    pub fn wire(self) -> u32 {
        ReplicaId::try_from(self).map_or(0, ReplicaId::get)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_ids_and_node_ids_convert_both_ways_and_refuse_what_no_replica_has() {
        let r = ReplicaId::new(7).unwrap();
        assert_eq!(NodeId::from(r), NodeId(7));
        assert_eq!(ReplicaId::try_from(NodeId(7)), Ok(r));
        assert_eq!(ReplicaId::try_from(NodeId(0)), Err(NotAReplica(NodeId(0))));
        let wide = NodeId(u64::from(u32::MAX) + 1);
        assert_eq!(ReplicaId::try_from(wide), Err(NotAReplica(wide)));
        assert_eq!(NodeId(7).wire(), 7);
        assert_eq!(wide.wire(), 0);
    }
}
