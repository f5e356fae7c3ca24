//! Lanes: where a peer's packets come from, and the 6-byte origin field.

use core::fmt;
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use core::str::FromStr;

/// A peer's UDP address, IPv4 or IPv6.
///
/// vere itself only speaks IPv4; the edge box may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lane(SocketAddr);

impl Lane {
    /// The lane at `addr`.
    pub const fn new(addr: SocketAddr) -> Lane {
        Lane(addr)
    }

    /// The socket address.
    pub const fn addr(self) -> SocketAddr {
        self.0
    }

    /// Reads an origin field: vere etches `(port << 32) | ip` as a
    /// little-endian chub and keeps the low 6 bytes (`_ames_etch_origin`),
    /// so the IPv4 address comes first, least significant byte first.
    pub(crate) const fn sift_origin(bytes: [u8; 6]) -> SocketAddrV4 {
        let [i0, i1, i2, i3, p0, p1] = bytes;
        SocketAddrV4::new(
            Ipv4Addr::from_bits(u32::from_le_bytes([i0, i1, i2, i3])),
            u16::from_le_bytes([p0, p1]),
        )
    }

    /// Writes an origin field; the inverse of [`Lane::sift_origin`].
    #[cfg(any(feature = "std", test))]
    pub(crate) const fn etch_origin(addr: SocketAddrV4) -> [u8; 6] {
        let [i0, i1, i2, i3] = addr.ip().to_bits().to_le_bytes();
        let [p0, p1] = addr.port().to_le_bytes();
        [i0, i1, i2, i3, p0, p1]
    }
}

impl From<SocketAddr> for Lane {
    fn from(addr: SocketAddr) -> Lane {
        Lane(addr)
    }
}

impl From<SocketAddrV4> for Lane {
    fn from(addr: SocketAddrV4) -> Lane {
        Lane(addr.into())
    }
}

impl From<SocketAddrV6> for Lane {
    fn from(addr: SocketAddrV6) -> Lane {
        Lane(addr.into())
    }
}

impl From<Lane> for SocketAddr {
    fn from(lane: Lane) -> SocketAddr {
        lane.0
    }
}

impl FromStr for Lane {
    type Err = core::net::AddrParseError;

    /// Parses `IP:PORT`, or `[IPv6]:PORT`.
    fn from_str(s: &str) -> Result<Lane, Self::Err> {
        s.parse().map(Lane)
    }
}

impl fmt::Display for Lane {
    /// `IP:PORT`, or `[IPv6]:PORT`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    /// 1.2.3.4:5678 is `pip_w = 0x01020304`, `por_s = 0x162e`; as a
    /// little-endian chub `0x162e_0102_0304` its low 6 bytes are these.
    #[test]
    fn origin_is_little_endian_ip_then_port() {
        let bytes = [0x04, 0x03, 0x02, 0x01, 0x2e, 0x16];
        let addr = Lane::sift_origin(bytes);
        assert_eq!(addr, "1.2.3.4:5678".parse().unwrap());
        assert_eq!(Lane::etch_origin(addr), bytes);
    }

    #[test]
    fn display_and_parse_round_trip() {
        for text in ["10.0.0.1:34543", "[2001:db8::1]:13337"] {
            let lane: Lane = text.parse().unwrap();
            assert_eq!(lane.to_string(), text);
        }
    }
}
