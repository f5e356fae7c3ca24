//! The certificate check behind `seguro config check` and every daemon's
//! start: each pair a host needs is loaded as the daemon would load it.

use std::error::Error;
use std::path::Path;

use config::{CertCheck, CertPair, FilesOnly, Identity};

use crate::{Credentials, Files};

/// A [`CertCheck`] that loads the [`Credentials`]: the files are readable,
/// the certificate chains to a CA of the bundle, is valid now, names the
/// identity it is configured for, and matches its key.
#[derive(Debug, Clone, Copy, Default)]
pub struct Certificates;

impl CertCheck for Certificates {
    fn check(
        &self,
        ca: &Path,
        pair: &CertPair,
        identity: &Identity,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        // config's own error for a file that cannot be read, so that it is
        // reported at the value that named that file.
        FilesOnly.check(ca, pair, identity)?;
        let files = Files {
            ca: ca.to_owned(),
            cert: pair.cert.clone(),
            key: pair.key.clone(),
        };
        Credentials::load(identity.clone(), files)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{Authority, CA_VALIDITY, LEAF_VALIDITY, Validity, write_new};
    use config::{ReplicaId, Role, Unreadable};

    #[test]
    fn a_missing_file_is_config_s_error_and_a_wrong_identity_is_trust_s() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::create("c", Validity::from_now(CA_VALIDITY)).unwrap();
        let ca_path = dir.path().join("ca.crt");
        write_new(&ca_path, ca.cert_pem()).unwrap();
        let one = Identity::new("c", Role::Replica(ReplicaId::new(1).unwrap()));
        let issued = ca.issue(&one, Validity::from_now(LEAF_VALIDITY)).unwrap();
        let pair = CertPair {
            cert: dir.path().join("r1.crt"),
            key: dir.path().join("r1.key"),
        };
        write_new(&pair.cert, &issued.cert_pem).unwrap();

        let err = Certificates.check(&ca_path, &pair, &one).unwrap_err();
        let unreadable = err.downcast_ref::<Unreadable>().expect("config's error");
        assert_eq!(unreadable.path, pair.key);

        write_new(&pair.key, &issued.key_pem).unwrap();
        Certificates.check(&ca_path, &pair, &one).unwrap();
        let two = Identity::new("c", Role::Replica(ReplicaId::new(2).unwrap()));
        let err = Certificates.check(&ca_path, &pair, &two).unwrap_err();
        assert!(err.downcast_ref::<crate::TlsError>().is_some(), "{err}");
        assert!(
            err.to_string()
                .contains("not a certificate for replica-2.c.seguro"),
            "{err}"
        );
    }
}
