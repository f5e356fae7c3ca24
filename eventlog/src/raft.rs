//! The event log's Raft types: what an entry carries and who the nodes are.

use crate::command::{Command, Outcome};
use crate::ids::NodeId;

openraft::declare_raft_types!(
    /// openraft's type configuration for the event log: entries carry
    /// [`Command`]s, applying one yields an [`Outcome`], nodes are replica
    /// ids ([`NodeId`]) with their gRPC address.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = openraft::BasicNode,
);

/// Most entries in one AppendEntries: with the batch limits, what bounds a
/// Raft message (`eventlog_client::limits`).
pub const MAX_PAYLOAD_ENTRIES: u64 = 64;

pub type LogId = openraft::LogId<openraft::impls::leader_id_adv::LeaderId<u64, NodeId>>;
pub type Vote = openraft::impls::Vote<openraft::impls::leader_id_adv::LeaderId<u64, NodeId>>;
pub type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
pub type EntryPayload = openraft::EntryPayload<Command, NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<
    openraft::impls::leader_id_adv::LeaderId<u64, NodeId>,
    NodeId,
    openraft::BasicNode,
>;
pub type SnapshotMeta = openraft::SnapshotMeta<
    openraft::impls::leader_id_adv::LeaderId<u64, NodeId>,
    NodeId,
    openraft::BasicNode,
>;
pub type Raft = openraft::Raft<TypeConfig, crate::sm::StateMachine>;
