//! The cluster's certificate authority: making it, and issuing each role's
//! certificate (`seguro certs`, and the test labs). Keys are ECDSA P-256.
//! Files are written 0600 and never over an existing one.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use config::Identity;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _,
};
use rustls_pki_types::pem::SectionKind;

/// How long a new CA is valid by default.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a new leaf certificate is valid by default.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Issuing failed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot make the certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    BadCa {
        path: std::path::PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("{path} is not a PEM file of certificates: {source}")]
    BadPem {
        path: std::path::PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("no certificate in {cert} is the CA whose key is {key}")]
    NoMatchingCa {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
    },
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From a minute ago (clocks differ a little) for `duration`.
    pub fn from_now(duration: Duration) -> Validity {
        let now = SystemTime::now();
        Validity {
            not_before: now - Duration::from_secs(60),
            not_after: now + duration,
        }
    }
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A cluster's CA: its certificate and the key that signs with it.
pub struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    /// A new CA for `cluster`, valid as `validity` says.
    pub fn create(cluster: &str, validity: Validity) -> Result<Authority, IssueError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("Seguro CA for {cluster}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, validity);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA whose key is in `key`, its certificate the one in `cert`
    /// with that key's public half: `cert` may be a bundle of several CAs
    /// (during a rotation).
    pub fn load(cert: &Path, key: &Path) -> Result<Authority, IssueError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| IssueError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let (bundle, key_pem) = (read(cert)?, read(key)?);
        let key_path = key;
        let key = KeyPair::from_pem(&key_pem).map_err(|source| IssueError::BadCa {
            path: key_path.to_owned(),
            source,
        })?;
        let (cert_pem, der) = ca_of(&bundle, &key)
            .map_err(|source| IssueError::BadPem {
                path: cert.to_owned(),
                source,
            })?
            .ok_or_else(|| IssueError::NoMatchingCa {
                cert: cert.to_owned(),
                key: key_path.to_owned(),
            })?;
        let issuer =
            Issuer::from_ca_cert_der(&der.into(), key).map_err(|source| IssueError::BadCa {
                path: cert.to_owned(),
                source,
            })?;
        Ok(Authority { cert_pem, issuer })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate for `identity`, with a key of its own: a client
    /// certificate, and a server one too for the roles that serve
    /// (replicas, etcd).
    pub fn issue(&self, identity: &Identity, validity: Validity) -> Result<Issued, IssueError> {
        let dns = identity.dns_name();
        let mut params = CertificateParams::new(vec![dns.clone()])?;
        params.distinguished_name = name(&dns);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if identity.role.serves() {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, validity);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The certificate in `bundle` whose public key is `key`'s: its PEM text
/// and DER.
fn ca_of(
    bundle: &str,
    key: &KeyPair,
) -> Result<Option<(String, Vec<u8>)>, rustls_pki_types::pem::Error> {
    let mut rest = bundle.as_bytes();
    loop {
        let before = rest;
        let Some((kind, der)) = rustls_pki_types::pem::from_buf(&mut rest)? else {
            return Ok(None);
        };
        if kind != SectionKind::Certificate {
            continue;
        }
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
            continue;
        };
        if *cert.public_key().subject_public_key.data == *key.der_bytes() {
            let text = &before[..before.len() - rest.len()];
            return Ok(Some((
                String::from_utf8_lossy(text).trim().to_owned() + "\n",
                der,
            )));
        }
    }
}

fn name(common: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common);
    dn
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    params.not_before = validity.not_before.into();
    params.not_after = validity.not_after.into();
}

