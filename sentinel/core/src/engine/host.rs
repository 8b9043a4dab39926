//! The engine's one door to the system. The agent implements it with
//! /proc, cgroupfs, pidfds, the eBPF tripwire map and the journal; tests
//! and `sentinel replay` implement it with a fake host whose processes grow
//! by script. Everything the engine decides goes through here, so what the
//! fake host sees is what the real one would have been asked.

use crate::{
    decision::Decision,
    model::{HostMem, Mem, Psi, Stat},
};

/// A process's cgroup paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupPaths {
    /// Its memory cgroup's path.
    pub memory: String,
    /// Its path in systemd's hierarchy (cgroup v1 `name=systemd`, else the
    /// unified one), where its unit shows; `None` without one.
    pub systemd: Option<String>,
}

/// A signal the engine sends, each through a process handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGSTOP: reversible; the memory stays but stops growing.
    Freeze,
    /// SIGTERM, then SIGCONT so that a stopped process can handle it.
    Terminate,
    /// SIGKILL, then reclaim the address space at once.
    Kill,
    /// SIGCONT.
    Resume,
}

/// The in-kernel entry for one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tripwire {
    /// Not governed: no entry.
    Off,
    /// Governed, but nothing may be signalled: its events still wake the
    /// agent at once.
    WatchOnly,
    /// Stop it (SIGSTOP from the faulting task) once its charged memory
    /// reaches this many bytes.
    Ceiling(u64),
}

pub trait Host {
    /// A process handle that cannot reach a later process reusing the pid.
    type Pidfd;

    /// Seconds on the clock the kernel stamps its events with (monotonic).
    fn now(&self) -> f64;
    /// Milliseconds since the Unix epoch, for the journal.
    fn wall_ms(&self) -> u64;

    /// `None` when the process is gone.
    fn stat(&self, pid: u32) -> Option<Stat>;
    fn mem(&self, pid: u32) -> Option<Mem>;
    /// The resolved executable path; empty when unreadable.
    fn exe(&self, pid: u32) -> String;
    /// Its memory cgroup's path; `None` when unreadable.
    fn cgroup(&self, pid: u32) -> Option<String>;
    /// Both of its cgroup paths, from one reading: what discovering a
    /// process needs.
    fn cgroup_paths(&self, pid: u32) -> Option<CgroupPaths>;
    /// Its real uid.
    fn uid(&self, pid: u32) -> Option<u32>;
    /// Whether its executable is a file only root could have put where it
    /// is: owned by root, writable by no one else, in directories writable
    /// by no one else. Asked only when a protection matches its path.
    fn exe_trusted(&self, pid: u32) -> bool;
    /// Arguments joined by spaces; empty for kernel threads and zombies.
    fn cmdline(&self, pid: u32) -> String;
    fn oom_score_adj(&self, pid: u32) -> i32;
    /// The process a task (thread) id belongs to.
    fn tgid(&self, task: u32) -> Option<u32>;
    /// Its pid inside its own PID namespace, where that differs.
    fn ns_pid(&self, pid: u32) -> Option<u32>;

    fn meminfo(&self) -> Option<HostMem>;
    /// Memory PSI, the "some" line; `None` without PSI.
    fn psi_some(&self) -> Option<Psi>;
    /// The limit of the cgroup at `path` itself, if it has one.
    fn cgroup_limit(&self, path: &str) -> Option<u64>;
    /// What the kernel charges the cgroup at `path` now.
    fn cgroup_usage(&self, path: &str) -> Option<u64>;

    /// Opens a handle on `pid` and checks it is still the process that
    /// started at `start_time`.
    fn open_pidfd(&mut self, pid: u32, start_time: u64) -> Result<Self::Pidfd, String>;
    fn signal(&mut self, target: &Self::Pidfd, signal: Signal) -> Result<(), String>;
    /// Whether the process that started at `start_time` is stopped (by
    /// SIGSTOP, or by the kernel's freezer); `None` when it is gone.
    fn stopped(&self, pid: u32, start_time: u64) -> Option<bool>;
    /// Someone sent the process SIGKILL and it has not died: frozen by the
    /// kernel's freezer, it dies only once thawed.
    fn kill_pending(&self, pid: u32) -> bool;
    /// Arms (or moves, or clears) the in-kernel entry of the process `pid`
    /// that started at `start_time`: a later process reusing the pid is
    /// not stopped by it.
    fn set_tripwire(&mut self, pid: u32, start_time: u64, wire: Tripwire);
    /// Attaches (or detaches) the per-fault probe that reports every
    /// process's movement and fires the tripwires.
    fn set_precise(&mut self, on: bool) -> Result<(), String>;
    /// Journals `d` (durably, before anyone is told) and returns it with
    /// its sequence number.
    fn record(&mut self, d: Decision) -> Decision;
    /// A grace before SIGKILL started: its deadline must be watched closely
    /// from now on (the engine's `expire_graces`).
    fn grace_started(&mut self);
}
