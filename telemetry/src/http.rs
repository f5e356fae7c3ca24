//! One bounded HTTP/1.1 GET, the client for everything Seguro reads over
//! plain HTTP: metrics endpoints, etcd's `/health`, Prometheus's API.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;

/// The largest body a GET accepts: an exposition of every Seguro daemon is
/// tens of kilobytes, a Prometheus range query a few megabytes.
pub const MAX_BODY: usize = 32 << 20;

/// Why a GET did not return a body.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("GET http://{addr}{path}: {source}")]
    Exchange {
        addr: SocketAddr,
        path: String,
        #[source]
        source: hyper::Error,
    },
    #[error("GET http://{addr}{path}: no answer within {limit:?}")]
    TimedOut {
        addr: SocketAddr,
        path: String,
        limit: Duration,
    },
    #[error("GET http://{addr}{path}: the body is not readable (over {MAX_BODY} bytes?): {source}")]
    Body {
        addr: SocketAddr,
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("GET http://{addr}{path}: {path} is not a valid request path: {source}")]
    Request {
        addr: SocketAddr,
        path: String,
        #[source]
        source: hyper::http::Error,
    },
    #[error("cannot start a runtime for a blocking GET: {0}")]
    Runtime(#[source] std::io::Error),
}

/// An answer: its status and whole body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Response {
    /// The body as text (lossy: these endpoints answer in UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` from `addr`, connection and answer within `limit`, with a
/// body of at most [`MAX_BODY`] bytes.
pub async fn get(addr: SocketAddr, path: &str, limit: Duration) -> Result<Response, HttpError> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| HttpError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        let failed = |source| HttpError::Exchange {
            addr,
            path: path.to_owned(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(failed)?;
        // The connection is driven beside the request, and stopped with it
        // whatever the outcome.
        let connection = tokio::spawn(connection);
        let answer = async {
            let request = hyper::Request::get(path)
                .header(hyper::header::HOST, addr.to_string())
                .body(Empty::<Bytes>::new())
                .map_err(|source| HttpError::Request {
                    addr,
                    path: path.to_owned(),
                    source,
                })?;
            let answer = sender.send_request(request).await.map_err(failed)?;
            let status = answer.status();
            let body = Limited::new(answer.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|source| HttpError::Body {
                    addr,
                    path: path.to_owned(),
                    source,
                })?
                .to_bytes();
            Ok(Response { status, body })
        }
        .await;
        connection.abort();
        answer
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(HttpError::TimedOut {
                addr,
                path: path.to_owned(),
                limit,
            })
        })
}

/// [`get`] from code that is not async (tests, benchmarks): on a runtime of
/// its own, so it also works on a thread that entered a network namespace,
/// whose sockets belong to that namespace. Called where a runtime already
/// runs (inside `block_in_place`), it blocks a thread of its own instead,
/// which inherits this thread's namespace.
pub fn get_blocking(addr: SocketAddr, path: &str, limit: Duration) -> Result<Response, HttpError> {
    let run = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HttpError::Runtime)?
            .block_on(get(addr, path, limit))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|s| {
        s.spawn(run)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
