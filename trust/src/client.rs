//! The client side: a connector for tonic channels that opens TCP, then
//! TLS presenting this process's certificate, and accepts only a server
//! whose certificate names the identity it meant to reach.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use config::Identity;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::credentials::Credentials;

/// Connects to a server expected to be `server`: at the address of the
/// URI it is asked for, or at the first of its own `targets` that answers.
#[derive(Clone)]
pub struct Connector {
    credentials: Credentials,
    server: ServerName<'static>,
    /// `host:port`s to try in turn, whatever the URI says, each for at most
    /// the given time.
    targets: Option<(Arc<[String]>, Duration)>,
}

impl Connector {
    pub fn new(credentials: Credentials, server: &Identity) -> Connector {
        Connector {
            credentials,
            server: ServerName::try_from(server.dns_name()).expect("identities are DNS names"),
            targets: None,
        }
    }

    /// A connector that tries `targets` (`host:port`) in turn, for a
    /// service several servers answer as one (etcd's members), giving each
    /// at most `each` to connect and finish the handshake: one that hangs
    /// (dropping packets, or never answering the handshake) does not keep
    /// the others from being tried.
    pub fn with_targets(mut self, targets: Vec<String>, each: Duration) -> Connector {
        self.targets = Some((targets.into(), each));
        self
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = TlsConnector::from(self.credentials.client_config());
        let server = self.server.clone();
        let targets = self.targets.clone();
        Box::pin(async move {
            let (targets, each): (Vec<String>, Option<Duration>) = match targets {
                Some((t, each)) => (t.to_vec(), Some(each)),
                None => (
                    vec![
                        uri.authority()
                            .ok_or_else(|| {
                                io::Error::new(
                                    io::ErrorKind::InvalidInput,
                                    format!("{uri} has no host"),
                                )
                            })?
                            .to_string(),
                    ],
                    // One address: the endpoint's own connect timeout.
                    None,
                ),
            };
            let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
            for target in &targets {
                let attempt = async {
                    let tcp = TcpStream::connect(target.as_str()).await?;
                    tcp.set_nodelay(true)?;
                    connector.connect(server.clone(), tcp).await
                };
                let attempt = match each {
                    Some(each) => tokio::time::timeout(each, attempt)
                        .await
                        .unwrap_or_else(|_| {
                            Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("no handshake within {each:?}"),
                            ))
                        }),
                    None => attempt.await,
                };
                match attempt {
                    Ok(tls) => return Ok(TokioIo::new(tls)),
                    Err(e) => last = io::Error::new(e.kind(), format!("{target}: {e}")),
                }
            }
            Err(last)
        })
    }
}

/// A lazily connecting channel to `addr`, the server `server`, over mutual
/// TLS with `credentials`. `configure` sets the endpoint's other options
/// (timeouts, windows, keep-alives).
pub fn channel(
    addr: std::net::SocketAddr,
    server: &Identity,
    credentials: &Credentials,
    configure: impl FnOnce(Endpoint) -> Endpoint,
) -> Channel {
    // Plain `http://`: the connector does the TLS, not tonic.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address makes a valid URI");
    configure(endpoint).connect_with_connector_lazy(Connector::new(credentials.clone(), server))
}

/// A lazily connecting channel to whichever of `targets` (`host:port`)
/// answers first, each expected to be `server` and given at most `each` to
/// connect. `configure` must not set a connect timeout: tonic's would bound
/// all the targets together.
pub fn failover_channel(
    targets: Vec<String>,
    each: Duration,
    server: &Identity,
    credentials: &Credentials,
    configure: impl FnOnce(Endpoint) -> Endpoint,
) -> Channel {
    let endpoint = Endpoint::from_static("http://failover.invalid");
    configure(endpoint).connect_with_connector_lazy(
        Connector::new(credentials.clone(), server).with_targets(targets, each),
    )
}
