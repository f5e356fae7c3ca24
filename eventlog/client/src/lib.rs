//! The client of Seguro's event log, for everything that only talks to the
//! log: replica agents, the gatekeeper's wiring and the CLI. It holds the
//! wire protocol (both sides of it: the nodes in `seguro-eventlog` serve
//! it), the types the log is made of, and [`Client`].
//!
//! Events are numbered from 1 with no gaps ([`EventNum`]); each leadership
//! term has an [`Epoch`] that fences the log against older leaders
//! (docs/SPEC.md §6.2). The gatekeeper releases effects by the
//! [`CommitState`] the log publishes.

mod admin;
mod appender;
mod backoff;
mod channels;
mod client;
mod error;
mod index;
mod leader;
pub mod limits;
pub mod proto;
mod read;
mod status;
mod timer;
pub mod types;
mod watch;

pub use appender::{AppendFuture, Appender};
pub use backoff::Backoff;
pub use channels::{BadAddress, Channels};
pub use client::{Client, ClientOptions};
pub use error::{AppendError, ClientError, ReadError};
pub use index::LogIndex;
pub use limits::MessageLimits;
pub use status::{Member, NodeStatus, Progress, Role};
pub use types::{CommitState, Epoch, Event, EventNum};
