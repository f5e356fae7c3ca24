//! Checkpoints between agents, over mutual TLS only: this agent serves its
//! latest checkpoint to the other replicas of its cluster (on its
//! `checkpoint` address; a ship's state holds its private keys), and a
//! wiped agent fetches one from its peers, bounded in size.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use config::{Identity, ReplicaId, Role};
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Empty, Full, Limited};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics::counter;
use tower_service::Service as _;
use trust::Credentials;

use crate::checkpoint::{Checkpoint, CheckpointDecodeError, CheckpointStore};
use crate::metrics as m;

/// Serves `GET /checkpoint` on `listener` to the other replicas of this
/// cluster until the listener's task is dropped. Connections without a
/// certificate of the cluster's CA never reach it; an edge box's or the
/// admin's certificate is refused. Refusals are counted by reason.
pub async fn serve(
    listener: tokio::net::TcpListener,
    credentials: Credentials,
    store: CheckpointStore,
) {
    let me = credentials.identity().clone();
    let mut incoming = Box::pin(trust::server::incoming(listener, credentials, |refusal| {
        counter!(m::CHECKPOINT_REFUSED, "reason" => refusal.reason.label()).increment(1)
    }));
    while let Some(Ok(tls)) = incoming.next().await {
        let peer =
            trust::peer::identity_of(tls.get_ref().1.peer_certificates().unwrap_or_default());
        let store = store.clone();
        let me = me.clone();
        tokio::spawn(async move {
            let answer =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (peer, store, me) = (peer.clone(), store.clone(), me.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(answer(request, peer, &me, store).await)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), answer)
                .await;
        });
    }
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    peer: Option<Identity>,
    me: &Identity,
    store: CheckpointStore,
) -> Response<Full<Bytes>> {
    let reply = |status, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    if request.uri().path() != "/checkpoint" {
        return reply(StatusCode::NOT_FOUND, Vec::new());
    }
    match peer.map(|p| p.role) {
        Some(Role::Replica(id)) if Role::Replica(id) != me.role => {}
        other => {
            let who = other.map_or_else(|| "an unidentified peer".to_owned(), |r| r.to_string());
            tracing::warn!(peer = %who, "refused a checkpoint request: only the other replicas may have it");
            counter!(m::CHECKPOINT_REFUSED, "reason" => m::NOT_A_REPLICA).increment(1);
            return reply(StatusCode::FORBIDDEN, Vec::new());
        }
    }
    match tokio::task::spawn_blocking(move || store.load()).await {
        Ok(Ok(Some(c))) => reply(StatusCode::OK, c.encode()),
        Ok(Ok(None)) => reply(StatusCode::NOT_FOUND, Vec::new()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the checkpoint a peer asked for");
            reply(StatusCode::INTERNAL_SERVER_ERROR, Vec::new())
        }
        Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
    }
}

/// Why a peer's checkpoint could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach replica {0} at {1}: {2}")]
    Connect(ReplicaId, SocketAddr, #[source] std::io::Error),
    #[error("replica {0} at {1}: {2}")]
    Http(ReplicaId, SocketAddr, #[source] hyper::Error),
    #[error("replica {0} at {1} answered {2}")]
    Status(ReplicaId, SocketAddr, StatusCode),
    #[error("replica {0} at {1} sent more than {2} bytes")]
    TooLarge(ReplicaId, SocketAddr, u64),
    #[error("replica {0} at {1} sent a damaged checkpoint: {2}")]
    Corrupt(ReplicaId, SocketAddr, #[source] CheckpointDecodeError),
    #[error("replica {0} at {1} did not answer within {2:?}")]
    Timeout(ReplicaId, SocketAddr, Duration),
}

/// Where a peer's checkpoint can be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCheckpoint {
    pub id: ReplicaId,
    pub addr: SocketAddr,
}

/// Asks replica `peer`'s agent for its latest checkpoint, over mutual TLS
/// (it must prove it is that replica), reading at most `max_bytes`.
pub async fn fetch(
    peer: PeerCheckpoint,
    credentials: &Credentials,
    max_bytes: u64,
    limit: Duration,
) -> Result<Checkpoint, FetchError> {
    let PeerCheckpoint { id, addr } = peer;
    let server = Identity::new(credentials.identity().cluster.clone(), Role::Replica(id));
    let request = async {
        let mut connector = trust::client::Connector::new(credentials.clone(), &server);
        let uri: hyper::Uri = format!("http://{addr}/checkpoint")
            .parse()
            .expect("a socket address makes a valid URI");
        let io = connector
            .call(uri)
            .await
            .map_err(|e| FetchError::Connect(id, addr, e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| FetchError::Http(id, addr, e))?;
        let connection = tokio::spawn(connection);
        let request = Request::get("/checkpoint")
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .expect("a request built from valid parts");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| FetchError::Http(id, addr, e))?;
        if response.status() != StatusCode::OK {
            connection.abort();
            return Err(FetchError::Status(id, addr, response.status()));
        }
        let cap = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let body = Limited::new(response.into_body(), cap).collect().await;
        connection.abort();
        let body = body
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => FetchError::Http(id, addr, *e),
                // `Limited`'s only other error: the body passed `cap`.
                Err(_) => FetchError::TooLarge(id, addr, max_bytes),
            })?
            .to_bytes();
        Checkpoint::decode(&body, max_bytes).map_err(|e| FetchError::Corrupt(id, addr, e))
    };
    tokio::time::timeout(limit, request)
        .await
        .map_err(|_| FetchError::Timeout(id, addr, limit))?
}

#[cfg(test)]
mod tests {
    use leadership::EventNum;

    use super::*;

    #[tokio::test]
    async fn a_peer_checkpoint_over_the_limit_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let pki = testkit::Pki::new(dir.path().join("tls"), "test").unwrap();
        let replica = |id| Role::Replica(ReplicaId::new(id).unwrap());
        let store = CheckpointStore::new(dir.path().join("checkpoints"));
        let checkpoint = Checkpoint {
            last: EventNum(5),
            last_us: Some(5),
            state: vec![3; 100_000],
        };
        store.save(&checkpoint).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, pki.credentials(replica(1)).unwrap(), store));
        let asker = pki.credentials(replica(2)).unwrap();
        let peer = PeerCheckpoint {
            id: ReplicaId::new(1).unwrap(),
            addr,
        };
        let limit = Duration::from_secs(10);

        let len = checkpoint.encode().len() as u64;
        let got = fetch(peer, &asker, len, limit).await.unwrap();
        assert_eq!(got, checkpoint);
        let refused = fetch(peer, &asker, len - 1, limit).await.unwrap_err();
        assert!(
            matches!(refused, FetchError::TooLarge(_, a, l) if a == addr && l == len - 1),
            "{refused}"
        );
    }
}
