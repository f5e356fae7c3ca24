//! The ship's event log, kept on a quorum of replicas.
//!
//! Events are numbered from 1 with no gaps ([`EventNum`]); each leadership
//! term has an [`Epoch`] that fences the log against older leaders. The
//! gatekeeper releases effects by the [`CommitState`] the log publishes.

mod types;

pub use types::{CommitState, Epoch, EventNum};
