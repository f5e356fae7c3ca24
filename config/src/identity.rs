//! Who a certificate speaks for: each role of a cluster has one identity,
//! written into its certificate as a DNS name, which is also the name
//! clients check a server's certificate against and etcd's user name.

use std::fmt;
use std::str::FromStr;

use crate::types::ReplicaId;

/// The domain every identity's name ends in: `<role>.<cluster>.seguro`.
pub const DOMAIN: &str = "seguro";

/// A role in one cluster, as its certificate names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A replica host: its event log node and its agent (`replica-<id>`).
    Replica(ReplicaId),
    /// An edge box: its gatekeeper and `seguro status` (`edge`).
    Edge,
    /// The operator: membership changes (`admin`).
    Admin,
    /// etcd's server certificate (`etcd`).
    Etcd,
}

impl Role {
    /// Whether this role's certificate is a server's too (a replica's node
    /// and checkpoint listener, etcd), not only a client's: what it is
    /// issued for and checked against.
    pub fn serves(self) -> bool {
        matches!(self, Role::Replica(_) | Role::Etcd)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Replica(id) => write!(f, "replica-{id}"),
            Role::Edge => f.write_str("edge"),
            Role::Admin => f.write_str("admin"),
            Role::Etcd => f.write_str("etcd"),
        }
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    /// `replica-3`, `edge`, `admin` or `etcd`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "edge" => Role::Edge,
            "admin" => Role::Admin,
            "etcd" => Role::Etcd,
            _ => {
                let id = s
                    .strip_prefix("replica-")
                    .and_then(|n| n.parse::<u32>().ok())
                    .and_then(ReplicaId::new)
                    .ok_or_else(|| IdentityError::Role(s.to_owned()))?;
                Role::Replica(id)
            }
        })
    }
}

/// A role in a named cluster: `replica-3.sampel-palnet.seguro`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    pub cluster: String,
    pub role: Role,
}

/// A name that is not an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("`{0}` is not a role: expected replica-<id>, edge, admin or etcd")]
    Role(String),
    #[error("`{0}` is not an identity: expected <role>.<cluster>.{DOMAIN}")]
    Name(String),
}

impl Identity {
    pub fn new(cluster: impl Into<String>, role: Role) -> Identity {
        Identity {
            cluster: cluster.into(),
            role,
        }
    }

    /// The DNS name the certificate carries (and its common name): the name
    /// a client expects of a server, and the user name etcd grants roles to.
    pub fn dns_name(&self) -> String {
        format!("{}.{}.{DOMAIN}", self.role, self.cluster)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dns_name())
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    /// Reads a DNS name back: `<role>.<cluster>.seguro`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdentityError::Name(s.to_owned());
        let rest = s
            .strip_suffix(DOMAIN)
            .and_then(|r| r.strip_suffix('.'))
            .ok_or_else(bad)?;
        let (role, cluster) = rest.split_once('.').ok_or_else(bad)?;
        let valid_cluster = !cluster.is_empty()
            && cluster.len() <= 63
            && cluster
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_cluster {
            return Err(bad());
        }
        Ok(Identity {
            cluster: cluster.to_owned(),
            role: role.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for role in [
            Role::Replica(ReplicaId::new(3).unwrap()),
            Role::Edge,
            Role::Admin,
            Role::Etcd,
        ] {
            let id = Identity::new("sampel-palnet", role);
            assert_eq!(id.dns_name().parse::<Identity>().unwrap(), id);
        }
        assert_eq!(
            Identity::new("c", Role::Replica(ReplicaId::new(12).unwrap())).dns_name(),
            "replica-12.c.seguro"
        );
    }

    #[test]
    fn other_names_are_refused() {
        for name in [
            "replica-0.c.seguro",
            "replica-x.c.seguro",
            "boss.c.seguro",
            "edge.c.example",
            "edge.seguro",
            "edge..seguro",
            "edge.C.seguro",
            "edge.a.b.seguro",
        ] {
            assert!(name.parse::<Identity>().is_err(), "{name}");
        }
    }
}
