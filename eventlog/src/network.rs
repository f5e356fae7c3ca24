//! Raft traffic to the other nodes over gRPC: openraft's messages, postcard
//! encoded, on one HTTP/2 connection per peer.

use std::future::Future;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use eventlog_client::limits::SNAPSHOT_CHUNK_BYTES;
use eventlog_client::proto::raft_client::RaftClient;
use eventlog_client::proto::{RaftMessage, SnapshotChunk};
use eventlog_client::{BadAddress, Channels, MessageLimits};
use futures::StreamExt;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use crate::ids::NodeId;
use crate::raft::{MAX_PAYLOAD_ENTRIES, SnapshotMeta, TypeConfig, Vote};
use crate::sm::SnapshotData;
use config::ReplicaId;

type Client = RaftClient<Channel>;

pub(crate) fn encode<T: Serialize>(value: &T) -> RaftMessage {
    RaftMessage {
        data: Bytes::from(postcard::to_stdvec(value).expect("openraft messages always serialize")),
    }
}

pub(crate) fn decode<T: DeserializeOwned>(msg: &RaftMessage) -> Result<T, postcard::Error> {
    postcard::from_bytes(&msg.data)
}

/// Makes a [`Peer`] for each node Raft replicates to.
pub(crate) struct Network {
    pub channels: Channels,
    pub limits: MessageLimits,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        let client = ReplicaId::try_from(target)
            .map_err(PeerError::Id)
            .and_then(|id| {
                self.channels
                    .get(&node.addr, id)
                    .map_err(PeerError::Address)
            })
            .map(|c| {
                RaftClient::new(c)
                    .max_decoding_message_size(self.limits.raft_response())
                    .max_encoding_message_size(self.limits.raft_request(MAX_PAYLOAD_ENTRIES))
            })
            .map_err(Arc::new);
        Peer { target, client }
    }
}

/// Why a member of the membership cannot be reached at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    #[error(transparent)]
    Id(crate::ids::NotAReplica),
    #[error(transparent)]
    Address(BadAddress),
}

/// One remote node.
pub(crate) struct Peer {
    target: NodeId,
    /// The peer's stub, or why the membership's entry makes none (kept to
    /// report on every call).
    client: Result<Client, Arc<PeerError>>,
}

fn unreachable<E: std::error::Error + 'static>(e: &E) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(e))
}

fn status_error(s: tonic::Status) -> RPCError<TypeConfig> {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Unauthenticated | tonic::Code::DeadlineExceeded => {
            unreachable(&s)
        }
        _ => RPCError::Network(NetworkError::new(&s)),
    }
}

fn decode_error(e: postcard::Error) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(&e))
}

impl Peer {
    fn client(&self) -> Result<Client, RPCError<TypeConfig>> {
        self.client.clone().map_err(|e| unreachable(&*e))
    }

