//! The cheap classifier the edge box's eBPF program runs on every datagram.

use crate::{HEADER_LEN, Header, Kind, Version};

/// How many leading bytes of the UDP payload [`classify`] looks at.
///
/// Eight is enough because everything it decides from is at a fixed place
/// in the first eight bytes: the Ames header word (bytes 0..4), the mesa
/// cookie (bytes 4..8), and the STUN message type (0..2) and magic cookie
/// (4..8). Everything after depends on the ranks and flags, so it sits at
/// variable offsets and is only length-checked.
pub const PREFIX_LEN: usize = 8;

/// `MESA_COOKIE` in vere's mesa.h, a little-endian word at bytes 4..8.
pub(crate) const MESA_COOKIE: u32 = 0x67e0_0200;
/// `PACT_SIZE` in vere's mesa.h: longer mesa packets are dropped.
pub(crate) const MESA_MAX_LEN: usize = 1472;
/// The STUN magic cookie, big-endian at bytes 4..8 (RFC 8489).
pub(crate) const STUN_COOKIE: u32 = 0x2112_a442;
/// STUN binding request: vere wants at least header and FINGERPRINT.
const STUN_REQUEST: u16 = 0x0001;
const STUN_REQUEST_MIN_LEN: usize = 28;
/// STUN binding success response: vere only takes its own 40-byte form.
const STUN_RESPONSE: u16 = 0x0101;
const STUN_RESPONSE_LEN: usize = 40;
/// `FINE_PATH_MAX` in vere's ames.c.
pub(crate) const FINE_PATH_MAX: usize = 384;
/// A fine request body: tag (1), fragment (4), path length (2), path.
pub(crate) const REQUEST_HEAD_LEN: usize = 7;
/// The shortest scry path vere's path parser takes: `/`.
const MIN_PATH_LEN: usize = 1;

/// What a datagram is, as far as its first bytes and length tell.
///
/// `#[repr(u8)]`, so [`Class::tag`] can index per-class counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Class {
    /// An Ames packet.
    Ames = 0,
    /// A fine (remote scry) request.
    FineRequest = 1,
    /// A fine (remote scry) response.
    FineResponse = 2,
    /// A STUN binding request or response.
    Stun = 3,
    /// A mesa (new Ames) packet.
    Mesa = 4,
    /// Something vere would drop, and why.
    Malformed(Defect) = 5,
}

impl Class {
    /// The discriminant, 0 through 5.
    pub const fn tag(self) -> u8 {
        match self {
            Class::Ames => 0,
            Class::FineRequest => 1,
            Class::FineResponse => 2,
            Class::Stun => 3,
            Class::Mesa => 4,
            Class::Malformed(_) => 5,
        }
    }

    /// The name `seguro ames decode` prints.
    pub const fn name(self) -> &'static str {
        match self {
            Class::Ames => "ames",
            Class::FineRequest => "fine-request",
            Class::FineResponse => "fine-response",
            Class::Stun => "stun",
            Class::Mesa => "mesa",
            Class::Malformed(_) => "malformed",
        }
    }
}

/// Why [`classify`] calls a datagram malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Defect {
    /// Shorter than the 4-byte header.
    NoHeader = 0,
    /// The header's version is not 0 (or, for mesa, not 1).
    BadVersion = 1,
    /// Shorter than the prelude and minimum body the header's flags and
    /// ranks call for.
    Truncated = 2,
    /// Longer than the format allows: a mesa packet over 1472 bytes, or a
    /// fine request whose path would be over 384 bytes.
    TooLong = 3,
}

#[inline(always)]
const fn word_le(prefix: &[u8; PREFIX_LEN]) -> u32 {
    u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]])
}

/// `mesa_is_new_pact`: vere checks this before anything else.
#[inline(always)]
pub(crate) const fn is_mesa(prefix: &[u8; PREFIX_LEN], len: usize) -> bool {
    len >= PREFIX_LEN && word_le(prefix) == MESA_COOKIE
}

