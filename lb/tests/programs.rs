//! The XDP program run in the kernel on hand-made frames (BPF_PROG_TEST_RUN),
//! without attaching it anywhere: what it drops, what it passes for the TC
//! program to fan out (marked), what it leaves to the TC program (unmarked),
//! and what it counts.
//!
//! Needs root (CI runs as root); fails, rather than skips, without it.

use std::net::SocketAddr;

use ames::{Body, Packet, Prelude, Ship};
use lb_abi::{Counters, DropReason, FAMILY_V4, FAMILY_V6, META_ACCEPTED, Plan};
use seguro_lb::kernel::{Programs, XDP_DROP, XDP_PASS};
use testkit::frame::{ETH_P_8021AD, ETH_P_8021Q, Frame};

const SHIP: &str = "10.99.0.1:34543";
const PEER: &str = "10.99.0.2:5555";
const SHIP6: &str = "[fd99::1]:34543";
const PEER6: &str = "[fd99::2]:5555";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn programs(ship: &str, drop_malformed: bool) -> Programs {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "loading eBPF programs needs root (CI runs as root)"
    );
    let mut p = Programs::load().expect("the programs load and pass the verifier");
    p.publish(&plan(addr(ship), drop_malformed)).unwrap();
    p
}

fn plan(ship: SocketAddr, drop_malformed: bool) -> Plan {
    let mut plan = Plan::OFF;
    match ship.ip() {
        std::net::IpAddr::V4(v4) => {
            plan.family = FAMILY_V4;
            plan.ship_addr[0] = u32::from_ne_bytes(v4.octets());
        }
        std::net::IpAddr::V6(v6) => {
            plan.family = FAMILY_V6;
            for (w, c) in plan.ship_addr.iter_mut().zip(v6.octets().chunks(4)) {
                *w = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }
    plan.ship_port = u16::from_ne_bytes(ship.port().to_be_bytes());
    plan.drop_malformed = u8::from(drop_malformed);
    plan
}

fn ames() -> Vec<u8> {
    Packet {
        prelude: Prelude::new(Ship::new(0x1234), Ship::new(0x5678_9abc)),
        body: Body::Ames(b"hello, ship".to_vec()),
    }
    .to_bytes()
}

/// What the program did with a frame.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Passed with the mark: the TC program fans it out as is.
    Accepted,
    /// Passed unmarked: not for the ship, or for the TC program to parse.
    Passed,
    Dropped,
}

fn run(p: &Programs, frame: &Frame) -> Seen {
    let bytes = frame.bytes();
    let out = p.test_xdp(&bytes, 1).unwrap();
    match out.action {
        XDP_DROP => Seen::Dropped,
        XDP_PASS if out.output.len() == bytes.len() + 4 => {
            assert_eq!(
                out.output[..4],
                META_ACCEPTED.to_ne_bytes(),
                "the metadata is the mark"
            );
            assert_eq!(out.output[4..], bytes[..], "the frame itself is untouched");
            Seen::Accepted
        }
        XDP_PASS => {
            assert_eq!(out.output, bytes, "a passed frame is untouched");
            Seen::Passed
        }
        other => panic!("XDP action {other}"),
    }
}

fn delta(before: &Counters, after: &Counters) -> Counters {
    let mut d = *after;
    let sub = |a: &mut [u64], b: &[u64]| a.iter_mut().zip(b).for_each(|(a, b)| *a -= b);
    sub(&mut d.packets, &before.packets);
    sub(&mut d.bytes, &before.bytes);
    sub(&mut d.dropped, &before.dropped);
    d
}

#[test]
fn accepted_packets_are_marked_and_counted_by_class() {
    let p = programs(SHIP, true);
    let before = p.counters().unwrap();
    let packet = ames();
    let plain = Frame::udp(addr(PEER), addr(SHIP), &packet);
    assert_eq!(run(&p, &plain), Seen::Accepted);
    assert_eq!(
        run(&p, &plain.clone().tagged(ETH_P_8021Q, 100)),
        Seen::Accepted
    );
    let qinq = plain
        .clone()
        .tagged(ETH_P_8021Q, 100)
        .tagged(ETH_P_8021AD, 7);
    assert_eq!(run(&p, &qinq), Seen::Accepted);
    // Three tags is more than either program reads: passed, not fanned out.
    assert_eq!(run(&p, &qinq.tagged(ETH_P_8021Q, 9)), Seen::Passed);
    let d = delta(&before, &p.counters().unwrap());
    assert_eq!(d.packets[0], 3, "three Ames packets counted");
    assert_eq!(d.bytes[0], 3 * packet.len() as u64);
}

#[test]
fn malformed_packets_are_dropped_with_their_defect_unless_configured_otherwise() {
    let p = programs(SHIP, true);
    let before = p.counters().unwrap();
    let cases: [(&[u8], DropReason); 4] = [
        (b"ab", DropReason::NoHeader),
        // Short, at the very end of the frame: read byte by byte, so the
        // exact defect shows.
        (&[0x10, 0, 0, 0, 0], DropReason::BadVersion),
        (b"garbage! not ames", DropReason::BadVersion),
        (&ames()[..8], DropReason::Truncated),
    ];
    for (payload, _) in &cases {
        assert_eq!(
            run(&p, &Frame::udp(addr(PEER), addr(SHIP), payload)),
            Seen::Dropped,
            "{payload:?}"
        );
    }
    let d = delta(&before, &p.counters().unwrap());
    for reason in [
        DropReason::NoHeader,
        DropReason::BadVersion,
        DropReason::Truncated,
    ] {
        let want = cases.iter().filter(|(_, r)| *r == reason).count() as u64;
        assert_eq!(d.dropped[reason as usize], want, "{reason:?}");
    }
    assert_eq!(d.packets[5], cases.len() as u64, "counted as malformed");

    let keep = programs(SHIP, false);
    assert_eq!(
        run(&keep, &Frame::udp(addr(PEER), addr(SHIP), b"garbage!")),
        Seen::Accepted
    );
}

#[test]
fn everything_not_for_the_ship_passes_untouched() {
    let p = programs(SHIP, true);
    let before = p.counters().unwrap();
    for frame in [
        Frame::udp(addr(PEER), addr("10.99.0.1:22"), b"garbage!"),
        Frame::udp(addr(PEER), addr("10.99.0.9:34543"), b"garbage!"),
        Frame::udp(addr(PEER), addr(SHIP), b"garbage!").protocol(6),
        Frame::udp(addr(PEER6), addr(SHIP6), b"garbage!"),
    ] {
        assert_eq!(run(&p, &frame), Seen::Passed, "{frame:?}");
    }
    // An ARP request: not IP at all.
    let mut arp = vec![0xff; 6];
    arp.extend([2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend([0; 28]);
    let out = p.test_xdp(&arp, 1).unwrap();
    assert_eq!((out.action, out.output), (XDP_PASS, arp));
    assert_eq!(
        delta(&before, &p.counters().unwrap()),
        delta(&before, &before),
        "nothing counted"
    );
}

#[test]
fn unusual_layouts_are_left_to_the_tc_program() {
    let p = programs(SHIP, true);
    // IPv4 options move the UDP header: the TC program parses those.
    let options = Frame::udp(addr(PEER), addr(SHIP), b"garbage!").ip_options(&[1]);
    assert_eq!(run(&p, &options), Seen::Passed);
    let p6 = programs(SHIP6, true);
    let hop = Frame::udp(addr(PEER6), addr(SHIP6), b"garbage!").hop_by_hop();
    assert_eq!(run(&p6, &hop), Seen::Passed);
    assert_eq!(
        run(&p6, &Frame::udp(addr(PEER6), addr(SHIP6), &ames())),
        Seen::Accepted
    );
    assert_eq!(
        run(&p6, &Frame::udp(addr(PEER6), addr(SHIP6), b"ab")),
        Seen::Dropped
    );
}

#[test]
fn fragments_are_left_to_tc_and_lying_lengths_dropped() {
    let p = programs(SHIP, true);
    let before = p.counters().unwrap();
    let packet = ames();
    let frame = Frame::udp(addr(PEER), addr(SHIP), &packet);
    // The TC program decides about fragments (passed to the stack to be
    // reassembled, or a first one dropped) and counts them.
    assert_eq!(run(&p, &frame.clone().fragment(0, true)), Seen::Passed);
    assert_eq!(run(&p, &frame.clone().fragment(185, false)), Seen::Passed);
    assert_eq!(
        run(&p, &frame.clone().udp_len(packet.len() as u16 + 100)),
        Seen::Dropped
    );
    assert_eq!(run(&p, &frame.clone().udp_len(4)), Seen::Dropped);
    assert_eq!(run(&p, &frame.clone().ip_len(1400)), Seen::Dropped);
    let d = delta(&before, &p.counters().unwrap());
    assert_eq!(d.dropped[DropReason::Fragment as usize], 0);
    assert_eq!(d.dropped[DropReason::BadLength as usize], 3);
    assert_eq!(d.fragments, before.fragments, "counted by the TC program");
}

#[test]
fn the_off_plan_passes_everything() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "loading eBPF programs needs root (CI runs as root)"
    );
    let p = Programs::load().unwrap();
    assert_eq!(
        run(&p, &Frame::udp(addr(PEER), addr(SHIP), b"ab")),
        Seen::Passed
    );
    assert_eq!(
        run(&p, &Frame::udp(addr(PEER), addr(SHIP), &ames())),
        Seen::Passed
    );
}
