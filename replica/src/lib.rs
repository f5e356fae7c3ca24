//! The replica agent: the part of Seguro that runs beside each ship.
//!
//! As leader it turns inbound packets into events, has the ship compute
//! them, appends them to the event log and sends the effects to the
//! gatekeeper; as follower it applies committed events and checks that its
//! ship computes the same state; on promotion it sequences the packets the
//! old leader heard but never committed.

mod buffer;
mod event;
mod reference;
mod ship;

pub use buffer::{PacketBuffer, PacketId};
pub use event::{EventDecodeError, PacketEvent};
pub use reference::{ReferenceShip, Variant};
pub use ship::{Applied, Effect, Ship, ShipError};
