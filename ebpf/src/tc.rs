//! The TC cloner, on the edge interface's ingress: copies every packet for
//! the ship to every replica.
//!
//! XDP cannot do this: one XDP program sends a frame out once (a devmap
//! broadcast runs one egress program per device, not one per copy). Here
//! `bpf_clone_redirect` sends a copy per replica, the packet rewritten in
//! place between copies; the last replica gets the packet itself
//! (`bpf_redirect`), so nothing of it reaches the edge box's own stack.
//!
//! The first fragment of a datagram to the ship's port is passed to the
//! edge box's stack when the loader says a relay socket there receives the
//! reassembled datagrams (`Plan::reassemble`), and dropped otherwise.
//!
//! A packet the XDP program marked is trusted as classified; an unmarked one
//! (IPv4 options, IPv6 extension headers, or no XDP program) is parsed here
//! through `bpf_skb_load_bytes` and classified the same way.

use ames::{Class, PREFIX_LEN};
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT},
    helpers::generated::{bpf_csum_diff, bpf_redirect, bpf_skb_vlan_pop},
    macros::classifier,
    programs::TcContext,
};
use lb_abi::{DropReason, FAMILY_V4, FAMILY_V6, MAX_REPLICAS, META_ACCEPTED, Plan, Target};

use crate::count;
use crate::maps;
use crate::net::*;

/// Where a packet for the ship keeps its headers.
struct Ship {
    /// Offset of the IP header.
    l3: usize,
    /// Offset of the UDP header.
    l4: usize,
    /// UDP payload length.
    len: usize,
    /// VLAN tags in the packet data (the kernel has already lifted the
    /// outer one into the skb).
    tagged: bool,
}

enum Found {
    Other,
    Drop(DropReason),
    /// The first fragment of a datagram to the ship's port.
    Fragment,
    Ship(Ship),
}

/// A helper failed: pass the packet as it is.
struct Failed;

type Parse<T> = Result<T, Failed>;

#[classifier]
pub fn seguro_tc(ctx: TcContext) -> i32 {
    let Some(plan) = maps::plan() else {
        return TC_ACT_OK;
    };
    if plan.family != FAMILY_V4 && plan.family != FAMILY_V6 {
        return TC_ACT_OK;
    }
    let accepted = marked(&ctx);
    let ship = match find(&ctx, plan) {
        Ok(Found::Ship(ship)) => ship,
        Ok(Found::Drop(reason)) => {
            count::dropped(reason);
            return TC_ACT_SHOT;
        }
        // The edge box's stack reassembles the datagram (the later fragments
        // pass as "not for the ship": they carry no port) and delivers it
        // to the relay socket, which fans it out whole.
        Ok(Found::Fragment) if plan.reassemble != 0 => {
            count::fragment();
            return TC_ACT_OK;
        }
        Ok(Found::Fragment) => {
            count::dropped(DropReason::Fragment);
            return TC_ACT_SHOT;
        }
        Ok(Found::Other) | Err(Failed) => {
            count::passed();
            return TC_ACT_OK;
        }
    };
    if !accepted {
        let class = classify(&ctx, &ship);
        count::class(class, ship.len);
        if let Some(reason) = count::judge(plan, class) {
            count::dropped(reason);
            return TC_ACT_SHOT;
        }
    }
    fan_out(&ctx, plan, &ship)
}

/// Whether the XDP program accepted this packet.
#[inline(always)]
fn marked(ctx: &TcContext) -> bool {
    // SAFETY: reading two fields of the context the kernel passed in.
    let (meta, data) = unsafe {
        (
            (*ctx.skb.skb).data_meta as usize,
            (*ctx.skb.skb).data as usize,
        )
    };
    if meta + size_of::<u32>() > data {
        return false;
    }
    // SAFETY: checked just above that the four bytes are metadata.
    unsafe { core::ptr::read_unaligned(meta as *const u32) == META_ACCEPTED }
}

#[inline(always)]
fn find(ctx: &TcContext, plan: &Plan) -> Parse<Found> {
    let want = if plan.family == FAMILY_V4 {
        ETH_P_IP
    } else {
        ETH_P_IPV6
    };
    let mut ethertype = load_be16(ctx, ETH_HLEN - 2)?;
    let mut l3 = ETH_HLEN;
    if is_vlan(ethertype) {
        ethertype = load_be16(ctx, l3 + VLAN_HLEN - 2)?;
        l3 += VLAN_HLEN;
        if is_vlan(ethertype) {
            ethertype = load_be16(ctx, l3 + VLAN_HLEN - 2)?;
            l3 += VLAN_HLEN;
        }
    }
    if ethertype != want {
        return Ok(Found::Other);
    }
    if plan.family == FAMILY_V4 {
        ipv4(ctx, plan, l3)
    } else {
        ipv6(ctx, plan, l3)
    }
}

