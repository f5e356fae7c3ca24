//! Fine (remote scry) bodies: requests ("wails") and responses ("purrs").

use core::fmt;
use std::string::String;
use std::vec::Vec;

use crate::classify::{FINE_PATH_MAX, REQUEST_HEAD_LEN};
use crate::{Field, ParseError};

/// A fine response body as `_fine_etch_purr` writes it: fragment (4), path
/// length (2), path, signature (64), fragment count and data. vere reads
/// none of it (`_fine_hear_response`); only [`Packet::parse`] looks for
/// this shape.
///
/// [`Packet::parse`]: crate::Packet::parse
const RESPONSE_HEAD_LEN: usize = 6;
/// The signature in a response.
pub(crate) const SIGNATURE_LEN: usize = 64;

/// A scry path as vere accepts it: `/` then printable ASCII, at most 384
/// bytes (what `;~(pfix fas (most fas ...prn...))` parses).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScryPath(String);

impl ScryPath {
    /// Checks `path`; errors give offsets within it.
    pub fn new(path: &str) -> Result<ScryPath, ParseError> {
        ScryPath::sift(path.as_bytes(), 0)
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks the path found at byte `at` of a packet.
    fn sift(bytes: &[u8], at: usize) -> Result<ScryPath, ParseError> {
        if bytes.len() > FINE_PATH_MAX {
            return Err(ParseError::PathTooLong {
                len: bytes.len(),
                at,
            });
        }
        match bytes.first() {
            None => return Err(ParseError::EmptyPath { at }),
            Some(&byte) if byte != b'/' => return Err(ParseError::BadPath { byte, at }),
            Some(_) => {}
        }
        let printable = |byte: &u8| (b' '..=b'~').contains(byte);
        if let Some((offset, &byte)) = bytes.iter().enumerate().find(|(_, byte)| !printable(byte)) {
            return Err(ParseError::BadPath {
                byte,
                at: at + offset,
            });
        }
        // Printable ASCII, so each byte is one char.
        Ok(ScryPath(bytes.iter().copied().map(char::from).collect()))
    }

    /// The length as etched; at most 384, so it fits.
    fn etched_len(&self) -> u16 {
        self.0.len() as u16
    }
}

impl fmt::Display for ScryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The unsigned request both bodies share (`u3_peep`): which fragment of
/// which path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Peep {
    /// Fragment number, counting from 1.
    pub fragment: u32,
    /// What is being scried.
    pub path: ScryPath,
}

impl Peep {
    /// Appends fragment, path length and path (`_fine_etch_peep`).
    fn etch(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.fragment.to_le_bytes());
        out.extend_from_slice(&self.path.etched_len().to_le_bytes());
        out.extend_from_slice(self.path.as_str().as_bytes());
    }
}

/// The signed fragment in a response (`u3_meow`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Meow {
    /// The host's signature.
    pub signature: [u8; SIGNATURE_LEN],
    /// How many fragments the whole response has.
    pub num_fragments: u32,
    /// This fragment's bytes.
    pub data: Vec<u8>,
}

impl Meow {
    /// Appends signature, fragment count and data (`_fine_etch_meow`):
    /// the count takes 4 bytes before data, or only as many bytes as its
    /// value needs when there is no data.
    fn etch(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.signature);
        let count = self.num_fragments.to_le_bytes();
        if self.data.is_empty() {
            let needed = (u32::BITS - self.num_fragments.leading_zeros()).div_ceil(8);
            out.extend(count.into_iter().take(needed as usize));
        } else {
            out.extend_from_slice(&count);
            out.extend_from_slice(&self.data);
        }
    }

    /// Reads what follows the signature: a count of up to 4 bytes, then
    /// data. Shorter counts only occur without data, so anything past 4
    /// bytes is data. Counts with high zero bytes are accepted (arvo sees
    /// the packet as an atom, where they vanish anyway).
    fn sift_tail(signature: [u8; SIGNATURE_LEN], tail: &[u8]) -> Meow {
        let (count, data) = tail.split_at_checked(4).unwrap_or((tail, &[]));
        let mut le = [0u8; 4];
        for (dst, src) in le.iter_mut().zip(count) {
            *dst = *src;
        }
        Meow {
            signature,
            num_fragments: u32::from_le_bytes(le),
            data: data.to_vec(),
        }
    }
}

/// A fine response (`u3_purr`): the request it answers and the fragment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Purr {
    /// The request answered.
    pub peep: Peep,
    /// The signed fragment.
    pub meow: Meow,
}

/// Bytes `at..at + N` of `packet`, or a truncation error naming `field`.
fn take<const N: usize>(packet: &[u8], at: usize, field: Field) -> Result<[u8; N], ParseError> {
    packet
        .get(at..at + N)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(ParseError::Truncated {
            field,
            start: at,
            end: at + N,
            len: packet.len(),
        })
}

/// The path announced by the 2-byte length at `len_at` (the path follows
/// it), checked for length but not yet for content.
fn path_at(packet: &[u8], len_at: usize, len: u16) -> Result<(&[u8], usize), ParseError> {
    let len = usize::from(len);
    if len > FINE_PATH_MAX {
        return Err(ParseError::PathTooLong { len, at: len_at });
    }
    let start = len_at + 2;
    let end = start + len;
    let bytes = packet.get(start..end).ok_or(ParseError::Truncated {
        field: Field::Path,
        start,
        end,
        len: packet.len(),
    })?;
    Ok((bytes, start))
}

