//! A cluster's certificates for a test: its CA, and each role's pair issued
//! into one directory under the names the config looks for by default
//! (`ca.crt`, `replica-<id>.crt`/`.key`, `edge.crt`, `admin.crt`,
//! `etcd.crt`...), as `seguro certs` would write them.

use std::io;
use std::path::{Path, PathBuf};

use config::{Identity, Role};
use trust::issue::{Authority, CA_VALIDITY, LEAF_VALIDITY, Validity, write_new};
use trust::{Credentials, Files};

/// A cluster's CA and the directory its certificates are in.
pub struct Pki {
    cluster: String,
    dir: PathBuf,
    ca: Authority,
    /// Removed with the Pki, for one made by [`Pki::temporary`].
    _temporary: Option<tempfile::TempDir>,
}

impl Pki {
    /// A new CA for `cluster`, its certificate written to `<dir>/ca.crt`.
    pub fn new(dir: impl Into<PathBuf>, cluster: &str) -> io::Result<Pki> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let ca = Authority::create(cluster, Validity::from_now(CA_VALIDITY))
            .map_err(io::Error::other)?;
        write_new(&dir.join("ca.crt"), ca.cert_pem())?;
        Ok(Pki {
            cluster: cluster.to_owned(),
            dir,
            ca,
            _temporary: None,
        })
    }

    /// A new CA for `cluster` in a directory of its own, removed when the
    /// Pki is dropped.
    pub fn temporary(cluster: &str) -> io::Result<Pki> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::new(dir.path(), cluster)?;
        Ok(Pki {
            _temporary: Some(dir),
            ..pki
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA bundle every part trusts.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn identity(&self, role: Role) -> Identity {
        Identity::new(self.cluster.clone(), role)
    }

    /// Where `role`'s certificate and key are (once issued).
    pub fn files(&self, role: Role) -> Files {
        Files {
            ca: self.ca_path(),
            cert: self.dir.join(format!("{role}.crt")),
            key: self.dir.join(format!("{role}.key")),
        }
    }

    /// Issues `role`'s certificate and key (valid for a year) unless they
    /// are there already.
    pub fn issue(&self, role: Role) -> io::Result<Files> {
        let files = self.files(role);
        if !files.cert.exists() {
            self.issue_as(
                &self.identity(role),
                Validity::from_now(LEAF_VALIDITY),
                &files,
            )?;
        }
        Ok(files)
    }

    /// Issues a certificate for `identity` valid as `validity` says, into
    /// `files` (an attacker's, an expired one...).
    pub fn issue_as(
        &self,
        identity: &Identity,
        validity: Validity,
        files: &Files,
    ) -> io::Result<()> {
        let issued = self
            .ca
            .issue(identity, validity)
            .map_err(io::Error::other)?;
        write_new(&files.cert, &issued.cert_pem)?;
        write_new(&files.key, &issued.key_pem)
    }

    /// `role`'s credentials, issuing its pair first if needed.
    pub fn credentials(&self, role: Role) -> io::Result<Credentials> {
        let files = self.issue(role)?;
        Credentials::load(self.identity(role), files).map_err(io::Error::other)
    }
}
