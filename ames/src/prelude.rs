//! The prelude after the header: origin lane, life ticks, sender, receiver.

use core::net::SocketAddrV4;

use crate::{Field, HEADER_LEN, Header, Lane, ParseError, RankedShip, Ship};

/// The low four bits of a ship's life (key revision): all a packet carries,
/// enough to tell a peer's current keys from its previous ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LifeTick(u8);

impl LifeTick {
    /// The tick of `life`, as Hoon's ames computes it (`mod 16`).
    pub const fn of_life(life: u32) -> LifeTick {
        LifeTick((life % 16) as u8)
    }

    /// `tick` if it fits four bits.
    pub const fn new(tick: u8) -> Option<LifeTick> {
        if tick < 16 {
            Some(LifeTick(tick))
        } else {
            None
        }
    }

    /// The 4-bit value.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// What follows the header (`u3_prel`): who is talking to whom, at which
/// life, and, if a relay forwarded the packet, where it first came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prelude {
    /// The sending ship.
    pub sender: RankedShip,
    /// The receiving ship.
    pub receiver: RankedShip,
    /// The sender's life tick.
    pub sender_tick: LifeTick,
    /// The receiver's life tick.
    pub receiver_tick: LifeTick,
    /// The lane the packet came from before a relay forwarded it. Set means
    /// the header's relayed flag is set.
    pub origin: Option<SocketAddrV4>,
}

impl Prelude {
    /// A direct (not relayed) prelude between two ships at their narrowest
    /// ranks, life ticks 0.
    pub const fn new(sender: Ship, receiver: Ship) -> Prelude {
        Prelude {
            sender: RankedShip::new(sender),
            receiver: RankedShip::new(receiver),
            sender_tick: LifeTick(0),
            receiver_tick: LifeTick(0),
            origin: None,
        }
    }

    /// Bytes it takes after the header.
    pub const fn encoded_len(&self) -> usize {
        let origin = if self.origin.is_some() { 6 } else { 0 };
        origin + 1 + self.sender.rank().width() + self.receiver.rank().width()
    }

    /// Reads the prelude `header` announces from `packet` (the whole
    /// datagram, header included), as `_ames_sift_prel` does.
    pub fn sift(header: &Header, packet: &[u8]) -> Result<Prelude, ParseError> {
        let len = packet.len();
        let truncated = |field, start, end| ParseError::Truncated {
            field,
            start,
            end,
            len,
        };
        let mut at = HEADER_LEN;
        let origin = if header.relayed {
            let end = at + header.origin_len();
            let bytes = packet
                .get(at..end)
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or(truncated(Field::Origin, at, end))?;
            at = end;
            Some(Lane::sift_origin(bytes))
        } else {
            None
        };
        let end = HEADER_LEN + header.prelude_len();
        let (ticks, ships) = packet
            .get(at..end)
            .and_then(<[u8]>::split_first)
            .ok_or(truncated(Field::Prelude, at, end))?;
        let (sender, receiver) = ships
            .split_at_checked(header.sender_rank.width())
            .ok_or(truncated(Field::Prelude, at, end))?;
        Ok(Prelude {
            sender: RankedShip::sift(header.sender_rank, sender),
            receiver: RankedShip::sift(header.receiver_rank, receiver),
            sender_tick: LifeTick(ticks & 0xf),
            receiver_tick: LifeTick(ticks >> 4),
            origin,
        })
    }

    /// Appends the prelude as `_ames_etch_prel` writes it, and returns the
    /// offset in `out` where the mugged part (everything after the origin)
    /// starts.
    #[cfg(any(feature = "std", test))]
    pub(crate) fn etch(&self, out: &mut std::vec::Vec<u8>) -> usize {
        if let Some(origin) = self.origin {
            out.extend_from_slice(&Lane::etch_origin(origin));
        }
        let mugged = out.len();
        out.push(self.sender_tick.0 | (self.receiver_tick.0 << 4));
        out.extend(self.sender.etch());
        out.extend(self.receiver.etch());
        mugged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Checksum, Kind, Rank, Version};

    fn header(sender_rank: Rank, receiver_rank: Rank, relayed: bool) -> Header {
        Header {
            kind: Kind::Ames,
            version: Version::AMES,
            sender_rank,
            receiver_rank,
            checksum: Checksum::from_bits(0),
            relayed,
        }
    }

    /// Worked from `_ames_sift_prel`: relayed from 1.2.3.4:5678, ticks
    /// sender 3 / receiver 9 in one byte (`0x93`), sender ~marzod (0x0100,
    /// 2 bytes LE), receiver 0x01020304 (4 bytes LE).
    #[test]
    fn sift_hand_built_prelude() {
        let packet = [
            0, 0, 0, 0, // header (not read here)
            0x04, 0x03, 0x02, 0x01, 0x2e, 0x16, // origin
            0x93, // ticks
            0x00, 0x01, // sender
            0x04, 0x03, 0x02, 0x01, // receiver
        ];
        let prelude = Prelude::sift(&header(Rank::Two, Rank::Four, true), &packet).unwrap();
        assert_eq!(prelude.origin, Some("1.2.3.4:5678".parse().unwrap()));
        assert_eq!(prelude.sender_tick.get(), 3);
        assert_eq!(prelude.receiver_tick.get(), 9);
        assert_eq!(prelude.sender.ship(), Ship::new(0x100));
        assert_eq!(prelude.receiver.ship(), Ship::new(0x0102_0304));
        assert_eq!(prelude.encoded_len(), packet.len() - HEADER_LEN);

        let mut out = std::vec![0; HEADER_LEN];
        assert_eq!(prelude.etch(&mut out), 10);
        assert_eq!(out, packet);
    }

    #[test]
    fn truncation_names_the_field() {
        let relayed = header(Rank::Two, Rank::Two, true);
        assert_eq!(
            Prelude::sift(&relayed, &[0; 9]),
            Err(ParseError::Truncated {
                field: Field::Origin,
                start: 4,
                end: 10,
                len: 9
            })
        );
        assert_eq!(
            Prelude::sift(&relayed, &[0; 14]),
            Err(ParseError::Truncated {
                field: Field::Prelude,
                start: 10,
                end: 15,
                len: 14
            })
        );
    }

    #[test]
    fn life_tick_is_four_bits() {
        assert_eq!(LifeTick::of_life(17).get(), 1);
        assert_eq!(LifeTick::new(16), None);
    }
}
