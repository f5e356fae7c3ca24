//! The client side: a connector for tonic channels that opens TCP, then
//! TLS presenting this process's certificate, and accepts only a server
//! whose certificate names the identity it meant to reach.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use config::Identity;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::credentials::Credentials;

/// Connects to one server, expected to be `server`.
#[derive(Clone)]
pub struct Connector {
    credentials: Credentials,
    server: ServerName<'static>,
}

impl Connector {
    pub fn new(credentials: Credentials, server: &Identity) -> Connector {
        Connector {
            credentials,
            server: ServerName::try_from(server.dns_name()).expect("identities are DNS names"),
        }
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
        Box::pin(async move {
            let authority = uri.authority().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} has no host"))
            })?;
            let tcp = TcpStream::connect(authority.as_str()).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server, tcp).await?;
            Ok(TokioIo::new(tls))
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
