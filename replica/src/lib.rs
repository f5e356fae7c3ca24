//! The replica agent: the part of Seguro that runs beside each ship.
//!
//! The [`Agent`] decides who leads (etcd), what is committed (the event
//! log), what followers keep of inbound packets, and where effects go (the
//! gatekeeper). A runtime computes the ship: [`ShipRuntime`] runs a [`Ship`]
//! in-process (the [`ReferenceShip`] for tests and demos, the [`VereShip`]
//! with vere's event shapes); a C runtime such as vere speaks the same
//! [`port`] through the C ABI.
//!
//! The agent reaches the event log, the election and the gatekeeper through
//! [`ports`]: [`Wired`] plugs in the real ones, the agent's tests in-memory
//! doubles.

mod agent;
mod buffer;
mod checkpoint;
mod clock;
mod daemon;
mod event;
pub mod frame;
mod http;
mod inbound;
pub mod metrics;
mod peer;
pub mod port;
mod reference;
mod runtime;
mod ship;
pub mod vere;

pub use agent::{Agent, AgentError, Inbound, Parts, Settings, StepDown, ports};
pub use buffer::{DEFAULT_BUFFER_BYTES, PacketBuffer, PacketId};
pub use checkpoint::{
    Checkpoint, CheckpointDecodeError, CheckpointError, CheckpointStore,
    DEFAULT_MAX_CHECKPOINT_BYTES,
};
pub use daemon::{DaemonError, NOTICE_QUEUE, Wired, run};
pub use event::{EventDecodeError, PacketEvent};
pub use reference::{ReferenceShip, Variant};
pub use runtime::{RuntimeError, ShipRuntime};
pub use ship::{Applied, Effect, Ship, ShipError};
pub use vere::VereShip;
