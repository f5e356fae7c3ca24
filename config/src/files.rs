//! The files a config names, and where it names them: which must be
//! readable on which host ([`KeyCheck`]), each certificate checked through a
//! [`CertCheck`], and no secret file shared between replicas or roles.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::path::{Path, PathBuf};

use crate::check::Builder;
use crate::diag::Loc;
use crate::identity::{Identity, Role};
use crate::key::Key;
use crate::load::KeyCheck;
use crate::types::{CertPair, ReplicaId};

/// Checks that a certificate and key are a usable TLS identity. The config
/// crate knows where the files are and which identity each must prove;
/// what a certificate says is for a crate that reads certificates
/// (`trust::check::Certificates`), handed to [`crate::Config::load_with`].
pub trait CertCheck {
    /// `Ok` if `pair` can speak for `identity` to a peer that trusts the
    /// CAs in the bundle `ca`. An [`Unreadable`] error is reported at the
    /// value that named the unreadable file; any other at the certificate's.
    fn check(
        &self,
        ca: &Path,
        pair: &CertPair,
        identity: &Identity,
    ) -> Result<(), Box<dyn Error + Send + Sync>>;
}

/// The check [`crate::Config::load`] makes: the CA bundle, the certificate
/// and the key can each be read. What they hold is not looked at.
#[derive(Debug, Clone, Copy, Default)]
pub struct FilesOnly;

