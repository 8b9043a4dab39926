//! A process's life as the agent follows it: fork, exec, exit, and the
//! kernel OOM killer's choice.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use sentinel_common::{EventKind, counter, precise};

use crate::{
    events::{Wake, current_tgid, emit},
    maps::{
        ATTACH_PID_OFFSET, EXIT_GROUP_DEAD_OFFSET, FAULTS, MAPPED, OFF_TASK_PID, OFF_TASK_TGID,
        PRECISE, RSS, TRIPWIRES, global,
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
            lifecycle_wake(),
        );
    }
    0
}

/// Forks and exits wake the agent lazily (its periodic drain) while the
/// per-fault probe is attached; while it rests, at once: the agent then
/// has no periodic drain to wait for, and nothing else to do.
#[inline(always)]
fn lifecycle_wake() -> Wake {
    if PRECISE.get(precise::RESTING).copied().unwrap_or(0) != 0 {
        Wake::Now
    } else {
        Wake::Lazy
    }
}

/// `sched:sched_process_exec`.
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> i32 {
    let tgid = current_tgid();
    // The old image's mm was freed; its address may be reused. Its counters
    // and its rule's ceiling belong to the old program: the agent re-arms
    // after matching the new one.
    let _ = forget_in_slots(tgid);
    let _ = RSS.remove(tgid);
    let _ = TRIPWIRES.remove(tgid);
    // At once: the new program may fall under a rule whose line is near,
    // and while the per-fault probe rests nothing else reports it. Execs
    // are rare next to faults.
    emit(EventKind::Exec, tgid, &[0; counter::COUNT], 0, 0, Wake::Now);
    0
}

/// `cgroup:cgroup_attach_task`: a task moved to another cgroup, in any
/// hierarchy (the agent's own freezer moves included: the agent compares
/// the memory cgroup before it re-reads anything). Without the per-fault
/// probe nothing else would tell the agent that a process came under a
/// cgroup's rule.
#[tracepoint]
pub fn cgroup_attach_task(ctx: TracePointContext) -> i32 {
    let off = global(&ATTACH_PID_OFFSET);
    if off == 0 {
        return 0;
    }
    // SAFETY: the agent read this offset from the event's format.
    let pid: i32 = unsafe { ctx.read_at(off as usize) }.unwrap_or(0);
    if pid > 0 {
        emit(
            EventKind::Moved,
            pid as u32,
            &[0; counter::COUNT],
            0,
            0,
            Wake::Now,
        );
    }
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
    emit(EventKind::Exit, tgid, &pages, faults, 0, lifecycle_wake());
    let _ = RSS.remove(tgid);
    let _ = FAULTS.remove(tgid);
    let _ = MAPPED.remove(tgid);
    let _ = TRIPWIRES.remove(tgid);
    0
}
