//! The node's two gRPC services: Raft traffic from its peers, and the API
//! that writers and readers use.

mod api;
mod raft;

pub(crate) use api::ApiService;
pub(crate) use raft::RaftService;
