//! vere's META table: the pier's identity and log version, as vere writes
//! and reads them (pkg/vere/disk.c: `_disk_save_meta`, `u3_disk_read_meta`).

use std::collections::BTreeMap;
use std::fmt;

/// The log version vere's epoch system writes (pkg/noun/version.h:
/// `U3D_VERLAT` = `U3D_VER3`); `u3_disk_load` refuses a newer one and
/// migrates an older one, which Seguro does not do.
pub const LOG_VERSION: u32 = 3;

/// META's entries exactly as stored: key bytes to value bytes.
pub type RawMeta = BTreeMap<Vec<u8>, Vec<u8>>;

/// What META says, parsed by vere's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub version: u32,
    /// The ship's address (`@p` as a 128-bit atom).
    pub who: u128,
    /// A fake ship (`-F`): no networking keys, no real peers.
    pub fake: bool,
    /// How many boot events (the pill's formulas) the log begins with.
    pub life: u32,
}

/// A META value vere would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("META has no `{0}`")]
    Missing(&'static str),
    #[error("META `{key}` is {len} bytes, more than the {max} vere reads")]
    TooLong {
        key: &'static str,
        len: usize,
        max: usize,
    },
    #[error("META `fake` is not a loobean: {0:?}")]
    Fake(Vec<u8>),
    #[error("META `life` is {0}, not a direct atom (below 2^31)")]
    Life(u32),
}

impl Meta {
    /// Parses META's entries. Stricter than vere only where vere reads a
    /// value it then misreads: a `who` or `life` longer than its field
    /// (vere warns "strange identity" and truncates) is refused.
    pub fn parse(raw: &RawMeta) -> Result<Meta, MetaError> {
        let get = |key: &'static str, max: usize| -> Result<&[u8], MetaError> {
            let value = raw.get(key.as_bytes()).ok_or(MetaError::Missing(key))?;
            if value.len() > max {
                return Err(MetaError::TooLong {
                    key,
                    len: value.len(),
                    max,
                });
            }
            Ok(value)
        };
        let version = le(get("version", 4)?) as u32;
        let who = le(get("who", 16)?);
        // c3_o, a loobean: c3y (0, yes) is stripped to no bytes; c3n is 1.
        // disk.c `u3_disk_read_meta` accepts one byte whose high bits are
        // clear, or an empty value.
        let fake = match get("fake", 1)? {
            [] | [0] => true,
            [1] => false,
            other => return Err(MetaError::Fake(other.to_vec())),
        };
        let life = le(get("life", 4)?) as u32;
        // u3a_is_cat: a direct atom is below 2^31.
        if life >> 31 != 0 {
            return Err(MetaError::Life(life));
        }
        Ok(Meta {
            version,
            who,
            fake,
            life,
        })
    }

    /// The entries vere writes for this META (`u3_disk_save_meta`: each
    /// field little-endian at its C width, trailing zero bytes stripped).
    pub fn encode(&self) -> RawMeta {
        let fake: u8 = if self.fake { 0 } else { 1 };
        [
            ("version", strip(&self.version.to_le_bytes())),
            ("who", strip(&self.who.to_le_bytes())),
            ("fake", strip(&[fake])),
            ("life", strip(&self.life.to_le_bytes())),
        ]
        .into_iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v))
        .collect()
    }
}

impl fmt::Display for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "version {}, who 0x{:x}, {}, life {}",
            self.version,
            self.who,
            if self.fake { "fake" } else { "real" },
            self.life
        )
    }
}

/// A little-endian number of at most 16 bytes.
fn le(bytes: &[u8]) -> u128 {
    bytes
        .iter()
        .rev()
        .fold(0u128, |acc, &b| (acc << 8) | u128::from(b))
}

/// `bytes` without its trailing zero bytes (`_disk_save_meta`).
fn strip(bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes[..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(entries: &[(&str, &[u8])]) -> RawMeta {
        entries
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec()))
            .collect()
    }

    #[test]
    fn encodes_as_vere_saves_it() {
        let meta = Meta {
            version: 3,
            who: 0x1_0000,
            fake: false,
            life: 5,
        };
        let raw = meta.encode();
        assert_eq!(raw[&b"version".to_vec()], vec![3]);
        assert_eq!(raw[&b"who".to_vec()], vec![0, 0, 1]);
        assert_eq!(raw[&b"fake".to_vec()], vec![1], "c3n: a real ship");
        assert_eq!(raw[&b"life".to_vec()], vec![5]);
        assert_eq!(Meta::parse(&raw), Ok(meta));
    }

    #[test]
    fn a_fake_ship_and_galaxy_zero_strip_to_nothing() {
        let meta = Meta {
            version: 3,
            who: 0,
            fake: true,
            life: 1,
        };
        let raw = meta.encode();
        assert_eq!(raw[&b"who".to_vec()], Vec::<u8>::new());
        assert_eq!(raw[&b"fake".to_vec()], Vec::<u8>::new(), "c3y is 0");
        assert_eq!(Meta::parse(&raw), Ok(meta));
    }

    #[test]
    fn a_full_width_identity_reads_back() {
        let who = u128::MAX - 7;
        let meta = Meta {
            version: 3,
            who,
            fake: false,
            life: 0x7fff_ffff,
        };
        assert_eq!(Meta::parse(&meta.encode()).unwrap().who, who);
    }

    #[test]
    fn refuses_what_vere_refuses_or_misreads() {
        let ok: &[(&str, &[u8])] = &[
            ("version", &[3]),
            ("who", &[1]),
            ("fake", &[1]),
            ("life", &[1]),
        ];
        assert!(Meta::parse(&raw(ok)).is_ok());
        for key in ["version", "who", "fake", "life"] {
            let without: Vec<_> = ok.iter().copied().filter(|(k, _)| *k != key).collect();
            assert_eq!(
                Meta::parse(&raw(&without)),
                Err(MetaError::Missing(match key {
                    "version" => "version",
                    "who" => "who",
                    "fake" => "fake",
                    _ => "life",
                }))
            );
        }
        let bad_fake: &[(&str, &[u8])] = &[
            ("version", &[3]),
            ("who", &[1]),
            ("fake", &[2]),
            ("life", &[1]),
        ];
        assert_eq!(Meta::parse(&raw(bad_fake)), Err(MetaError::Fake(vec![2])));
        let long_who = [1u8; 17];
        let bad_who: &[(&str, &[u8])] = &[
            ("version", &[3]),
            ("who", &long_who),
            ("fake", &[1]),
            ("life", &[1]),
        ];
        assert!(matches!(
            Meta::parse(&raw(bad_who)),
            Err(MetaError::TooLong { key: "who", .. })
        ));
        let big_life: &[(&str, &[u8])] = &[
            ("version", &[3]),
            ("who", &[1]),
            ("fake", &[1]),
            ("life", &[0, 0, 0, 0x80]),
        ];
        assert_eq!(
            Meta::parse(&raw(big_life)),
            Err(MetaError::Life(0x8000_0000))
        );
    }
}
