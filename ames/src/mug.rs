//! The mug (vere's `u3r_mug_bytes`) and the 20-bit checksum headers carry.

use core::fmt;

/// vere's `u3r_mug_bytes`: MurmurHash3_x86_32 folded to 31 bits and never
/// zero.
///
/// The bytes are hashed as given, trailing zeros included: unlike `u3r_mug`
/// on an atom, nothing is trimmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mug(u32);

impl Mug {
    const SEED: u32 = 0xcafe_babe;
    /// Seeds tried before giving up; a zero fold is 1 in 2^31 per seed.
    const TRIES: u32 = 8;
    /// What vere returns when every seed folds to zero.
    const FALLBACK: u32 = 0x7fff;

    /// The mug of `bytes`.
    pub fn of(bytes: &[u8]) -> Mug {
        let mut seed = Self::SEED;
        for _ in 0..Self::TRIES {
            let hash = mur3::murmurhash3_x86_32(bytes, seed);
            let folded = (hash >> 31) ^ (hash & 0x7fff_ffff);
            if folded != 0 {
                return Mug(folded);
            }
            seed = seed.wrapping_add(1);
        }
        Mug(Self::FALLBACK)
    }

    /// A mug read back from storage: `None` unless it is a value [`Mug::of`]
    /// can return (31 bits, never zero).
    pub const fn from_stored(value: u32) -> Option<Mug> {
        if value == 0 || value > 0x7fff_ffff {
            None
        } else {
            Some(Mug(value))
        }
    }

    /// The 31-bit value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The low 20 bits, as an Ames or mesa header carries them.
    pub const fn checksum(self) -> Checksum {
        Checksum::from_bits(self.0)
    }
}

impl fmt::Display for Mug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// The low 20 bits of a body's [`Mug`], carried in the packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Checksum(u32);

impl Checksum {
    /// Mask of the bits a header has room for.
    pub const MASK: u32 = 0xf_ffff;

    /// Keeps the low 20 bits of `bits`, as vere does when it etches.
    pub const fn from_bits(bits: u32) -> Checksum {
        Checksum(bits & Self::MASK)
    }

    /// The 20-bit value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // vere logs checksums as 0x%05x.
        write!(f, "{:#07x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    /// pkg/noun/retrieve_tests.c, `_test_mug`.
    #[test]
    fn upstream_vectors() {
        assert_eq!(Mug::of(b"").get(), 0x79ff_04e8);
        assert_eq!(Mug::of(&[0x01]).get(), 0x715c_2a60);
        assert_eq!(Mug::of(&[0x02]).get(), 0x718b_9468);
        assert_eq!(Mug::of(b"Hello, world!").get(), 0x4d44_1035);
        assert_eq!(Mug::of(&[b'x'; 28]).get(), 0x64df_da5c);
    }

    /// retrieve_tests.c case (i): `(lsh 3 (mix (bex 212) 'abc..z'))`, whose
    /// leading zero byte `u3r_mug_bytes` must hash rather than skip.
    #[test]
    fn upstream_vector_with_zero_byte() {
        let mut bytes = [0u8; 28];
        bytes[1..27].copy_from_slice(b"abcdefjhijklmnopqrstuvwxyz");
        bytes[27] = 0x10;
        assert_eq!(Mug::of(&bytes).get(), 0x34d0_8717);
    }

    #[test]
    fn checksum_keeps_twenty_bits() {
        assert_eq!(Mug::of(b"").checksum().get(), 0xf_04e8);
        assert_eq!(Checksum::from_bits(u32::MAX).get(), 0xf_ffff);
        assert_eq!(Checksum::from_bits(0xf04e8).to_string(), "0xf04e8");
        assert_eq!(Checksum::from_bits(0x42).to_string(), "0x00042");
    }
}
