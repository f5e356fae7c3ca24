//! The IP and UDP headers of a copy, written by hand because the raw socket
//! sends them as given: that is what lets the copy carry the peer's source
//! address and port.

use std::net::{IpAddr, SocketAddr};

/// The longest header: IPv6 (40) + UDP (8).
pub const MAX_HEADER: usize = 48;

const IPPROTO_UDP: u8 = 17;
const TTL: u8 = 64;

/// The 16-bit one's complement sum of `bytes`, not yet folded.
pub fn sum(bytes: &[u8]) -> u64 {
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

/// Writes the IP and UDP headers of a datagram from `from` to `to` carrying a
/// payload of `len` bytes whose [`sum`] is `payload_sum`; returns the header
/// length. For IPv4 the kernel fills in the total length, identification
/// and header checksum (IP_HDRINCL); for IPv6 nothing is filled in.
///
/// `from` and `to` must be of one family (the plan guarantees it).
pub fn header(
    out: &mut [u8; MAX_HEADER],
    from: SocketAddr,
    to: SocketAddr,
    len: usize,
    payload_sum: u64,
) -> usize {
    let udp_len = (len + 8) as u16;
    let (ip_len, pseudo) = match (from.ip(), to.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let ip = &mut out[..20];
            ip.fill(0);
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&(udp_len + 20).to_be_bytes());
            ip[8] = TTL;
            ip[9] = IPPROTO_UDP;
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            (20, sum(&src.octets()) + sum(&dst.octets()))
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
            (40, sum(&src.octets()) + sum(&dst.octets()))
        }
        _ => return 0,
    };
    let udp = &mut out[ip_len..ip_len + 8];
    udp[0..2].copy_from_slice(&from.port().to_be_bytes());
    udp[2..4].copy_from_slice(&to.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].fill(0);
    let total = pseudo + u64::from(IPPROTO_UDP) + u64::from(udp_len) + sum(udp) + payload_sum;
    let checksum = match !fold(total) {
        // RFC 768: a computed zero is sent as all ones.
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
    ip_len + 8
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
                let n = header(&mut h, from, to, len, sum(&payload));
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
    fn the_ipv4_header_carries_the_peers_address() {
        let from: SocketAddr = "198.51.100.7:5555".parse().unwrap();
        let to: SocketAddr = "10.0.1.2:4000".parse().unwrap();
        let mut h = [0u8; MAX_HEADER];
        assert_eq!(header(&mut h, from, to, 10, 0), 28);
        assert_eq!(&h[12..16], &[198, 51, 100, 7]);
        assert_eq!(&h[16..20], &[10, 0, 1, 2]);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 38);
    }
}
