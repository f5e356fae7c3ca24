//! What the agent writes as an event's data in the log: the runtime's own
//! bytes (vere's jammed event, the reference ship's packet event), and, for
//! an event made from an inbound packet, that packet's identity, so that
//! followers can drop it from their buffers without reading the runtime's
//! format (docs/SPEC.md §4.4); and the packets the runtime said it will
//! never make events of (its queue was full), for the same reason.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::buffer::PacketId;

const PLAIN: u8 = 0;
const FROM_PACKET: u8 = 1;
/// Followed by a flag (0 or 1) and the packet's id if 1, then a 16-bit
/// count of dropped packets' ids and the ids.
const WITH_DROPS: u8 = 2;

/// An event's data as the log holds it, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    /// The packet the event was made from.
    pub packet: Option<PacketId>,
    /// Packets the leader's runtime dropped before this event.
    pub dropped: Vec<PacketId>,
    /// The runtime's bytes.
    pub data: Bytes,
}

/// Frames `data` for the log. At most `u16::MAX` drops are written.
pub fn encode(data: &[u8], packet: Option<PacketId>, dropped: &[PacketId]) -> Bytes {
    let dropped = &dropped[..dropped.len().min(usize::from(u16::MAX))];
    let mut out = BytesMut::with_capacity(4 + PacketId::LEN * (1 + dropped.len()) + data.len());
    match (packet, dropped.is_empty()) {
        (None, true) => out.put_u8(PLAIN),
        (Some(id), true) => {
            out.put_u8(FROM_PACKET);
            out.put_slice(id.as_bytes());
        }
        (packet, false) => {
            out.put_u8(WITH_DROPS);
            match packet {
                None => out.put_u8(0),
                Some(id) => {
                    out.put_u8(1);
                    out.put_slice(id.as_bytes());
                }
            }
            out.put_u16(dropped.len() as u16);
            for id in dropped {
                out.put_slice(id.as_bytes());
            }
        }
    }
    out.put_slice(data);
    out.freeze()
}

/// Takes `framed` apart; `None` for data no agent wrote.
pub fn decode(framed: &Bytes) -> Option<Framed> {
    let mut rest = framed.clone();
    let id = |rest: &mut Bytes| -> Option<PacketId> {
        let bytes: [u8; PacketId::LEN] = rest.get(..PacketId::LEN)?.try_into().ok()?;
        rest.advance(PacketId::LEN);
        Some(PacketId::from_bytes(bytes))
    };
    let tag = *rest.first()?;
    rest.advance(1);
    let (packet, dropped) = match tag {
        PLAIN => (None, Vec::new()),
        FROM_PACKET => (Some(id(&mut rest)?), Vec::new()),
        WITH_DROPS => {
            let packet = match *rest.first()? {
                0 => {
                    rest.advance(1);
                    None
                }
                1 => {
                    rest.advance(1);
                    Some(id(&mut rest)?)
                }
                _ => return None,
            };
            if rest.len() < 2 {
                return None;
            }
            let count = usize::from(rest.get_u16());
            // Bounded by the bytes there: a lying count reads nothing.
            if rest.len() < count * PacketId::LEN {
                return None;
            }
            let dropped = (0..count).map(|_| id(&mut rest)).collect::<Option<_>>()?;
            (packet, dropped)
        }
        _ => return None,
    };
    Some(Framed {
        packet,
        dropped,
        data: rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> PacketId {
        PacketId::of("192.0.2.1:1".parse().unwrap(), &[n])
    }

    fn framed(packet: Option<PacketId>, dropped: Vec<PacketId>, data: &'static [u8]) -> Framed {
        Framed {
            packet,
            dropped,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn round_trips_and_refuses_what_it_did_not_write() {
        assert_eq!(
            decode(&encode(b"jam", Some(id(1)), &[])),
            Some(framed(Some(id(1)), vec![], b"jam"))
        );
        assert_eq!(
            decode(&encode(b"", None, &[])),
            Some(framed(None, vec![], b""))
        );
        assert_eq!(
            decode(&Bytes::from_static(&[1, 2, 3])),
            None,
            "cut-short id"
        );
        assert_eq!(decode(&Bytes::from_static(&[9])), None);
        assert_eq!(decode(&Bytes::new()), None);
    }

    #[test]
    fn drops_ride_with_or_without_a_packet() {
        for packet in [None, Some(id(1))] {
            let bytes = encode(b"jam", packet, &[id(2), id(3)]);
            assert_eq!(
                decode(&bytes),
                Some(framed(packet, vec![id(2), id(3)], b"jam"))
            );
        }
        // The old framings are still written when nothing was dropped, so
        // that logs read the same as before.
        assert_eq!(encode(b"x", None, &[])[0], PLAIN);
        assert_eq!(encode(b"x", Some(id(1)), &[])[0], FROM_PACKET);
    }

    #[test]
    fn a_drop_count_past_the_end_is_refused() {
        let mut bytes = encode(b"", None, &[id(2)]).to_vec();
        bytes[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(decode(&Bytes::from(bytes)), None);
        assert_eq!(
            decode(&Bytes::from_static(&[WITH_DROPS, 7])),
            None,
            "bad flag"
        );
        assert_eq!(
            decode(&Bytes::from_static(&[WITH_DROPS, 0, 0])),
            None,
            "half a count"
        );
    }
}
