//! Mesa (the new Ames) packets, recognised by the cookie in bytes 4..8.

use std::vec::Vec;

use crate::classify::MESA_MAX_LEN;
use crate::{Checksum, Mug, ParseError, Version};

/// Header and cookie.
const MESA_HEADER_LEN: usize = 8;

/// The mesa packet type (`u3_mesa_ptag`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MesaKind {
    /// Type 0, reserved: vere reads no body for it.
    Reserved,
    /// A page: a named fragment of data.
    Page,
    /// A peek: a request for a page.
    Peek,
    /// A poke: a name, a payload name and data.
    Poke,
}

/// How the next hop is written at the end of a page (`u3_mesa_hop_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// No next hop.
    None,
    /// A 6-byte lane.
    Short,
    /// One length-prefixed lane.
    Long,
    /// Several length-prefixed lanes.
    Many,
}

/// A mesa packet: its header decoded, its body (names, data, hops) as
/// bytes.
///
/// The header is one little-endian word (`mesa_sift_head`): bits 0–1
/// unused, 2–3 next-hop kind, 4–6 protocol (1), 7–8 packet type, 9–11 hop
/// count, 12–31 checksum; then the cookie word.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mesa {
    /// Packet type.
    pub kind: MesaKind,
    /// How the next hop is written.
    pub next_hop: NextHop,
    /// Hops taken so far (3 bits).
    pub hop_count: u8,
    /// Low 20 bits of the mug of the body.
    pub checksum: Checksum,
    /// Everything after the cookie.
    pub body: Vec<u8>,
}

impl Mesa {
    /// Parses a datagram whose bytes 4..8 are the mesa cookie, with the
    /// checks of `_mesa_hear` and `mesa_sift_pact_from_buf` short of
    /// decoding the body: length, protocol, and the checksum over the whole
    /// body (which is what vere mugs whenever the body decodes with no
    /// trailing bytes). A reserved-type packet has no body, so its checksum
    /// covers nothing and any byte after the cookie is trailing.
    pub(crate) fn sift(bytes: &[u8]) -> Result<Mesa, ParseError> {
        let len = bytes.len();
        if len > MESA_MAX_LEN {
            return Err(ParseError::MesaTooLong { len });
        }
        let word = bytes.first_chunk().copied().map_or(0, u32::from_le_bytes);
        let version = Version::from_bits((word >> 4) as u8);
        if version != Version::MESA {
            return Err(ParseError::MesaVersion {
                found: version.get(),
            });
        }
        let kind = match (word >> 7) & 0b11 {
            0 => MesaKind::Reserved,
            1 => MesaKind::Page,
            2 => MesaKind::Peek,
            _ => MesaKind::Poke,
        };
        let next_hop = match (word >> 2) & 0b11 {
            0 => NextHop::None,
            1 => NextHop::Short,
            2 => NextHop::Long,
            _ => NextHop::Many,
        };
        let body = bytes.get(MESA_HEADER_LEN..).unwrap_or_default();
        let mugged = if kind == MesaKind::Reserved {
            &[]
        } else {
            body
        };
        let checksum = Checksum::from_bits(word >> 12);
        let computed = Mug::of(mugged).checksum();
        if computed != checksum {
            return Err(ParseError::MugMismatch {
                header: checksum,
                computed,
                start: MESA_HEADER_LEN,
                len: MESA_HEADER_LEN + mugged.len(),
            });
        }
        if mugged.len() != body.len() {
            return Err(ParseError::TrailingBytes {
                end: MESA_HEADER_LEN,
                len,
            });
        }
        Ok(Mesa {
            kind,
            next_hop,
            hop_count: ((word >> 9) & 0b111) as u8,
            checksum,
            body: body.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    /// A mesa header as `_mesa_etch_head` writes it.
    fn packet(kind: u32, hop: u32, body: &[u8]) -> Vec<u8> {
        let mug = Mug::of(if kind == 0 { &[] } else { body }).checksum();
        let word = (1 << 2) | (1 << 4) | (kind << 7) | (hop << 9) | (mug.get() << 12);
        let mut out = word.to_le_bytes().to_vec();
        out.extend_from_slice(&[0x00, 0x02, 0xe0, 0x67]);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn header_fields() {
        let mesa = Mesa::sift(&packet(2, 5, b"peek")).unwrap();
        assert_eq!(mesa.kind, MesaKind::Peek);
        assert_eq!(mesa.next_hop, NextHop::Short);
        assert_eq!(mesa.hop_count, 5);
        assert_eq!(mesa.body, b"peek");
    }

    #[test]
    fn checks() {
        let mut bad_mug = packet(3, 0, b"poke");
        bad_mug[8] ^= 1;
        assert!(matches!(
            Mesa::sift(&bad_mug),
            Err(ParseError::MugMismatch { start: 8, .. })
        ));
        assert_eq!(
            Mesa::sift(&packet(0, 0, b"x")),
            Err(ParseError::TrailingBytes { end: 8, len: 9 })
        );
        assert!(Mesa::sift(&packet(0, 0, b"")).is_ok());
        let mut v2 = packet(1, 0, b"page");
        v2[0] ^= 0b11_0000;
        assert_eq!(Mesa::sift(&v2), Err(ParseError::MesaVersion { found: 2 }));
        assert_eq!(
            Mesa::sift(&vec![0; MESA_MAX_LEN + 1]),
            Err(ParseError::MesaTooLong { len: 1473 })
        );
    }
}
