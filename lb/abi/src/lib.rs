//! The contract between the edge box's kernel programs (`ebpf/`) and their
//! loader (`lb/`): the names and layouts of the maps they share, the
//! counters, and the mark the XDP program leaves for the TC program.
//!
//! Everything here is `#[repr(C)]` without padding, so that the loader can
//! copy values in and out of maps byte for byte. Addresses and ports are kept
//! in network byte order, as the packet holds them: an IPv4 address is the
//! first word of `[u32; 4]`, read from the packet without swapping.
#![no_std]

use ames::{Class, Defect};

/// The most replicas the kernel programs copy a packet to: the bound of the
/// TC program's clone loop. Must equal `config::MAX_REPLICAS` (the loader
/// checks this at compile time).
pub const MAX_REPLICAS: usize = 16;

/// The XDP program, attached to the edge interface.
pub const PROG_XDP: &str = "seguro_xdp";
/// The TC program, attached to the edge interface's ingress.
pub const PROG_TC: &str = "seguro_tc";

/// `Array<u32>`, one entry: which of the two [`Plan`]s is live (0 or 1).
pub const MAP_ACTIVE: &str = "ACTIVE";
/// `Array<Plan>`, two entries: the live plan and the one being written.
pub const MAP_PLANS: &str = "PLANS";
/// `PerCpuArray<Counters>`, one entry.
pub const MAP_COUNTERS: &str = "COUNTERS";

/// Written by the XDP program as packet metadata in front of a packet it
/// classified and accepted: the TC program fans such a packet out without
/// classifying it again. Only eBPF programs can write metadata, so a peer
/// cannot forge it.
pub const META_ACCEPTED: u32 = 0x5347_4c42;

