//! The ship's event log, kept on a quorum of replicas: one replica's event
//! log node (`seguro eventlog`), Raft (openraft) over gRPC, storage on
//! raft-log, the fenced state machine.
//!
//! - [`node`]: runs a node.
//! - The client ([`Client`], its [`Appender`], the commit watch, status and
//!   admin calls), the wire protocol and the log's types
//!   ([`EventNum`], [`Epoch`], [`CommitState`], [`Event`]) are
//!   `seguro-eventlog-client`'s, re-exported here; a crate that only talks
//!   to the log depends on that one alone.

mod app;
mod authz;
mod command;
mod fence;
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod machine;
mod metrics;
mod network;
pub mod node;
mod raft;
mod service;
mod sm;
mod storage;

use eventlog_client::{proto, types};

pub use authz::{Epochs, EtcdEpochs};
pub use eventlog_client::{
    AppendError, AppendFuture, Appender, Client, ClientError, ClientOptions, CommitState, Epoch,
    Event, EventNum, LogIndex, Member, NodeStatus, Progress, ReadError, Role,
};
pub use node::{NodeError, NodeOptions};
pub use storage::{LogOptions, OpenError};