#[inline(always)]
fn ipv4(ctx: &TcContext, plan: &Plan, l3: usize) -> Parse<Found> {
    let ip: [u8; IPV4_HLEN] = load(ctx, l3)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4
        || ihl < IPV4_HLEN
        || ip[IPV4_PROTO] != IPPROTO_UDP
        || word(&ip, IPV4_DADDR) != plan.ship_addr[0]
    {
        return Ok(Found::Other);
    }
    let frag = u16::from_be_bytes([ip[IPV4_FRAG], ip[IPV4_FRAG + 1]]);
    if frag & IP_OFFSET != 0 {
        // A later fragment has no UDP header to tell whose it is.
        return Ok(Found::Other);
    }
    let l4 = l3 + ihl;
    let udp: [u8; UDP_HLEN] = load(ctx, l4)?;
    if port(&udp) != plan.ship_port {
        return Ok(Found::Other);
    }
    if frag & IP_MF != 0 {
        return Ok(Found::Fragment);
    }
    let total = usize::from(u16::from_be_bytes([
        ip[IPV4_TOTAL_LEN],
        ip[IPV4_TOTAL_LEN + 1],
    ]));
    let udp_len = usize::from(u16::from_be_bytes([udp[UDP_LEN], udp[UDP_LEN + 1]]));
    if udp_len < UDP_HLEN || udp_len + ihl > total || l3 + total > ctx.len() as usize {
        return Ok(Found::Drop(DropReason::BadLength));
    }
    Ok(Found::Ship(Ship {
        l3,
        l4,
        len: udp_len - UDP_HLEN,
        tagged: l3 != ETH_HLEN,
    }))
}

#[inline(always)]
fn ipv6(ctx: &TcContext, plan: &Plan, l3: usize) -> Parse<Found> {
    let ip: [u8; IPV6_HLEN] = load(ctx, l3)?;
    let dst = [
        word(&ip, IPV6_DADDR),
        word(&ip, IPV6_DADDR + 4),
        word(&ip, IPV6_DADDR + 8),
        word(&ip, IPV6_DADDR + 12),
    ];
    if ip[0] >> 4 != 6 || !same_addr(&dst, &plan.ship_addr) {
        return Ok(Found::Other);
    }
    let payload = usize::from(u16::from_be_bytes([
        ip[IPV6_PAYLOAD_LEN],
        ip[IPV6_PAYLOAD_LEN + 1],
    ]));
    let mut next = ip[IPV6_NEXT];
    let mut l4 = l3 + IPV6_HLEN;
    let mut fragment = false;
    for _ in 0..IPV6_MAX_EXT {
        match next {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => {
                let ext: [u8; 2] = load(ctx, l4)?;
                next = ext[0];
                l4 += (usize::from(ext[1]) + 1) * 8;
            }
            IPV6_FRAGMENT => {
                let ext: [u8; 8] = load(ctx, l4)?;
                let offset = u16::from_be_bytes([ext[2], ext[3]]);
                if offset & 0xfff8 != 0 {
                    // A later fragment: no UDP header here.
                    return Ok(Found::Other);
                }
                fragment = offset & 1 != 0;
                next = ext[0];
                l4 += 8;
            }
            _ => break,
        }
    }
    if next != IPPROTO_UDP {
        return Ok(Found::Other);
    }
    let udp: [u8; UDP_HLEN] = load(ctx, l4)?;
    if port(&udp) != plan.ship_port {
        return Ok(Found::Other);
    }
    if fragment {
        return Ok(Found::Fragment);
    }
    let end = l3 + IPV6_HLEN + payload;
    let udp_len = usize::from(u16::from_be_bytes([udp[UDP_LEN], udp[UDP_LEN + 1]]));
    if udp_len < UDP_HLEN || l4 + udp_len > end || end > ctx.len() as usize {
        return Ok(Found::Drop(DropReason::BadLength));
    }
    Ok(Found::Ship(Ship {
        l3,
        l4,
        len: udp_len - UDP_HLEN,
        tagged: l3 != ETH_HLEN,
    }))
}

#[inline(always)]
fn classify(ctx: &TcContext, ship: &Ship) -> Class {
    let at = ship.l4 + UDP_HLEN;
    let mut prefix = [0u8; PREFIX_LEN];
    if let Ok(p) = load::<[u8; PREFIX_LEN]>(ctx, at) {
        prefix = p;
    } else {
        // Fewer than eight bytes left in the frame: take what there is;
        // classify ignores the zeros past the payload's end.
        for (k, byte) in prefix.iter_mut().enumerate() {
            if k < ship.len {
                *byte = load::<u8>(ctx, at + k).unwrap_or(0);
            }
        }
    }
    ames::classify(&prefix, ship.len)
}

