//! Header layouts the programs parse: Ethernet with up to two VLAN tags,
//! IPv4, IPv6 and UDP.

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const VLAN_HLEN: usize = 4;

pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;
pub const IPPROTO_UDP: u8 = 17;

/// IPv4 flags and fragment offset: more fragments, and the offset.
pub const IP_MF: u16 = 0x2000;
pub const IP_OFFSET: u16 = 0x1fff;

/// IPv6 extension headers a UDP header may sit behind.
pub const IPV6_HOPOPTS: u8 = 0;
pub const IPV6_ROUTING: u8 = 43;
pub const IPV6_FRAGMENT: u8 = 44;
pub const IPV6_DSTOPTS: u8 = 60;
/// The most extension headers the TC program walks before it gives up and
/// passes the packet.
pub const IPV6_MAX_EXT: usize = 4;

// Offsets within the headers.
pub const IPV4_TOTAL_LEN: usize = 2;
pub const IPV4_FRAG: usize = 6;
pub const IPV4_PROTO: usize = 9;
pub const IPV4_CSUM: usize = 10;
pub const IPV4_DADDR: usize = 16;
pub const IPV6_PAYLOAD_LEN: usize = 4;
pub const IPV6_NEXT: usize = 6;
pub const IPV6_DADDR: usize = 24;
pub const UDP_DPORT: usize = 2;
pub const UDP_LEN: usize = 4;
pub const UDP_CSUM: usize = 6;

#[inline(always)]
pub const fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// Whether two addresses (IPv4 in the first word, IPv6 in all four) are
/// equal, word by word: an array comparison may become a `bcmp` call,
/// which BPF does not have.
#[inline(always)]
pub fn same_addr(a: &[u32; 4], b: &[u32; 4]) -> bool {
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3]
}
