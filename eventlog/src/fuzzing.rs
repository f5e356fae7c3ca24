//! The decoders that read bytes from peers and from disk, for the fuzz
//! targets in `eventlog/fuzz`. Not an API.

use bytes::Bytes;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;

use crate::network::decode;
use crate::proto::RaftMessage;
use crate::raft::{SnapshotMeta, TypeConfig, Vote};

/// Reads `bytes` as a snapshot file, as a node does at start and when a
/// leader sends one. Whether it is one is the result.
pub fn snapshot(bytes: &[u8]) -> bool {
    match crate::sm::decode_snapshot(bytes) {
        Ok((meta, machine)) => {
            let _ = format!("{meta:?} {:?}", machine.fence());
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// Reads `bytes` as each Raft message the gRPC service (requests) and the
/// Raft network (responses) decode. How many of them it is, is the result.
pub fn raft_message(bytes: &[u8]) -> usize {
    let msg = RaftMessage {
        data: Bytes::copy_from_slice(bytes),
    };
    [
        as_a::<VoteRequest<TypeConfig>>(&msg),
        as_a::<AppendEntriesRequest<TypeConfig>>(&msg),
        as_a::<TransferLeaderRequest<TypeConfig>>(&msg),
        as_a::<(Vote, SnapshotMeta)>(&msg),
        as_a::<VoteResponse<TypeConfig>>(&msg),
        as_a::<AppendEntriesResponse<TypeConfig>>(&msg),
        as_a::<StreamAppendResult<TypeConfig>>(&msg),
        as_a::<SnapshotResponse<TypeConfig>>(&msg),
        as_a::<TransferLeaderResponse<TypeConfig>>(&msg),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}

/// Decodes `msg` as a `T`, and formats what it got as a log line would.
fn as_a<T: DeserializeOwned + std::fmt::Debug>(msg: &RaftMessage) -> bool {
    match decode::<T>(msg) {
        Ok(v) => {
            let _ = format!("{v:?}");
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}
