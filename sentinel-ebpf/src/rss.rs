//! Resident memory per process, from `rss_stat`, and the tripwire that
//! stops a governed process in its own context when it reaches its ceiling.

use aya_ebpf::{
    helpers::{
        bpf_get_current_task, bpf_probe_read_kernel,
        generated::{bpf_get_smp_processor_id, bpf_send_signal},
    },
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use sentinel_common::{EventKind, Tripwire, counter, precise, stat};

use crate::{
    events::{Wake, bump, current_tgid, emit},
    maps::{
        MAX_CPUS, NR_CPUS, OFF_MM_RSS_STAT, OFF_PERCPU_COUNTER_COUNT, OFF_TASK_GROUP_LEADER,
        OFF_TASK_MM, OFF_TASK_START_BOOTTIME, PERCPU_COUNTER_SIZE, PRECISE, RSS, RSS_DISPATCH_ONLY,
        RSS_SLOTS, RssSlot, RssState, STEP_PAGES, TRIPWIRES, global,
    },
};

const SIGSTOP: u32 = 19;

#[inline(always)]
fn this_cpu_slot() -> &'static mut RssSlot {
    // SAFETY: inlined by the verifier on x86-64; no preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() } as usize & (MAX_CPUS - 1);
    // SAFETY: the index is masked into bounds; only this CPU's programs use
    // this slot, and one program runs at a time per CPU.
    unsafe { &mut *core::ptr::addr_of_mut!(RSS_SLOTS[cpu]) }
}

/// Forgets `tgid` in every CPU's slot. Slots are keyed by mm, and an mm's
/// address is reused once it is freed (exit, exec), so a stale slot would
/// credit another process's memory to this one.
#[inline(always)]
pub(crate) fn forget_in_slots(tgid: u32) -> Option<[u64; counter::COUNT]> {
    let n = (global(&NR_CPUS) as usize).min(MAX_CPUS);
    let mut last = None;
    let mut i = 0;
    while i < n {
        // SAFETY: i < MAX_CPUS; a slot of another CPU may be written by that
        // CPU at the same time, and the worst case is one stale sample.
        let slot = unsafe { &mut *core::ptr::addr_of_mut!(RSS_SLOTS[i & (MAX_CPUS - 1)]) };
        if slot.tgid == tgid {
            last = Some(slot.state.pages);
            slot.tgid = 0;
            slot.mm = 0;
        }
        i += 1;
    }
    last
}

/// Reads `mm->rss_stat[member].count`, the value the rss_stat record reports.
#[inline(always)]
fn read_counter(mm: u64, member: u64) -> Option<u64> {
    // The verifier tracks `mm` as a typed kernel pointer and only accepts
    // offsets it can bound.
    if member >= counter::COUNT as u64 {
        return None;
    }
    let addr = mm
        + global(&OFF_MM_RSS_STAT)
        + member * global(&PERCPU_COUNTER_SIZE)
        + global(&OFF_PERCPU_COUNTER_COUNT);
    // SAFETY: probe_read tolerates any address; a bad one returns an error.
    let v: i64 = unsafe { bpf_probe_read_kernel(addr as *const i64) }.ok()?;
    // percpu_counter is approximate and can dip below zero.
    Some(if v < 0 { 0 } else { v as u64 })
}

#[inline(always)]
fn charged(pages: &[u64; counter::COUNT]) -> u64 {
    pages[counter::ANON] + pages[counter::SHMEM] + pages[counter::SWAP]
}

/// Makes `slot` hold `tgid`: writes the previous process back to RSS and
/// loads (or seeds from the mm) the new one.
#[inline(always)]
fn switch_slot(
    slot: &mut RssSlot,
    tgid: u32,
    mm: u64,
    epoch: u64,
    seed: impl Fn(u64) -> Option<u64>,
) {
    if slot.tgid != 0 {
        let _ = RSS.insert(slot.tgid, slot.state, 0);
    }
    slot.tgid = tgid;
    // The saved state may be stale: read on the first event after a switch.
    slot.skipped = SAMPLE_EVERY - 1;
    slot.mm = mm;
    // SAFETY: the value is copied out before any other map operation.
    match unsafe { RSS.get(tgid) } {
        Some(s) if s.epoch == epoch => slot.state = *s,
        _ => {
            let mut pages = [0u64; counter::COUNT];
            let mut i = 0;
            while i < counter::COUNT {
                pages[i] = seed(i as u64).unwrap_or(0);
                i += 1;
            }
            // Reported as zero, so the first crossing announces the process.
            slot.state = RssState {
                pages,
                reported_charged: 0,
                reported_file: 0,
                epoch,
            };
        }
    }
    rearm(slot);
}

