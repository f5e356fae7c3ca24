//! The node's gRPC server: Raft traffic, the event log API and the admin
//! API on one listener, every request authenticated.

use std::time::Duration;

use config::Key;
use eventlog_client::auth::Verifier;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use crate::app::Ctx;
use crate::proto::admin_server::AdminServer;
use crate::proto::event_log_server::EventLogServer;
use crate::proto::raft_server::RaftServer;
use crate::raft::MAX_PAYLOAD_ENTRIES;
use crate::service::{AdminService, ApiService, RaftService};

/// Serves on `listener` until `stop` fires (or is dropped).
pub(super) fn spawn(
    listener: TcpListener,
    ctx: &Ctx,
    key: &Key,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
    let verifier = Verifier::new(key.clone());
    let limits = ctx.limits.messages;
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(64 << 20)
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(InterceptedService::new(
            RaftServer::new(RaftService::new(ctx.clone()))
                .max_decoding_message_size(limits.raft_request(MAX_PAYLOAD_ENTRIES))
                .max_encoding_message_size(limits.raft_response()),
            verifier.clone(),
        ))
        .add_service(InterceptedService::new(
            EventLogServer::new(ApiService::new(ctx.clone()))
                .max_decoding_message_size(limits.api_request)
                .max_encoding_message_size(limits.api_response),
            verifier.clone(),
        ))
        .add_service(InterceptedService::new(
            AdminServer::new(AdminService::new(ctx.clone()))
                .max_decoding_message_size(limits.admin)
                .max_encoding_message_size(limits.admin),
            verifier,
        ))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async {
                let _ = stop.await;
            },
        );
    tokio::spawn(server)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use config::{BatchLimits, EventlogConfig, ReplicaId};
    use eventlog_client::auth::Signer;
    use futures::StreamExt;
    use tokio::sync::watch;

    use super::*;
    use crate::app::Limits;
    use crate::proto::event_log_client::EventLogClient;
    use crate::proto::raft_client::RaftClient;
    use crate::proto::{self, RaftMessage};

    /// A node's server with no Raft behind it: limits apply before any
    /// service code runs.
    async fn serve(limits: Limits) -> (String, Key, oneshot::Sender<()>) {
        let key = Key::from_bytes([7; 32]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let ctx = Ctx {
            id: ReplicaId::new(1).unwrap(),
            current: watch::channel(None).1,
            down: watch::channel(Some("not started in this test".into())).1,
            limits,
            peers: Arc::new(BTreeMap::new()),
        };
        let (stop, stopped) = oneshot::channel();
        spawn(listener, &ctx, &key, stopped);
        (addr, key, stop)
    }

    #[tokio::test]
    async fn a_message_over_its_limit_is_refused_before_it_is_read() {
        let config = EventlogConfig {
            data_dir: "/nonexistent".into(),
            max_event_bytes: 1000,
            batch: BatchLimits {
                max_events: 10,
                max_bytes: 4000,
                max_linger: Duration::from_millis(1),
            },
            secret_file: "/nonexistent".into(),
        };
        let limits = Limits::new(&config, 1 << 20);
        let (addr, key, _stop) = serve(limits).await;
        let channel = eventlog_client::Channels::default().get(&addr).unwrap();
        let signer = Signer::new(key, 0);

        // Raft: a message of exactly the limit passes (and is then
        // refused for what it says); one byte more is not read: tonic
        // refuses it from its length prefix (with OutOfRange).
        let mut raft = RaftClient::with_interceptor(channel.clone(), signer.clone())
            .max_encoding_message_size(usize::MAX);
        let limit = limits.messages.raft_request(MAX_PAYLOAD_ENTRIES);
        // A message's encoding adds a tag and a 4-byte length to its data.
        let message = |len: usize| RaftMessage {
            data: Bytes::from(vec![0xff; len - 5]),
        };
        let at_limit = raft.vote(message(limit)).await.unwrap_err();
        assert_eq!(at_limit.code(), tonic::Code::InvalidArgument, "{at_limit}");
        let over = raft.vote(message(limit + 1)).await.unwrap_err();
        assert_eq!(over.code(), tonic::Code::OutOfRange, "{over}");

        // The event log API: an append over the limit ends the stream with
        // why.
        let mut api =
            EventLogClient::with_interceptor(channel, signer).max_encoding_message_size(usize::MAX);
        let append = |data: usize| proto::AppendRequest {
            seq: 1,
            epoch: 1,
            first: 1,
            events: vec![proto::NewEvent {
                mug: 0,
                data: Bytes::from(vec![0; data]),
            }],
            retry: false,
        };
        let mut answers = api
            .append(futures::stream::iter([append(1000)]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.next().await.unwrap().unwrap();
        assert!(
            matches!(
                answer.result,
                Some(proto::append_response::Result::Error(_))
            ),
            "read, then refused for want of Raft: {answer:?}"
        );
        let mut answers = api
            .append(futures::stream::iter([append(limits.messages.api_request)]))
            .await
            .unwrap()
            .into_inner();
        let over = answers.next().await.unwrap().unwrap_err();
        assert_eq!(over.code(), tonic::Code::OutOfRange, "{over}");
    }
}
