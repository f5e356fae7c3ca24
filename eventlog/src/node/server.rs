//! The node's gRPC server: Raft traffic, the event log API and the admin
//! API on one mutual-TLS listener, every connection authenticated by its
//! client certificate, every request authorised by its identity and every
//! message bounded in size before it is read.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;
use trust::Credentials;

use crate::app::Ctx;
use crate::authz::Action;
use crate::metrics as m;
use crate::proto::admin_server::AdminServer;
use crate::proto::event_log_server::EventLogServer;
use crate::proto::raft_server::RaftServer;
use crate::raft::MAX_PAYLOAD_ENTRIES;
use crate::service::{AdminService, ApiService, RaftService};

/// Serves on `listener` until `stop` fires (or is dropped).
pub(super) fn spawn(
    listener: TcpListener,
    ctx: &Ctx,
    credentials: &Credentials,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
    let incoming = trust::server::incoming(listener, credentials.clone(), |refusal| {
        m::refused(refusal.reason.label())
    });
    // Every Raft RPC is a node's: one check for the whole service.
    let authz = ctx.authz.clone();
    let raft_peers = move |req: tonic::Request<()>| authz.allow(&req, Action::Raft).map(|()| req);
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
            raft_peers,
        ))
        .add_service(
            EventLogServer::new(ApiService::new(ctx.clone()))
                .max_decoding_message_size(limits.api_request)
                .max_encoding_message_size(limits.api_response),
        )
        .add_service(
            AdminServer::new(AdminService::new(ctx.clone()))
                .max_decoding_message_size(limits.admin)
                .max_encoding_message_size(limits.admin),
        )
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stop.await;
        });
    tokio::spawn(server)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use config::{BatchLimits, EventlogConfig, ReplicaId, Role};
    use futures::StreamExt;
    use tokio::sync::watch;
    use tonic::transport::Channel;

    use super::*;
    use crate::app::Limits;
    use crate::authz::{Authz, Epochs};
    use crate::proto::event_log_client::EventLogClient;
    use crate::proto::raft_client::RaftClient;
    use crate::proto::{self, RaftMessage};
    use crate::types::Epoch;

    /// etcd, saying replica 1 holds every epoch.
    struct One;

    impl Epochs for One {
        fn holder(
            &self,
            _: Epoch,
        ) -> Pin<Box<dyn Future<Output = Result<Option<ReplicaId>, String>> + Send + '_>> {
            Box::pin(async { Ok(ReplicaId::new(1)) })
        }
    }

    /// A node's server with no Raft behind it, and a channel to it as
    /// replica 1: limits apply before any service code runs.
    async fn serve(limits: Limits, dir: &std::path::Path) -> (Channel, oneshot::Sender<()>) {
        let pki = testkit::Pki::new(dir, "test").unwrap();
        let me = Role::Replica(ReplicaId::new(1).unwrap());
        let credentials = pki.credentials(me).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let ctx = Ctx {
            id: ReplicaId::new(1).unwrap(),
            current: watch::channel(None).1,
            down: watch::channel(Some("not started in this test".into())).1,
            limits,
            peers: Arc::new(BTreeMap::new()),
            authz: Authz::new(Arc::new(One)),
        };
        let (stop, stopped) = oneshot::channel();
        spawn(listener, &ctx, &credentials, stopped);
        let channel = eventlog_client::Channels::new(credentials)
            .get(&addr, ReplicaId::new(1).unwrap())
            .unwrap();
        (channel, stop)
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
            max_snapshot_bytes: 1 << 20,
        };
        let limits = Limits::new(&config);
        let dir = tempfile::tempdir().unwrap();
        let (channel, _stop) = serve(limits, dir.path()).await;

        // Raft: a message of exactly the limit reaches the service (which
        // answers that Raft is not running here); one byte more is not
        // read: tonic refuses it from its length prefix (with OutOfRange).
        let mut raft = RaftClient::new(channel.clone()).max_encoding_message_size(usize::MAX);
        let limit = limits.messages.raft_request(MAX_PAYLOAD_ENTRIES);
        // A message's encoding adds a tag and a 4-byte length to its data.
        let message = |len: usize| RaftMessage {
            data: Bytes::from(vec![0xff; len - 5]),
        };
        let at_limit = raft.vote(message(limit)).await.unwrap_err();
        assert_eq!(at_limit.code(), tonic::Code::Unavailable, "{at_limit}");
        assert!(
            at_limit.message().contains("not started in this test"),
            "{at_limit}"
        );
        let over = raft.vote(message(limit + 1)).await.unwrap_err();
        assert_eq!(over.code(), tonic::Code::OutOfRange, "{over}");

        // The event log API: an append over the limit ends the stream with
        // why.
        let mut api = EventLogClient::new(channel).max_encoding_message_size(usize::MAX);
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
