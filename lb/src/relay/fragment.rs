//! IP fragments of a copy longer than the path to its replica takes: a raw
//! socket sends only what fits the MTU (`EMSGSIZE` otherwise) and never
//! fragments, so the relay splits such a copy itself, as the kernel would.

use std::net::SocketAddr;
use std::ops::Range;

use udp::raw::{Header, MAX_HEADER, PayloadSum, write_header};

/// The longest headers of a fragment: IPv6 (40), its fragment header (8),
/// and UDP (8), which only the first fragment carries.
pub const MAX_FRAGMENT_HEADER: usize = 56;

const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const IPV6_FRAGMENT_HEADER: usize = 8;
const UDP_HEADER: usize = 8;
/// The IPv6 next-header number of a fragment header.
const IPV6_FRAGMENT: u8 = 44;
const IPPROTO_UDP: u8 = 17;
/// IPv4: more fragments follow.
const IP_MF: u16 = 0x2000;

/// One IP fragment: its headers, then `payload` of the datagram's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    header: [u8; MAX_FRAGMENT_HEADER],
    header_len: usize,
    /// Which bytes of the UDP payload follow the headers.
    pub payload: Range<usize>,
}

impl Fragment {
    /// The IP header (with IPv6's fragment header, and in the first
    /// fragment the UDP header) to send in front of [`Fragment::payload`].
    pub fn header(&self) -> &[u8] {
        &self.header[..self.header_len]
    }
}

/// Whether a UDP datagram of `len` payload bytes from `from` fits one packet
/// of `mtu` bytes.
pub fn fits(from: SocketAddr, len: usize, mtu: usize) -> bool {
    let headers = if from.ip().to_canonical().is_ipv4() {
        IPV4_HEADER
    } else {
        IPV6_HEADER
    } + UDP_HEADER;
    headers + len <= mtu
}