/// Address families as [`Plan::family`] holds them.
pub const FAMILY_NONE: u8 = 0;
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// What the programs do with packets to the ship's address, and where the
/// copies go. The loader writes a whole plan into the entry that is not live
/// and then flips [`MAP_ACTIVE`], so a packet never sees half of an update.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The ship's public IP, network byte order; IPv4 uses word 0.
    pub ship_addr: [u32; 4],
    /// The ship's public port, network byte order.
    pub ship_port: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`]; [`FAMILY_NONE`] passes everything.
    pub family: u8,
    /// 1: drop malformed packets; 0: copy them to the replicas like the rest.
    pub drop_malformed: u8,
    /// How many of `targets` are in use.
    pub len: u32,
    /// 1: a relay socket on the edge box receives the ship's datagrams the
    /// kernel reassembles, so first fragments to the ship's port are passed
    /// to the edge box's stack (and counted in [`Counters::fragments`]);
    /// 0: they are dropped as [`DropReason::Fragment`].
    pub reassemble: u32,
    pub targets: [Target; MAX_REPLICAS],
}

/// One replica: where its copy goes and how to get there.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The replica's Ames IP, network byte order; IPv4 uses word 0.
    pub addr: [u32; 4],
    /// The replica's Ames port, network byte order.
    pub port: u16,
    /// Which entry of the per-replica counters this replica's copies count
    /// in; stable while the replica stays in the config.
    pub slot: u8,
    /// 1 when the next hop is resolved; 0: the copy is skipped and counted.
    pub ready: u8,
    /// The interface the copy leaves by.
    pub ifindex: u32,
    /// The next hop's MAC (the replica's, or its router's).
    pub dmac: [u8; 6],
    /// `ifindex`'s own MAC.
    pub smac: [u8; 6],
}

impl Target {
    pub const EMPTY: Target = Target {
        addr: [0; 4],
        port: 0,
        slot: 0,
        ready: 0,
        ifindex: 0,
        dmac: [0; 6],
        smac: [0; 6],
    };
}

impl Plan {
    /// Passes every packet: what the maps hold before the loader writes them.
    pub const OFF: Plan = Plan {
        ship_addr: [0; 4],
        ship_port: 0,
        family: FAMILY_NONE,
        drop_malformed: 1,
        len: 0,
        reassemble: 0,
        targets: [Target::EMPTY; MAX_REPLICAS],
    };

    /// The targets in use.
    pub fn targets(&self) -> &[Target] {
        &self.targets[..(self.len as usize).min(MAX_REPLICAS)]
    }
}

/// How many classes [`ames::Class::tag`] distinguishes.
pub const CLASSES: usize = 6;

/// Label values for [`Counters::packets`] and [`Counters::bytes`], by tag.
pub const CLASS_NAMES: [&str; CLASSES] = [
    Class::Ames.name(),
    Class::FineRequest.name(),
    Class::FineResponse.name(),
    Class::Stun.name(),
    Class::Mesa.name(),
    Class::Malformed(Defect::NoHeader).name(),
];

/// Why a whole packet to the ship's address was dropped.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Malformed (`lb.drop_malformed`): shorter than an Ames header.
    NoHeader = 0,
    /// Malformed: a version vere does not speak.
    BadVersion = 1,
    /// Malformed: shorter than its header says.
    Truncated = 2,
    /// Malformed: longer than its format allows.
    TooLong = 3,
    /// The first IP fragment of a datagram to the ship's port, when nothing
    /// on the edge box receives reassembled datagrams (see
    /// [`Plan::reassemble`]).
    Fragment = 4,
    /// The IP or UDP length disagrees with the frame.
    BadLength = 5,
    /// Accepted, but no replica could be sent a copy (none configured, or
    /// no next hop resolved).
    Undelivered = 6,
}

/// How many [`DropReason`] reasons there are.
pub const DROP_REASONS: usize = 7;

/// Label values for [`Counters::dropped`], by reason.
pub const DROP_NAMES: [&str; DROP_REASONS] = [
    "no_header",
    "bad_version",
    "truncated",
    "too_long",
    "fragment",
    "bad_length",
    "undelivered",
];

/// What the fan-out does with a packet for the ship of class `class`:
/// `Some` reason to drop it, or `None` to copy it to the replicas. The
/// kernel programs and the userspace relay both decide here.
#[inline(always)]
pub const fn judge(drop_malformed: bool, class: Class) -> Option<DropReason> {
    match class {
        Class::Malformed(defect) if drop_malformed => Some(DropReason::malformed(defect)),
        _ => None,
    }
}

impl DropReason {
    /// The drop a malformed packet gets.
    pub const fn malformed(defect: Defect) -> DropReason {
        match defect {
            Defect::NoHeader => DropReason::NoHeader,
            Defect::BadVersion => DropReason::BadVersion,
            Defect::Truncated => DropReason::Truncated,
            Defect::TooLong => DropReason::TooLong,
        }
    }

    pub const fn name(self) -> &'static str {
        DROP_NAMES[self as usize]
    }
}

/// Every counter the programs keep, one copy per CPU.
///
/// Per-CPU, so the programs increment without atomics; the loader sums the
/// CPUs' copies when it exports them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Packets to the ship's address, by class tag.
    pub packets: [u64; CLASSES],
    /// UDP payload bytes of those packets, by class tag.
    pub bytes: [u64; CLASSES],
    /// Packets to the ship's address dropped, by [`DropReason`] reason.
    pub dropped: [u64; DROP_REASONS],
    /// Packets not for the ship, passed untouched.
    pub passed: u64,
    /// First IP fragments of datagrams to the ship's port, passed to the
    /// edge box's stack for it to reassemble and the relay socket to fan
    /// out whole.
    pub fragments: u64,
    /// Copies sent, by replica slot.
    pub copies: [u64; MAX_REPLICAS],
    /// Copies skipped because the next hop was unresolved, by slot.
    pub skipped: [u64; MAX_REPLICAS],
    /// Copies that `bpf_clone_redirect` failed to send, by slot.
    pub clone_failures: [u64; MAX_REPLICAS],
}

impl Counters {
    pub const ZERO: Counters = Counters {
        packets: [0; CLASSES],
        bytes: [0; CLASSES],
        dropped: [0; DROP_REASONS],
        passed: 0,
        fragments: 0,
        copies: [0; MAX_REPLICAS],
        skipped: [0; MAX_REPLICAS],
        clone_failures: [0; MAX_REPLICAS],
    };

    /// Counts a packet for the ship of class `class` with `len` payload
    /// bytes. (`get_mut` rather than indexing: the kernel programs may not
    /// contain a panic path.)
    #[inline(always)]
    pub fn classified(&mut self, class: Class, len: u64) {
        let tag = usize::from(class.tag());
        if let Some(n) = self.packets.get_mut(tag) {
            *n = n.wrapping_add(1);
        }
        if let Some(n) = self.bytes.get_mut(tag) {
            *n = n.wrapping_add(len);
        }
    }

    /// Counts a packet for the ship dropped for `reason`.
    #[inline(always)]
    pub fn dropped_for(&mut self, reason: DropReason) {
        if let Some(n) = self.dropped.get_mut(reason as usize) {
            *n = n.wrapping_add(1);
        }
    }

    /// Adds one to replica `slot`'s entry of the per-replica counter that
    /// `pick` chooses (`copies`, `skipped` or `clone_failures`).
    #[inline(always)]
    pub fn count_replica(
        &mut self,
        slot: u8,
        pick: impl FnOnce(&mut Counters) -> &mut [u64; MAX_REPLICAS],
    ) {
        if let Some(n) = pick(self).get_mut(usize::from(slot)) {
            *n = n.wrapping_add(1);
        }
    }

    /// Adds `other` into `self`, field by field (wrapping, as the kernel's
    /// counters do).
    pub fn add(&mut self, other: &Counters) {
        fn sum<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            for (a, b) in a.iter_mut().zip(b) {
                *a = a.wrapping_add(*b);
            }
        }
        sum(&mut self.packets, &other.packets);
        sum(&mut self.bytes, &other.bytes);
        sum(&mut self.dropped, &other.dropped);
        self.passed = self.passed.wrapping_add(other.passed);
        self.fragments = self.fragments.wrapping_add(other.fragments);
        sum(&mut self.copies, &other.copies);
        sum(&mut self.skipped, &other.skipped);
        sum(&mut self.clone_failures, &other.clone_failures);
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data without padding (checked by the size asserts
    // below), valid for any bit pattern.
    unsafe impl aya::Pod for super::Plan {}
    unsafe impl aya::Pod for super::Counters {}
}

// The layouts have no padding, so copying them byte for byte copies no
// uninitialised memory.
const _: () = assert!(core::mem::size_of::<Target>() == 36);
const _: () = assert!(core::mem::size_of::<Plan>() == 28 + 36 * MAX_REPLICAS);
const _: () = assert!(
    core::mem::size_of::<Counters>() == 8 * (2 * CLASSES + DROP_REASONS + 2 + 3 * MAX_REPLICAS)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_follow_tags() {
        let classes = [
            Class::Ames,
            Class::FineRequest,
            Class::FineResponse,
            Class::Stun,
            Class::Mesa,
            Class::Malformed(Defect::Truncated),
        ];
        for class in classes {
            assert_eq!(CLASS_NAMES[usize::from(class.tag())], class.name());
        }
    }

    #[test]
    fn every_defect_has_its_own_drop_reason() {
        let defects = [
            Defect::NoHeader,
            Defect::BadVersion,
            Defect::Truncated,
            Defect::TooLong,
        ];
        for (i, d) in defects.into_iter().enumerate() {
            assert_eq!(DropReason::malformed(d) as usize, i);
        }
        assert_eq!(DropReason::Undelivered as usize + 1, DROP_REASONS);
        assert_eq!(DropReason::Fragment.name(), "fragment");
    }

    #[test]
    fn only_malformed_packets_are_judged_and_only_when_asked() {
        let bad = Class::Malformed(Defect::BadVersion);
        assert_eq!(judge(true, bad), Some(DropReason::BadVersion));
        assert_eq!(judge(false, bad), None);
        assert_eq!(judge(true, Class::Ames), None);
        let mut c = Counters::ZERO;
        c.classified(bad, 40);
        c.classified(Class::Stun, 20);
        c.dropped_for(DropReason::BadVersion);
        c.count_replica(3, |c| &mut c.copies);
        c.count_replica(99, |c| &mut c.copies);
        assert_eq!(c.copies[3], 1);
        assert_eq!(
            c.copies.iter().sum::<u64>(),
            1,
            "slot 99 is out of range and ignored"
        );
        assert_eq!(c.packets[usize::from(bad.tag())], 1);
        assert_eq!(c.bytes[usize::from(Class::Stun.tag())], 20);
        assert_eq!(c.dropped[DropReason::BadVersion as usize], 1);
    }

    #[test]
    fn counters_add_up() {
        let mut a = Counters::ZERO;
        let mut b = Counters::ZERO;
        b.packets[0] = 3;
        b.copies[15] = u64::MAX;
        a.add(&b);
        a.add(&b);
        assert_eq!(a.packets[0], 6);
        assert_eq!(a.copies[15], u64::MAX - 1);
    }

    #[test]
    fn plan_off_has_no_targets() {
        assert!(Plan::OFF.targets().is_empty());
        let mut p = Plan::OFF;
        p.len = 99;
        assert_eq!(p.targets().len(), MAX_REPLICAS);
    }
}
