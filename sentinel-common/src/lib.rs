//! Types shared by the eBPF programs (`sentinel-ebpf`) and the agent.
//!
//! Every type here is `#[repr(C)]` with explicit padding so that the kernel
//! and userspace agree byte for byte; `aya::Pod` is implemented only under the
//! `user` feature because the eBPF side has no aya.
#![no_std]

/// Index of each kernel resident-set counter (`enum mm_counter_type` in
/// `include/linux/mm_types_task.h`); also the index into [`Event::pages`].
pub mod counter {
    pub const FILE: usize = 0;
    pub const ANON: usize = 1;
    pub const SWAP: usize = 2;
    pub const SHMEM: usize = 3;
    pub const COUNT: usize = 4;
}

/// What an [`Event`] reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The process's resident pages moved by at least the configured step.
    Rss = 1,
    /// The last thread of the process exited.
    Exit = 2,
    /// The kernel OOM killer chose this process (`oom:mark_victim`).
    OomVictim = 3,
    /// A new process was forked; `aux` is the child's tgid.
    Fork = 4,
    /// The process called exec.
    Exec = 5,
    /// The process mapped at least the configured large-mapping size; `aux`
    /// is the length in bytes.
    LargeMmap = 6,
    /// The process crossed its armed in-kernel ceiling and was sent SIGSTOP
    /// from the kernel; `aux` is the ceiling in pages.
    Tripwire = 7,
    /// A task (its id in `tgid`, which may be a thread's) was moved to
    /// another cgroup, in any hierarchy.
    Moved = 8,
}

impl EventKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Rss,
            2 => Self::Exit,
            3 => Self::OomVictim,
            4 => Self::Fork,
            5 => Self::Exec,
            6 => Self::LargeMmap,
            7 => Self::Tripwire,
            8 => Self::Moved,
            _ => return None,
        })
    }
}

/// One ring-buffer record. 64 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: u32,
    pub tgid: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC in nanoseconds.
    pub ts_ns: u64,
    /// Resident pages per [`counter`], as the kernel last reported them.
    pub pages: [u64; counter::COUNT],
    pub aux: u64,
    pub aux2: u64,
}

impl Event {
    pub const SIZE: usize = core::mem::size_of::<Self>();

    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_u32(self.kind)
    }

    /// Reads an event from ring-buffer bytes; `None` when the record is too
    /// short (a corrupt or foreign record must not crash the agent).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < Self::SIZE {
            return None;
        }
        // SAFETY: the length is checked above, `Event` is plain old data with
        // no invalid bit patterns, and read_unaligned tolerates any alignment.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `Event` is repr(C) without padding, so every byte is initialised.
        unsafe { core::slice::from_raw_parts((self as *const Self).cast::<u8>(), Self::SIZE) }
    }
}

/// Per-process mapped-address-space accounting kept by the syscall probes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MappedStats {
    /// Bytes mapped by mmap and brk minus bytes unmapped, since discovery.
    pub bytes: i64,
    /// The last program break seen, to turn brk calls into deltas.
    pub brk: u64,
}

/// One process's entry in the in-kernel tripwire map, keyed by tgid. The
/// start time makes it that process's: a pid reused after an exit the
/// entry outlived (the agent armed it as the process died) is not stopped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tripwire {
    /// Ceiling in charged pages (anon + shmem + swap); [`Tripwire::WATCH`]
    /// when governed with nothing to stop; 0 once it fired.
    pub ceiling_pages: u64,
    /// The process's start time in clock ticks after boot (USER_HZ, as in
    /// /proc/PID/stat).
    pub start_ticks: u64,
}

impl Tripwire {
    /// Governed, its events wake the agent at once, but never stopped.
    pub const WATCH: u64 = u64::MAX;
    /// Nanoseconds per clock tick: the kernel's `nsec_to_clock_t` for
    /// USER_HZ 100, the value on every architecture Linux runs eBPF on.
    pub const NS_PER_TICK: u64 = 10_000_000;

    /// Whether a process that started at `start_boottime_ns` (the kernel's
    /// `task_struct.start_boottime` of its group leader) is this entry's.
    pub fn owned_by(&self, start_boottime_ns: u64) -> bool {
        start_boottime_ns / Self::NS_PER_TICK == self.start_ticks
    }
}

/// Entries of the PRECISE array, written by the agent.
pub mod precise {
    /// Bumped each time rss_stat is attached again: per-process state kept
    /// by the program before that is stale.
    pub const EPOCH: u32 = 0;
    /// Non-zero while rss_stat is detached: forks and exits then wake the
    /// agent at once instead of waiting for its periodic drain.
    pub const RESTING: u32 = 1;
    pub const COUNT: u32 = 2;
}

