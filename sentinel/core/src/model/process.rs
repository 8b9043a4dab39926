//! What the host reports of processes, the machine and its GPUs: plain
//! values the collectors parse and the engine consumes.

use std::collections::BTreeMap;

/// Memory of one process by kind, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mem {
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
    pub swap: u64,
}

impl Mem {
    /// What the kernel cannot simply drop: anonymous, shmem and swapped-out
    /// pages. Limits and slopes apply to this; file pages are reclaimable.
    pub fn charged(&self) -> u64 {
        self.anon
            .saturating_add(self.shmem)
            .saturating_add(self.swap)
    }

    /// Resident set as `ps` shows it.
    pub fn resident(&self) -> u64 {
        self.anon
            .saturating_add(self.file)
            .saturating_add(self.shmem)
    }
}

/// A process's `/proc/PID/stat`, the fields Sentinel uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub ppid: u32,
    /// Clock ticks after boot; with the pid, identifies the process.
    pub start_time: u64,
    pub kernel_thread: bool,
    /// Minor plus major page faults of the whole process, as the kernel
    /// counts them.
    pub faults: u64,
    /// The state letter: R, S, D, T (stopped), t, Z, ...
    pub state: char,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

impl Stat {
    /// Stopped by a signal (or a tracer): what a freeze looks like.
    pub fn stopped(&self) -> bool {
        matches!(self.state, 'T' | 't')
    }

    /// Exited, and only its entry is left.
    pub fn dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// What /proc/meminfo says, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostMem {
    pub total: u64,
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl HostMem {
    /// Everything anonymous memory can live in: RAM and swap. zram's
    /// compressed pages are kernel memory, so they already count against
    /// MemAvailable.
    pub fn capacity(&self) -> u64 {
        self.total + self.swap_total
    }

    /// What can still be given out: MemAvailable (free plus reclaimable
    /// cache) plus free swap.
    pub fn headroom(&self) -> u64 {
        self.available + self.swap_free
    }

    pub fn used(&self) -> u64 {
        self.capacity().saturating_sub(self.headroom())
    }
}

/// One GPU at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSample {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub total: u64,
    pub used: u64,
}

/// What NVML reported in one pass: every device it could read, each
/// process's bytes per device, and the devices it could not read (with why).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuSample {
    pub devices: Vec<DeviceSample>,
    /// (device index, pid) -> bytes.
    pub processes: BTreeMap<(u32, u32), u64>,
    pub errors: Vec<(u32, String)>,
}

/// Memory pressure as /proc/pressure/memory reports it: the "some" line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Psi {
    /// Share of the last 10 s some task stalled on memory, in percent.
    pub avg10: f64,
    /// Microseconds some task stalled on memory since boot.
    pub total_us: u64,
}
