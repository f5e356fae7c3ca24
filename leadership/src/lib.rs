//! Who may speak for the ship, and how (docs/SPEC.md §3, §6, §7): what the
//! event log, the replicas, the gatekeeper and `seguro status` share.
//!
//! - [`EventNum`], [`Epoch`], [`CommitState`]: a position in the ship's log,
//!   a leadership term, and how far the log is durable.
//! - [`election`]: campaigning for, observing and resigning leadership in
//!   etcd; replicas campaign with it, the gatekeeper observes it and holds
//!   its own key with it.
//! - [`envelope`]: the authenticated datagram a replica sends for each
//!   effect ([`Sealer`] on the replica; on the gatekeeper
//!   [`envelope::Header::parse`], then the MAC, or both at once with
//!   [`envelope::open`]).
//! - [`access`]: etcd's users and roles for a cluster, each identity allowed
//!   only its own keys.

pub mod access;
mod budget;
pub mod election;
pub mod envelope;
mod types;

pub use budget::StatelessBudget;
pub use election::{Election, ElectionError, LeaderView, Leadership, LossReason, Term};
pub use envelope::{Envelope, Keyring, Sealer};
pub use types::{CommitState, Epoch, EventNum};