    async fn unary<Req, Resp, F, Fut>(
        &self,
        req: &Req,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(Client, tonic::Request<RaftMessage>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        let mut r = tonic::Request::new(encode(req));
        r.set_timeout(option.soft_ttl());
        let resp = tokio::time::timeout(option.hard_ttl(), call(self.client()?, r))
            .await
            .map_err(|e| unreachable(&e))?
            .map_err(status_error)?;
        decode(resp.get_ref()).map_err(decode_error)
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&rpc, &option, |mut c, r| async move {
            c.append_entries(r).await
        })
        .await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        _option: RPCOption,
    ) -> openraft::base::BoxFuture<
        's,
        Result<
            openraft::base::BoxStream<
                's,
                Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>,
            >,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>>
            + OptionalSend
            + Unpin
            + 'static,
    {
        Box::pin(async move {
            let mut client = self.client()?;
            // openraft sleeps its backoff for an unreachable peer inside
            // this stream, when the next request is taken. tonic takes the
            // first only once connected: against a node that is down,
            // every session would fail before its backoff and the next
            // start at once, a busy loop that burns a core and floods the
            // log. Taking the first request here makes each session wait
            // its backoff before it connects.
            let mut input = input;
            let first = input.next().await;
            let requests = futures::stream::iter(first)
                .chain(input)
                .map(|req| encode(&req));
            let responses = client
                .stream_append(requests)
                .await
                .map_err(status_error)?
                .into_inner();
            let out = responses.map(|r| {
                let msg = r.map_err(status_error)?;
                decode::<StreamAppendResult<TypeConfig>>(&msg).map_err(decode_error)
            });
            Ok(Box::pin(out) as openraft::base::BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&rpc, &option, |mut c, r| async move { c.vote(r).await })
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&rpc, &option, |mut c, r| async move { c.pre_vote(r).await })
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self.client()?;
        let target = self.target;
        let meta: (Vote, SnapshotMeta) = (vote, snapshot.meta.clone());
        let first = SnapshotChunk {
            meta: encode(&meta).data,
            data: Bytes::new(),
        };
        // Read the file on a blocking thread, a chunk at a time, as the
        // stream is consumed.
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(4);
        let mut file = snapshot.snapshot.file;
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if tx.blocking_send(first).is_err() {
                return Ok(());
            }
            loop {
                let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
                let mut n = 0;
                while n < buf.len() {
                    match file.read(&mut buf[n..])? {
                        0 => break,
                        k => n += k,
                    }
                }
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                let chunk = SnapshotChunk {
                    meta: Bytes::new(),
                    data: Bytes::from(buf),
                };
                if tx.blocking_send(chunk).is_err() {
                    return Ok(());
                }
            }
        });
        let send = client.install_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx));
        tracing::info!(%target, "sending a snapshot");
        let resp = tokio::select! {
            r = send => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StreamingError::Network(NetworkError::new(&e))),
            Err(e) => return Err(StreamingError::Network(NetworkError::new(&e))),
        }
        let resp = resp.map_err(|s| match status_error(s) {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            other => StreamingError::Network(NetworkError::new(&other)),
        })?;
        decode(resp.get_ref()).map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&req, &option, |mut c, r| async move {
            c.transfer_leader(r).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use bytes::Bytes;
    use config::BatchLimits;
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::{EntryPayload, Membership};

    use super::*;
    use crate::command::{Batch, Command, NewEvent};
    use crate::raft::{Entry, LogId};
    use crate::types::{Epoch, EventNum};

    fn log_id(index: u64) -> LogId {
        LogId {
            leader_id: LeaderId {
                term: u64::MAX,
                node_id: NodeId(u64::from(u32::MAX)),
            },
            index,
        }
    }

    #[test]
    fn a_full_append_entries_fits_the_raft_limit() {
        let batch = BatchLimits {
            max_events: 100,
            max_bytes: 64 << 10,
            max_linger: Duration::from_millis(1),
        };
        let limits = MessageLimits::new(1 << 10, &batch);
        // The largest batch a writer sends, with the widest numbers: every
        // event it may hold, some empty (all overhead), the rest holding
        // all its bytes.
        let largest = Command::Append(Batch {
            epoch: Epoch(u64::MAX),
            first: EventNum(u64::MAX),
            events: (0..100)
                .map(|i| NewEvent {
                    mug: u32::MAX,
                    data: Bytes::from(vec![0xa5; if i < 36 { 0 } else { 1 << 10 }]),
                })
                .collect(),
            retry: true,
            by: config::ReplicaId::new(u32::MAX),
        });
        let members: BTreeMap<_, _> = (1..=config::MAX_REPLICAS as u64)
            .map(|i| {
                let addr = format!("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:{i:x}]:65535");
                (NodeId(i), BasicNode { addr })
            })
            .collect();
        let voters: BTreeSet<_> = members.keys().copied().collect();
        let membership = Membership::new(vec![voters.clone(), voters], members).unwrap();
        let entries = (0..MAX_PAYLOAD_ENTRIES)
            .map(|i| Entry {
                log_id: log_id(u64::MAX - i),
                payload: if i == 0 {
                    EntryPayload::Membership(membership.clone())
                } else {
                    EntryPayload::Normal(largest.clone())
                },
            })
            .collect();
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: Vote {
                leader_id: log_id(0).leader_id,
                committed: true,
            },
            prev_log_id: Some(log_id(u64::MAX)),
            entries,
            leader_commit: Some(log_id(u64::MAX)),
        };
        let encoded = encode(&request).data.len();
        let limit = limits.raft_request(MAX_PAYLOAD_ENTRIES);
        assert!(encoded <= limit, "{encoded} > {limit}");
        // The limit is not loose by more than its documented overheads.
        assert!(encoded > limit - (MAX_PAYLOAD_ENTRIES as usize + 1) * (96 << 10));
    }
}