/// Writes `contents` to a new file at `path`, readable by its owner only
/// (0600), and syncs it; a file already there is an error, never replaced.
pub fn write_new(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Credentials, Files};
    use config::{ReplicaId, Role};

    fn write(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        write_new(&path, contents).unwrap();
        path
    }

    #[test]
    fn a_certificate_it_issues_loads_as_its_identity_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::create("c", Validity::from_now(CA_VALIDITY)).unwrap();
        let ca_path = write(dir.path(), "ca.crt", ca.cert_pem());
        let one = Identity::new("c", Role::Replica(ReplicaId::new(1).unwrap()));
        let issued = ca.issue(&one, Validity::from_now(LEAF_VALIDITY)).unwrap();
        let files = Files {
            ca: ca_path.clone(),
            cert: write(dir.path(), "r1.crt", &issued.cert_pem),
            key: write(dir.path(), "r1.key", &issued.key_pem),
        };
        let creds = Credentials::load(one.clone(), files.clone()).unwrap();
        assert_eq!(creds.identity(), &one);
        let two = Identity::new("c", Role::Replica(ReplicaId::new(2).unwrap()));
        let err = Credentials::load(two, files.clone()).unwrap_err();
        assert!(
            err.to_string()
                .contains("not a certificate for replica-2.c.seguro"),
            "{err}"
        );
        let other_cluster = Identity::new("d", Role::Replica(ReplicaId::new(1).unwrap()));
        assert!(Credentials::load(other_cluster, files.clone()).is_err());

        // Another CA's certificate does not chain to this one.
        let other = Authority::create("c", Validity::from_now(CA_VALIDITY)).unwrap();
        let foreign = other
            .issue(&one, Validity::from_now(LEAF_VALIDITY))
            .unwrap();
        let foreign = Files {
            cert: write(dir.path(), "f.crt", &foreign.cert_pem),
            key: write(dir.path(), "f.key", &foreign.key_pem),
            ..files.clone()
        };
        let err = Credentials::load(one.clone(), foreign).unwrap_err();
        assert!(matches!(err, crate::TlsError::Untrusted { .. }), "{err}");

        // An expired one is refused.
        let past = Validity {
            not_before: SystemTime::now() - Duration::from_secs(7200),
            not_after: SystemTime::now() - Duration::from_secs(3600),
        };
        let old = ca.issue(&one, past).unwrap();
        let old = Files {
            cert: write(dir.path(), "old.crt", &old.cert_pem),
            key: write(dir.path(), "old.key", &old.key_pem),
            ..files.clone()
        };
        let err = Credentials::load(one.clone(), old).unwrap_err();
        assert!(matches!(err, crate::TlsError::Untrusted { .. }), "{err}");

        // A key that is not the certificate's.
        let mismatched = Files {
            key: dir.path().join("f.key"),
            ..files
        };
        let err = Credentials::load(one, mismatched).unwrap_err();
        assert!(matches!(err, crate::TlsError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn a_ca_reloads_from_its_files_and_keeps_issuing() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::create("c", Validity::from_now(CA_VALIDITY)).unwrap();
        let cert = write(dir.path(), "ca.crt", ca.cert_pem());
        let key = write(dir.path(), "ca.key", &ca.key_pem());
        let again = Authority::load(&cert, &key).unwrap();
        let admin = Identity::new("c", Role::Admin);
        let issued = again
            .issue(&admin, Validity::from_now(LEAF_VALIDITY))
            .unwrap();
        let files = Files {
            ca: cert,
            cert: write(dir.path(), "a.crt", &issued.cert_pem),
            key: write(dir.path(), "a.key", &issued.key_pem),
        };
        Credentials::load(admin, files).unwrap();
    }

    #[test]
    fn a_bundle_of_two_cas_yields_the_one_whose_key_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let old = Authority::create("c", Validity::from_now(CA_VALIDITY)).unwrap();
        let new = Authority::create("c", Validity::from_now(CA_VALIDITY)).unwrap();
        let bundle = write(
            dir.path(),
            "bundle.crt",
            &format!("{}{}", old.cert_pem(), new.cert_pem()),
        );
        let new_key = write(dir.path(), "new.key", &new.key_pem());
        let loaded = Authority::load(&bundle, &new_key).unwrap();
        assert_eq!(loaded.cert_pem().trim(), new.cert_pem().trim());

        // What it issues chains to the new CA alone.
        let edge = Identity::new("c", Role::Edge);
        let issued = loaded
            .issue(&edge, Validity::from_now(LEAF_VALIDITY))
            .unwrap();
        let files = |ca: &str, name: &str| Files {
            ca: write(dir.path(), &format!("{name}-ca.crt"), ca),
            cert: write(dir.path(), &format!("{name}.crt"), &issued.cert_pem),
            key: write(dir.path(), &format!("{name}.key"), &issued.key_pem),
        };
        Credentials::load(edge.clone(), files(new.cert_pem(), "n")).unwrap();
        assert!(Credentials::load(edge, files(old.cert_pem(), "o")).is_err());

        // A key that is no CA's in the file.
        let other = Authority::create("c", Validity::from_now(CA_VALIDITY)).unwrap();
        let other_key = write(dir.path(), "other.key", &other.key_pem());
        let err = Authority::load(&bundle, &other_key).err().unwrap();
        assert!(matches!(err, IssueError::NoMatchingCa { .. }), "{err}");
    }

    #[test]
    fn files_are_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_new(&path, "one").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write_new(&path, "two").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one");
    }
}
