//! Ship identities and the rank (byte width) a packet spells them in.

use core::fmt;

/// An Urbit ship: a galaxy, star, planet, moon or comet, up to 128 bits.
///
/// [`Display`](fmt::Display) spells it as `@p` (`~zod`, `~sampel-palnet`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ship(u128);

impl Ship {
    /// The ship numbered `n`.
    pub const fn new(n: u128) -> Ship {
        Ship(n)
    }

    /// The ship's number.
    pub const fn get(self) -> u128 {
        self.0
    }

    /// Bytes needed to write the number (`met 3` in Hoon).
    const fn byte_len(self) -> u32 {
        (u128::BITS - self.0.leading_zeros()).div_ceil(8)
    }
}

impl From<u128> for Ship {
    fn from(n: u128) -> Ship {
        Ship(n)
    }
}

impl From<u64> for Ship {
    fn from(n: u64) -> Ship {
        Ship(n.into())
    }
}

impl From<u32> for Ship {
    fn from(n: u32) -> Ship {
        Ship(n.into())
    }
}

impl fmt::Display for Ship {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::patp::write(f, self.0)
    }
}

/// How many bytes a packet spends on a ship: the header's 2-bit rank code
/// `n` means `2 << n` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Rank {
    /// 2 bytes: galaxies and stars.
    Two = 0,
    /// 4 bytes: planets.
    Four = 1,
    /// 8 bytes: moons.
    Eight = 2,
    /// 16 bytes: comets.
    Sixteen = 3,
}

impl Rank {
    /// All ranks, narrowest first.
    pub const ALL: [Rank; 4] = [Rank::Two, Rank::Four, Rank::Eight, Rank::Sixteen];

    /// The rank whose code is the low two bits of `bits`.
    #[inline(always)]
    pub const fn from_bits(bits: u8) -> Rank {
        match bits & 0b11 {
            0 => Rank::Two,
            1 => Rank::Four,
            2 => Rank::Eight,
            _ => Rank::Sixteen,
        }
    }

    /// The 2-bit code the header carries.
    pub const fn bits(self) -> u8 {
        self as u8
    }

    /// Bytes a ship of this rank takes on the wire.
    #[inline(always)]
    pub const fn width(self) -> usize {
        2 << self as u8
    }

    /// The narrowest rank that holds `ship`, as Hoon's ames picks it.
    pub const fn of(ship: Ship) -> Rank {
        match ship.byte_len() {
            0..=2 => Rank::Two,
            3..=4 => Rank::Four,
            5..=8 => Rank::Eight,
            _ => Rank::Sixteen,
        }
    }

    /// Whether `ship` fits in this rank's width.
    pub const fn holds(self, ship: Ship) -> bool {
        ship.byte_len() as usize <= self.width()
    }
}

/// A ship together with the rank it is written in.
///
/// Packets may spell a ship wider than it needs (a galaxy in 16 bytes), and
/// re-emitting must keep that width, so the rank travels with the ship. The
/// ship always fits its rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RankedShip {
    ship: Ship,
    rank: Rank,
}

impl RankedShip {
    /// `ship` at its narrowest rank.
    pub const fn new(ship: Ship) -> RankedShip {
        RankedShip {
            ship,
            rank: Rank::of(ship),
        }
    }

    /// `ship` at `rank`, or `None` if it does not fit.
    pub const fn with_rank(ship: Ship, rank: Rank) -> Option<RankedShip> {
        if rank.holds(ship) {
            Some(RankedShip { ship, rank })
        } else {
            None
        }
    }

    /// The ship.
    pub const fn ship(self) -> Ship {
        self.ship
    }

    /// The rank it is written in.
    pub const fn rank(self) -> Rank {
        self.rank
    }

    /// Reads a ship of `rank` from `bytes` (exactly `rank.width()` long),
    /// little-endian as `_ames_ship_to_chubs` does.
    pub(crate) fn sift(rank: Rank, bytes: &[u8]) -> RankedShip {
        let mut le = [0u8; 16];
        for (dst, src) in le.iter_mut().zip(bytes) {
            *dst = *src;
        }
        RankedShip {
            ship: Ship(u128::from_le_bytes(le)),
            rank,
        }
    }

    /// The `rank.width()` little-endian bytes `_ames_ship_of_chubs` writes.
    #[cfg(any(feature = "std", test))]
    pub(crate) fn etch(self) -> impl Iterator<Item = u8> {
        self.ship
            .0
            .to_le_bytes()
            .into_iter()
            .take(self.rank.width())
    }
}

impl From<Ship> for RankedShip {
    fn from(ship: Ship) -> RankedShip {
        RankedShip::new(ship)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowest_rank_follows_byte_length() {
        assert_eq!(Rank::of(Ship::new(0)), Rank::Two);
        assert_eq!(Rank::of(Ship::new(0xffff)), Rank::Two);
        assert_eq!(Rank::of(Ship::new(0x1_0000)), Rank::Four);
        assert_eq!(Rank::of(Ship::new(0xffff_ffff)), Rank::Four);
        assert_eq!(Rank::of(Ship::new(0x1_0000_0000)), Rank::Eight);
        assert_eq!(Rank::of(Ship::new(u64::MAX.into())), Rank::Eight);
        assert_eq!(Rank::of(Ship::new(1 << 64)), Rank::Sixteen);
        assert_eq!(Rank::of(Ship::new(u128::MAX)), Rank::Sixteen);
    }

    #[test]
    fn widths_and_codes() {
        for (code, rank) in Rank::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(rank.bits()), code);
            assert_eq!(Rank::from_bits(rank.bits()), rank);
            assert_eq!(rank.width(), 2 << code);
        }
    }

    #[test]
    fn ranked_ship_refuses_overflow() {
        assert!(RankedShip::with_rank(Ship::new(0x1_0000), Rank::Two).is_none());
        let wide = RankedShip::with_rank(Ship::new(1), Rank::Sixteen);
        assert_eq!(wide.map(RankedShip::rank), Some(Rank::Sixteen));
    }
}
