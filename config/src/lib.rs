//! One TOML file describes a Seguro cluster: the ship's public address, the
//! replicas, and how the edge box, gatekeeper, etcd and event log are set up.
//!
//! [`Config::load`] reads and validates a file, applies command-line
//! [`Overrides`], and reports every problem it finds as a [`Diagnostic`]
//! pointing at `FILE:LINE:COL`. A [`Config`] that loads is internally
//! consistent: every address parses, replica ids and addresses are unique,
//! limits are within range and no secret file serves two replicas or roles.
//! The key and certificate files a host needs ([`KeyCheck`]) are readable;
//! [`Config::load_with`] has a [`CertCheck`] (the `trust` crate's) check
//! each certificate against the CA and the identity it is configured for.

mod check;
mod diag;
mod files;
mod identity;
mod key;
mod load;
mod raw;
mod replicas;
mod sections;
mod types;
mod unknown;

pub use diag::{Diagnostic, Diagnostics, Origin, Severity};
pub use files::{CertCheck, FilesOnly, Unreadable};
pub use identity::{DOMAIN, Identity, IdentityError, Role};
pub use key::{Key, KeyError};
pub use load::{KeyCheck, Overrides};
pub use types::{
    AgentConfig, BatchLimits, CertPair, Config, DEFAULT_BUFFER_BYTES, DEFAULT_MAX_CHECKPOINT_BYTES,
    EtcdConfig, EventlogConfig, GatekeeperConfig, LbConfig, LbMode, MAX_REPLICAS, MIN_LEASE_TTL,
    Optimism, ParseEnumError, ReplicaConfig, ReplicaId, ShipConfig, TcAttach, TlsConfig, node_dir,
};
