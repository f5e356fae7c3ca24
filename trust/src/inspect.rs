//! What a certificate file says, for people: each certificate's subject,
//! the Seguro identity it names, its issuer and when it is valid
//! (`seguro certs show`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use config::Identity;
use rustls_pki_types::CertificateDer;
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;

use crate::pem::{self, PemError};

/// A certificate file that cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{path}: certificate {index} of the file is not X.509: {source}")]
    Parse {
        path: PathBuf,
        /// 1 for the file's first certificate.
        index: usize,
        #[source]
        source: x509_parser::nom::Err<X509Error>,
    },
}

/// One certificate, as `seguro certs show` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The subject's distinguished name (`CN=replica-1.<cluster>.seguro`).
    pub subject: String,
    pub issuer: String,
    /// The DNS names it is valid for.
    pub dns_names: Vec<String>,
    /// The Seguro identity among them, if one is.
    pub identity: Option<Identity>,
    /// A CA certificate rather than a leaf.
    pub is_ca: bool,
    /// Hex bytes separated by `:`.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Summary {
    /// How long after `now` it expires, or (`Err`) how long before `now`
    /// it did.
    pub fn remaining(&self, now: SystemTime) -> Result<Duration, Duration> {
        self.not_after
            .duration_since(now)
            .map_err(|past| past.duration())
    }
}

/// Every certificate in the PEM file at `path`, in the file's order.
pub fn read(path: &Path) -> Result<Vec<Summary>, InspectError> {
    pem::certificates(path)?
        .iter()
        .enumerate()
        .map(|(i, der)| {
            summarize(der).map_err(|source| InspectError::Parse {
                path: path.to_owned(),
                index: i + 1,
                source,
            })
        })
        .collect()
}

fn summarize(der: &CertificateDer<'_>) -> Result<Summary, x509_parser::nom::Err<X509Error>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)?;
    let dns_names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let validity = cert.validity();
    Ok(Summary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        identity: dns_names.iter().find_map(|n| n.parse().ok()),
        dns_names,
        is_ca: cert.is_ca(),
        serial: cert.raw_serial_as_string(),
        not_before: system_time(validity.not_before.timestamp()),
        not_after: system_time(validity.not_after.timestamp()),
    })
}

fn system_time(unix_seconds: i64) -> SystemTime {
    let offset = Duration::from_secs(unix_seconds.unsigned_abs());
    if unix_seconds >= 0 {
        SystemTime::UNIX_EPOCH + offset
    } else {
        SystemTime::UNIX_EPOCH - offset
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_ca { "CA" } else { "leaf" };
        writeln!(f, "subject:    {} ({kind})", self.subject)?;
        match &self.identity {
            Some(identity) => writeln!(f, "identity:   {identity}")?,
            None => writeln!(f, "identity:   none (no DNS name <role>.<cluster>.seguro)")?,
        }
        if !self.dns_names.is_empty() {
            writeln!(f, "dns names:  {}", self.dns_names.join(", "))?;
        }
        writeln!(f, "issuer:     {}", self.issuer)?;
        writeln!(f, "serial:     {}", self.serial)?;
        writeln!(f, "not before: {}", rfc3339(self.not_before))?;
        write!(f, "not after:  {}", rfc3339(self.not_after))
    }
}

/// `2027-01-31T12:00:00Z`.
fn rfc3339(t: SystemTime) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{Authority, CA_VALIDITY, Validity, write_new};
    use config::Role;

    #[test]
    fn shows_the_identity_issuer_and_validity_of_each_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::create("c", Validity::from_now(CA_VALIDITY)).unwrap();
        let edge = Identity::new("c", Role::Edge);
        let validity = Validity::from_now(Duration::from_secs(30 * 24 * 3600));
        let issued = ca.issue(&edge, validity).unwrap();
        let path = dir.path().join("both.crt");
        write_new(&path, &format!("{}{}", issued.cert_pem, ca.cert_pem())).unwrap();

        let shown = read(&path).unwrap();
        assert_eq!(shown.len(), 2);
        let (leaf, root) = (&shown[0], &shown[1]);
        assert_eq!(leaf.identity.as_ref(), Some(&edge));
        assert_eq!(leaf.subject, "CN=edge.c.seguro");
        assert_eq!(leaf.issuer, "CN=Seguro CA for c");
        assert!(!leaf.is_ca && root.is_ca);
        assert_eq!(root.identity, None);
        // Certificates keep whole seconds.
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(leaf.not_after), secs(validity.not_after));
        let left = leaf.remaining(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(29 * 24 * 3600), "{left:?}");
        let text = leaf.to_string();
        assert!(text.contains("identity:   edge.c.seguro"), "{text}");
        assert!(text.contains("not after:  20"), "{text}");

        let junk = dir.path().join("junk.crt");
        write_new(&junk, "not a certificate").unwrap();
        let err = read(&junk).unwrap_err();
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
    }
}
