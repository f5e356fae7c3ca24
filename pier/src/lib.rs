//! Moving a ship between vere's pier and Seguro: reads a pier's event log
//! (`.urb/log`: a top-level LMDB with META, and epoch directories `0i<N>`
//! each with `epoc.txt`, `vere.txt` and an LMDB of META and EVENTS) and
//! appends it to Seguro's event log through the fenced append path, and
//! writes Seguro's log back out as a `.urb/log` vere loads.
//!
//! Vere's layout as read here is from urbit/vere (`develop` and the
//! vere-v4.5 tag, where pkg/vere/disk.c and pkg/vere/db/lmdb.c are the
//! same); each rule cites the function it comes from. docs/DEPLOY.md
//! ("Moving an existing ship onto Seguro") is the operator's side.

mod error;
pub mod layout;
mod log;
pub mod meta;
mod read;
mod write;

pub use error::PierError;
pub use log::{ExportError, ImportError, Imported, export, import};
pub use meta::{Meta, MetaError, RawMeta};
pub use read::{Epoch, Pier, log_dir};
pub use write::{ExportMeta, write_log};

/// How many bytes an event's value (a 4-byte mug and the jammed event)
/// takes in Seguro's log: the agent's plain frame around the jammed event
/// (replica/src/frame.rs). The mug is a field of its own there.
pub fn framed_len(value: &[u8]) -> usize {
    value.len().saturating_sub(4) + 1
}

/// An event's value split as vere stores it (disk.c `u3_disk_etch`): the
/// mug, little-endian, and the jammed event. `None` for a value vere
/// would not read (4 bytes or fewer: `u3_disk_sift`).
pub fn split(value: &[u8]) -> Option<(u32, &[u8])> {
    if value.len() <= 4 {
        return None;
    }
    let (mug, jam) = value.split_at(4);
    Some((u32::from_le_bytes(mug.try_into().ok()?), jam))
}

/// The value vere stores for an event with `mug` and jammed bytes `jam`.
pub fn join(mug: u32, jam: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(4 + jam.len());
    value.extend_from_slice(&mug.to_le_bytes());
    value.extend_from_slice(jam);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_a_little_endian_mug_then_the_jam() {
        let value = join(0x0403_0201, b"jam");
        assert_eq!(value, [1, 2, 3, 4, b'j', b'a', b'm']);
        assert_eq!(split(&value), Some((0x0403_0201, &b"jam"[..])));
        assert_eq!(split(&[1, 2, 3, 4]), None, "no jammed event");
        assert_eq!(split(&[]), None);
        assert_eq!(framed_len(&value), 4);
    }
}
