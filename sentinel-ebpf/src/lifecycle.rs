//! A process's life as the agent follows it: fork, exec, exit, and the
//! kernel OOM killer's choice.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use sentinel_common::{EventKind, counter};

use crate::{
    events::{Wake, current_tgid, emit},
    maps::{
        EXIT_GROUP_DEAD_OFFSET, FAULTS, MAPPED, OFF_TASK_PID, OFF_TASK_TGID, RSS, TRIPWIRES, global,
    },
    rss::forget_in_slots,
};

/// `oom:mark_victim`: the kernel OOM killer chose `pid` (offset 8).
#[tracepoint]
pub fn oom_mark_victim(ctx: TracePointContext) -> i32 {
    // SAFETY: offset from /sys/kernel/tracing/events/oom/mark_victim/format.
    let pid: i32 = unsafe { ctx.read_at(8) }.unwrap_or(0);
    emit(
        EventKind::OomVictim,
        pid as u32,
        &[0; counter::COUNT],
        0,
        0,
        Wake::Now,
    );
    0
}

/// `trace_sched_process_fork(struct task_struct *parent, struct task_struct *child)`.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let child: u64 = ctx.arg(1);
    // SAFETY: probe_read checks the address.
    let (pid, tgid) = unsafe {
        (
            bpf_probe_read_kernel((child + global(&OFF_TASK_PID)) as *const i32).unwrap_or(0),
            bpf_probe_read_kernel((child + global(&OFF_TASK_TGID)) as *const i32).unwrap_or(-1),
        )
    };
    // Threads share their creator's process; only new processes matter.
    if pid == tgid {
        emit(
            EventKind::Fork,
            current_tgid(),
            &[0; counter::COUNT],
            tgid as u64,
            0,
            Wake::Lazy,
        );
    }
    0
}

/// `sched:sched_process_exec`.
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> i32 {
    let tgid = current_tgid();
    // The old image's mm was freed; its address may be reused. Its counters
    // and its rule's ceiling belong to the old program: the agent re-arms
    // after matching the new one, and wants to know at once if it governed
    // the old.
    let _ = forget_in_slots(tgid);
    let _ = RSS.remove(tgid);
    // SAFETY: copied out at once.
    let governed = unsafe { TRIPWIRES.get(tgid) }.is_some();
    let _ = TRIPWIRES.remove(tgid);
    let wake = if governed { Wake::Now } else { Wake::Lazy };
    emit(EventKind::Exec, tgid, &[0; counter::COUNT], 0, 0, wake);
    0
}

/// `sched:sched_process_exit`; `group_dead` (offset 32) marks the last thread.
#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let off = global(&EXIT_GROUP_DEAD_OFFSET);
    let last = if off != 0 {
        // SAFETY: the agent read this offset from the event's format.
        unsafe { ctx.read_at::<u8>(off as usize) }.unwrap_or(0) != 0
    } else {
        // Kernels without `group_dead`: take the leader's exit as the
        // process's (its other threads rarely outlive it for long).
        pid_tgid as u32 == tgid
    };
    if !last {
        return 0;
    }
    let mut pages = [0u64; counter::COUNT];
    // SAFETY: copied out at once.
    if let Some(s) = unsafe { RSS.get(tgid) } {
        pages = s.pages;
    }
    if let Some(p) = forget_in_slots(tgid) {
        pages = p;
    }
    let faults = unsafe { FAULTS.get(tgid) }.copied().unwrap_or(0);
    emit(EventKind::Exit, tgid, &pages, faults, 0, Wake::Lazy);
    let _ = RSS.remove(tgid);
    let _ = FAULTS.remove(tgid);
    let _ = MAPPED.remove(tgid);
    let _ = TRIPWIRES.remove(tgid);
    0
}
