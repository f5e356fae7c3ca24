//! What the agent writes as an event's data in the log: the runtime's own
//! bytes (vere's jammed event, the reference ship's packet event), and, for
//! an event made from an inbound packet, that packet's identity, so that
//! followers can drop it from their buffers without reading the runtime's
//! format (docs/SPEC.md §4.4).

use bytes::{BufMut, Bytes, BytesMut};

use crate::buffer::PacketId;

const PLAIN: u8 = 0;
const FROM_PACKET: u8 = 1;

/// Frames `data` for the log.
pub fn encode(data: &[u8], packet: Option<PacketId>) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + PacketId::LEN + data.len());
    match packet {
        None => out.put_u8(PLAIN),
        Some(id) => {
            out.put_u8(FROM_PACKET);
            out.put_slice(id.as_bytes());
        }
    }
    out.put_slice(data);
    out.freeze()
}

/// The packet an event came from, if any, and the runtime's bytes; `None`
/// for data no agent wrote.
pub fn decode(framed: &Bytes) -> Option<(Option<PacketId>, Bytes)> {
    match *framed.first()? {
        PLAIN => Some((None, framed.slice(1..))),
        FROM_PACKET => {
            let id = framed.get(1..1 + PacketId::LEN)?;
            let id = PacketId::from_bytes(id.try_into().ok()?);
            Some((Some(id), framed.slice(1 + PacketId::LEN..)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_it_did_not_write() {
        let id = PacketId::of("192.0.2.1:1".parse().unwrap(), b"p");
        assert_eq!(
            decode(&encode(b"jam", Some(id))),
            Some((Some(id), Bytes::from_static(b"jam")))
        );
        assert_eq!(decode(&encode(b"", None)), Some((None, Bytes::new())));
        assert_eq!(
            decode(&Bytes::from_static(&[1, 2, 3])),
            None,
            "cut-short id"
        );
        assert_eq!(decode(&Bytes::from_static(&[9])), None);
        assert_eq!(decode(&Bytes::new()), None);
    }
}
