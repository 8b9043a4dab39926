//! Page faults per process, counted in a per-CPU slot and flushed to
//! FAULTS when the CPU switches process.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::{
    events::current_tgid,
    maps::{FAULT_SLOT, FAULTS},
};

#[inline(always)]
fn flush_faults(tgid: u32, n: u64) {
    if tgid == 0 || n == 0 {
        return;
    }
    match FAULTS.get_ptr_mut(tgid) {
        // SAFETY: map value pointer, valid for this run. Not atomic (the bpf
        // target's core has no fetch_add): two CPUs flushing the same tgid
        // at once can lose one batch, which a fault statistic tolerates.
        Some(p) => unsafe { *p += n },
        None => {
            let _ = FAULTS.insert(tgid, n, 0);
        }
    }
}

/// `trace_page_fault_user(unsigned long address, struct pt_regs *regs, unsigned long error_code)`.
#[btf_tracepoint(function = "page_fault_user")]
pub fn page_fault_user(_ctx: BtfTracePointContext) -> i32 {
    let Some(slot) = FAULT_SLOT.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU slot, exclusively ours while this program runs.
    let slot = unsafe { &mut *slot };
    let tgid = current_tgid();
    if slot.tgid == tgid {
        slot.pending += 1;
        if slot.pending >= 1024 {
            flush_faults(tgid, slot.pending);
            slot.pending = 0;
        }
    } else {
        flush_faults(slot.tgid, slot.pending);
        slot.tgid = tgid;
        slot.pending = 1;
    }
    0
}