impl CertCheck for FilesOnly {
    fn check(
        &self,
        ca: &Path,
        pair: &CertPair,
        _identity: &Identity,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        use std::io::Read as _;
        for path in [ca, &pair.cert, &pair.key] {
            // One byte says it can be read (a directory cannot), without
            // reading whatever a wrong path names to its end.
            std::fs::File::open(path)
                .and_then(|mut file| file.read(&mut [0; 1]))
                .map_err(|source| Unreadable {
                    path: path.to_owned(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// A file a [`CertCheck`] could not read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct Unreadable {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A file the config names, and where: the value that named it or, for a
/// default, the table (or option) it follows from.
#[derive(Debug, Clone)]
pub(crate) struct Named {
    pub(crate) path: PathBuf,
    pub(crate) at: Loc,
}

#[derive(Debug, Clone)]
pub(crate) struct NamedPair {
    pub(crate) cert: Named,
    pub(crate) key: Named,
}

impl NamedPair {
    pub(crate) fn paths(&self) -> CertPair {
        CertPair {
            cert: self.cert.path.clone(),
            key: self.key.path.clone(),
        }
    }
}

/// One replica's files.
#[derive(Debug, Clone)]
pub(crate) struct NamedReplica {
    pub(crate) id: ReplicaId,
    pub(crate) key_file: Named,
    pub(crate) tls: NamedPair,
}

/// Every file the config names, gathered while it is built.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    /// Each replica id once (a duplicate id is reported where ids are).
    pub(crate) replicas: Vec<NamedReplica>,
    pub(crate) edge: Option<NamedPair>,
    pub(crate) admin: Option<NamedPair>,
    pub(crate) ca: Option<Named>,
}

impl KeyCheck {
    /// Whether this host needs replica `id`'s envelope key.
    fn wants_envelope_key(self, id: ReplicaId) -> bool {
        match self {
            KeyCheck::All | KeyCheck::Edge => true,
            KeyCheck::Replica(own) => own == id,
            KeyCheck::Admin | KeyCheck::Skip => false,
        }
    }

    /// Whether this host needs `role`'s certificate and key.
    fn wants_pair(self, role: Role) -> bool {
        match (self, role) {
            (KeyCheck::All, _) => true,
            (KeyCheck::Edge, Role::Edge) | (KeyCheck::Admin, Role::Admin) => true,
            (KeyCheck::Replica(own), Role::Replica(id)) => own == id,
            _ => false,
        }
    }
}

impl Builder<'_, '_> {
    /// Checks the files gathered in `self.files`: none shared, and those
    /// this host needs readable and (certificates) valid for `cluster`.
    pub(crate) fn check_files(&mut self, cluster: Option<&str>) {
        let files = std::mem::take(&mut self.files);
        self.check_shared(&files);
        if self.keys == KeyCheck::Skip {
            return;
        }
        self.check_keys(&files);
        if let Some(cluster) = cluster {
            self.check_certs(&files, cluster);
        }
    }

    /// No secret serves two replicas or two roles, and the CA bundle, which
    /// every host gets, is none of them. Said at the later of the two.
    fn check_shared(&mut self, files: &Inventory) {
        let mut uses: Vec<(String, &Named)> = Vec::new();
        for r in &files.replicas {
            uses.push((format!("replica {}'s envelope key", r.id), &r.key_file));
            uses.push((format!("replica {}'s TLS key", r.id), &r.tls.key));
        }
        let roles = [
            (
                "the edge box's TLS key",
                files.edge.as_ref().map(|p| &p.key),
            ),
            ("the admin TLS key", files.admin.as_ref().map(|p| &p.key)),
            ("the CA bundle", files.ca.as_ref()),
        ];
        for (what, named) in roles {
            if let Some(named) = named {
                uses.push((what.to_owned(), named));
            }
        }
        uses.sort_by_key(|(_, named)| file_order(&named.at));
        let mut first: HashMap<PathBuf, (&str, &Named)> = HashMap::new();
        for (what, named) in &uses {
            match first.entry(same_file(&named.path)) {
                Entry::Occupied(seen) => {
                    let (first_what, first_named) = seen.get();
                    let place = self.r.describe(&first_named.at);
                    let why = if [what.as_str(), first_what].contains(&"the CA bundle") {
                        "the CA bundle goes to every host, so it must hold no key"
                    } else {
                        "every replica and every role needs a secret of its own"
                    };
                    self.r.error(
                        named.at.clone(),
                        format!("{what} {} is also {first_what}", named.path.display()),
                        Some(format!("{first_what} is named at {place}; {why}")),
                    );
                }
                Entry::Vacant(slot) => {
                    slot.insert((what, named));
                }
            }
        }
    }

    /// The envelope keys this host needs; two replicas' keys may not be the
    /// same key.
    fn check_keys(&mut self, files: &Inventory) {
        let mut loaded: Vec<(&NamedReplica, Key)> = Vec::new();
        for replica in &files.replicas {
            if !self.keys.wants_envelope_key(replica.id) {
                continue;
            }
            let path = &replica.key_file.path;
            match Key::load(path) {
                Ok(key) => loaded.push((replica, key)),
                Err(e) => self.r.error(
                    replica.key_file.at.clone(),
                    format!("replica {}: {e}", replica.id),
                    Some(format!("create it with `seguro keygen {}`", path.display())),
                ),
            }
        }
        for (i, (replica, key)) in loaded.iter().enumerate() {
            let earlier = loaded[..i].iter().find(|(other, k)| {
                k == key && same_file(&other.key_file.path) != same_file(&replica.key_file.path)
            });
            if let Some((other, _)) = earlier {
                let place = self.r.describe(&other.key_file.at);
                self.r.error(
                    replica.key_file.at.clone(),
                    format!(
                        "replica {}'s envelope key file {} holds the same key as replica {}'s ({})",
                        replica.id,
                        replica.key_file.path.display(),
                        other.id,
                        other.key_file.path.display()
                    ),
                    Some(format!(
                        "replica {}'s is named at {place}; give each replica a key of its own \
                         (`seguro keygen FILE`)",
                        other.id
                    )),
                );
            }
        }
    }

    /// The certificate pairs this host needs, each checked by `self.certs`
    /// against the CA bundle for the identity it is configured for.
    fn check_certs(&mut self, files: &Inventory, cluster: &str) {
        let Some(ca) = &files.ca else { return };
        let mut pairs: Vec<(Role, &NamedPair)> = files
            .replicas
            .iter()
            .map(|r| (Role::Replica(r.id), &r.tls))
            .collect();
        pairs.extend(files.edge.as_ref().map(|p| (Role::Edge, p)));
        pairs.extend(files.admin.as_ref().map(|p| (Role::Admin, p)));
        let config = self.r.path().display().to_string();
        let mut unreadable = HashSet::new();
        for (role, pair) in pairs {
            if !self.keys.wants_pair(role) {
                continue;
            }
            let identity = Identity::new(cluster, role);
            let Err(e) = self.certs.check(&ca.path, &pair.paths(), &identity) else {
                continue;
            };
            let issue = format!("`seguro certs issue -c {config} {role}`");
            match e.downcast_ref::<Unreadable>() {
                Some(u) if u.path == ca.path => {
                    if unreadable.insert(u.path.clone()) {
                        self.r.error(
                            ca.at.clone(),
                            format!("CA bundle: {u}"),
                            Some(format!(
                                "make the cluster's CA with `seguro certs ca -c {config}` on the \
                                 operator's machine, and copy its ca.crt here (docs/DEPLOY.md)"
                            )),
                        );
                    }
                }
                Some(u) => {
                    let (named, what) = if u.path == pair.key.path {
                        (&pair.key, "key")
                    } else {
                        (&pair.cert, "certificate")
                    };
                    if unreadable.insert(u.path.clone()) {
                        self.r.error(
                            named.at.clone(),
                            format!("TLS {what} of {identity}: {u}"),
                            Some(format!("issue it with {issue} (docs/DEPLOY.md)")),
                        );
                    }
                }
                None => self.r.error(
                    pair.cert.at.clone(),
                    format!("TLS certificate of {identity}: {e}"),
                    Some(format!(
                        "{issue} issues one for {identity} from the CA in {} (docs/DEPLOY.md)",
                        ca.path.display()
                    )),
                ),
            }
        }
    }
}

/// What decides which of two uses came first: options, then file order.
fn file_order(at: &Loc) -> (u8, usize) {
    match at {
        Loc::Option(_) => (0, 0),
        Loc::Span(span) => (1, span.start),
    }
}

/// One name per file: the canonical path of a file that exists (through
/// symbolic links), else the path with `.` and repeated `/` dropped.
fn same_file(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.components().collect())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::diag::Origin;
    use crate::load::Overrides;
    use crate::types::Config;

    const CONFIG: &str = r#"cluster = "c"
[ship]
public = "192.0.2.1:34543"
[[replicas]]
id = 1
ames = "10.0.1.1:34543"
tls_cert = "elsewhere/one.crt"
[[replicas]]
id = 2
ames = "10.0.1.2:34543"
[lb]
interface = "eth0"
[gatekeeper]
listen = "10.0.1.254:4720"
[etcd]
endpoints = ["https://10.0.1.254:2379"]
"#;

    /// A certificate check that records what it is asked and refuses the
    /// identities it is told to.
    #[derive(Default)]
    struct Recording {
        asked: RefCell<Vec<(PathBuf, CertPair, Identity)>>,
        refuse: Vec<Role>,
        unreadable_key: bool,
    }

    impl CertCheck for Recording {
        fn check(
            &self,
            ca: &Path,
            pair: &CertPair,
            identity: &Identity,
        ) -> Result<(), Box<dyn Error + Send + Sync>> {
            self.asked
                .borrow_mut()
                .push((ca.to_owned(), pair.clone(), identity.clone()));
            if self.unreadable_key {
                let source = std::io::Error::from(std::io::ErrorKind::NotFound);
                return Err(Box::new(Unreadable {
                    path: pair.key.clone(),
                    source,
                }));
            }
            if self.refuse.contains(&identity.role) {
                return Err("refused".into());
            }
            Ok(())
        }
    }

    /// The config in a directory with its key files.
    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        for name in ["replica-1", "replica-2", "eventlog"] {
            let path = dir.path().join(format!("keys/{name}.key"));
            Key::generate().unwrap().save_new(&path).unwrap();
        }
        let path = dir.path().join("c.toml");
        std::fs::write(&path, CONFIG).unwrap();
        (dir, path)
    }

    fn load(
        path: &Path,
        keys: KeyCheck,
        certs: &dyn CertCheck,
    ) -> Result<Config, crate::Diagnostics> {
        Config::load_with(path, &Overrides::default(), keys, certs).map(|(c, _)| c)
    }

    fn line_of(d: &crate::Diagnostic) -> usize {
        match d.origin {
            Origin::File { line, .. } => line,
            Origin::Option(_) => 0,
        }
    }

    #[test]
    fn each_host_checks_the_pairs_it_needs_for_its_identities() {
        let (dir, path) = setup();
        let tls = dir.path().join("tls");
        let id = |n| ReplicaId::new(n).unwrap();
        for (keys, roles) in [
            (
                KeyCheck::All,
                vec![
                    Role::Replica(id(1)),
                    Role::Replica(id(2)),
                    Role::Edge,
                    Role::Admin,
                ],
            ),
            (KeyCheck::Edge, vec![Role::Edge]),
            (KeyCheck::Replica(id(2)), vec![Role::Replica(id(2))]),
            (KeyCheck::Admin, vec![Role::Admin]),
            (KeyCheck::Skip, vec![]),
        ] {
            let certs = Recording::default();
            let config = load(&path, keys, &certs).unwrap();
            let asked = certs.asked.into_inner();
            let asked_roles: Vec<Role> = asked.iter().map(|(_, _, i)| i.role).collect();
            assert_eq!(asked_roles, roles, "{keys:?}");
            for (ca, pair, identity) in &asked {
                assert_eq!(ca, &tls.join("ca.crt"));
                assert_eq!(identity.cluster, "c");
                assert_eq!(Some(pair), config.cert_pair(identity.role));
            }
        }
        let config = load(&path, KeyCheck::Skip, &FilesOnly).unwrap();
        assert_eq!(
            config.replicas[0].tls,
            CertPair {
                cert: dir.path().join("elsewhere/one.crt"),
                key: tls.join("replica-1.key"),
            }
        );
        assert_eq!(config.gatekeeper.tls, config.tls.default_pair(Role::Edge));
        assert_eq!(config.tls.admin.cert, tls.join("admin.crt"));
        assert_eq!(config.cert_pair(Role::Etcd), None);
        assert_eq!(config.cert_pair(Role::Replica(id(3))), None);
        assert_eq!(config.identity(Role::Edge).dns_name(), "edge.c.seguro");
    }

    #[test]
    fn a_refused_certificate_is_said_at_the_value_that_named_it() {
        let (_dir, path) = setup();
        let refuse = |roles: Vec<Role>| Recording {
            refuse: roles,
            ..Recording::default()
        };
        let one = Role::Replica(ReplicaId::new(1).unwrap());
        let two = Role::Replica(ReplicaId::new(2).unwrap());
        let err = load(&path, KeyCheck::All, &refuse(vec![one, two, Role::Edge])).unwrap_err();
        let errors: Vec<_> = err.errors().collect();
        assert_eq!(errors.len(), 3, "{err}");
        // Replica 1 names its certificate (line 7), replica 2's is the
        // default (its table, line 8), the edge box's too ([gatekeeper]).
        assert_eq!(
            errors.iter().map(|d| line_of(d)).collect::<Vec<_>>(),
            [7, 8, 13]
        );
        assert_eq!(
            errors[0].message,
            "TLS certificate of replica-1.c.seguro: refused"
        );
        assert!(
            errors[2].hint.as_ref().unwrap().contains("certs issue -c"),
            "{err}"
        );

        // Unreadable: at the key's value, once per file.
        let certs = Recording {
            unreadable_key: true,
            ..Recording::default()
        };
        let err = load(&path, KeyCheck::Replica(ReplicaId::new(2).unwrap()), &certs).unwrap_err();
        let errors: Vec<_> = err.errors().collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(
            errors[0]
                .message
                .starts_with("TLS key of replica-2.c.seguro: cannot read "),
            "{err}"
        );
        assert_eq!(line_of(errors[0]), 8);
    }

    #[test]
    fn files_only_reads_each_file() {
        let (dir, path) = setup();
        let err = load(&path, KeyCheck::Edge, &FilesOnly).unwrap_err();
        assert!(err.to_string().contains("CA bundle: cannot read"), "{err}");
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        for name in ["ca.crt", "edge.crt", "edge.key"] {
            std::fs::write(tls.join(name), "whatever").unwrap();
        }
        load(&path, KeyCheck::Edge, &FilesOnly).unwrap();
        // Admin's are not there.
        assert!(load(&path, KeyCheck::Admin, &FilesOnly).is_err());
    }

    #[test]
    fn one_file_is_one_file_however_it_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        std::fs::write(&file, "x").unwrap();
        std::os::unix::fs::symlink(&file, dir.path().join("link")).unwrap();
        assert_eq!(same_file(&dir.path().join("link")), same_file(&file));
        assert_eq!(
            same_file(Path::new("/nowhere/./a//b")),
            PathBuf::from("/nowhere/a/b")
        );
    }
}
