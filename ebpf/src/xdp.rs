//! The XDP classifier: sees every frame the edge interface receives, before
//! the kernel allocates anything for it.
//!
//! It handles the layouts nearly every packet has (Ethernet with up to two
//! VLAN tags, then IPv4 without options or IPv6 without extension headers,
//! then UDP) at fixed offsets, which keeps the verifier's job simple and the
//! program short. Anything else passes unmarked, and the TC program, which
//! reads through helpers, parses it and decides the same way.

use core::{arch::asm, ptr};

use ames::{Class, PREFIX_LEN};
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    helpers::generated::bpf_xdp_adjust_meta,
    macros::xdp,
    programs::XdpContext,
};
use lb_abi::{DropReason, FAMILY_V4, FAMILY_V6, META_ACCEPTED, Plan};

use crate::count;
use crate::maps;
use crate::net::*;

enum Verdict {
    /// Not for the ship, or laid out so that only the TC program parses it.
    Pass,
    Drop(DropReason),
    /// For the ship: its class and UDP payload length.
    Ship(Class, usize),
}

#[xdp]
pub fn seguro_xdp(ctx: XdpContext) -> u32 {
    let Some(plan) = maps::plan() else {
        return XDP_PASS;
    };
    match ethernet(&ctx, plan) {
        Verdict::Pass => XDP_PASS,
        Verdict::Drop(reason) => {
            count::dropped(reason);
            XDP_DROP
        }
        Verdict::Ship(class, len) => match count::judge(plan, class) {
            Some(reason) => {
                count::class(class, len);
                count::dropped(reason);
                XDP_DROP
            }
            None => {
                // Unmarked (a driver without metadata room), the TC program
                // classifies it again and counts it there instead.
                if mark(&ctx) {
                    count::class(class, len);
                }
                XDP_PASS
            }
        },
    }
}

#[inline(always)]
fn ethernet(ctx: &XdpContext, plan: &Plan) -> Verdict {
    let want = match plan.family {
        FAMILY_V4 => ETH_P_IP,
        FAMILY_V6 => ETH_P_IPV6,
        _ => return Verdict::Pass,
    };
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + ETH_HLEN > end {
        return Verdict::Pass;
    }
    let outer = be16(data + ETH_HLEN - 2);
    if outer == want {
        return network::<ETH_HLEN>(ctx, plan);
    }
    if !is_vlan(outer) || data + ETH_HLEN + VLAN_HLEN > end {
        return Verdict::Pass;
    }
    let inner = be16(data + ETH_HLEN + VLAN_HLEN - 2);
    if inner == want {
        return network::<{ ETH_HLEN + VLAN_HLEN }>(ctx, plan);
    }
    if !is_vlan(inner) || data + ETH_HLEN + 2 * VLAN_HLEN > end {
        return Verdict::Pass;
    }
    if be16(data + ETH_HLEN + 2 * VLAN_HLEN - 2) == want {
        return network::<{ ETH_HLEN + 2 * VLAN_HLEN }>(ctx, plan);
    }
    Verdict::Pass
}

/// One copy per link-layer header length, so that every offset below is a
/// constant.
#[inline(always)]
fn network<const L3: usize>(ctx: &XdpContext, plan: &Plan) -> Verdict {
    if plan.family == FAMILY_V4 {
        ipv4::<L3>(ctx, plan)
    } else {
        ipv6::<L3>(ctx, plan)
    }
}

#[inline(always)]
fn ipv4<const L3: usize>(ctx: &XdpContext, plan: &Plan) -> Verdict {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + L3 + IPV4_HLEN + UDP_HLEN > end {
        return Verdict::Pass;
    }
    let ip = data + L3;
    let udp = ip + IPV4_HLEN;
    // 0x45: version 4, no options. With options the UDP header moves, and
    // the TC program finds it.
    if read::<u8>(ip) != 0x45
        || read::<u8>(ip + IPV4_PROTO) != IPPROTO_UDP
        || read::<u32>(ip + IPV4_DADDR) != plan.ship_addr[0]
    {
        return Verdict::Pass;
    }
    let frag = be16(ip + IPV4_FRAG);
    if frag & (IP_MF | IP_OFFSET) != 0 {
        // Fragments are rare: the TC program decides about them (pass them
        // to the stack for reassembly, or drop a first one) and counts.
        return Verdict::Pass;
    }
    if read::<u16>(udp + UDP_DPORT) != plan.ship_port {
        return Verdict::Pass;
    }
    let total = usize::from(be16(ip + IPV4_TOTAL_LEN));
    let udp_len = usize::from(be16(udp + UDP_LEN));
    if udp_len < UDP_HLEN || udp_len + IPV4_HLEN > total || !fits(ip, total, end) {
        return Verdict::Drop(DropReason::BadLength);
    }
    let len = udp_len - UDP_HLEN;
    let prefix = prefix(data, end, L3 + IPV4_HLEN + UDP_HLEN);
    Verdict::Ship(ames::classify(&prefix, len), len)
}

