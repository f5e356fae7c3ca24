//! STUN binding requests and responses, as vere's stun.c accepts them.

use core::net::{Ipv4Addr, SocketAddrV4};

use crate::classify::STUN_COOKIE;
use crate::{Lane, ParseError};

/// The fixed STUN header: type, length, cookie, transaction id.
const STUN_HEADER_LEN: usize = 20;
/// FINGERPRINT attribute type and length.
const FINGERPRINT: [u8; 4] = [0x80, 0x28, 0x00, 0x04];
/// What the FINGERPRINT's CRC-32 is xored with (RFC 8489 §14.7).
const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// XOR-MAPPED-ADDRESS attribute type and length (IPv4).
const XOR_MAPPED_ADDRESS: [u8; 4] = [0x00, 0x20, 0x00, 0x08];

/// A STUN message vere would act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stun {
    /// Request or response.
    pub kind: StunKind,
    /// The transaction id (bytes 8..20).
    pub transaction_id: [u8; 12],
}

/// Which STUN message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StunKind {
    /// A binding request (vere answers with our lane).
    Request,
    /// A binding success response.
    Response {
        /// The XOR-MAPPED-ADDRESS: the lane the responder saw us at, if
        /// the response has one vere can read.
        mapped: Option<Lane>,
    },
}

/// The offset of the first `needle` at or after byte 20, like vere's
/// `memmem(buf + 20, len - 20, ...)`.
fn find_attribute(bytes: &[u8], needle: [u8; 4]) -> Option<usize> {
    let after_header = bytes.get(STUN_HEADER_LEN..)?;
    let offset = after_header
        .windows(needle.len())
        .position(|w| w == needle)?;
    Some(STUN_HEADER_LEN + offset)
}

/// `_stun_has_fingerprint`: the first FINGERPRINT attribute must be the
/// last 8 bytes and hold the CRC-32 of everything before it, xored.
fn check_fingerprint(bytes: &[u8]) -> Result<(), ParseError> {
    let len = bytes.len();
    let at = find_attribute(bytes, FINGERPRINT).ok_or(ParseError::StunNoFingerprint { len })?;
    let value = bytes
        .get(at + 4..)
        .and_then(|value| <[u8; 4]>::try_from(value).ok())
        .ok_or(ParseError::StunFingerprintNotLast { at })?;
    let found = u32::from_be_bytes(value);
    let expected = crc32fast::hash(&bytes[..at]) ^ FINGERPRINT_XOR;
    if found != expected {
        return Err(ParseError::StunFingerprintMismatch {
            at,
            found,
            expected,
        });
    }
    Ok(())
}

/// `u3_stun_find_xor_mapped_address`: the first XOR-MAPPED-ADDRESS, read as
/// IPv4 with port and address xored with the magic cookie.
fn mapped_address(bytes: &[u8]) -> Option<Lane> {
    let at = find_attribute(bytes, XOR_MAPPED_ADDRESS)? + 4;
    let [reserved, family, p0, p1, i0, i1, i2, i3] = *bytes.get(at..)?.first_chunk::<8>()?;
    // vere rejects only when both bytes are off (`&&`, not `||`), so an
    // IPv6 family byte with a zero reserved byte is still read as IPv4.
    if reserved != 0 && family != 1 {
        return None;
    }
    let port = u16::from_be_bytes([p0, p1]) ^ (STUN_COOKIE >> 16) as u16;
    let ip = u32::from_be_bytes([i0, i1, i2, i3]) ^ STUN_COOKIE;
    Some(SocketAddrV4::new(Ipv4Addr::from_bits(ip), port).into())
}

impl Stun {
    /// Parses a datagram [`classify`](crate::classify) calls STUN (type,
    /// cookie and length already match); checks the FINGERPRINT.
    pub(crate) fn sift(bytes: &[u8]) -> Result<Stun, ParseError> {
        check_fingerprint(bytes)?;
        let mut transaction_id = [0u8; 12];
        for (dst, src) in transaction_id.iter_mut().zip(bytes.iter().skip(8)) {
            *dst = *src;
        }
        let kind = match bytes.first() {
            Some(0x01) => StunKind::Response {
                mapped: mapped_address(bytes),
            },
            _ => StunKind::Request,
        };
        Ok(Stun {
            kind,
            transaction_id,
        })
    }
}

impl Stun {
    /// A binding request as `u3_stun_make_request` builds it.
    pub fn binding_request(transaction_id: [u8; 12]) -> std::vec::Vec<u8> {
        let mut out = std::vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        out.extend_from_slice(&transaction_id);
        append_fingerprint(&mut out);
        out
    }

    /// A success response as `u3_stun_make_response` builds it: what vere
    /// answers a request from `lane` with.
    pub fn binding_response(transaction_id: [u8; 12], lane: SocketAddrV4) -> std::vec::Vec<u8> {
        let mut out = std::vec![0x01, 0x01, 0x00, 0x14, 0x21, 0x12, 0xa4, 0x42];
        out.extend_from_slice(&transaction_id);
        out.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
        out.extend_from_slice(&(lane.port() ^ 0x2112).to_be_bytes());
        out.extend_from_slice(&(lane.ip().to_bits() ^ STUN_COOKIE).to_be_bytes());
        append_fingerprint(&mut out);
        out
    }
}

fn append_fingerprint(out: &mut std::vec::Vec<u8>) {
    let crc = crc32fast::hash(out) ^ FINGERPRINT_XOR;
    out.extend_from_slice(&FINGERPRINT);
    out.extend_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec::Vec;

    pub fn request(transaction_id: [u8; 12]) -> Vec<u8> {
        Stun::binding_request(transaction_id)
    }

    pub fn response(transaction_id: [u8; 12], lane: SocketAddrV4) -> Vec<u8> {
        Stun::binding_response(transaction_id, lane)
    }

    #[test]
    fn request_round_trip() {
        let bytes = request([9; 12]);
        assert_eq!(bytes.len(), 28);
        let stun = Stun::sift(&bytes).unwrap();
        assert_eq!(stun.kind, StunKind::Request);
        assert_eq!(stun.transaction_id, [9; 12]);
    }

    #[test]
    fn response_carries_mapped_lane() {
        let lane: SocketAddrV4 = "203.0.113.7:34543".parse().unwrap();
        let bytes = response([1; 12], lane);
        assert_eq!(bytes.len(), 40);
        let stun = Stun::sift(&bytes).unwrap();
        assert_eq!(
            stun.kind,
            StunKind::Response {
                mapped: Some(lane.into())
            }
        );
    }

    #[test]
    fn fingerprint_must_match_and_close_the_message() {
        let mut bytes = request([0; 12]);
        bytes[27] ^= 1;
        assert!(matches!(
            Stun::sift(&bytes),
            Err(ParseError::StunFingerprintMismatch { at: 20, .. })
        ));
        let mut longer = request([0; 12]);
        longer.extend_from_slice(&[0; 4]);
        assert_eq!(
            Stun::sift(&longer),
            Err(ParseError::StunFingerprintNotLast { at: 20 })
        );
        let mut none = request([0; 12]);
        none[20] = 0;
        assert_eq!(
            Stun::sift(&none),
            Err(ParseError::StunNoFingerprint { len: 28 })
        );
    }
}