/// `u3_stun_is_request` or `u3_stun_is_our_response`, short of the
/// FINGERPRINT (a CRC over the whole message) and the transaction id (only
/// vere knows which one it sent).
#[inline(always)]
pub(crate) const fn is_stun(prefix: &[u8; PREFIX_LEN], len: usize) -> bool {
    let kind = u16::from_be_bytes([prefix[0], prefix[1]]);
    let cookie = u32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    cookie == STUN_COOKIE
        && ((kind == STUN_REQUEST && len >= STUN_REQUEST_MIN_LEN)
            || (kind == STUN_RESPONSE && len == STUN_RESPONSE_LEN))
}

/// Classifies a UDP payload of `len` bytes from its first [`PREFIX_LEN`]
/// bytes, in vere's order.
///
/// It reads only constant indices, has no loops or calls and cannot panic,
/// so the BPF verifier accepts it inlined into an XDP program.
///
///
/// 1. **mesa** if `len >= 8` and bytes 4..8 are the mesa cookie; then
///    `TooLong` if `len > 1472`, `BadVersion` unless the version bits say 1.
/// 2. **STUN** if bytes 4..8 are the STUN magic cookie and either bytes 0..2
///    are `00 01` (binding request) with `len >= 28`, or `01 01` (success
///    response) with `len == 40`.
/// 3. Otherwise an Ames-family header: `NoHeader` if `len < 4`;
///    `BadVersion` unless the version is 0; then the flags pick Ames, fine
///    request or fine response, and `len` must cover the header, origin
///    (if relayed), life ticks, both ships at their ranks, and the minimum
///    body (`Truncated` otherwise): nothing for Ames or a response (vere
///    injects any response body unread); for a request 8 bytes (tag,
///    fragment, path length, and a path of at least `/`). A request's body
///    may not exceed 7 + 384 bytes (`TooLong`).
///
/// Bytes of `prefix` at or past `len` never affect the result, so how a
/// short payload is padded does not matter.
///
/// Deliberately looser than [`parse`](crate::parse): it does not check the
/// mug, the STUN FINGERPRINT, anything at a variable offset (a request's
/// tag, path length and path), or a mesa body (a page's next-hop kind is in
/// the header, but no [`Defect`] names it; lengths depend on the body). See
/// [`ParseError::is_shallow`](crate::ParseError::is_shallow).
#[inline(always)]
pub fn classify(prefix: &[u8; PREFIX_LEN], len: usize) -> Class {
    let header = Header::sift([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if is_mesa(prefix, len) {
        return if len > MESA_MAX_LEN {
            Class::Malformed(Defect::TooLong)
        } else if header.version.get() != Version::MESA.get() {
            Class::Malformed(Defect::BadVersion)
        } else {
            Class::Mesa
        };
    }
    if is_stun(prefix, len) {
        return Class::Stun;
    }
    if len < HEADER_LEN {
        return Class::Malformed(Defect::NoHeader);
    }
    if header.version.get() != Version::AMES.get() {
        return Class::Malformed(Defect::BadVersion);
    }
    let (class, body_min, body_max) = match header.kind {
        Kind::Ames => (Class::Ames, 0, usize::MAX),
        Kind::FineRequest => (
            Class::FineRequest,
            REQUEST_HEAD_LEN + MIN_PATH_LEN,
            REQUEST_HEAD_LEN + FINE_PATH_MAX,
        ),
        // `_ames_hear` checks header, mug and prelude, then
        // `_fine_hear_response` injects the packet without reading its body.
        Kind::FineResponse => (Class::FineResponse, 0, usize::MAX),
    };
    let body_at = HEADER_LEN + header.prelude_len();
    if len < body_at + body_min {
        Class::Malformed(Defect::Truncated)
    } else if len - body_at > body_max {
        Class::Malformed(Defect::TooLong)
    } else {
        class
    }
}

/// The first [`PREFIX_LEN`] bytes of `bytes`, zero-padded.
pub(crate) fn prefix_of(bytes: &[u8]) -> [u8; PREFIX_LEN] {
    let mut prefix = [0u8; PREFIX_LEN];
    for (dst, src) in prefix.iter_mut().zip(bytes) {
        *dst = *src;
    }
    prefix
}

/// [`classify`] for a whole payload in a slice.
pub fn classify_slice(bytes: &[u8]) -> Class {
    classify(&prefix_of(bytes), bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ames_header(byte0: u8, byte1: u8, relayed: bool) -> [u8; PREFIX_LEN] {
        let byte3 = if relayed { 0 } else { 0x80 };
        [byte0, byte1, 0, byte3, 0, 0, 0, 0]
    }

    #[test]
    fn short_and_empty() {
        assert_eq!(classify_slice(&[]), Class::Malformed(Defect::NoHeader));
        assert_eq!(classify_slice(&[0; 3]), Class::Malformed(Defect::NoHeader));
    }

    #[test]
    fn ames_needs_its_prelude() {
        // Ranks 0/0, not relayed: header 4 + ticks 1 + ships 2 + 2 = 9.
        let prefix = ames_header(0, 0, false);
        assert_eq!(classify(&prefix, 8), Class::Malformed(Defect::Truncated));
        assert_eq!(classify(&prefix, 9), Class::Ames);
        // Relayed adds 6 bytes of origin.
        let prefix = ames_header(0, 0, true);
        assert_eq!(classify(&prefix, 14), Class::Malformed(Defect::Truncated));
        assert_eq!(classify(&prefix, 15), Class::Ames);
        // Sender rank 3 (bits 7-8 = 0b11), receiver rank 2 (bits 9-10):
        // 4 + 1 + 16 + 8 = 29.
        let prefix = ames_header(0x80, 0b101, false);
        assert_eq!(classify(&prefix, 28), Class::Malformed(Defect::Truncated));
        assert_eq!(classify(&prefix, 29), Class::Ames);
    }

    #[test]
    fn version_must_be_zero() {
        let prefix = ames_header(0x10, 0, false);
        assert_eq!(classify(&prefix, 100), Class::Malformed(Defect::BadVersion));
    }

    #[test]
    fn fine_bodies_have_bounds() {
        // Request: bit 3 set (not Ames), bit 2 clear (request).
        let request = ames_header(0b1000, 0, false);
        assert_eq!(
            classify(&request, 9 + 7),
            Class::Malformed(Defect::Truncated)
        );
        assert_eq!(classify(&request, 9 + 8), Class::FineRequest);
        assert_eq!(classify(&request, 9 + 7 + 384), Class::FineRequest);
        assert_eq!(
            classify(&request, 9 + 7 + 385),
            Class::Malformed(Defect::TooLong)
        );
        // Response: bits 2 and 3 set; vere reads no body.
        let response = ames_header(0b1100, 0, false);
        assert_eq!(classify(&response, 8), Class::Malformed(Defect::Truncated));
        assert_eq!(classify(&response, 9), Class::FineResponse);
    }

    #[test]
    fn mesa_cookie_wins() {
        // Version 1 in bits 4-6, cookie 0x67e00200 little-endian.
        let prefix = [0x10, 0, 0, 0, 0x00, 0x02, 0xe0, 0x67];
        assert_eq!(classify(&prefix, 8), Class::Mesa);
        assert_eq!(classify(&prefix, 1472), Class::Mesa);
        assert_eq!(classify(&prefix, 1473), Class::Malformed(Defect::TooLong));
        assert_eq!(classify(&prefix, 7), Class::Malformed(Defect::BadVersion));
        let mut v0 = prefix;
        v0[0] = 0;
        assert_eq!(classify(&v0, 100), Class::Malformed(Defect::BadVersion));
    }

    #[test]
    fn stun_by_type_cookie_and_length() {
        let request = [0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        assert_eq!(classify(&request, 28), Class::Stun);
        assert_eq!(classify(&request, 64), Class::Stun);
        // Too short for a FINGERPRINT: vere tries it as Ames.
        assert_ne!(classify(&request, 27), Class::Stun);
        let response = [0x01, 0x01, 0x00, 0x14, 0x21, 0x12, 0xa4, 0x42];
        assert_eq!(classify(&response, 40), Class::Stun);
        assert_ne!(classify(&response, 41), Class::Stun);
    }

    #[test]
    fn tags_are_dense() {
        let classes = [
            Class::Ames,
            Class::FineRequest,
            Class::FineResponse,
            Class::Stun,
            Class::Mesa,
            Class::Malformed(Defect::TooLong),
        ];
        for (tag, class) in classes.into_iter().enumerate() {
            assert_eq!(usize::from(class.tag()), tag);
        }
    }
}
