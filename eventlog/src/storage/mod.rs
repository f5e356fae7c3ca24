//! A node's disk: the Raft log (raft-log chunk files with checksummed
//! records) and which events on it the fence will accept.

mod codec;
mod durable;
pub(crate) mod fsync;
mod log;
#[cfg(test)]
mod suite;

pub(crate) use durable::Tracker;
pub use log::{LogOptions, OpenError};
pub(crate) use log::{LogStore, cut_after_failure};
