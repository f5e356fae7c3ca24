//! Raft traffic from the other nodes, handed to the local Raft instance.

use std::io::Write;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use tonic::{Request, Response, Status, Streaming};

use crate::app::{Ctx, Running};
use crate::network::{decode, encode};
use crate::proto::{RaftMessage, SnapshotChunk, raft_server};
use crate::raft::{SnapshotMeta, TypeConfig, Vote};
use crate::sm::SnapshotData;

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
        let (path, file) = running
            .sm
            .incoming_file()
            .map_err(|e| Status::internal(format!("cannot store the snapshot: {e}")))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let received = async {
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                w = tokio::task::block_in_place(|| -> std::io::Result<_> {
                    w.write_all(&chunk.data)?;
                    Ok(w)
                })
                .map_err(|e| Status::internal(format!("cannot store the snapshot: {e}")))?;
            }
            let file = w
                .into_inner()
                .map_err(|e| Status::internal(format!("cannot store the snapshot: {e}")))?;
            Ok::<_, Status>(file)
        }
        .await;
        let file = match received {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        drop(file);
        // A damaged transfer is refused here (the leader sends it again);
        // handed to Raft it would stop this node.
        let check = path.clone();
        let verified = tokio::task::spawn_blocking(move || crate::sm::verify_snapshot_file(&check))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        if let Err(e) = verified {
            let _ = std::fs::remove_file(&path);
            return Err(Status::data_loss(format!(
                "the snapshot arrived damaged: {e}"
            )));
        }
        let reader = std::fs::File::open(&path)
            .map_err(|e| Status::internal(format!("cannot reopen the snapshot: {e}")))?;
        let snapshot = openraft::storage::Snapshot {
            meta,
            snapshot: SnapshotData { path, file: reader },
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
