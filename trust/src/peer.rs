//! The identity a peer proved: the one name of its certificate that is a
//! Seguro identity. The TLS handshake has already checked the chain to the
//! cluster's CAs; this only reads the name.

use std::fmt;
use std::net::SocketAddr;

use config::Identity;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub identity: Identity,
    /// Where it connected from, when known.
    pub addr: Option<SocketAddr>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(a) => write!(f, "{} at {a}", self.identity),
            None => write!(f, "{}", self.identity),
        }
    }
}

/// The identity a certificate chain's leaf names in its DNS names, if
/// exactly one of them is an identity.
pub fn identity_of(chain: &[CertificateDer<'_>]) -> Option<Identity> {
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let names = cert.subject_alternative_name().ok()??;
    let mut found = names.value.general_names.iter().filter_map(|n| match n {
        GeneralName::DNSName(name) => name.parse::<Identity>().ok(),
        _ => None,
    });
    let first = found.next()?;
    // A certificate that names two identities speaks for neither.
    found.next().is_none().then_some(first)
}

/// The peer behind a gRPC request that came over a [`crate::server`]
/// connection; `None` if it presented no certificate naming an identity
/// (which the listener does not let through).
pub fn peer_of<T>(request: &tonic::Request<T>) -> Option<Peer> {
    let certs = request.peer_certs()?;
    Some(Peer {
        identity: identity_of(&certs)?,
        addr: request.remote_addr(),
    })
}
