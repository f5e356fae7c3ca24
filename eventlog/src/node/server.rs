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
use crate::service::{AdminService, ApiService, RaftService};

/// Serves on `listener` until `stop` fires (or is dropped).
pub(super) fn spawn(
    listener: TcpListener,
    ctx: &Ctx,
    key: &Key,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
    let verifier = Verifier::new(key.clone());
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(64 << 20)
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(InterceptedService::new(
            RaftServer::new(RaftService::new(ctx.clone()))
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            verifier.clone(),
        ))
        .add_service(InterceptedService::new(
            EventLogServer::new(ApiService::new(ctx.clone()))
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            verifier.clone(),
        ))
        .add_service(InterceptedService::new(
            AdminServer::new(AdminService::new(ctx.clone())),
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
