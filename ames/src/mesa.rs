//! Mesa (the new Ames) packets, recognised by the cookie in bytes 4..8,
//! sifted as vere's `pkg/vere/io/mesa/pact.c` sifts them.

use std::vec::Vec;

use crate::classify::MESA_MAX_LEN;
use crate::{Checksum, Field, Mug, ParseError, Version};

/// Header and cookie.
const MESA_HEADER_LEN: usize = 8;
/// A short next hop: an IPv4 address and a port.
const SHORT_HOP_LEN: usize = 6;
/// `_sift_var_word` reads at most a word.
const MAX_LEN_WIDTH: u8 = 4;

/// The mesa packet type (`u3_mesa_ptag`), as the header's type bits say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MesaKind {
    /// Type 0, `PACT_RESV`: vere reads no body for it, and handles it as a
    /// poke (see [`Mesa::handled_as`]).
    Reserved,
    /// A page: a name, a fragment of data, and maybe a next hop.
    Page,
    /// A peek: a request for a page, by name.
    Peek,
    /// A poke: a name, a payload name and data.
    Poke,
}

/// How the next hop is written at the end of a page (`u3_mesa_hop_type`).
/// Pages may only carry [`NextHop::None`] or [`NextHop::Short`]; peeks and
/// pokes carry no next hop, whatever these bits say.
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

impl NextHop {
    fn from_bits(bits: u32) -> NextHop {
        match bits & 0b11 {
            0 => NextHop::None,
            1 => NextHop::Short,
            2 => NextHop::Long,
            _ => NextHop::Many,
        }
    }
}

/// A mesa packet: its header decoded, its body (names, data, hop) checked
/// and kept as bytes.
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
    /// Which of vere's handlers takes the packet: `_mesa_hear` (io/mesa.c)
    /// sends peeks to `_mesa_hear_peek`, pages to `_mesa_hear_page`, and
    /// everything else, type 0 included, to `_mesa_hear_poke` (its
    /// `default:` branch). Never [`MesaKind::Reserved`].
    pub fn handled_as(&self) -> MesaKind {
        match self.kind {
            MesaKind::Page => MesaKind::Page,
            MesaKind::Peek => MesaKind::Peek,
            MesaKind::Reserved | MesaKind::Poke => MesaKind::Poke,
        }
    }

    /// Parses a datagram whose bytes 4..8 are the mesa cookie with the
    /// checks of `_mesa_hear` and `mesa_sift_pact_from_buf`, in their
    /// order: length, protocol, the body field by field
    /// (`_mesa_sift_pact`), the checksum over the bytes the body took, then
    /// nothing may follow it.
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
        let next_hop = NextHop::from_bits(word >> 2);
        let mut sifter = Sifter {
            bytes,
            at: MESA_HEADER_LEN,
        };
        match kind {
            // `_mesa_sift_pact`'s `default:` reads nothing.
            MesaKind::Reserved => {}
            MesaKind::Page => {
                sifter.name()?;
                sifter.data()?;
                sifter.page_hop(next_hop)?;
            }
            MesaKind::Peek => sifter.name()?,
            MesaKind::Poke => {
                sifter.name()?;
                sifter.name()?;
                sifter.data()?;
            }
        }
        let end = sifter.at;
        let checksum = Checksum::from_bits(word >> 12);
        let computed = Mug::of(&bytes[MESA_HEADER_LEN..end]).checksum();
        if computed != checksum {
            return Err(ParseError::MugMismatch {
                header: checksum,
                computed,
                start: MESA_HEADER_LEN,
                len: end,
            });
        }
        if end != len {
            return Err(ParseError::TrailingBytes { end, len });
        }
        Ok(Mesa {
            kind,
            next_hop,
            hop_count: ((word >> 9) & 0b111) as u8,
            checksum,
            body: bytes[MESA_HEADER_LEN..].to_vec(),
        })
    }
}

