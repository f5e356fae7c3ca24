//! What a replica agent serves over HTTP (its metrics, and its latest
//! checkpoint for a wiped peer), and how it fetches a peer's checkpoint.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use eventlog_client::auth::{self, Signer, Verifier};
use http_body_util::{BodyExt, Empty, Limited};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::checkpoint::{Checkpoint, CheckpointDecodeError, CheckpointStore};

#[derive(Clone)]
struct Served {
    metrics: PrometheusHandle,
    store: CheckpointStore,
    verifier: Verifier,
}

/// Serves `GET /metrics` (Prometheus) and `GET /checkpoint` (this agent's
/// latest checkpoint, to holders of the event log secret only: a ship's
/// state holds its private keys).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: PrometheusHandle,
    store: CheckpointStore,
    verifier: Verifier,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Served>| async move { s.metrics.render() }),
        )
        .route("/checkpoint", get(checkpoint))
        .with_state(Served {
            metrics,
            store,
            verifier,
        });
    axum::serve(listener, app).await
}

async fn checkpoint(State(s): State<Served>, headers: HeaderMap) -> impl IntoResponse {
    let credential = headers.get(auth::HEADER).and_then(|v| v.to_str().ok());
    if let Err(refusal) = s.verifier.verify(credential, auth::now_millis()) {
        tracing::warn!(
            ?refusal,
            "refused a checkpoint request without a valid credential"
        );
        return (StatusCode::UNAUTHORIZED, Vec::new());
    }
    match tokio::task::spawn_blocking(move || s.store.load()).await {
        Ok(Ok(Some(c))) => (StatusCode::OK, c.encode()),
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, Vec::new()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the checkpoint a peer asked for");
            (StatusCode::INTERNAL_SERVER_ERROR, Vec::new())
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
    }
}

/// Why a peer's checkpoint could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach {0}: {1}")]
    Connect(SocketAddr, #[source] std::io::Error),
    #[error("cannot reach {0}: {1}")]
    Http(SocketAddr, #[source] hyper::Error),
    #[error("{0} answered {1}")]
    Status(SocketAddr, StatusCode),
    #[error("{0} sent a damaged checkpoint: {1}")]
    Corrupt(SocketAddr, #[source] CheckpointDecodeError),
    #[error("{0} sent a checkpoint of more than {1} bytes")]
    TooLarge(SocketAddr, u64),
    #[error("{0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
}

/// Asks the agent at `addr` for its latest checkpoint, reading no more
/// than `max_bytes` of it.
pub async fn fetch(
    addr: SocketAddr,
    signer: &Signer,
    limit: Duration,
    max_bytes: u64,
) -> Result<Checkpoint, FetchError> {
    let request = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| FetchError::Connect(addr, e))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| FetchError::Http(addr, e))?;
        tokio::spawn(connection);
        let request = hyper::Request::get("/checkpoint")
            .header(hyper::header::HOST, addr.to_string())
            .header(auth::HEADER, signer.credential())
            .body(Empty::<Bytes>::new())
            .expect("a request built from valid parts");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| FetchError::Http(addr, e))?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status(addr, response.status()));
        }
        let cap = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let body = Limited::new(response.into_body(), cap)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => FetchError::Http(addr, *e),
                // `Limited`'s only other error: the body passed `cap`.
                Err(_) => FetchError::TooLarge(addr, max_bytes),
            })?
            .to_bytes();
        Checkpoint::decode(&body, max_bytes).map_err(|e| FetchError::Corrupt(addr, e))
    };
    tokio::time::timeout(limit, request)
        .await
        .map_err(|_| FetchError::Timeout(addr, limit))?
}

#[cfg(test)]
mod tests {
    use config::Key;
    use leadership::EventNum;
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    #[tokio::test]
    async fn a_peer_checkpoint_over_the_limit_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        let checkpoint = Checkpoint {
            last: EventNum(5),
            state: vec![3; 100_000],
        };
        store.save(&checkpoint).unwrap();
        let key = Key::from_bytes([4; 32]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = PrometheusBuilder::new().build_recorder().handle();
        tokio::spawn(serve(listener, metrics, store, Verifier::new(key.clone())));
        let signer = Signer::new(key, 0);
        let limit = Duration::from_secs(10);

        let len = checkpoint.encode().len() as u64;
        let got = fetch(addr, &signer, limit, len).await.unwrap();
        assert_eq!(got, checkpoint);
        let refused = fetch(addr, &signer, limit, len - 1).await.unwrap_err();
        assert!(
            matches!(refused, FetchError::TooLarge(a, l) if a == addr && l == len - 1),
            "{refused}"
        );
    }
}
