//! One TOML file describes a Seguro cluster: the ship's public address, the
//! replicas, and how the edge box, gatekeeper, etcd and event log are set up.
//!
//! [`Config::load`] reads and validates a file, applies command-line
//! [`Overrides`], and reports every problem it finds as a [`Diagnostic`]
//! pointing at `FILE:LINE:COL`. A [`Config`] that loads is internally
//! consistent: every address parses, replica ids and addresses are unique and
//! limits are within range.

mod check;
mod diag;
mod identity;
mod key;
mod load;
mod raw;
mod replicas;
mod sections;
mod types;
mod unknown;

pub use diag::{Diagnostic, Diagnostics, Origin, Severity};
pub use identity::{DOMAIN, Identity, IdentityError, Role};
pub use key::{Key, KeyError};
pub use load::{KeyCheck, Overrides};
pub use types::{
    AgentConfig, BatchLimits, Config, EtcdConfig, EventlogConfig, GatekeeperConfig, LbConfig,
    LbMode, MAX_REPLICAS, MIN_LEASE_TTL, Optimism, ParseEnumError, ReplicaConfig, ReplicaId,
    ShipConfig, TcAttach, node_dir,
};
