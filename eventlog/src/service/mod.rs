//! The node's gRPC services: Raft traffic from its peers, the API that
//! writers and readers use, and the admin API.

mod admin;
mod api;
mod raft;

pub(crate) use admin::AdminService;
pub(crate) use api::ApiService;
pub(crate) use raft::RaftService;

use crate::app::{Ctx, Running};
use crate::ids::NodeId;
use crate::proto;

/// Where the leader is, for an answer that sends the caller there.
fn hint(ctx: &Ctx, running: Option<&Running>, leader: Option<NodeId>) -> proto::LeaderHint {
    match leader {
        Some(id) => proto::LeaderHint {
            leader: id.wire(),
            addr: ctx.addr_of(running, id),
        },
        None => proto::LeaderHint::default(),
    }
}
