//! The IP and UDP headers of a datagram whose sender writes them itself,
//! with the UDP checksum: the raw socket sends them as given, which is what
//! lets a datagram carry any source address and port.

use std::net::{IpAddr, SocketAddr};

/// The longest header: IPv6 (40) + UDP (8).
pub const MAX_HEADER: usize = 48;

/// Room for one datagram's headers.
pub type Header = [u8; MAX_HEADER];

const IPPROTO_UDP: u8 = 17;
const TTL: u8 = 64;
const UDP_HEADER: usize = 8;

/// A payload's part of the UDP checksum: the 16-bit one's complement sum of
/// its bytes, not yet folded. Computed once for a payload, it serves every
/// copy of it, whatever their addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadSum(u64);

impl PayloadSum {
    pub fn of(payload: &[u8]) -> Self {
        Self(sum(payload))
    }
}

/// The 16-bit one's complement sum of `bytes`, not yet folded.
fn sum(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    let mut acc: u64 = 0;
    for c in &mut chunks {
        // Four 16-bit words at once; the carries collect in the upper bits.
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Writes the IP and UDP headers of a datagram from `from` to `to` whose
/// payload is `len` bytes long and sums to `payload`; returns the headers'
/// length (28 for IPv4, 48 for IPv6). An IPv4-mapped IPv6 address is the
/// IPv4 address it maps: that is what goes on the wire.
///
/// For IPv4 the kernel fills in the identification and header checksum, and
/// rewrites the total length (`IP_HDRINCL`); for IPv6 it fills in nothing.
/// Don't-fragment is clear, so routers on the way may fragment; the sending
/// kernel never does: a raw socket refuses a datagram longer than the
/// interface's MTU (`EMSGSIZE`).
///
/// `None`, with nothing written, if `from` and `to` are of different
/// families or the datagram cannot fit one IP packet.
pub fn write_header(
    out: &mut Header,
    from: SocketAddr,
    to: SocketAddr,
    len: usize,
    payload: PayloadSum,
) -> Option<usize> {
    let udp_len = u16::try_from(len + UDP_HEADER).ok()?;
    let (ip_len, pseudo) = match (from.ip().to_canonical(), to.ip().to_canonical()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            // IPv4 counts its own header in the total length.
            let total = u16::try_from(20 + UDP_HEADER + len).ok()?;
            let ip = &mut out[..20];
            ip.fill(0);
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[8] = TTL;
            ip[9] = IPPROTO_UDP;
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            (20, sum(&ip[12..20]))
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let ip = &mut out[..40];
            ip.fill(0);
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = IPPROTO_UDP;
            ip[7] = TTL;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            (40, sum(&ip[8..40]))
        }
        _ => return None,
    };
    let udp = &mut out[ip_len..ip_len + UDP_HEADER];
    udp[0..2].copy_from_slice(&from.port().to_be_bytes());
    udp[2..4].copy_from_slice(&to.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].fill(0);
    // The pseudo-header (addresses, protocol, UDP length), the UDP header
    // with a zero checksum, the payload.
    let all = pseudo + u64::from(IPPROTO_UDP) + u64::from(udp_len) + sum(udp) + payload.0;
    let checksum = match !fold(all) {
        // RFC 768: a computed zero is sent as all ones (zero means "none").
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
    Some(ip_len + UDP_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum of a whole UDP datagram with its pseudo-header, computed
    /// the slow, obvious way: verifies to zero when right.
    fn verify(src: IpAddr, dst: IpAddr, udp: &[u8]) -> u16 {
        let mut pseudo = Vec::new();
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                pseudo.extend(s.octets());
                pseudo.extend(d.octets());
                pseudo.extend([0, IPPROTO_UDP]);
                pseudo.extend((udp.len() as u16).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                pseudo.extend(s.octets());
                pseudo.extend(d.octets());
                pseudo.extend((udp.len() as u32).to_be_bytes());
                pseudo.extend([0, 0, 0, IPPROTO_UDP]);
            }
            _ => unreachable!(),
        }
        pseudo.extend(udp);
        if pseudo.len() % 2 == 1 {
            pseudo.push(0);
        }
        let mut acc: u32 = 0;
        for w in pseudo.chunks(2) {
            acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn checksums_verify_for_both_families_and_odd_lengths() {
        let cases = [
            ("198.51.100.7:5555", "10.0.1.2:4000"),
            ("[2001:db8::7]:5555", "[fd00::1:2]:4000"),
        ];
        for (from, to) in cases {
            let (from, to): (SocketAddr, SocketAddr) = (from.parse().unwrap(), to.parse().unwrap());
            for len in [0usize, 1, 7, 8, 9, 63, 1400, 1401] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
                let mut h = [0u8; MAX_HEADER];
                let n = write_header(&mut h, from, to, len, PayloadSum::of(&payload)).unwrap();
                let ip_len = n - 8;
                let mut udp = h[ip_len..n].to_vec();
                udp.extend(&payload);
                assert_eq!(
                    verify(from.ip(), to.ip(), &udp),
                    0,
                    "{from} -> {to}, {len} bytes"
                );
                assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), from.port());
                assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), to.port());
            }
        }
    }

    #[test]
    fn the_ipv4_header_carries_the_given_source() {
        let from: SocketAddr = "198.51.100.7:5555".parse().unwrap();
        let to: SocketAddr = "10.0.1.2:4000".parse().unwrap();
        let mut h = [0u8; MAX_HEADER];
        assert_eq!(
            write_header(&mut h, from, to, 10, PayloadSum::of(&[0; 10])),
            Some(28)
        );
        assert_eq!(&h[12..16], &[198, 51, 100, 7]);
        assert_eq!(&h[16..20], &[10, 0, 1, 2]);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 38);
        assert_eq!(h[9], IPPROTO_UDP);
    }

    #[test]
    fn ipv4_mapped_addresses_go_out_as_ipv4() {
        let from: SocketAddr = "[::ffff:198.51.100.7]:5555".parse().unwrap();
        let to: SocketAddr = "10.0.1.2:4000".parse().unwrap();
        let mut h = [0u8; MAX_HEADER];
        let payload = b"mapped";
        let n = write_header(&mut h, from, to, payload.len(), PayloadSum::of(payload));
        assert_eq!(n, Some(28));
        assert_eq!(&h[12..16], &[198, 51, 100, 7]);
        let mut udp = h[20..28].to_vec();
        udp.extend(payload);
        assert_eq!(verify(from.ip().to_canonical(), to.ip(), &udp), 0);
    }

    #[test]
    fn mixed_families_and_oversized_datagrams_get_no_header() {
        let v4: SocketAddr = "198.51.100.7:5555".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::7]:5555".parse().unwrap();
        let mut h = [0u8; MAX_HEADER];
        let none = PayloadSum::of(&[]);
        assert_eq!(write_header(&mut h, v4, v6, 10, none), None);
        assert_eq!(write_header(&mut h, v6, v4, 10, none), None);
        // The largest payloads one packet of each family carries.
        assert!(write_header(&mut h, v4, v4, 65535 - 28, none).is_some());
        assert_eq!(write_header(&mut h, v4, v4, 65535 - 27, none), None);
        assert!(write_header(&mut h, v6, v6, 65535 - 8, none).is_some());
        assert_eq!(write_header(&mut h, v6, v6, 65535 - 7, none), None);
    }
}