/// Caches the slot process's TRIPWIRES entry (none: ceiling 0).
#[inline(always)]
fn rearm(slot: &mut RssSlot) {
    // SAFETY: copied out at once.
    let t = unsafe { TRIPWIRES.get(slot.tgid) }
        .copied()
        .unwrap_or_default();
    slot.ceiling = t.ceiling_pages;
    slot.start_ticks = t.start_ticks;
}

/// Whether the current process is the one the slot's entry was armed for:
/// the agent can arm a pid just as its process exits, and the pid be
/// reused. Read only at the ceiling, so it costs nothing per event.
#[inline(always)]
fn current_is_armed(slot: &RssSlot) -> bool {
    let (off_leader, off_start) = (
        global(&OFF_TASK_GROUP_LEADER),
        global(&OFF_TASK_START_BOOTTIME),
    );
    if off_leader == 0 || off_start == 0 {
        // No BTF offsets: the pid alone, as before.
        return true;
    }
    // SAFETY: probe_read checks the addresses.
    let start = unsafe {
        let task = bpf_get_current_task();
        bpf_probe_read_kernel((task + off_leader) as *const u64)
            .and_then(|leader| bpf_probe_read_kernel((leader + off_start) as *const u64))
    };
    match start {
        Ok(ns) => Tripwire {
            ceiling_pages: slot.ceiling,
            start_ticks: slot.start_ticks,
        }
        .owned_by(ns),
        // Unreadable: the pid alone, rather than let a runaway through.
        Err(_) => true,
    }
}

/// Records a new counter value for the slot's process; emits an event on a
/// step and fires the tripwire.
#[inline(always)]
fn account(slot: &mut RssSlot, member: usize, value: u64) {
    if member >= counter::COUNT {
        return;
    }
    slot.state.pages[member] = value;
    check(slot);
}

/// Fires the tripwire and emits a step event as the slot's counters demand.
#[inline(always)]
fn check(slot: &mut RssSlot) {
    let tgid = slot.tgid;
    let now_charged = charged(&slot.state.pages);
    let step = global(&STEP_PAGES);

    // Governed processes (any entry) wake the agent at once.
    let wake = if slot.ceiling != 0 {
        Wake::Now
    } else {
        Wake::Lazy
    };
    // Only in the process's own context: a remote writer to its memory
    // (khugepaged, ptrace, a vfork child) must not be the one stopped. The
    // check costs a helper call, paid only at the ceiling.
    let mut at_ceiling = slot.ceiling != 0
        && slot.ceiling != Tripwire::WATCH
        && now_charged >= slot.ceiling
        && current_tgid() == tgid;
    if at_ceiling && !current_is_armed(slot) {
        // The cache may predate the agent arming this process: look again.
        rearm(slot);
        if !current_is_armed(slot) {
            // An entry for an earlier process with this pid: not this one's.
            let _ = TRIPWIRES.remove(tgid);
            slot.ceiling = 0;
        }
        at_ceiling =
            slot.ceiling != 0 && slot.ceiling != Tripwire::WATCH && now_charged >= slot.ceiling;
    }
    if at_ceiling
        // In the faulting task's own context: the process stops before it
        // returns to userspace, whatever its allocation rate.
        // SAFETY: helper without memory arguments.
        && unsafe { bpf_send_signal(SIGSTOP) } == 0
    {
        bump(stat::TRIPWIRE_FIRES);
        emit(
            EventKind::Tripwire,
            tgid,
            &slot.state.pages,
            slot.ceiling,
            0,
            Wake::Now,
        );
        let fired = Tripwire {
            ceiling_pages: 0,
            start_ticks: slot.start_ticks,
        };
        let _ = TRIPWIRES.insert(tgid, fired, 0);
        slot.ceiling = 0;
    }

    let file = slot.state.pages[counter::FILE];
    if now_charged.abs_diff(slot.state.reported_charged) >= step
        || file.abs_diff(slot.state.reported_file) >= step * 4
    {
        slot.state.reported_charged = now_charged;
        slot.state.reported_file = file;
        // The slot writes its state back to RSS when the CPU switches
        // process; no map update is needed per step.
        emit(EventKind::Rss, tgid, &slot.state.pages, 0, 0, wake);
        // The agent may have armed or moved the ceiling since we cached it.
        rearm(slot);
    }
}

