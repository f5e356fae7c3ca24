//! Reading a daemon's `/metrics` the way Prometheus does.

use std::net::SocketAddr;
use std::time::Duration;

use crate::exposition::{Exposition, ParseError};
use crate::http::{self, HttpError};

/// Why a scrape gave no exposition.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("GET http://{addr}/metrics: status {status}")]
    Status {
        addr: SocketAddr,
        status: hyper::StatusCode,
    },
    #[error("GET http://{addr}/metrics: {source}")]
    Parse {
        addr: SocketAddr,
        #[source]
        source: ParseError,
    },
}

/// `GET /metrics` from `addr` within `limit`, parsed.
pub async fn scrape(addr: SocketAddr, limit: Duration) -> Result<Exposition, ScrapeError> {
    let answer = http::get(addr, "/metrics", limit).await?;
    into_exposition(addr, answer)
}

/// [`scrape`] from code that is not async (see [`http::get_blocking`]).
pub fn scrape_blocking(addr: SocketAddr, limit: Duration) -> Result<Exposition, ScrapeError> {
    let answer = http::get_blocking(addr, "/metrics", limit)?;
    into_exposition(addr, answer)
}

fn into_exposition(addr: SocketAddr, answer: http::Response) -> Result<Exposition, ScrapeError> {
    if answer.status != hyper::StatusCode::OK {
        return Err(ScrapeError::Status {
            addr,
            status: answer.status,
        });
    }
    Exposition::parse(&answer.text()).map_err(|source| ScrapeError::Parse { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A server on loopback that answers every connection with `answer`
    /// (after reading the request), or never answers if it is `None`.
    async fn server(answer: Option<Vec<u8>>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0; 4096];
                    let _ = s.read(&mut buf).await;
                    match answer {
                        Some(a) => {
                            let _ = s.write_all(&a).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(60)).await,
                    }
                });
            }
        });
        addr
    }

    fn http(status: &str, body: &str) -> Option<Vec<u8>> {
        Some(
            format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }

    #[tokio::test]
    async fn scrapes_and_parses() {
        let addr = server(http("200 OK", "# TYPE a gauge\na 7\n")).await;
        let e = scrape(addr, Duration::from_secs(5)).await.unwrap();
        assert_eq!(e.value("a"), Some(7.0));
    }

    #[tokio::test]
    async fn a_bad_status_a_bad_body_and_silence_are_errors() {
        let addr = server(http("404 Not Found", "no")).await;
        let e = scrape(addr, Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(e, ScrapeError::Status { status, .. } if status == 404),
            "{e}"
        );

        let addr = server(http("200 OK", "a{ 1\n")).await;
        let e = scrape(addr, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(e, ScrapeError::Parse { .. }), "{e}");

        let addr = server(None).await;
        let e = scrape(addr, Duration::from_millis(200)).await.unwrap_err();
        assert!(
            matches!(e, ScrapeError::Http(HttpError::TimedOut { .. })),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let huge = "a 1\n".repeat(http::MAX_BODY / 4 + 1);
        let addr = server(http("200 OK", &huge)).await;
        let e = scrape(addr, Duration::from_secs(20)).await.unwrap_err();
        assert!(
            matches!(e, ScrapeError::Http(HttpError::Body { .. })),
            "{e}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_callers_inside_a_runtime_get_the_same() {
        let addr = server(http("200 OK", "c 3\n")).await;
        let e = tokio::task::block_in_place(|| scrape_blocking(addr, Duration::from_secs(5)));
        assert_eq!(e.unwrap().value("c"), Some(3.0));
    }

    #[test]
    fn blocking_callers_get_the_same() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let addr = rt.block_on(server(http("200 OK", "b 2\n")));
        let e = std::thread::spawn(move || scrape_blocking(addr, Duration::from_secs(5)))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(e.value("b"), Some(2.0));
    }
}
