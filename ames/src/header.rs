//! The 4-byte header that opens every Ames-family packet.

use crate::{Checksum, Rank};

/// Bytes in the header.
pub const HEADER_LEN: usize = 4;

/// Which body follows the prelude (vere's `u3_ptag`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An Ames packet: opaque, encrypted content for arvo.
    Ames,
    /// A fine (remote scry) request, vere's "wail".
    FineRequest,
    /// A fine (remote scry) response, vere's "purr".
    FineResponse,
}

/// The 3-bit protocol version field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Version(u8);

impl Version {
    /// The only version vere's filter accepts, and the only one it etches.
    pub const AMES: Version = Version(0);
    /// What a mesa header carries in the same bits.
    pub const MESA: Version = Version(1);

    /// Keeps the low three bits of `bits`.
    #[inline(always)]
    pub const fn from_bits(bits: u8) -> Version {
        Version(bits & 0b111)
    }

    /// The 3-bit value.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// A decoded header.
///
/// On the wire it is one little-endian word (`_ames_sift_head`); the flags
/// are loobeans, where a clear bit means yes:
///
/// | bits  | field                                                     |
/// |-------|-----------------------------------------------------------|
/// | 0–1   | reserved                                                  |
/// | 2     | is request (fine only)                                    |
/// | 3     | is Ames (not fine)                                        |
/// | 4–6   | protocol version                                          |
/// | 7–8   | sender rank                                               |
/// | 9–10  | receiver rank                                             |
/// | 11–30 | checksum: low 20 bits of the mug of all after the origin  |
/// | 31    | relayed (an origin lane follows)                          |
///
/// Decoding forgets the two reserved bits and, for Ames packets, the request
/// bit: vere ignores both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Which body follows.
    pub kind: Kind,
    /// Protocol version.
    pub version: Version,
    /// Width of the sender's ship in the prelude.
    pub sender_rank: Rank,
    /// Width of the receiver's ship in the prelude.
    pub receiver_rank: Rank,
    /// Low 20 bits of the mug of everything after the origin lane.
    pub checksum: Checksum,
    /// Whether a 6-byte origin lane follows the header.
    pub relayed: bool,
}

impl Header {
    /// Decodes the header word; every 4-byte value is some header.
    #[inline(always)]
    pub const fn sift(bytes: [u8; HEADER_LEN]) -> Header {
        let word = u32::from_le_bytes(bytes);
        // Loobeans: a clear bit means yes.
        let kind = match ((word >> 3) & 1, (word >> 2) & 1) {
            (0, _) => Kind::Ames,
            (_, 0) => Kind::FineRequest,
            _ => Kind::FineResponse,
        };
        Header {
            kind,
            version: Version::from_bits((word >> 4) as u8),
            sender_rank: Rank::from_bits((word >> 7) as u8),
            receiver_rank: Rank::from_bits((word >> 9) as u8),
            checksum: Checksum::from_bits(word >> 11),
            relayed: word >> 31 == 0,
        }
    }

    /// Encodes the header word as `_ames_etch_head` does (reserved bits and
    /// an Ames packet's request bit are written as 0).
    pub const fn etch(&self) -> [u8; HEADER_LEN] {
        let (not_ames, not_request) = match self.kind {
            Kind::Ames => (0, 0),
            Kind::FineRequest => (1, 0),
            Kind::FineResponse => (1, 1),
        };
        let word = (not_request << 2)
            | (not_ames << 3)
            | ((self.version.0 as u32) << 4)
            | ((self.sender_rank.bits() as u32) << 7)
            | ((self.receiver_rank.bits() as u32) << 9)
            | (self.checksum.get() << 11)
            | ((!self.relayed as u32) << 31);
        word.to_le_bytes()
    }

    /// Bytes of origin lane after the header (`_ames_origin_size`).
    #[inline(always)]
    pub const fn origin_len(&self) -> usize {
        if self.relayed { 6 } else { 0 }
    }

    /// Bytes of prelude after the header, origin included
    /// (`_ames_prel_size`): origin, one byte of life ticks, two ships.
    #[inline(always)]
    pub const fn prelude_len(&self) -> usize {
        self.origin_len() + 1 + self.sender_rank.width() + self.receiver_rank.width()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked from `_ames_etch_head`: an Ames packet, version 0, sender
    /// rank 1 (planet), receiver rank 0, checksum 0xabcde, not relayed:
    /// `(1 << 7) | (0xabcde << 11) | (1 << 31)` = 0xd5e6f080.
    #[test]
    fn etch_matches_hand_computed_word() {
        let header = Header {
            kind: Kind::Ames,
            version: Version::AMES,
            sender_rank: Rank::Four,
            receiver_rank: Rank::Two,
            checksum: Checksum::from_bits(0xabcde),
            relayed: false,
        };
        assert_eq!(header.etch(), [0x80, 0xf0, 0xe6, 0xd5]);
        assert_eq!(Header::sift(header.etch()), header);
    }

    #[test]
    fn loobean_flags() {
        // All-zero word: yes to every loobean.
        let zero = Header::sift([0; 4]);
        assert_eq!(zero.kind, Kind::Ames);
        assert!(zero.relayed);
        assert_eq!(Header::sift([0b1000, 0, 0, 0]).kind, Kind::FineRequest);
        assert_eq!(Header::sift([0b1100, 0, 0, 0]).kind, Kind::FineResponse);
        // An Ames packet ignores the request bit.
        assert_eq!(Header::sift([0b0100, 0, 0, 0]).kind, Kind::Ames);
        assert!(!Header::sift([0, 0, 0, 0x80]).relayed);
    }

    #[test]
    fn prelude_len_counts_origin_ticks_and_ships() {
        let mut header = Header::sift([0, 0, 0, 0x80]);
        assert_eq!(header.prelude_len(), 1 + 2 + 2);
        header.relayed = true;
        header.sender_rank = Rank::Sixteen;
        header.receiver_rank = Rank::Eight;
        assert_eq!(header.prelude_len(), 6 + 1 + 16 + 8);
    }
}
