//! The edge box's effect gatekeeper, and the leader election it enforces.
//!
//! - [`election`]: campaigning for, observing and resigning leadership in
//!   etcd; replicas campaign with it and the gatekeeper observes it.
//! - [`envelope`]: the authenticated datagram a replica sends for each
//!   effect ([`envelope::Sealer`] on the replica, [`envelope::open`] here).
//! - [`replay`], [`hold`]: at most once, and only once durable.
//! - [`forward`]: the decision for each envelope; [`gatekeeper`]: the
//!   daemon that receives envelopes and sends effects from the ship's
//!   public address; [`io`]: batched UDP.

pub mod envelope;
pub mod hold;
pub mod io;
pub mod replay;
