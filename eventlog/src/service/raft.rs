//! Raft traffic from the other nodes, handed to the local Raft instance.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use tonic::{Request, Response, Status, Streaming};

use crate::app::{Ctx, Running};
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
        let rpc: VoteRequest<TypeConfig> = decode(req.get_ref()).map_err(bad_message)?;
        let resp = self.running()?.raft.vote(rpc).await.map_err(stopped)?;
        Ok(Response::new(encode(&resp)))
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode(req.get_ref()).map_err(bad_message)?;
        let resp = self.running()?.raft.pre_vote(rpc).await.map_err(stopped)?;
        Ok(Response::new(encode(&resp)))
    }

    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref()).map_err(bad_message)?;
        let resp = self
            .running()?
            .raft
            .append_entries(rpc)
            .await
            .map_err(stopped)?;
        Ok(Response::new(encode(&resp)))
    }

    type StreamAppendStream = MessageStream;

    async fn stream_append(
        &self,
        req: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<MessageStream>, Status> {
        let raft = self.running()?.raft;
        // A request that does not decode ends the stream: the leader starts
        // a new one.
        let input = futures::stream::unfold(req.into_inner(), |mut s| async move {
            match s.next().await {
                Some(Ok(m)) => decode::<AppendEntriesRequest<TypeConfig>>(&m)
                    .ok()
                    .map(|r| (r, s)),
                _ => None,
            }
        });
        let output = raft.stream_append(input).map(|r| match r {
            Ok(result) => Ok(encode(&result)),
            Err(fatal) => Err(stopped(fatal)),
        });
        Ok(Response::new(Box::pin(output)))
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        let running = self.running()?;
        let mut chunks = req.into_inner();
        let first = chunks
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let (vote, meta): (Vote, SnapshotMeta) =
            decode(&RaftMessage { data: first.meta }).map_err(bad_message)?;
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
        let rpc: TransferLeaderRequest<TypeConfig> = decode(req.get_ref()).map_err(bad_message)?;
        let resp = self
            .running()?
            .raft
            .handle_transfer_leader(rpc)
            .await
            .map_err(stopped)?;
        Ok(Response::new(encode(&resp)))
    }
}
