//! Ethernet frames built by hand, with the oddities real traffic has (VLAN
//! tags, IPv4 options, IPv6 extension headers, fragments, lying lengths),
//! for feeding packet programs directly with `BPF_PROG_TEST_RUN`.

use std::net::{IpAddr, SocketAddr};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;

/// A UDP datagram in an Ethernet frame, to be shaped and then
/// [`bytes`](Frame::bytes)'d.
#[derive(Clone, Debug)]
pub struct Frame {
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
    vlans: Vec<(u16, u16)>,
    protocol: u8,
    ip_options: Vec<u8>,
    hop_by_hop: bool,
    fragment: Option<(u16, bool)>,
    udp_len: Option<u16>,
    ip_len: Option<u16>,
    macs: ([u8; 6], [u8; 6]),
}

impl Frame {
    /// A datagram from `src` to `dst` (one family) carrying `payload`.
    pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Frame {
        Frame {
            src,
            dst,
            payload: payload.to_vec(),
            vlans: Vec::new(),
            protocol: IPPROTO_UDP,
            ip_options: Vec::new(),
            hop_by_hop: false,
            fragment: None,
            udp_len: None,
            ip_len: None,
            macs: ([0x02, 0, 0, 0, 0, 0x01], [0x02, 0, 0, 0, 0, 0x02]),
        }
    }

    /// Source and destination MAC addresses.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Frame {
        self.macs = (src, dst);
        self
    }

    /// Adds a VLAN tag outside those already there (`ETH_P_8021Q` or
    /// `ETH_P_8021AD`).
    pub fn tagged(mut self, tpid: u16, vid: u16) -> Frame {
        self.vlans.insert(0, (tpid, vid));
        self
    }

    /// Another IP protocol number in the header (the rest stays UDP-shaped).
    pub fn protocol(mut self, protocol: u8) -> Frame {
        self.protocol = protocol;
        self
    }

    /// IPv4 options (padded to whole words with end-of-options).
    pub fn ip_options(mut self, options: &[u8]) -> Frame {
        self.ip_options = options.to_vec();
        while !self.ip_options.len().is_multiple_of(4) {
            self.ip_options.push(0);
        }
        self
    }

    /// An IPv6 hop-by-hop options header (empty padding) before UDP.
    pub fn hop_by_hop(mut self) -> Frame {
        self.hop_by_hop = true;
        self
    }

    /// Marks an IPv4 fragment: offset in 8-byte units, and whether more
    /// follow.
    pub fn fragment(mut self, offset: u16, more: bool) -> Frame {
        self.fragment = Some((offset, more));
        self
    }

    /// A UDP length field other than the true one.
    pub fn udp_len(mut self, len: u16) -> Frame {
        self.udp_len = Some(len);
        self
    }

    /// An IPv4 total length (or IPv6 payload length) other than the true one.
    pub fn ip_len(mut self, len: u16) -> Frame {
        self.ip_len = Some(len);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(self.macs.1);
        out.extend(self.macs.0);
        for (tpid, vid) in &self.vlans {
            out.extend(tpid.to_be_bytes());
            out.extend(vid.to_be_bytes());
        }
        let udp_len = (8 + self.payload.len()) as u16;
        let mut udp = Vec::new();
        udp.extend(self.src.port().to_be_bytes());
        udp.extend(self.dst.port().to_be_bytes());
        udp.extend(self.udp_len.unwrap_or(udp_len).to_be_bytes());
        udp.extend([0, 0]);
        udp.extend(&self.payload);
        // The UDP checksum over the pseudo-header, as the receiver checks it.
        let mut pseudo = Vec::new();
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                pseudo.extend(s.octets());
                pseudo.extend(d.octets());
                pseudo.extend([0, IPPROTO_UDP]);
                pseudo.extend(udp_len.to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                pseudo.extend(s.octets());
                pseudo.extend(d.octets());
                pseudo.extend(u32::from(udp_len).to_be_bytes());
                pseudo.extend([0, 0, 0, IPPROTO_UDP]);
            }
            _ => panic!("source and destination must be of one family"),
        }
        pseudo.extend(&udp);
        let sum = match checksum(&pseudo) {
            0 => 0xffff,
            sum => sum,
        };
        udp[6..8].copy_from_slice(&sum.to_be_bytes());
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                out.extend(ETH_P_IP.to_be_bytes());
                let hlen = 20 + self.ip_options.len();
                let total = (hlen + udp.len()) as u16;
                let mut ip = vec![0x40 | (hlen / 4) as u8, 0];
                ip.extend(self.ip_len.unwrap_or(total).to_be_bytes());
                ip.extend([0x12, 0x34]);
                let frag = self
                    .fragment
                    .map_or(0, |(offset, more)| offset | if more { 0x2000 } else { 0 });
                ip.extend(frag.to_be_bytes());
                ip.extend([64, self.protocol, 0, 0]);
                ip.extend(src.octets());
                ip.extend(dst.octets());
                ip.extend(&self.ip_options);
                let sum = checksum(&ip);
                ip[10..12].copy_from_slice(&sum.to_be_bytes());
                out.extend(ip);
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                out.extend(ETH_P_IPV6.to_be_bytes());
                let ext = if self.hop_by_hop { 8 } else { 0 };
                let payload = (ext + udp.len()) as u16;
                let mut ip = vec![0x60, 0, 0, 0];
                ip.extend(self.ip_len.unwrap_or(payload).to_be_bytes());
                ip.push(if self.hop_by_hop { 0 } else { self.protocol });
                ip.push(64);
                ip.extend(src.octets());
                ip.extend(dst.octets());
                if self.hop_by_hop {
                    // Next header, length 0 (8 bytes), PadN of 4.
                    ip.extend([self.protocol, 0, 1, 4, 0, 0, 0, 0]);
                }
                out.extend(ip);
            }
            _ => panic!("source and destination must be of one family"),
        }
        out.extend(udp);
        out
    }
}

/// The Internet checksum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for word in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([word[0], *word.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_frame_is_laid_out_as_the_wire_has_it() {
        let f = Frame::udp(
            "10.0.0.2:5555".parse().unwrap(),
            "10.0.0.1:34543".parse().unwrap(),
            b"hi",
        )
        .tagged(ETH_P_8021Q, 100)
        .ip_options(&[1]);
        let b = f.bytes();
        assert_eq!(&b[12..14], &ETH_P_8021Q.to_be_bytes());
        assert_eq!(&b[16..18], &ETH_P_IP.to_be_bytes());
        assert_eq!(b[18], 0x46);
        assert_eq!(checksum(&b[18..42]), 0);
        assert_eq!(&b[42 + 2..42 + 4], &34543u16.to_be_bytes());
        assert_eq!(&b[b.len() - 2..], b"hi");
        // The UDP checksum verifies over the pseudo-header.
        let mut pseudo = b[18 + 12..18 + 20].to_vec();
        pseudo.extend([0, 17, 0, 10]);
        pseudo.extend(&b[42..]);
        assert_eq!(checksum(&pseudo), 0);
    }

    #[test]
    fn an_ipv6_frame_may_carry_hop_by_hop_options() {
        let f = Frame::udp(
            "[fd00::2]:1".parse().unwrap(),
            "[fd00::1]:2".parse().unwrap(),
            b"x",
        )
        .hop_by_hop();
        let b = f.bytes();
        assert_eq!(b[14 + 6], 0);
        assert_eq!(b[14 + 40], IPPROTO_UDP);
        assert_eq!(u16::from_be_bytes([b[18], b[19]]), 8 + 9);
    }
}
