//! Counting, shared by both programs so that a packet is counted the same
//! way whichever program decides about it.

use ames::Class;
use lb_abi::{Counters, DropReason, Plan};

use crate::maps;

/// What to do with a packet for the ship, given its class: `Some` reason to
/// drop it, or `None` to copy it to the replicas.
#[inline(always)]
pub fn judge(plan: &Plan, class: Class) -> Option<DropReason> {
    lb_abi::judge(plan.drop_malformed != 0, class)
}

/// Counts a classified packet of `len` payload bytes.
#[inline(always)]
pub fn class(class: Class, len: usize) {
    if let Some(c) = maps::counters() {
        c.classified(class, len as u64);
    }
}

#[inline(always)]
pub fn dropped(reason: DropReason) {
    if let Some(c) = maps::counters() {
        c.dropped_for(reason);
    }
}

#[inline(always)]
pub fn passed() {
    if let Some(c) = maps::counters() {
        c.passed += 1;
    }
}

#[inline(always)]
pub fn fragment() {
    if let Some(c) = maps::counters() {
        c.fragments += 1;
    }
}

/// Adds one to a replica's counter in `pick(counters)`.
#[inline(always)]
pub fn replica(slot: u8, pick: impl FnOnce(&mut Counters) -> &mut [u64; lb_abi::MAX_REPLICAS]) {
    if let Some(c) = maps::counters() {
        c.count_replica(slot, pick);
    }
}