/// `trace_rss_stat(struct mm_struct *mm, int member)`, raw arguments.
#[btf_tracepoint(function = "rss_stat")]
pub fn rss_stat_btf(ctx: BtfTracePointContext) -> i32 {
    if global(&RSS_DISPATCH_ONLY) != 0 {
        return 0;
    }
    let mm: u64 = ctx.arg(0);
    let member: i32 = ctx.arg(1);
    let slot = this_cpu_slot();
    let epoch = current_epoch();
    // Keyed by mm: an mm belongs to one process, and exit and exec clear
    // the slots of the process whose mm they free, so a match needs no
    // helper call to learn who is running.
    if slot.mm != mm || slot.tgid == 0 || slot.state.epoch != epoch {
        let tgid = current_tgid();
        // Only the faulting task's own mm is attributed to it. Anything else
        // (reaping, khugepaged, remote access) is another process's memory
        // whose owner we cannot name here: skip it.
        // SAFETY: helper without preconditions; probe_read checks the address.
        let task = unsafe { bpf_get_current_task() };
        let cur_mm: u64 =
            unsafe { bpf_probe_read_kernel((task + global(&OFF_TASK_MM)) as *const u64) }
                .unwrap_or(0);
        if cur_mm != mm {
            bump(stat::FOREIGN_MM);
            return 0;
        }
        switch_slot(slot, tgid, mm, epoch, |m| read_counter(mm, m));
    }
    if slot.ceiling == 0 {
        // Not governed: reading the counter is most of this program's cost
        // and a step is hundreds of faults, so only every SAMPLE_EVERY-th
        // event reads (its own member). A member moved only by skipped
        // events is refreshed by its next sampled event, or by the agent's
        // /proc reconciliation of quiet processes.
        slot.skipped += 1;
        if slot.skipped < SAMPLE_EVERY {
            return 0;
        }
        slot.skipped = 0;
    }
    if !(0..counter::COUNT as i32).contains(&member) {
        return 0;
    }
    // Governed processes are read on every event, so the tripwire is exact.
    if let Some(v) = read_counter(mm, member as u64) {
        account(slot, member as usize, v);
    }
    0
}

/// The agent's count of attachments (an array lookup the verifier inlines).
#[inline(always)]
fn current_epoch() -> u64 {
    PRECISE.get(precise::EPOCH).copied().unwrap_or(0)
}

/// Ungoverned processes are read on every this-many rss_stat events
/// (32 faults are 128 KiB, well under a step).
const SAMPLE_EVERY: u32 = 32;

/// Classic `kmem:rss_stat`, for kernels where tp_btf cannot attach. Slower
/// (the kernel builds the record) but needs no BTF offsets.
#[tracepoint]
pub fn rss_stat_tp(ctx: TracePointContext) -> i32 {
    // SAFETY: offsets from /sys/kernel/tracing/events/kmem/rss_stat/format.
    let (curr, member, size) = unsafe {
        (
            ctx.read_at::<u32>(12).unwrap_or(0),
            ctx.read_at::<i32>(16).unwrap_or(-1),
            ctx.read_at::<i64>(24).unwrap_or(0),
        )
    };
    if curr == 0 {
        return 0;
    }
    let slot = this_cpu_slot();
    let tgid = current_tgid();
    if slot.tgid != tgid {
        // No mm pointer here; the counters of the other members are learned
        // as they change.
        switch_slot(slot, tgid, 0, current_epoch(), |_| None);
    }
    let pages = if size < 0 { 0 } else { (size as u64) >> 12 };
    account(slot, member as usize, pages);
    0
}
