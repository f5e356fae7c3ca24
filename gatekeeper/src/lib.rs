//! The edge box's effect gatekeeper (docs/SPEC.md §6.4, §7): it forwards
//! only the elected leader's effects, and only once their events are
//! durable. The election it follows and the envelopes it opens are the
//! `leadership` crate's.
//!
//! - [`replay`], [`hold`]: each effect at most once, and only once durable.
//! - [`forward`]: the decision for each envelope; [`daemon`]: the
//!   gatekeeper that receives envelopes and sends effects from the ship's
//!   public address (batched UDP through the `udp` crate, effects from a
//!   raw socket so that nothing is bound to that address); [`stats`]: what
//!   it counts.

pub mod daemon;
pub mod forward;
pub mod hold;
pub mod replay;
pub mod stats;

pub use daemon::{Error, Gatekeeper, Settings};
pub use stats::{DropReason, Stats};
