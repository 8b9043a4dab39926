//! A host that exists only in memory: processes, cgroups, meminfo and PSI
//! as plain values, signals that change those values the way the kernel
//! would, and a journal that is a vector. The engine cannot tell it from
//! the agent's real host, so tests and `sentinel replay` see the decisions
//! the agent would make. [`World`] plays the kernel around it: processes
//! that grow by script, step-sampled events, the tripwire, the timers.

mod world;

use std::collections::BTreeMap;

pub use world::{Script, World};

use crate::{
    decision::Decision,
    engine::{CgroupPaths, Host, Signal, Tripwire},
    model::{HostMem, Mem, Psi, Stat},
};

/// When the fake host booted, on the wall clock: its monotonic clock's 0.
pub const BOOT_UNIX_MS: u64 = 1_800_000_000_000;

/// One process of the fake host.
#[derive(Debug, Clone)]
pub struct FakeProc {
    pub ppid: u32,
    pub comm: String,
    pub exe: String,
    pub cgroup: String,
    pub cmdline: String,
    pub start_time: u64,
    pub mem: Mem,
    /// R running, T stopped, Z exited (its memory held until the world
    /// reaps it).
    pub state: char,
    pub oom_score_adj: i32,
    /// Handles SIGTERM by carrying on (so only SIGKILL ends it).
    pub ignores_term: bool,
    /// Someone else's SIGKILL waits for it to be thawed.
    pub kill_pending: bool,
    /// Held by the kernel's freezer (shown as `D`; SIGCONT does nothing).
    pub in_freezer: bool,
    pub uid: u32,
    /// Its path in systemd's hierarchy, when not its memory cgroup's.
    pub unit_cgroup: Option<String>,
    /// Its executable is root's, where only root can write.
    pub exe_trusted: bool,
}

impl FakeProc {
    pub fn new(ppid: u32, comm: &str, cgroup: &str) -> Self {
        Self {
            ppid,
            comm: comm.to_string(),
            exe: format!("/usr/bin/{comm}"),
            cgroup: cgroup.to_string(),
            cmdline: comm.to_string(),
            start_time: 0,
            mem: Mem::default(),
            state: 'R',
            oom_score_adj: 0,
            ignores_term: false,
            kill_pending: false,
            in_freezer: false,
            uid: 1000,
            unit_cgroup: None,
            exe_trusted: true,
        }
    }
}

/// A handle on a fake process: the pid and the start time it was opened
/// for, so that a reused pid is refused as the kernel's pidfd would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeFd {
    pub pid: u32,
    pub start_time: u64,
}

/// A journalled decision, with when it was made and what its cgroup held
/// then (what the decision saw of a shared limit).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub t: f64,
    pub cgroup_usage: u64,
    pub decision: Decision,
}

#[derive(Debug, Default)]
pub struct FakeHost {
    pub now: f64,
    pub procs: BTreeMap<u32, FakeProc>,
    /// RAM of the host; `None`: no meminfo (host scope stays quiet).
    pub ram: Option<u64>,
    /// RAM used by what is not a process of this host (the kernel, caches
    /// that cannot be dropped).
    pub baseline_used: u64,
    pub psi: Option<Psi>,
    pub cgroup_limits: BTreeMap<String, u64>,
    pub ns_pids: BTreeMap<u32, u32>,
    /// Every signal the engine sent, in order.
    pub signals: Vec<(u32, Signal)>,
    /// The tripwire entry of each process, as the engine last set it.
    pub tripwires: BTreeMap<u32, Tripwire>,
    /// The start time each entry was armed for: as in the kernel, an entry
    /// stops only that process.
    pub tripwire_owners: BTreeMap<u32, u64>,
    pub journal: Vec<Recorded>,
    pub graces_started: u32,
    /// Makes every signal fail with this error.
    pub signal_error: Option<String>,
    /// Freezes go through a cgroup v1 freezer, as on hosts that have one.
    pub freezer: bool,
    /// The per-fault probe is detached: no memory event, no tripwire (the
    /// agent loads it attached).
    pub precise_detached: bool,
    /// Each attach (true) and detach (false) the engine asked for, and when.
    pub precise_switches: Vec<(f64, bool)>,
    /// Makes attaching and detaching fail with this error.
    pub precise_error: Option<String>,
    next_start: u64,
}

impl FakeHost {
    /// Adds a process; its start time is new, as the kernel's would be.
    pub fn spawn(&mut self, pid: u32, mut p: FakeProc) {
        self.next_start += 1;
        p.start_time = self.next_start;
        self.procs.insert(pid, p);
    }

    /// The decisions journalled so far.
    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.journal.iter().map(|r| &r.decision)
    }

    fn within(&self, path: &str) -> impl Iterator<Item = &FakeProc> {
        self.procs
            .values()
            .filter(move |p| crate::engine::is_within(&p.cgroup, path))
    }
}

impl Host for FakeHost {
    type Pidfd = FakeFd;

    fn now(&self) -> f64 {
        self.now
    }

    fn wall_ms(&self) -> u64 {
        BOOT_UNIX_MS + (self.now * 1e3) as u64
    }

    fn stat(&self, pid: u32) -> Option<Stat> {
        let p = self.procs.get(&pid)?;
        Some(Stat {
            comm: p.comm.clone(),
            ppid: p.ppid,
            start_time: p.start_time,
            kernel_thread: false,
            faults: 0,
            state: p.state,
            cpu_ticks: 0,
        })
    }

