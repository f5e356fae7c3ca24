//! The TLS side of a gRPC listener: accepts TCP connections, completes each
//! handshake on a task of its own (bounded in time and in number), and
//! yields only connections whose client proved an identity of this cluster
//! with a certificate of its CAs. Everything else is refused, counted by the
//! caller's `on_refused` and never reaches a service.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::credentials::Credentials;
use crate::peer::identity_of;

/// Longest a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most handshakes in progress at once; more connections wait to be
/// accepted.
pub const MAX_HANDSHAKES: usize = 256;

/// Why a connection was refused before it reached a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    /// The client presented no certificate.
    NoCertificate,
    /// Its certificate does not chain to a trusted CA.
    UnknownCa,
    /// Its certificate is expired or not yet valid.
    Expired,
    /// Its certificate is otherwise unacceptable (bad signature, wrong use).
    BadCertificate,
    /// It did not speak TLS (a plaintext client, say).
    NotTls,
    /// The handshake failed otherwise.
    Handshake,
    /// It did not finish the handshake in time.
    Timeout,
    /// Its certificate names no identity, or one of another cluster.
    NoIdentity,
}

impl Refused {
    pub const ALL: [Refused; 8] = [
        Refused::NoCertificate,
        Refused::UnknownCa,
        Refused::Expired,
        Refused::BadCertificate,
        Refused::NotTls,
        Refused::Handshake,
        Refused::Timeout,
        Refused::NoIdentity,
    ];

    /// The reason as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::NoCertificate => "no_certificate",
            Refused::UnknownCa => "unknown_ca",
            Refused::Expired => "expired",
            Refused::BadCertificate => "bad_certificate",
            Refused::NotTls => "not_tls",
            Refused::Handshake => "handshake",
            Refused::Timeout => "timeout",
            Refused::NoIdentity => "no_identity",
        }
    }

    /// What a failed handshake's error says.
    fn of(error: &io::Error) -> Refused {
        use rustls::{CertificateError, Error};
        let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
            return Refused::Handshake;
        };
        match tls {
            Error::NoCertificatesPresented => Refused::NoCertificate,
            Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => Refused::UnknownCa,
            Error::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            ) => Refused::Expired,
            Error::InvalidCertificate(_) => Refused::BadCertificate,
            Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => Refused::NotTls,
            _ => Refused::Handshake,
        }
    }
}

/// A refused connection: from where, why, and rustls's word for it.
#[derive(Debug)]
pub struct Refusal {
    pub from: SocketAddr,
    pub reason: Refused,
    pub detail: String,
}

/// The connections `listener` accepts whose clients proved an identity of
/// `credentials`' cluster; refusals go to `on_refused`. Give the stream to
/// tonic's `serve_with_incoming`: `tonic::Request::peer_certs` then holds
/// the client's chain ([`crate::peer_of`]).
pub fn incoming(
    listener: TcpListener,
    credentials: Credentials,
    on_refused: impl Fn(Refusal) + Send + Sync + 'static,
) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> {
    let (tx, mut rx) = mpsc::channel(MAX_HANDSHAKES);
    let on_refused = Arc::new(on_refused);
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (tcp, from) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, say: the next accept may work.
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let (tx, credentials, on_refused) =
                (tx.clone(), credentials.clone(), on_refused.clone());
            tokio::spawn(async move {
                let _slot = slot;
                match handshake(tcp, from, &credentials).await {
                    Ok(tls) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Err(refusal) => {
                        tracing::warn!(
                            from = %refusal.from,
                            reason = refusal.reason.label(),
                            "refused a connection: {}",
                            refusal.detail
                        );
                        on_refused(refusal);
                    }
                }
            });
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn handshake(
    tcp: TcpStream,
    from: SocketAddr,
    credentials: &Credentials,
) -> Result<TlsStream<TcpStream>, Refusal> {
    let acceptor = TlsAcceptor::from(credentials.server_config());
    let refusal = |reason, detail: String| Refusal {
        from,
        reason,
        detail,
    };
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Err(_) => return Err(refusal(Refused::Timeout, "no handshake in time".into())),
        Ok(Err(e)) => return Err(refusal(Refused::of(&e), e.to_string())),
        Ok(Ok(tls)) => tls,
    };
    let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
    match identity_of(chain) {
        Some(identity) if identity.cluster == credentials.identity().cluster => Ok(tls),
        Some(identity) => Err(refusal(
            Refused::NoIdentity,
            format!("{identity} is not of this cluster"),
        )),
        None => Err(refusal(
            Refused::NoIdentity,
            "its certificate names no identity".into(),
        )),
    }
}