/// Reads a request body at byte `at` in vere's order: tag, fragment, path
/// length, total length (`_fine_sift_wail`), then path syntax
/// (`_fine_scry_path`).
pub(crate) fn sift_request(packet: &[u8], at: usize) -> Result<Peep, ParseError> {
    let [tag, f0, f1, f2, f3, l0, l1] = take::<REQUEST_HEAD_LEN>(packet, at, Field::RequestHead)?;
    if tag != 0 {
        return Err(ParseError::RequestTag { tag, at });
    }
    let (path, path_start) = path_at(packet, at + 5, u16::from_le_bytes([l0, l1]))?;
    let end = path_start + path.len();
    if end != packet.len() {
        return Err(ParseError::TrailingBytes {
            end,
            len: packet.len(),
        });
    }
    Ok(Peep {
        fragment: u32::from_le_bytes([f0, f1, f2, f3]),
        path: ScryPath::sift(path, path_start)?,
    })
}

/// Reads a response body at byte `at`, the inverse of `_fine_etch_purr`.
/// vere itself never reads one (`_fine_hear_response` injects the packet
/// whole), so an error here only means the body has another shape.
pub(crate) fn sift_response(packet: &[u8], at: usize) -> Result<Purr, ParseError> {
    let [f0, f1, f2, f3, l0, l1] = take::<RESPONSE_HEAD_LEN>(packet, at, Field::ResponseHead)?;
    let (path, path_start) = path_at(packet, at + 4, u16::from_le_bytes([l0, l1]))?;
    let path = ScryPath::sift(path, path_start)?;
    let signature_at = path_start + path.0.len();
    let signature = take::<SIGNATURE_LEN>(packet, signature_at, Field::Signature)?;
    let tail = packet
        .get(signature_at + SIGNATURE_LEN..)
        .unwrap_or_default();
    Ok(Purr {
        peep: Peep {
            fragment: u32::from_le_bytes([f0, f1, f2, f3]),
            path,
        },
        meow: Meow::sift_tail(signature, tail),
    })
}

/// Appends a request body: tag 0, then the peep.
pub(crate) fn etch_request(peep: &Peep, out: &mut Vec<u8>) {
    out.push(0);
    peep.etch(out);
}

/// Appends a response body (`_fine_etch_purr`).
pub(crate) fn etch_response(purr: &Purr, out: &mut Vec<u8>) {
    purr.peep.etch(out);
    purr.meow.etch(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn path_rules() {
        assert!(ScryPath::new("/").is_ok());
        assert!(ScryPath::new("//a b/~").is_ok());
        assert_eq!(ScryPath::new(""), Err(ParseError::EmptyPath { at: 0 }));
        assert_eq!(
            ScryPath::new("a/b"),
            Err(ParseError::BadPath { byte: b'a', at: 0 })
        );
        assert_eq!(
            ScryPath::new("/a\tb"),
            Err(ParseError::BadPath { byte: b'\t', at: 2 })
        );
        let long = "/".repeat(385);
        assert_eq!(
            ScryPath::new(&long),
            Err(ParseError::PathTooLong { len: 385, at: 0 })
        );
    }

    /// Worked from `_fine_etch_peep`: fragment 1, path "/x".
    #[test]
    fn request_body_bytes() {
        let peep = Peep {
            fragment: 1,
            path: ScryPath::new("/x").unwrap(),
        };
        let mut out = vec![];
        etch_request(&peep, &mut out);
        assert_eq!(out, [0, 1, 0, 0, 0, 2, 0, b'/', b'x']);
        assert_eq!(sift_request(&out, 0), Ok(peep));
    }

    /// `_fine_etch_meow` writes only as many count bytes as needed when
    /// there is no data, and all four when there is.
    #[test]
    fn meow_count_width() {
        let meow = |num_fragments, data: &[u8]| Meow {
            signature: [7; SIGNATURE_LEN],
            num_fragments,
            data: data.to_vec(),
        };
        for (num, data, count_bytes) in [
            (0, &[][..], 0),
            (0x12, &[][..], 1),
            (0x1234, &[][..], 2),
            (0x0102_0304, &[][..], 4),
            (1, &[9][..], 4),
        ] {
            let mut out = vec![];
            meow(num, data).etch(&mut out);
            assert_eq!(out.len(), SIGNATURE_LEN + count_bytes + data.len());
            let tail = &out[SIGNATURE_LEN..];
            assert_eq!(Meow::sift_tail([7; SIGNATURE_LEN], tail), meow(num, data));
        }
    }

    #[test]
    fn request_errors_in_vere_order() {
        let mut body = vec![5, 1, 0, 0, 0, 2, 0, b'/', b'x'];
        assert_eq!(
            sift_request(&body, 0),
            Err(ParseError::RequestTag { tag: 5, at: 0 })
        );
        body[0] = 0;
        body[5] = 0x81;
        body[6] = 0x01;
        assert_eq!(
            sift_request(&body, 0),
            Err(ParseError::PathTooLong { len: 385, at: 5 })
        );
        body[5] = 1;
        body[6] = 0;
        assert_eq!(
            sift_request(&body, 0),
            Err(ParseError::TrailingBytes { end: 8, len: 9 })
        );
    }
}