/// A cursor over a mesa body, failing where `pact.c`'s `_sift_next` fails
/// ("unexpected eof") with the field it was reading.
struct Sifter<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Sifter<'a> {
    fn take(&mut self, n: usize, field: Field) -> Result<&'a [u8], ParseError> {
        let start = self.at;
        let end = start + n;
        let taken = self.bytes.get(start..end).ok_or(ParseError::Truncated {
            field,
            start,
            end,
            len: self.bytes.len(),
        })?;
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self, field: Field) -> Result<u8, ParseError> {
        self.take(1, field).map(|bytes| bytes[0])
    }

    /// A little-endian number of `width` bytes (at most 8).
    fn uint(&mut self, width: usize, field: Field) -> Result<u64, ParseError> {
        let bytes = self.take(width, field)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0, |n, byte| (n << 8) | u64::from(*byte)))
    }

    /// `_mesa_sift_name`: a meta byte (rank, rift width, init, auth,
    /// fragment-number width, from the low bits up), the ship (`2 << rank`
    /// bytes), rift, bloq, fragment number (absent in an init name), and a
    /// path behind a 2-byte length. The path is not checked: vere does not.
    fn name(&mut self) -> Result<(), ParseError> {
        let at = self.at;
        let meta = self.byte(Field::MesaNameMeta)?;
        let rank = meta & 0b11;
        let rift_width = usize::from((meta >> 2) & 0b11) + 1;
        let init = (meta >> 4) & 1 == 1;
        let auth = (meta >> 5) & 1 == 1;
        let fragment_code = meta >> 6;
        // `_mesa_sift_name` asserts these are clear in an init name, and
        // vere builds without NDEBUG: one such packet would abort the ship.
        if init && (auth || fragment_code != 0) {
            return Err(ParseError::MesaInitName { at });
        }
        self.take(2 << rank, Field::MesaShip)?;
        self.take(rift_width, Field::MesaRift)?;
        self.byte(Field::MesaBloq)?;
        if !init {
            self.take(1 << fragment_code, Field::MesaFragmentNumber)?;
        }
        let path_len = self.uint(2, Field::MesaPathLength)?;
        self.take(path_len as usize, Field::MesaPath)?;
        Ok(())
    }

    /// `_mesa_sift_data`: a meta byte (total width, two auth bits, two
    /// unused, length width), the total, the authenticator (a signature,
    /// an HMAC, nothing, or a pair of hashes), the fragment's length (its
    /// width in the meta byte if under 3, else in a byte of its own, at
    /// most 4) and the fragment.
    fn data(&mut self) -> Result<(), ParseError> {
        let meta = self.byte(Field::MesaDataMeta)?;
        self.take(1 << (meta & 0b11), Field::MesaTotal)?;
        let auth_len = match ((meta >> 2) & 1, (meta >> 3) & 1) {
            (1, 1) => 64,
            (1, _) => 16,
            (_, 1) => 0,
            _ => 64,
        };
        self.take(auth_len, Field::MesaAuth)?;
        let mut width = meta >> 6;
        if width == 3 {
            let at = self.at;
            width = self.byte(Field::MesaLengthWidth)?;
            if width > MAX_LEN_WIDTH {
                return Err(ParseError::MesaLengthWidth { width, at });
            }
        }
        let fragment_len = self.uint(usize::from(width), Field::MesaFragmentLength)?;
        self.take(fragment_len as usize, Field::MesaFragment)?;
        Ok(())
    }

    /// `_mesa_sift_page_pact`: a page ends with no hop or a 6-byte lane;
    /// long and many hops are refused.
    fn page_hop(&mut self, next_hop: NextHop) -> Result<(), ParseError> {
        match next_hop {
            NextHop::None => Ok(()),
            NextHop::Short => self.take(SHORT_HOP_LEN, Field::MesaNextHop).map(drop),
            NextHop::Long | NextHop::Many => Err(ParseError::MesaPageHop {
                many: next_hop == NextHop::Many,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec;

    /// A mesa header as `_mesa_etch_head` writes it.
    fn packet(kind: u32, hop: u32, body: &[u8]) -> Vec<u8> {
        let mug = Mug::of(body).checksum();
        let word = (hop << 2) | (1 << 4) | (kind << 7) | (5 << 9) | (mug.get() << 12);
        let mut out = word.to_le_bytes().to_vec();
        out.extend_from_slice(&[0x00, 0x02, 0xe0, 0x67]);
        out.extend_from_slice(body);
        out
    }

    /// The shortest peek: meta (rank 0, init), ship, rift, bloq, empty
    /// path.
    const PEEK: [u8; 7] = [0b1_0000, 1, 0, 1, 13, 0, 0];

    #[test]
    fn header_fields() {
        let mesa = Mesa::sift(&packet(2, 1, &PEEK)).unwrap();
        assert_eq!(mesa.kind, MesaKind::Peek);
        assert_eq!(mesa.handled_as(), MesaKind::Peek);
        assert_eq!(mesa.next_hop, NextHop::Short);
        assert_eq!(mesa.hop_count, 5);
        assert_eq!(mesa.body, PEEK);
    }

    #[test]
    fn checks() {
        let mut bad_mug = packet(2, 0, &PEEK);
        bad_mug[12] ^= 1;
        assert!(matches!(
            Mesa::sift(&bad_mug),
            Err(ParseError::MugMismatch {
                start: 8,
                len: 15,
                ..
            })
        ));
        assert_eq!(
            Mesa::sift(&packet(0, 0, b"x")),
            Err(ParseError::MugMismatch {
                header: Mug::of(b"x").checksum(),
                computed: Mug::of(b"").checksum(),
                start: 8,
                len: 8
            })
        );
        let reserved = Mesa::sift(&packet(0, 0, b"")).unwrap();
        assert_eq!(reserved.handled_as(), MesaKind::Poke);
        let mut v2 = packet(2, 0, &PEEK);
        v2[0] ^= 0b11_0000;
        assert_eq!(Mesa::sift(&v2), Err(ParseError::MesaVersion { found: 2 }));
        assert_eq!(
            Mesa::sift(&vec![0; MESA_MAX_LEN + 1]),
            Err(ParseError::MesaTooLong { len: 1473 })
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            Mesa::sift(&packet(2, 0, &PEEK[..2])),
            Err(ParseError::Truncated {
                field: Field::MesaShip,
                start: 9,
                end: 11,
                len: 10
            })
        );
        assert_eq!(
            Mesa::sift(&packet(2, 0, &[0b11_0000, 0, 0])),
            Err(ParseError::MesaInitName { at: 8 })
        );
        // Name, then data with no authenticator and an empty fragment.
        let page = [&PEEK[..], &[0b1000, 0]].concat();
        assert!(Mesa::sift(&packet(1, 1, &[&page[..], &[0; 6]].concat())).is_ok());
        let many = Mesa::sift(&packet(1, 3, &page)).unwrap_err();
        assert_eq!(
            many.to_string(),
            "bytes 0..4: the header gives this mesa page a many next hop, \
             but vere takes only none or a 6-byte short one on pages"
        );
        assert_eq!(many.offset(), 0);
    }
}
