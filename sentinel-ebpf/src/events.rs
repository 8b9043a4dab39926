//! The ring buffer to the agent, and the per-CPU counters of what the
//! programs did.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns};
use sentinel_common::{Event, EventKind, counter, stat};

use crate::maps::{COUNTERS, EVENTS};

#[inline(always)]
pub(crate) fn bump(index: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU value owned by this CPU for the program's run.
        unsafe { *p += 1 };
    }
}

/// How an event wakes the agent. Waking is a self-IPI (irq_work), which on a
/// virtual machine costs a VM exit: more than the rest of the probe. Only
/// events the agent must see at once wake it; the rest wait for its periodic
/// drain (every few milliseconds) unless the buffer is filling up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    Now,
    Lazy,
}

/// Unread bytes past which even lazy events wake the agent.
const WAKE_BACKLOG_BYTES: u64 = 256 << 10;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

#[inline(always)]
pub(crate) fn emit(
    kind: EventKind,
    tgid: u32,
    pages: &[u64; counter::COUNT],
    aux: u64,
    aux2: u64,
    wake: Wake,
) {
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            entry.write(Event {
                kind: kind as u32,
                tgid,
                // SAFETY: helper without preconditions.
                ts_ns: unsafe { bpf_ktime_get_ns() },
                pages: *pages,
                aux,
                aux2,
            });
            let flags = match wake {
                Wake::Now => BPF_RB_FORCE_WAKEUP,
                Wake::Lazy if EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKE_BACKLOG_BYTES => {
                    BPF_RB_FORCE_WAKEUP
                }
                Wake::Lazy => BPF_RB_NO_WAKEUP,
            };
            entry.submit(flags);
            bump(stat::EVENTS);
        }
        None => bump(stat::LOST_EVENTS),
    }
}

#[inline(always)]
pub(crate) fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}
