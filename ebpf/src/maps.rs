//! The maps the loader fills and reads (layouts in `lb-abi`).

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};
use lb_abi::{Counters, Plan};

/// Which entry of [`PLANS`] is live.
#[map]
static ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

/// The live plan and the one the loader is writing.
#[map]
static PLANS: Array<Plan> = Array::with_max_entries(2, 0);

#[map]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

/// The live plan. Read once per packet, so a packet sees one plan throughout
/// even if the loader flips [`ACTIVE`] meanwhile.
#[inline(always)]
pub fn plan() -> Option<&'static Plan> {
    let active = *ACTIVE.get(0)?;
    PLANS.get(active & 1)
}

/// This CPU's counters.
#[inline(always)]
pub fn counters() -> Option<&'static mut Counters> {
    // SAFETY: a per-CPU value is only touched by the program running on that
    // CPU, and programs do not preempt each other on one CPU.
    COUNTERS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}