/// Splits the UDP datagram from `from` to `to` with `len` payload bytes
/// summing to `sum` into IP fragments of at most `mtu` bytes, all carrying
/// identification `id` (IPv4 uses its low 16 bits, which must not be zero:
/// the kernel would give each fragment an identification of its own). The
/// UDP checksum covers the whole datagram and travels in the first
/// fragment. For IPv4 the kernel fills in each header's checksum.
///
/// Appends to `out` and returns true; false, with nothing appended, if the
/// datagram cannot be written (addresses of two families, longer than an IP
/// datagram) or `mtu` leaves no room for 8 bytes of data per fragment.
pub fn split(
    from: SocketAddr,
    to: SocketAddr,
    len: usize,
    sum: PayloadSum,
    mtu: usize,
    id: u32,
    out: &mut Vec<Fragment>,
) -> bool {
    let mut whole: Header = [0; MAX_HEADER];
    let Some(headers) = write_header(&mut whole, from, to, len, sum) else {
        return false;
    };
    let v4 = headers == IPV4_HEADER + UDP_HEADER;
    let (ip, fixed) = if v4 {
        (IPV4_HEADER, IPV4_HEADER)
    } else {
        (IPV6_HEADER, IPV6_HEADER + IPV6_FRAGMENT_HEADER)
    };
    // Offsets count in 8-byte units: every fragment but the last carries a
    // multiple of 8 bytes of what follows the IP headers (UDP header and
    // payload).
    let per = mtu.saturating_sub(fixed) / 8 * 8;
    if per < UDP_HEADER + 8 {
        return false;
    }
    let total = UDP_HEADER + len;
    let mut offset = 0;
    while offset < total {
        let end = (offset + per).min(total);
        let more = end < total;
        let mut header = [0u8; MAX_FRAGMENT_HEADER];
        header[..ip].copy_from_slice(&whole[..ip]);
        let carried = u16::try_from(end - offset).unwrap_or(u16::MAX);
        let units = u16::try_from(offset / 8).unwrap_or(u16::MAX);
        let mut at = ip;
        if v4 {
            // The kernel rewrites the total length to what is sent anyway.
            header[2..4].copy_from_slice(&(IPV4_HEADER as u16 + carried).to_be_bytes());
            header[4..6].copy_from_slice(&(id as u16).to_be_bytes());
            let field = units | if more { IP_MF } else { 0 };
            header[6..8].copy_from_slice(&field.to_be_bytes());
        } else {
            let payload_len = IPV6_FRAGMENT_HEADER as u16 + carried;
            header[4..6].copy_from_slice(&payload_len.to_be_bytes());
            header[6] = IPV6_FRAGMENT;
            let frag = &mut header[ip..ip + IPV6_FRAGMENT_HEADER];
            frag[0] = IPPROTO_UDP;
            frag[2..4].copy_from_slice(&((units << 3) | u16::from(more)).to_be_bytes());
            frag[4..8].copy_from_slice(&id.to_be_bytes());
            at += IPV6_FRAGMENT_HEADER;
        }
        let payload = if offset == 0 {
            header[at..at + UDP_HEADER].copy_from_slice(&whole[ip..ip + UDP_HEADER]);
            at += UDP_HEADER;
            0..end - UDP_HEADER
        } else {
            offset - UDP_HEADER..end - UDP_HEADER
        };
        out.push(Fragment {
            header,
            header_len: at,
            payload,
        });
        offset = end;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reassembles `fragments` as a receiver would: checks each one's
    /// size, identification and offset, and returns what follows the IP
    /// headers (UDP header and payload).
    fn reassemble(
        fragments: &[Fragment],
        payload: &[u8],
        v4: bool,
        id: u32,
        mtu: usize,
    ) -> Vec<u8> {
        let mut data = Vec::new();
        for (k, f) in fragments.iter().enumerate() {
            let h = f.header();
            let body = &payload[f.payload.clone()];
            assert!(h.len() + body.len() <= mtu, "fragment {k} exceeds the MTU");
            let last = k + 1 == fragments.len();
            let (offset, more, rest) = if v4 {
                assert_eq!(h[0], 0x45);
                assert_eq!(h[9], IPPROTO_UDP);
                assert_eq!(u16::from_be_bytes([h[4], h[5]]), id as u16);
                let field = u16::from_be_bytes([h[6], h[7]]);
                let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
                assert_eq!(total, h.len() + body.len());
                (
                    usize::from(field & 0x1fff) * 8,
                    field & IP_MF != 0,
                    &h[20..],
                )
            } else {
                assert_eq!(h[6], IPV6_FRAGMENT);
                let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
                assert_eq!(payload_len + 40, h.len() + body.len());
                assert_eq!(h[40], IPPROTO_UDP);
                assert_eq!(u32::from_be_bytes([h[44], h[45], h[46], h[47]]), id);
                let field = u16::from_be_bytes([h[42], h[43]]);
                (usize::from(field >> 3) * 8, field & 1 != 0, &h[48..])
            };
            assert_eq!(more, !last, "fragment {k}: more-fragments flag");
            assert_eq!(offset, data.len(), "fragment {k}: offset");
            if !last {
                assert_eq!((rest.len() + body.len()) % 8, 0);
            }
            data.extend_from_slice(rest);
            data.extend_from_slice(body);
        }
        data
    }

    #[test]
    fn fragments_reassemble_into_the_datagram_the_kernel_would_send() {
        let payload: Vec<u8> = (0..1561u32).map(|b| (b * 31 % 256) as u8).collect();
        let sum = PayloadSum::of(&payload);
        let cases = [
            ("10.0.0.2:5555", "10.0.1.2:4000", true),
            ("[fd00::2]:5555", "[fd00:1::2]:4000", false),
        ];
        for (from, to, v4) in cases {
            let (from, to): (SocketAddr, SocketAddr) = (from.parse().unwrap(), to.parse().unwrap());
            let mut whole: Header = [0; MAX_HEADER];
            let n = write_header(&mut whole, from, to, payload.len(), sum).unwrap();
            let ip = n - UDP_HEADER;
            let mut want = whole[ip..n].to_vec();
            want.extend_from_slice(&payload);
            for mtu in [1500, 1280, 576] {
                let mut out = Vec::new();
                assert!(split(from, to, payload.len(), sum, mtu, 0x1_beef, &mut out));
                assert!(out.len() >= 2, "{mtu}: {} fragments", out.len());
                assert_eq!(
                    reassemble(&out, &payload, v4, 0x1_beef, mtu),
                    want,
                    "{from} {mtu}"
                );
                // Every header but the changed fields is the whole datagram's.
                assert_eq!(out[0].header()[12..ip], whole[12..ip], "addresses");
            }
            assert!(!fits(from, payload.len(), 1500));
            assert!(fits(from, 1400, 1500));
        }
    }

    #[test]
    fn impossible_splits_are_refused() {
        let v4: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let v6: SocketAddr = "[fd00::2]:1".parse().unwrap();
        let sum = PayloadSum::of(&[0; 100]);
        let mut out = Vec::new();
        assert!(!split(v4, v6, 100, sum, 1500, 1, &mut out), "two families");
        assert!(!split(v4, v4, 100, sum, 35, 1, &mut out), "no room");
        assert!(!split(v4, v4, 70_000, sum, 1500, 1, &mut out), "too long");
        assert!(out.is_empty());
    }
}