    fn mem(&self, pid: u32) -> Option<Mem> {
        self.procs.get(&pid).map(|p| p.mem)
    }

    fn exe(&self, pid: u32) -> String {
        self.procs
            .get(&pid)
            .map(|p| p.exe.clone())
            .unwrap_or_default()
    }

    fn cgroup(&self, pid: u32) -> Option<String> {
        self.procs.get(&pid).map(|p| p.cgroup.clone())
    }

    fn cgroup_paths(&self, pid: u32) -> Option<CgroupPaths> {
        self.procs.get(&pid).map(|p| CgroupPaths {
            memory: p.cgroup.clone(),
            systemd: Some(p.unit_cgroup.clone().unwrap_or_else(|| p.cgroup.clone())),
        })
    }

    fn uid(&self, pid: u32) -> Option<u32> {
        self.procs.get(&pid).map(|p| p.uid)
    }

    fn exe_trusted(&self, pid: u32) -> bool {
        self.procs.get(&pid).is_some_and(|p| p.exe_trusted)
    }

    fn cmdline(&self, pid: u32) -> String {
        self.procs
            .get(&pid)
            .map(|p| p.cmdline.clone())
            .unwrap_or_default()
    }

    fn oom_score_adj(&self, pid: u32) -> i32 {
        self.procs.get(&pid).map(|p| p.oom_score_adj).unwrap_or(0)
    }

    fn tgid(&self, task: u32) -> Option<u32> {
        self.procs.contains_key(&task).then_some(task)
    }

    fn ns_pid(&self, pid: u32) -> Option<u32> {
        self.ns_pids.get(&pid).copied()
    }

    fn meminfo(&self) -> Option<HostMem> {
        let ram = self.ram?;
        let used: u64 = self.procs.values().map(|p| p.mem.charged()).sum();
        Some(HostMem {
            total: ram,
            available: ram.saturating_sub(self.baseline_used + used),
            swap_total: 0,
            swap_free: 0,
        })
    }

    fn psi_some(&self) -> Option<Psi> {
        self.psi
    }

    fn cgroup_limit(&self, path: &str) -> Option<u64> {
        self.cgroup_limits.get(path).copied()
    }

    fn cgroup_usage(&self, path: &str) -> Option<u64> {
        Some(self.within(path).map(|p| p.mem.charged()).sum())
    }

    fn open_pidfd(&mut self, pid: u32, start_time: u64) -> Result<FakeFd, String> {
        match self.procs.get(&pid) {
            Some(p) if p.start_time == start_time => Ok(FakeFd { pid, start_time }),
            Some(_) => Err(format!("pid {pid} was reused by another process")),
            None => Err("No such process (os error 3)".into()),
        }
    }

    fn signal(&mut self, fd: &FakeFd, signal: Signal) -> Result<(), String> {
        if let Some(e) = &self.signal_error {
            return Err(e.clone());
        }
        let p = self
            .procs
            .get_mut(&fd.pid)
            .filter(|p| p.start_time == fd.start_time && p.state != 'Z')
            .ok_or_else(|| {
                format!(
                    "signalling pid {} failed: No such process (os error 3)",
                    fd.pid
                )
            })?;
        self.signals.push((fd.pid, signal));
        if signal != Signal::Freeze {
            p.in_freezer = false;
        }
        match signal {
            Signal::Freeze if self.freezer => {
                p.in_freezer = true;
                p.state = 'D';
            }
            Signal::Freeze => p.state = 'T',
            // Thawed, a pending SIGKILL takes it.
            Signal::Resume if p.kill_pending => p.state = 'Z',
            Signal::Resume => p.state = 'R',
            Signal::Terminate if p.ignores_term => p.state = 'R',
            // It exits; its memory is freed when the world reaps it.
            Signal::Terminate | Signal::Kill => p.state = 'Z',
        }
        Ok(())
    }

    fn stopped(&self, pid: u32, start_time: u64) -> Option<bool> {
        let p = self
            .procs
            .get(&pid)
            .filter(|p| p.start_time == start_time)?;
        (p.state != 'Z').then_some(p.state == 'T' || p.in_freezer)
    }

    fn kill_pending(&self, pid: u32) -> bool {
        self.procs.get(&pid).is_some_and(|p| p.kill_pending)
    }

    fn set_tripwire(&mut self, pid: u32, start_time: u64, wire: Tripwire) {
        if wire == Tripwire::Off {
            self.tripwires.remove(&pid);
            self.tripwire_owners.remove(&pid);
        } else {
            self.tripwires.insert(pid, wire);
            self.tripwire_owners.insert(pid, start_time);
        }
    }

    fn set_precise(&mut self, on: bool) -> Result<(), String> {
        if let Some(e) = &self.precise_error {
            return Err(e.clone());
        }
        self.precise_detached = !on;
        self.precise_switches.push((self.now, on));
        Ok(())
    }

    fn record(&mut self, mut d: Decision) -> Decision {
        d.seq = self.journal.len() as u64 + 1;
        let cgroup_usage = self.within(&d.cgroup).map(|p| p.mem.charged()).sum();
        self.journal.push(Recorded {
            t: self.now,
            cgroup_usage,
            decision: d.clone(),
        });
        d
    }

    fn grace_started(&mut self) {
        self.graces_started += 1;
    }
}