/// Indexes into the per-CPU `COUNTERS` array the agent reads for status.
pub mod stat {
    /// Ring-buffer records that could not be reserved (the buffer was full).
    pub const LOST_EVENTS: u32 = 0;
    /// Ring-buffer records written.
    pub const EVENTS: u32 = 1;
    /// SIGSTOPs sent by the in-kernel tripwire.
    pub const TRIPWIRE_FIRES: u32 = 2;
    /// rss_stat calls for an mm that was not the current task's (ignored).
    pub const FOREIGN_MM: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Names of the globals the agent sets at load time, shared so that a rename
/// on one side is a compile error on the other.
pub mod globals {
    /// Report a process when its resident pages moved by this many pages.
    pub const STEP_PAGES: &str = "STEP_PAGES";
    /// Report mmap calls of at least this many bytes.
    pub const LARGE_MMAP_BYTES: &str = "LARGE_MMAP_BYTES";
    /// `offsetof(struct mm_struct, rss_stat)`, read from kernel BTF.
    pub const OFF_MM_RSS_STAT: &str = "OFF_MM_RSS_STAT";
    /// `sizeof(struct percpu_counter)`.
    pub const PERCPU_COUNTER_SIZE: &str = "PERCPU_COUNTER_SIZE";
    /// `offsetof(struct percpu_counter, count)`.
    pub const OFF_PERCPU_COUNTER_COUNT: &str = "OFF_PERCPU_COUNTER_COUNT";
    /// `offsetof(struct task_struct, mm)`.
    pub const OFF_TASK_MM: &str = "OFF_TASK_MM";
    /// Offset of `group_dead` in the sched_process_exit record; 0 if absent.
    pub const EXIT_GROUP_DEAD_OFFSET: &str = "EXIT_GROUP_DEAD_OFFSET";
    /// Offset of `pid` in the cgroup_attach_task record; 0 if unknown.
    pub const ATTACH_PID_OFFSET: &str = "ATTACH_PID_OFFSET";
    /// Possible CPUs: bounds the per-CPU slot sweeps on exit and exec.
    pub const NR_CPUS: &str = "NR_CPUS";
    /// `offsetof(struct task_struct, pid)`.
    pub const OFF_TASK_PID: &str = "OFF_TASK_PID";
    /// `offsetof(struct task_struct, tgid)`.
    pub const OFF_TASK_TGID: &str = "OFF_TASK_TGID";
    /// `offsetof(struct task_struct, group_leader)`.
    pub const OFF_TASK_GROUP_LEADER: &str = "OFF_TASK_GROUP_LEADER";
    /// `offsetof(struct task_struct, start_boottime)`.
    pub const OFF_TASK_START_BOOTTIME: &str = "OFF_TASK_START_BOOTTIME";
    /// Non-zero: the rss_stat program returns at once. A benchmark
    /// instrument that measures what the kernel's dispatch of the program
    /// costs by itself; never set by a normal run.
    pub const RSS_DISPATCH_ONLY: &str = "RSS_DISPATCH_ONLY";
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are repr(C), Copy, and have no padding or invalid values.
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::MappedStats {}
    // SAFETY: repr(C), Copy, two u64s: no padding, no invalid values.
    unsafe impl aya::Pod for super::Tripwire {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tripwire_entry_has_no_padding_and_knows_its_process() {
        assert_eq!(core::mem::size_of::<Tripwire>(), 16);
        let t = Tripwire {
            ceiling_pages: 5,
            start_ticks: 4242,
        };
        // /proc/PID/stat's start time is start_boottime in ticks, rounded
        // down.
        assert!(t.owned_by(4242 * Tripwire::NS_PER_TICK));
        assert!(t.owned_by(4242 * Tripwire::NS_PER_TICK + Tripwire::NS_PER_TICK - 1));
        assert!(!t.owned_by(4243 * Tripwire::NS_PER_TICK));
        assert!(!t.owned_by(4241 * Tripwire::NS_PER_TICK));
    }

    #[test]
    fn event_has_no_padding() {
        let fields = 4 + 4 + 8 + 8 * counter::COUNT + 8 + 8;
        assert_eq!(Event::SIZE, fields);
        assert_eq!(core::mem::size_of::<MappedStats>(), 16);
    }

    #[test]
    fn event_round_trips_through_bytes() {
        let e = Event {
            kind: EventKind::Rss as u32,
            tgid: 4242,
            ts_ns: 123_456_789,
            pages: [1, 2, 3, 4],
            aux: u64::MAX,
            aux2: 7,
        };
        let back = Event::from_bytes(e.as_bytes()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.kind(), Some(EventKind::Rss));
    }

    #[test]
    fn short_or_unknown_records_are_rejected() {
        assert!(Event::from_bytes(&[0u8; 10]).is_none());
        let e = Event {
            kind: 99,
            ..Event::default()
        };
        assert_eq!(e.kind(), None);
    }
}
