//! Sentinel's kernel programs. Tracepoints only (no kprobes or fentry on the
//! machines we target). The hot programs (`rss_stat`, `page_fault_user`) are
//! tp_btf so the kernel does not build a trace record per fault, and they do
//! their per-event work in a per-CPU slot: the shared hash maps are touched
//! only when the CPU switches to another process or a step is crossed.
// Built for the bpf target by sentinel/build.rs; host builds (clippy, the
// workspace check) compile it as an ordinary program that does nothing.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        generated::{bpf_get_smp_processor_id, bpf_send_signal},
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, TracePointContext},
};
use sentinel_common::{Event, EventKind, MappedStats, counter, stat};

// Globals the agent sets at load time (see sentinel_common::globals). They
// must be read with read_volatile or the compiler folds the zero default in.
#[unsafe(no_mangle)]
static STEP_PAGES: u64 = 256;
#[unsafe(no_mangle)]
static LARGE_MMAP_BYTES: u64 = 64 << 20;
#[unsafe(no_mangle)]
static OFF_MM_RSS_STAT: u64 = 0;
#[unsafe(no_mangle)]
static PERCPU_COUNTER_SIZE: u64 = 0;
#[unsafe(no_mangle)]
static OFF_PERCPU_COUNTER_COUNT: u64 = 0;
#[unsafe(no_mangle)]
static OFF_TASK_MM: u64 = 0;
#[unsafe(no_mangle)]
static OFF_TASK_PID: u64 = 0;
#[unsafe(no_mangle)]
static OFF_TASK_TGID: u64 = 0;

#[inline(always)]
fn global(g: &'static u64) -> u64 {
    // SAFETY: reading a static; volatile so the loader's value is used.
    unsafe { core::ptr::read_volatile(g) }
}

const SIGSTOP: u32 = 19;
const MAX_TRACKED: u32 = 65_536;

/// 1 MiB holds about 18,000 events, seconds of the busiest hosts' traffic
/// (each event is a 1 MiB step of some process). Userspace maps the data
/// twice (for wrap-around), so every MiB here is two of the agent's RSS.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Per-CPU counters: see `sentinel_common::stat`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Processes a rule governs: tgid -> ceiling in charged pages (anon + shmem
/// + swap), or u64::MAX when governed without a tripwire. Their events wake
/// the agent at once. Written by the agent; the kernel disarms (0) an entry
/// when its tripwire fires.
#[map]
static TRIPWIRES: HashMap<u32, u64> = HashMap::with_max_entries(MAX_TRACKED, 0);

/// Last known counters of processes that are not in a CPU's slot right now.
#[map]
static RSS: LruHashMap<u32, RssState> = LruHashMap::with_max_entries(MAX_TRACKED, 0);

/// One slot per CPU for the process whose memory that CPU last changed.
/// A plain global array rather than a per-CPU map: a map lookup is a helper
/// call on every fault, this is a load. Only programs on the same CPU touch
/// a slot, as with a per-CPU map.
const MAX_CPUS: usize = 1024;
#[unsafe(no_mangle)]
static mut RSS_SLOTS: [RssSlot; MAX_CPUS] = [RssSlot::EMPTY; MAX_CPUS];

/// Offset of `group_dead` in sched_process_exit's record, read by the
/// agent from tracefs; 0 on kernels whose record lacks it.
#[unsafe(no_mangle)]
static EXIT_GROUP_DEAD_OFFSET: u64 = 0;

/// Benchmark instrument: non-zero makes rss_stat return at once.
#[unsafe(no_mangle)]
static RSS_DISPATCH_ONLY: u64 = 0;

/// Number of possible CPUs, set by the agent; bounds the slot sweeps.
#[unsafe(no_mangle)]
static NR_CPUS: u64 = MAX_CPUS as u64;

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
fn forget_in_slots(tgid: u32) -> Option<[u64; counter::COUNT]> {
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

/// Page faults per tgid, flushed from the per-CPU slot.
#[map]
static FAULTS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_TRACKED, 0);

#[map]
static FAULT_SLOT: PerCpuArray<FaultSlot> = PerCpuArray::with_max_entries(1, 0);

#[map]
static MAPPED: LruHashMap<u32, MappedStats> = LruHashMap::with_max_entries(MAX_TRACKED, 0);

