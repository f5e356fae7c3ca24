//! The devmap egress program: rewrites each copy of a broadcast frame for
//! the replica behind the device it is leaving by.
//!
//! The kernel runs it once per device in [`maps::DEVICES`], on that device's
//! own copy, with `egress_ifindex` set: the loader puts a device in the map
//! only when exactly one ready replica is behind it, so the device names
//! the replica. The XDP program broadcasts only untagged frames whose
//! headers it parsed at fixed offsets (IPv4 without options, IPv6 without
//! extension headers), so the offsets here are fixed too. The destination
//! is read from the frame, not the plan, so a plan switch between the XDP
//! program and this one still yields consistent checksums.

use core::ptr;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    macros::xdp,
    programs::XdpContext,
};
use lb_abi::{FAMILY_V4, FAMILY_V6, MAX_REPLICAS, Plan, Target};

use crate::count;
use crate::maps;
use crate::net::*;
use crate::xdp::read;

#[xdp(map = "devmap")]
pub fn seguro_egress(ctx: XdpContext) -> u32 {
    let Some(plan) = maps::plan() else {
        return XDP_DROP;
    };
    // SAFETY: a field of the context the kernel passed in.
    let egress = unsafe { (*ctx.ctx).egress_ifindex };
    let Some(target) = target(plan, egress) else {
        // The device left the plan since the loader last synced the map.
        return XDP_DROP;
    };
    let rewritten = match plan.family {
        FAMILY_V4 => ipv4(&ctx, target),
        FAMILY_V6 => ipv6(&ctx, target),
        _ => false,
    };
    if rewritten {
        count::replica(target.slot, |c| &mut c.copies);
        XDP_PASS
    } else {
        count::replica(target.slot, |c| &mut c.clone_failures);
        XDP_DROP
    }
}

/// The ready target whose copy leaves by `ifindex`.
#[inline(always)]
fn target(plan: &Plan, ifindex: u32) -> Option<&Target> {
    let len = (plan.len as usize).min(MAX_REPLICAS);
    for i in 0..MAX_REPLICAS {
        if i >= len {
            break;
        }
        let target = plan.targets.get(i)?;
        if target.ready != 0 && target.ifindex == ifindex {
            return Some(target);
        }
    }
    None
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, target: &Target) -> bool {
    let (data, end) = (ctx.data(), ctx.data_end());
    let ip = data + ETH_HLEN;
    let udp = ip + IPV4_HLEN;
    if udp + UDP_HLEN > end {
        return false;
    }
    macs(data, target);
    let from: u32 = read(ip + IPV4_DADDR);
    let to = target.addr[0];
    let from_port: u16 = read(udp + UDP_DPORT);
    let ip_csum = update(read(ip + IPV4_CSUM), &halves(from), &halves(to));
    write(ip + IPV4_CSUM, ip_csum);
    let udp_csum: u16 = read(udp + UDP_CSUM);
    // Zero means the sender computed none, and it must stay zero.
    if udp_csum != 0 {
        let [f0, f1] = halves(from);
        let [t0, t1] = halves(to);
        let sum = update(udp_csum, &[f0, f1, from_port], &[t0, t1, target.port]);
        write(udp + UDP_CSUM, nonzero(sum));
    }
    write(ip + IPV4_DADDR, to);
    write(udp + UDP_DPORT, target.port);
    true
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, target: &Target) -> bool {
    let (data, end) = (ctx.data(), ctx.data_end());
    let ip = data + ETH_HLEN;
    let udp = ip + IPV6_HLEN;
    if udp + UDP_HLEN > end {
        return false;
    }
    macs(data, target);
    let from: [u32; 4] = read(ip + IPV6_DADDR);
    let from_port: u16 = read(udp + UDP_DPORT);
    let mut old = [0u16; 9];
    let mut new = [0u16; 9];
    for k in 0..4 {
        let [a, b] = halves(from[k]);
        let [c, d] = halves(target.addr[k]);
        (old[2 * k], old[2 * k + 1]) = (a, b);
        (new[2 * k], new[2 * k + 1]) = (c, d);
    }
    (old[8], new[8]) = (from_port, target.port);
    // IPv6 has no header checksum; the UDP one is mandatory.
    let sum = update(read(udp + UDP_CSUM), &old, &new);
    write(udp + UDP_CSUM, nonzero(sum));
    write(ip + IPV6_DADDR, target.addr);
    write(udp + UDP_DPORT, target.port);
    true
}

/// Destination: the next hop; source: the device the copy leaves by.
#[inline(always)]
fn macs(data: usize, target: &Target) {
    write(data, target.dmac);
    write(data + 6, target.smac);
}

/// A checksum after 16-bit words `old` became `new` (RFC 1624, eqn. 3:
/// `HC' = ~(~HC + ~m + m')`). The words are as the packet holds them, in
/// whatever byte order a load gives: the one's complement sum does not care,
/// as long as all of them are read the same way.
#[inline(always)]
fn update<const N: usize>(checksum: u16, old: &[u16; N], new: &[u16; N]) -> u16 {
    let mut sum = u32::from(!checksum);
    for k in 0..N {
        sum += u32::from(!old[k]) + u32::from(new[k]);
    }
    // At most 1 + 2N words of 16 bits: two folds carry everything back in.
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// A UDP checksum that computes to zero is sent as all ones (RFC 768), as
/// zero means "none".
#[inline(always)]
fn nonzero(sum: u16) -> u16 {
    if sum == 0 { 0xffff } else { sum }
}

/// The two 16-bit words of a 32-bit value as the packet holds it.
#[inline(always)]
fn halves(word: u32) -> [u16; 2] {
    let b = word.to_ne_bytes();
    [
        u16::from_ne_bytes([b[0], b[1]]),
        u16::from_ne_bytes([b[2], b[3]]),
    ]
}

/// Writes a `T` at a packet address the caller has bounds-checked.
#[inline(always)]
fn write<T>(addr: usize, value: T) {
    // SAFETY: every caller checks that the whole header, and so these bytes,
    // lie before data_end.
    unsafe { ptr::write_unaligned(addr as *mut T, value) }
}