#[inline(always)]
fn ipv6<const L3: usize>(ctx: &XdpContext, plan: &Plan) -> Verdict {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + L3 + IPV6_HLEN + UDP_HLEN > end {
        return Verdict::Pass;
    }
    let ip = data + L3;
    let udp = ip + IPV6_HLEN;
    let dst = read::<[u32; 4]>(ip + IPV6_DADDR);
    // Extension headers move the UDP header: the TC program walks them.
    if read::<u8>(ip) >> 4 != 6
        || read::<u8>(ip + IPV6_NEXT) != IPPROTO_UDP
        || !same_addr(&dst, &plan.ship_addr)
        || read::<u16>(udp + UDP_DPORT) != plan.ship_port
    {
        return Verdict::Pass;
    }
    let payload = usize::from(be16(ip + IPV6_PAYLOAD_LEN));
    let udp_len = usize::from(be16(udp + UDP_LEN));
    if udp_len < UDP_HLEN || udp_len > payload || !fits(ip, IPV6_HLEN + payload, end) {
        return Verdict::Drop(DropReason::BadLength);
    }
    let len = udp_len - UDP_HLEN;
    let prefix = prefix(data, end, L3 + IPV6_HLEN + UDP_HLEN);
    Verdict::Ship(ames::classify(&prefix, len), len)
}

/// The first [`PREFIX_LEN`] bytes of the UDP payload at `data + off`.
///
/// A payload shorter than that at the very end of the frame is copied byte
/// by byte and the rest left zero: `classify` ignores bytes past the
/// payload's length, so this gives the exact class and defect.
#[inline(always)]
fn prefix(data: usize, end: usize, off: usize) -> [u8; PREFIX_LEN] {
    if data + off + PREFIX_LEN <= end {
        return read(data + off);
    }
    let mut prefix = [0u8; PREFIX_LEN];
    macro_rules! bytes {
        ($($k:literal)*) => {$(
            if data + off + $k < end {
                prefix[$k] = read(data + off + $k);
            }
        )*};
    }
    bytes!(0 1 2 3 4 5 6 7);
    prefix
}

/// Puts [`META_ACCEPTED`] in front of the packet for the TC program.
#[inline(always)]
fn mark(ctx: &XdpContext) -> bool {
    let grow = -(size_of::<u32>() as i32);
    // SAFETY: the helper checks the room itself and fails if there is none.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, grow) } != 0 {
        return false;
    }
    let (meta, data) = (ctx.metadata(), ctx.data());
    if meta + size_of::<u32>() > data {
        return false;
    }
    // SAFETY: checked just above that the four bytes lie inside the metadata.
    unsafe { ptr::write_unaligned(meta as *mut u32, META_ACCEPTED) };
    true
}

/// `start + len <= end` for packet pointers, with `len` at most 17 bits.
///
/// In assembly because LLVM turns the plain comparison into
/// `len <= end - start`, a subtraction of packet pointers that the verifier
/// refuses; and the mask shows the verifier that `len` is bounded.
#[inline(always)]
fn fits(start: usize, len: usize, end: usize) -> bool {
    let ok: u64;
    // SAFETY: arithmetic and a comparison on registers only.
    unsafe {
        asm!(
            "{ok} = 0",
            "{len} &= 0x1ffff",
            "{p} += {len}",
            "if {p} > {end} goto +1",
            "{ok} = 1",
            ok = out(reg) ok,
            p = inout(reg) start => _,
            len = inout(reg) len => _,
            end = in(reg) end,
            options(pure, nomem, nostack),
        );
    }
    ok == 1
}

/// Reads a `T` at a packet address the caller has bounds-checked.
#[inline(always)]
fn read<T: Copy>(addr: usize) -> T {
    // SAFETY: every caller checks `addr + size_of::<T>() <= data_end` first.
    unsafe { ptr::read_unaligned(addr as *const T) }
}

#[inline(always)]
fn be16(addr: usize) -> u16 {
    u16::from_be(read(addr))
}