/// Length argument of an mmap/munmap in flight, by thread, until its exit.
#[map]
static PENDING_LEN: LruHashMap<u64, u64> = LruHashMap::with_max_entries(8192, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct RssState {
    pages: [u64; counter::COUNT],
    reported_charged: u64,
    reported_file: u64,
}

#[repr(C, align(128))]
#[derive(Clone, Copy)]
struct RssSlot {
    tgid: u32,
    /// Events skipped since the last read (ungoverned processes are sampled).
    skipped: u32,
    mm: u64,
    state: RssState,
    /// Cached TRIPWIRES entry for `tgid`; 0 when none is armed.
    ceiling: u64,
}

impl RssSlot {
    const EMPTY: Self = Self {
        tgid: 0,
        skipped: 0,
        mm: 0,
        state: RssState {
            pages: [0; counter::COUNT],
            reported_charged: 0,
            reported_file: 0,
        },
        ceiling: 0,
    };
}

#[repr(C)]
#[derive(Clone, Copy)]
struct FaultSlot {
    tgid: u32,
    _pad: u32,
    pending: u64,
}

#[inline(always)]
fn bump(index: u32) {
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
enum Wake {
    Now,
    Lazy,
}

/// Unread bytes past which even lazy events wake the agent.
const WAKE_BACKLOG_BYTES: u64 = 256 << 10;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

#[inline(always)]
fn emit(
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
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
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
fn switch_slot(slot: &mut RssSlot, tgid: u32, mm: u64, seed: impl Fn(u64) -> Option<u64>) {
    if slot.tgid != 0 {
        let _ = RSS.insert(slot.tgid, slot.state, 0);
    }
    slot.tgid = tgid;
    // The saved state may be stale: read on the first event after a switch.
    slot.skipped = SAMPLE_EVERY - 1;
    slot.mm = mm;
    // SAFETY: the value is copied out before any other map operation.
    match unsafe { RSS.get(tgid) } {
        Some(s) => slot.state = *s,
        None => {
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
            };
        }
    }
    // SAFETY: as above.
    slot.ceiling = unsafe { TRIPWIRES.get(tgid) }.copied().unwrap_or(0);
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
    if slot.ceiling != 0
        && slot.ceiling != u64::MAX
        && now_charged >= slot.ceiling
        && current_tgid() == tgid
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
        let _ = TRIPWIRES.insert(tgid, 0, 0);
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
        // SAFETY: copied out at once.
        slot.ceiling = unsafe { TRIPWIRES.get(tgid) }.copied().unwrap_or(0);
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
    // Keyed by mm: an mm belongs to one process, and exit and exec clear
    // the slots of the process whose mm they free, so a match needs no
    // helper call to learn who is running.
    if slot.mm != mm || slot.tgid == 0 {
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
        switch_slot(slot, tgid, mm, |m| read_counter(mm, m));
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
        switch_slot(slot, tgid, 0, |_| None);
    }
    let pages = if size < 0 { 0 } else { (size as u64) >> 12 };
    account(slot, member as usize, pages);
    0
}

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

/// `syscalls:sys_enter_mmap` and `sys_enter_munmap`: both carry `len` at 24.
#[tracepoint]
pub fn sys_enter_len(ctx: TracePointContext) -> i32 {
    // SAFETY: offset from the syscalls tracepoint format.
    let len: u64 = unsafe { ctx.read_at(24) }.unwrap_or(0);
    let _ = PENDING_LEN.insert(bpf_get_current_pid_tgid(), len, 0);
    0
}

#[inline(always)]
fn take_pending_len() -> Option<u64> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out before the remove.
    let len = unsafe { PENDING_LEN.get(key) }.copied();
    let _ = PENDING_LEN.remove(key);
    len
}

#[inline(always)]
fn syscall_ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: `ret` is at 16 in every syscalls:sys_exit_* format.
    unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1)
}

#[inline(always)]
fn add_mapped(tgid: u32, delta: i64, brk: Option<u64>) {
    match MAPPED.get_ptr_mut(tgid) {
        Some(p) => {
            // SAFETY: map value pointer, valid for this run.
            let m = unsafe { &mut *p };
            m.bytes += delta;
            if let Some(b) = brk {
                if m.brk != 0 {
                    m.bytes += b as i64 - m.brk as i64;
                }
                m.brk = b;
            }
        }
        None => {
            let m = MappedStats {
                bytes: delta,
                brk: brk.unwrap_or(0),
            };
            let _ = MAPPED.insert(tgid, m, 0);
        }
    }
}

#[tracepoint]
pub fn sys_exit_mmap(ctx: TracePointContext) -> i32 {
    let Some(len) = take_pending_len() else {
        return 0;
    };
    let ret = syscall_ret(&ctx);
    // Addresses are returned as longs; only -4095..-1 are errors.
    if (-4095..0).contains(&ret) {
        return 0;
    }
    let tgid = current_tgid();
    add_mapped(tgid, len as i64, None);
    if len >= global(&LARGE_MMAP_BYTES) {
        emit(
            EventKind::LargeMmap,
            tgid,
            &[0; counter::COUNT],
            len,
            0,
            Wake::Lazy,
        );
    }
    0
}

#[tracepoint]
pub fn sys_exit_munmap(ctx: TracePointContext) -> i32 {
    let Some(len) = take_pending_len() else {
        return 0;
    };
    if syscall_ret(&ctx) == 0 {
        add_mapped(current_tgid(), -(len as i64), None);
    }
    0
}

#[tracepoint]
pub fn sys_exit_brk(ctx: TracePointContext) -> i32 {
    let ret = syscall_ret(&ctx);
    if ret > 0 {
        add_mapped(current_tgid(), 0, Some(ret as u64));
    }
    0
}

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

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
