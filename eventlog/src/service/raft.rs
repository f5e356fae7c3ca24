//! Raft traffic from the other nodes, handed to the local Raft instance
//! once it is known to come from a member, in its own name.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use tonic::{Request, Response, Status, Streaming};

use config::Role;
use openraft::rt::WatchReceiver;

use crate::app::{Ctx, Running};
use crate::authz::{Action, Denied, refuse_unless};
use crate::ids::NodeId;
use crate::network::{decode, encode};
use crate::proto::{RaftMessage, SnapshotChunk, raft_server};
use crate::raft::{SnapshotMeta, TypeConfig, Vote};
use crate::sm::IncomingError;

pub(crate) struct RaftService {
    ctx: Ctx,
}

impl RaftService {
    pub fn new(ctx: Ctx) -> Self {
        RaftService { ctx }
    }

    fn running(&self) -> Result<Running, Status> {
        self.ctx.running().map_err(Status::unavailable)
    }

    /// The running Raft and who sent `req`, if that node may send Raft
    /// traffic: a member of the cluster this node knows (a voter or a
    /// learner), or, before this node knows any membership, a replica of
    /// its config. A removed replica's certificate still names a replica of
    /// the cluster: without this, its node could call elections and
    /// unsettle the leader. Checked before the message is read.
    fn member<T>(&self, req: &Request<T>) -> Result<(Running, Sender), Status> {
        let running = self.running()?;
        let peer = trust::peer_of(req);
        let id = match peer.as_ref().map(|p| p.identity.role) {
            Some(Role::Replica(id)) => NodeId::from(id),
            // The service's interceptor lets nothing else in.
            _ => {
                return Err(
                    refuse_unless(peer.as_ref(), Action::Raft, Err(Denied::NotAllowed))
                        .unwrap_err(),
                );
            }
        };
        let known = {
            let metrics = running.raft.metrics();
            let metrics = metrics.borrow_watched();
            let membership = metrics.membership_config.membership();
            if membership.nodes().next().is_some() {
                membership.get_node(&id).is_some()
            } else {
                self.ctx.peers.contains_key(&id)
            }
        };
        let sender = Sender { peer, id };
        refuse_unless(sender.peer.as_ref(), Action::Raft, judge(known, id, id))?;
        Ok((running, sender))
    }
}

/// The member node a Raft request came from, as its certificate says.
struct Sender {
    peer: Option<trust::Peer>,
    id: NodeId,
}

impl Sender {
    /// Whether a message it sent speaks in its own name (`claims`, the
    /// vote's node); a refusal is counted and logged.
    fn speaks_for(&self, claims: NodeId) -> Result<(), Status> {
        refuse_unless(
            self.peer.as_ref(),
            Action::Raft,
            judge(true, self.id, claims),
        )
    }
}

/// Whether `sender`, a member or not (`known`), may send a Raft message in
/// the name of `claims`.
fn judge(known: bool, sender: NodeId, claims: NodeId) -> Result<(), Denied> {
    if !known {
        Err(Denied::NotMember)
    } else if claims != sender {
        Err(Denied::Impersonation)
    } else {
        Ok(())
    }
}

fn bad_message(e: postcard::Error) -> Status {
    Status::invalid_argument(format!("undecodable Raft message: {e}"))
}

fn refused(e: IncomingError) -> Status {
    match e {
        IncomingError::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
        IncomingError::Io(_) => Status::internal(e.to_string()),
        IncomingError::Damaged(_) => Status::data_loss(e.to_string()),
    }
}

fn stopped(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("Raft is stopped: {e}"))
}

type MessageStream = Pin<Box<dyn Stream<Item = Result<RaftMessage, Status>> + Send>>;

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let (running, sender) = self.member(&req)?;
        let rpc: VoteRequest<TypeConfig> = decode(req.get_ref()).map_err(bad_message)?;
        sender.speaks_for(rpc.vote.leader_id.node_id)?;
        let resp = running.raft.vote(rpc).await.map_err(stopped)?;
        Ok(Response::new(encode(&resp)))
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let (running, sender) = self.member(&req)?;
        let rpc: VoteRequest<TypeConfig> = decode(req.get_ref()).map_err(bad_message)?;
        sender.speaks_for(rpc.vote.leader_id.node_id)?;
        let resp = running.raft.pre_vote(rpc).await.map_err(stopped)?;
        Ok(Response::new(encode(&resp)))
    }

    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let (running, sender) = self.member(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref()).map_err(bad_message)?;
        sender.speaks_for(rpc.vote.leader_id.node_id)?;
        let resp = running.raft.append_entries(rpc).await.map_err(stopped)?;
        Ok(Response::new(encode(&resp)))
    }

    type StreamAppendStream = MessageStream;

    async fn stream_append(
        &self,
        req: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<MessageStream>, Status> {
        // Whose stream it is, from the connection; each request in it must
        // be that node's as a leader.
        let (running, sender) = self.member(&req)?;
        let sender = std::sync::Arc::new(sender);
        // A request that does not decode, or speaks for another node, ends
        // the stream: the leader starts a new one.
        let input = futures::stream::unfold(req.into_inner(), move |mut s| {
            let sender = sender.clone();
            async move {
                match s.next().await {
                    Some(Ok(m)) => decode::<AppendEntriesRequest<TypeConfig>>(&m)
                        .ok()
                        .filter(|r| sender.speaks_for(r.vote.leader_id.node_id).is_ok())
                        .map(|r| (r, s)),
                    _ => None,
                }
            }
        });
        let output = running.raft.stream_append(input).map(|r| match r {
            Ok(result) => Ok(encode(&result)),
            Err(fatal) => Err(stopped(fatal)),
        });
        Ok(Response::new(Box::pin(output)))
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        // Whose stream it is, before a byte of it is read; its vote must
        // then be that node's.
        let (running, sender) = self.member(&req)?;
        let mut chunks = req.into_inner();
        let first = chunks
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let (vote, meta): (Vote, SnapshotMeta) =
            decode(&RaftMessage { data: first.meta }).map_err(bad_message)?;
        sender.speaks_for(vote.leader_id.node_id)?;
        let mut incoming = running
            .sm
            .incoming(self.ctx.limits.max_snapshot_bytes)
            .map_err(|e| refused(e.into()))?;
        // Dropped on any early return: the partial file goes with it.
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            tokio::task::block_in_place(|| incoming.write(&chunk.data)).map_err(refused)?;
        }
        let data = tokio::task::spawn_blocking(move || incoming.finish())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(refused)?;
        let snapshot = openraft::storage::Snapshot {
            meta,
            snapshot: data,
        };
        let resp = running
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(stopped)?;
        Ok(Response::new(encode(&resp)))
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let (running, sender) = self.member(&req)?;
        let rpc: TransferLeaderRequest<TypeConfig> = decode(req.get_ref()).map_err(bad_message)?;
        sender.speaks_for(rpc.from_leader().leader_id.node_id)?;
        let resp = running
            .raft
            .handle_transfer_leader(rpc)
            .await
            .map_err(stopped)?;
        Ok(Response::new(encode(&resp)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_members_speak_and_only_for_themselves() {
        let (one, two) = (NodeId(1), NodeId(2));
        assert_eq!(judge(true, one, one), Ok(()));
        assert_eq!(judge(false, one, one), Err(Denied::NotMember));
        assert_eq!(judge(true, two, one), Err(Denied::Impersonation));
        assert_eq!(judge(false, two, one), Err(Denied::NotMember));
    }
}
