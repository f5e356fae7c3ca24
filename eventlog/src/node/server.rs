//! The node's gRPC server: Raft traffic, the event log API and the admin
//! API on one mutual-TLS listener, every connection authenticated by its
//! client certificate and every request authorised by its identity.

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
    let raft_peers = move |req: tonic::Request<()>| authz.allow_now(&req, Action::Raft).map(|_| req);
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(64 << 20)
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(InterceptedService::new(
            RaftServer::new(RaftService::new(ctx.clone()))
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            raft_peers,
        ))
        .add_service(
            EventLogServer::new(ApiService::new(ctx.clone()))
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(AdminServer::new(AdminService::new(ctx.clone())))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stop.await;
        });
    tokio::spawn(server)
}
