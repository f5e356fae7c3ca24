//! The event log's Raft types: what an entry carries and who the nodes are.

use crate::command::{Command, Outcome};

openraft::declare_raft_types!(
    /// openraft's type configuration for the event log: entries carry
    /// [`Command`]s, applying one yields an [`Outcome`], nodes are replica
    /// ids (`config::ReplicaId` widened to u64) with their gRPC address.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
);

pub type LogId = openraft::LogId<openraft::impls::leader_id_adv::LeaderId<u64, u64>>;
pub type Vote = openraft::impls::Vote<openraft::impls::leader_id_adv::LeaderId<u64, u64>>;
pub type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
pub type EntryPayload = openraft::EntryPayload<Command, u64, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<
    openraft::impls::leader_id_adv::LeaderId<u64, u64>,
    u64,
    openraft::BasicNode,
>;
pub type SnapshotMeta = openraft::SnapshotMeta<
    openraft::impls::leader_id_adv::LeaderId<u64, u64>,
    u64,
    openraft::BasicNode,
>;
pub type Raft = openraft::Raft<TypeConfig, crate::sm::StateMachine>;
