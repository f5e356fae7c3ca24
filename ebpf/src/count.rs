//! Counting, shared by both programs so that a packet is counted the same
//! way whichever program decides about it.

use ames::Class;
use lb_abi::{Counters, DropReason, Plan};

use crate::maps;

/// What to do with a packet for the ship, given its class: `Some` reason to
/// drop it, or `None` to copy it to the replicas.
#[inline(always)]
pub fn judge(plan: &Plan, class: Class) -> Option<DropReason> {
    match class {
        Class::Malformed(defect) if plan.drop_malformed != 0 => Some(DropReason::malformed(defect)),
        _ => None,
    }
}

/// Counts a classified packet of `len` payload bytes.
#[inline(always)]
pub fn class(class: Class, len: usize) {
    if let Some(c) = maps::counters() {
        let tag = usize::from(class.tag());
        if let Some(n) = c.packets.get_mut(tag) {
            *n += 1;
        }
        if let Some(n) = c.bytes.get_mut(tag) {
            *n += len as u64;
        }
    }
}

#[inline(always)]
pub fn dropped(reason: DropReason) {
    if let Some(c) = maps::counters()
        && let Some(n) = c.dropped.get_mut(reason as usize)
    {
        *n += 1;
    }
}

#[inline(always)]
pub fn passed() {
    if let Some(c) = maps::counters() {
        c.passed += 1;
    }
}

/// Adds one to a replica's counter in `pick(counters)`.
#[inline(always)]
pub fn replica(slot: u8, pick: impl FnOnce(&mut Counters) -> &mut [u64; lb_abi::MAX_REPLICAS]) {
    if let Some(c) = maps::counters()
        && let Some(n) = pick(c).get_mut(usize::from(slot))
    {
        *n += 1;
    }
}