/// Sends one copy to each replica whose next hop is known, the last one
/// being the packet itself.
#[inline(always)]
fn fan_out(ctx: &TcContext, plan: &Plan, ship: &Ship) -> i32 {
    // The copies leave by other links: the ingress VLAN tags stay behind.
    // SAFETY: a field of the context the kernel passed in.
    let lifted = unsafe { (*ctx.skb.skb).vlan_present } != 0;
    let (l3, l4) = if ship.tagged || lifted {
        for _ in 0..3 {
            // SAFETY: the helper checks the skb itself; popping when no tag
            // is left does nothing.
            if unsafe { bpf_skb_vlan_pop(ctx.skb.skb) } != 0 {
                return TC_ACT_SHOT;
            }
        }
        (ETH_HLEN, ship.l4 - ship.l3 + ETH_HLEN)
    } else {
        (ship.l3, ship.l4)
    };
    let mut rewrite = Rewrite {
        v4: plan.family == FAMILY_V4,
        l3,
        l4,
        addr: plan.ship_addr,
        port: plan.ship_port,
    };
    let len = (plan.len as usize).min(MAX_REPLICAS);
    // The target waiting for its copy: each is sent when the next ready one
    // is found, so that the last can take the packet itself.
    let mut pending: Option<&Target> = None;
    for i in 0..MAX_REPLICAS {
        if i >= len {
            break;
        }
        let Some(target) = plan.targets.get(i) else {
            break;
        };
        if target.ready == 0 {
            count::replica(target.slot, |c| &mut c.skipped);
            continue;
        }
        if let Some(before) = pending {
            if rewrite.to(ctx, before).is_err() {
                count::replica(before.slot, |c| &mut c.clone_failures);
                return TC_ACT_SHOT;
            }
            if ctx.clone_redirect(before.ifindex, 0).is_ok() {
                count::replica(before.slot, |c| &mut c.copies);
            } else {
                count::replica(before.slot, |c| &mut c.clone_failures);
            }
        }
        pending = Some(target);
    }
    let Some(last) = pending else {
        count::dropped(DropReason::Undelivered);
        return TC_ACT_SHOT;
    };
    if rewrite.to(ctx, last).is_err() {
        count::replica(last.slot, |c| &mut c.clone_failures);
        return TC_ACT_SHOT;
    }
    count::replica(last.slot, |c| &mut c.copies);
    // SAFETY: a helper call on plain values; it returns TC_ACT_REDIRECT, or
    // TC_ACT_SHOT for bad flags.
    unsafe { bpf_redirect(last.ifindex, 0) as i32 }
}

/// The packet's current destination, rewritten from one replica to the next.
struct Rewrite {
    v4: bool,
    l3: usize,
    l4: usize,
    addr: [u32; 4],
    port: u16,
}

impl Rewrite {
    /// Points the packet at `target`: MACs, destination address and port,
    /// the IPv4 header checksum and the UDP checksum (pseudo-header
    /// included) fixed incrementally. The source stays the peer's.
    #[inline(always)]
    fn to(&mut self, ctx: &TcContext, target: &Target) -> Result<(), i64> {
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&target.dmac);
        macs[6..].copy_from_slice(&target.smac);
        ctx.store(0, &macs, 0)?;
        let csum = self.l4 + UDP_CSUM;
        // A zero UDP checksum over IPv4 means "none" and must stay zero.
        let mangled = if self.v4 {
            u64::from(BPF_F_MARK_MANGLED_0)
        } else {
            0
        };
        if self.v4 {
            let (from, to) = (self.addr[0], target.addr[0]);
            if from != to {
                ctx.l3_csum_replace(self.l3 + IPV4_CSUM, u64::from(from), u64::from(to), 4)?;
                let flags = u64::from(BPF_F_PSEUDO_HDR) | mangled | 4;
                ctx.l4_csum_replace(csum, u64::from(from), u64::from(to), flags)?;
                ctx.store(self.l3 + IPV4_DADDR, &to, 0)?;
            }
        } else if !same_addr(&self.addr, &target.addr) {
            let mut from = self.addr;
            let mut to = target.addr;
            // SAFETY: both buffers are 16 bytes on this stack.
            let diff = unsafe { bpf_csum_diff(from.as_mut_ptr(), 16, to.as_mut_ptr(), 16, 0) };
            if diff < 0 {
                return Err(diff);
            }
            ctx.l4_csum_replace(csum, 0, diff as u64, u64::from(BPF_F_PSEUDO_HDR))?;
            ctx.store(self.l3 + IPV6_DADDR, &to, 0)?;
        }
        if self.port != target.port {
            let flags = mangled | 2;
            ctx.l4_csum_replace(csum, u64::from(self.port), u64::from(target.port), flags)?;
            ctx.store(self.l4 + UDP_DPORT, &target.port, 0)?;
        }
        self.addr = target.addr;
        self.port = target.port;
        Ok(())
    }
}

#[inline(always)]
fn load<T>(ctx: &TcContext, offset: usize) -> Parse<T> {
    ctx.load::<T>(offset).map_err(|_| Failed)
}

#[inline(always)]
fn load_be16(ctx: &TcContext, offset: usize) -> Parse<u16> {
    load::<u16>(ctx, offset).map(u16::from_be)
}

/// The 4 bytes at `at`, as the packet holds them.
#[inline(always)]
fn word<const N: usize>(bytes: &[u8; N], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// A UDP header's destination port, as the packet holds it.
#[inline(always)]
fn port(udp: &[u8; UDP_HLEN]) -> u16 {
    u16::from_ne_bytes([udp[UDP_DPORT], udp[UDP_DPORT + 1]])
}
