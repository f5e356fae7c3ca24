//! One process's credentials: its certificate chain and key, the CAs it
//! trusts, and the rustls configs built from them. They are checked when
//! loaded (the chain reaches a trusted CA, is valid now, names this
//! process's identity, and matches the key) and can be reloaded in place: a
//! reload that fails keeps the old ones.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use config::{Identity, Role};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::pem::{self, PemError};

/// ALPN for gRPC: HTTP/2 over TLS.
const H2: &[u8] = b"h2";

/// Credentials that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{path}: not a CA certificate rustls accepts: {source}")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{path}: not a certificate: {source}")]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: webpki::Error,
    },
    #[error("{path} does not chain to a CA in {ca} valid now: {source}")]
    Untrusted {
        path: PathBuf,
        ca: PathBuf,
        #[source]
        source: webpki::Error,
    },
    #[error("{path} is not a certificate for {identity}: {source}")]
    NotFor {
        path: PathBuf,
        identity: Identity,
        #[source]
        source: webpki::Error,
    },
    #[error("{key} is not the key of {cert}: {source}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    #[error("cannot build the client certificate verifier: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

/// Where a process's credentials are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// The bundle of CAs this process trusts (one, or two in a rotation).
    pub ca: PathBuf,
    /// This process's certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What one load produced.
struct Loaded {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

/// A process's credentials, reloadable in place; clones share them.
#[derive(Clone)]
pub struct Credentials {
    identity: Identity,
    files: Arc<Files>,
    loaded: Arc<ArcSwap<Loaded>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("identity", &self.identity)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Loads and checks the credentials of `identity` from `files`.
    pub fn load(identity: Identity, files: Files) -> Result<Credentials, TlsError> {
        let loaded = load(&identity, &files)?;
        Ok(Credentials {
            identity,
            files: Arc::new(files),
            loaded: Arc::new(ArcSwap::from_pointee(loaded)),
        })
    }

    /// `role`'s credentials from the files `config` names for it (the CA
    /// bundle and the role's certificate pair); `None` for a role the
    /// config names no pair for (etcd's are etcd's own).
    pub fn of(config: &config::Config, role: Role) -> Option<Result<Credentials, TlsError>> {
        let pair = config.cert_pair(role)?;
        let files = Files {
            ca: config.tls.ca.clone(),
            cert: pair.cert.clone(),
            key: pair.key.clone(),
        };
        Some(Credentials::load(config.identity(role), files))
    }

    /// Reads the files again (after a renewal or a CA rotation): new
    /// connections use what they hold now. On error the credentials in use
    /// stay as they were.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.identity, &self.files)?;
        self.loaded.store(Arc::new(loaded));
        Ok(())
    }

    /// Who these credentials speak for.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A server config that requires a client certificate chaining to the
    /// trusted CAs.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.loaded.load().server.clone()
    }

    /// A client config that presents this certificate and trusts the CAs.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.loaded.load().client.clone()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(identity: &Identity, files: &Files) -> Result<Loaded, TlsError> {
    let cas = pem::certificates(&files.ca)?;
    let chain = pem::certificates(&files.cert)?;
    let key = pem::private_key(&files.key)?;
    let mut roots = RootCertStore::empty();
    for ca in &cas {
        roots.add(ca.clone()).map_err(|source| TlsError::BadCa {
            path: files.ca.clone(),
            source,
        })?;
    }
    let provider = provider();
    check_chain(identity, files, &provider, &roots, &chain)?;
    let certified =
        CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|source| {
            TlsError::KeyMismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
                source,
            }
        })?;
    certified
        .keys_match()
        .map_err(|source| TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    let roots = Arc::new(roots);
    let server = server_config(&provider, &roots, &chain, &key)?;
    let client = client_config(&provider, &roots, chain, key)?;
    Ok(Loaded {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

/// The chain reaches a trusted CA, is valid now for what its role does, and
/// names `identity`.
fn check_chain(
    identity: &Identity,
    files: &Files,
    provider: &CryptoProvider,
    roots: &RootCertStore,
    chain: &[CertificateDer<'static>],
) -> Result<(), TlsError> {
    let leaf =
        webpki::EndEntityCert::try_from(&chain[0]).map_err(|source| TlsError::BadCertificate {
            path: files.cert.clone(),
            source,
        })?;
    let now = UnixTime::now();
    let algs = provider.signature_verification_algorithms;
    let mut usages = vec![webpki::KeyUsage::client_auth()];
    if identity.role.serves() {
        usages.push(webpki::KeyUsage::server_auth());
    }
    for usage in usages {
        leaf.verify_for_usage(algs.all, &roots.roots, &chain[1..], now, usage, None, None)
            .map_err(|source| TlsError::Untrusted {
                path: files.cert.clone(),
                ca: files.ca.clone(),
                source,
            })?;
    }
    let name = ServerName::try_from(identity.dns_name()).expect("identities are DNS names");
    leaf.verify_is_valid_for_subject_name(&name)
        .map_err(|source| TlsError::NotFor {
            path: files.cert.clone(),
            identity: identity.clone(),
            source,
        })
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(TlsError::Verifier)?;
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.to_vec(), key.clone_key())
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![H2.to_vec()];
    Ok(config)
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, TlsError> {
    // Seguro's own servers speak TLS 1.3 only; etcd 3.5 tops out at 1.2.
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(chain, key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![H2.to_vec()];
    Ok(config)
}
