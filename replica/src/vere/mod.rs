//! The vere-shaped ship in Rust: nouns, `jam`/`cue`, vere's event shapes,
//! and [`VereShip`], the twin of the C runtime in replica/ffi/examples/vere/
//! (same event bytes, same mugs and effects), so the two can share a cluster.

mod event;
mod noun;
mod ship;
#[cfg(test)]
mod text;

pub use event::{Card, boot_event, packet_event, read_event, wake_event};
pub use noun::{CueError, MAX_CUE_BYTES, Noun, Nouns, View};
pub use ship::VereShip;
