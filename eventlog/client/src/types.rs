//! An event as the log gives it back; positions, terms and the commit state
//! are the `leadership` crate's, re-exported here.

use bytes::Bytes;

pub use leadership::{CommitState, Epoch, EventNum};

/// One event of the ship's log, as it is read back: vere's event log keeps
/// the same two things per event (the mug of the state after it and the
/// jammed event), and Seguro adds the epoch of the leader that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub num: EventNum,
    pub epoch: Epoch,
    /// The mug of the ship's state after this event.
    pub mug: u32,
    /// The jammed event.
    pub data: Bytes,
}
