//! The ship's event log, kept on a quorum of replicas.
//!
//! Events are numbered from 1 with no gaps ([`EventNum`]); each leadership
//! term has an [`Epoch`] that fences the log against older leaders
//! (docs/SPEC.md §6.2). The gatekeeper releases effects by the
//! [`CommitState`] the log publishes.
//!
//! - [`node`]: one replica's event log node (`seguro eventlog`): Raft
//!   (openraft) over gRPC, storage on raft-log, the fenced state machine.
//! - [`Client`]: what replica agents, the gatekeeper and the CLI use: an
//!   [`Appender`] for the writer, reads, the commit watch, status and
//!   membership.

pub mod auth;
mod client;
mod command;
mod error;
mod fence;
mod machine;
mod metrics;
mod network;
pub mod node;
mod proto;
mod raft;
mod service;
mod sm;
mod storage;
mod types;

pub use client::{AppendFuture, Appender, Client, ClientOptions, Member, NodeStatus, Progress};
pub use error::{AppendError, ClientError, ReadError};
pub use node::{NodeError, NodeOptions};
pub use storage::{LogOptions, OpenError};
pub use types::{CommitState, Epoch, Event, EventNum};
