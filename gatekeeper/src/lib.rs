//! The edge box's effect gatekeeper, and the leader election it enforces.
//!
//! - [`election`]: campaigning for, observing and resigning leadership in
//!   etcd; replicas campaign with it and the gatekeeper observes it.
//! - [`envelope`]: the authenticated datagram a replica sends for each
//!   effect ([`envelope::Sealer`] on the replica, [`envelope::open`] here).
//! - [`replay`], [`hold`]: each effect at most once, and only once durable.
//! - [`forward`]: the decision for each envelope; [`daemon`]: the
//!   gatekeeper that receives envelopes and sends effects from the ship's
//!   public address (batched UDP through the `udp` crate, effects from a
//!   raw socket so that nothing is bound to that address); [`stats`]: what
//!   it counts.

pub mod daemon;
pub mod election;
pub mod envelope;
pub mod forward;
pub mod hold;
pub mod replay;
pub mod stats;

pub use daemon::{Error, Gatekeeper, Settings};
pub use election::{Election, LeaderView, Leadership, Term};
pub use envelope::{Envelope, Keyring, Sealer};
pub use stats::{DropReason, Stats};
