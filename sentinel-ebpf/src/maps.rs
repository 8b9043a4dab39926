//! What the agent finds in the object by name: the maps and the globals it
//! sets at load time (see sentinel_common::globals and sentinel/src/probes),
//! with the values the maps hold. A rename here breaks loading.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use sentinel_common::{MappedStats, Tripwire, counter, precise, stat};

// Globals the agent sets at load time (see sentinel_common::globals). They
// must be read with read_volatile or the compiler folds the zero default in.
#[unsafe(no_mangle)]
pub(crate) static STEP_PAGES: u64 = 256;
#[unsafe(no_mangle)]
pub(crate) static LARGE_MMAP_BYTES: u64 = 64 << 20;
#[unsafe(no_mangle)]
pub(crate) static OFF_MM_RSS_STAT: u64 = 0;
#[unsafe(no_mangle)]
pub(crate) static PERCPU_COUNTER_SIZE: u64 = 0;
#[unsafe(no_mangle)]
pub(crate) static OFF_PERCPU_COUNTER_COUNT: u64 = 0;
#[unsafe(no_mangle)]
pub(crate) static OFF_TASK_MM: u64 = 0;
#[unsafe(no_mangle)]
pub(crate) static OFF_TASK_PID: u64 = 0;
#[unsafe(no_mangle)]
pub(crate) static OFF_TASK_TGID: u64 = 0;
#[unsafe(no_mangle)]
pub(crate) static OFF_TASK_GROUP_LEADER: u64 = 0;
#[unsafe(no_mangle)]
pub(crate) static OFF_TASK_START_BOOTTIME: u64 = 0;

#[inline(always)]
pub(crate) fn global(g: &'static u64) -> u64 {
    // SAFETY: reading a static; volatile so the loader's value is used.
    unsafe { core::ptr::read_volatile(g) }
}

const MAX_TRACKED: u32 = 65_536;

/// 512 KiB holds about 9,000 events: seconds of a page-fault storm's
/// traffic with the per-fault probe attached (about 2,500 a second, each a
/// 1 MiB step of some process), and the agent is woken at half full
/// (`events::WAKE_BACKLOG_BYTES`) at the latest. Userspace maps the data
/// twice (for wrap-around), so every KiB here is two of the agent's
/// resident set: 1 MiB here kept an idle agent over its 15 MiB. Events
/// the buffer could not take are counted, and the agent then lists /proc
/// in full to catch up.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 19, 0);

/// Per-CPU counters: see `sentinel_common::stat`.
#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Processes a rule governs: tgid -> the ceiling and the start time of the
/// process it was armed for (`sentinel_common::Tripwire`). Their events
/// wake the agent at once. Written by the agent; the kernel disarms (0) an
/// entry when its tripwire fires, drops it when the process exits, and
/// drops one found on a later process that reused the pid.
#[map]
pub(crate) static TRIPWIRES: HashMap<u32, Tripwire> = HashMap::with_max_entries(MAX_TRACKED, 0);

/// Written by the agent (`sentinel_common::precise`): the epoch of
/// rss_stat's attachments (what the slots and RSS hold from an older one
/// went stale while it was detached, and is read afresh from the mm), and
/// whether it rests.
#[map]
pub(crate) static PRECISE: Array<u64> = Array::with_max_entries(precise::COUNT, 0);

/// Last known counters of processes that are not in a CPU's slot right now.
#[map]
pub(crate) static RSS: LruHashMap<u32, RssState> = LruHashMap::with_max_entries(MAX_TRACKED, 0);

/// One slot per CPU for the process whose memory that CPU last changed.
/// A plain global array rather than a per-CPU map: a map lookup is a helper
/// call on every fault, this is a load. Only programs on the same CPU touch
/// a slot, as with a per-CPU map.
pub(crate) const MAX_CPUS: usize = 1024;
#[unsafe(no_mangle)]
pub(crate) static mut RSS_SLOTS: [RssSlot; MAX_CPUS] = [RssSlot::EMPTY; MAX_CPUS];

/// Offset of `group_dead` in sched_process_exit's record, read by the
/// agent from tracefs; 0 on kernels whose record lacks it.
#[unsafe(no_mangle)]
pub(crate) static EXIT_GROUP_DEAD_OFFSET: u64 = 0;

/// Offset of `pid` in cgroup_attach_task's record, read by the agent from
/// tracefs; 0: the program reports nothing.
#[unsafe(no_mangle)]
pub(crate) static ATTACH_PID_OFFSET: u64 = 0;

/// Benchmark instrument: non-zero makes rss_stat return at once.
#[unsafe(no_mangle)]
pub(crate) static RSS_DISPATCH_ONLY: u64 = 0;

/// Number of possible CPUs, set by the agent; bounds the slot sweeps.
#[unsafe(no_mangle)]
pub(crate) static NR_CPUS: u64 = MAX_CPUS as u64;

/// Page faults per tgid, flushed from the per-CPU slot.
#[map]
pub(crate) static FAULTS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_TRACKED, 0);

#[map]
pub(crate) static FAULT_SLOT: PerCpuArray<FaultSlot> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub(crate) static MAPPED: LruHashMap<u32, MappedStats> =
    LruHashMap::with_max_entries(MAX_TRACKED, 0);

/// Length argument of an mmap/munmap in flight, by thread, until its exit.
#[map]
pub(crate) static PENDING_LEN: LruHashMap<u64, u64> = LruHashMap::with_max_entries(8192, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct RssState {
    pub(crate) pages: [u64; counter::COUNT],
    pub(crate) reported_charged: u64,
    pub(crate) reported_file: u64,
    /// The epoch (PRECISE) these counters were kept up to date in.
    pub(crate) epoch: u64,
}

#[repr(C, align(128))]
#[derive(Clone, Copy)]
pub(crate) struct RssSlot {
    pub(crate) tgid: u32,
    /// Events skipped since the last read (ungoverned processes are sampled).
    pub(crate) skipped: u32,
    pub(crate) mm: u64,
    pub(crate) state: RssState,
    /// Cached TRIPWIRES entry for `tgid`: its ceiling (0 when none is
    /// armed) and the start time of the process it was armed for.
    pub(crate) ceiling: u64,
    pub(crate) start_ticks: u64,
}

impl RssSlot {
    pub(crate) const EMPTY: Self = Self {
        tgid: 0,
        skipped: 0,
        mm: 0,
        state: RssState {
            pages: [0; counter::COUNT],
            reported_charged: 0,
            reported_file: 0,
            epoch: 0,
        },
        ceiling: 0,
        start_ticks: 0,
    };
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct FaultSlot {
    pub(crate) tgid: u32,
    _pad: u32,
    pub(crate) pending: u64,
}
