//! The engine's host port, for real: /proc and cgroupfs through the
//! collectors, pidfd signals through the actuator, the tripwire map through
//! the probes, and the durable journal. Nothing here decides anything.

use std::sync::Arc;

use sentinel_core::{
    decision::Decision,
    engine::{CgroupPaths, Host, Signal, Tripwire},
    model::{HostMem, Mem, Psi, Stat},
};

use crate::{
    actuator::{self, Freezer, Pidfd},
    collector::{cgroup::CgroupFs, host, procfs},
    journal::{self, Journal},
    probes::Probes,
};

/// Seconds on CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`.
pub fn mono_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

pub struct LiveHost {
    pub journal: Arc<Journal>,
    /// The loaded eBPF programs; `None` when polling /proc.
    pub probes: Option<Probes>,
    /// The kernel's freezer, where there is one: always used to tell and
    /// to thaw what it holds (an earlier run may have frozen with it).
    pub freezer: Option<Freezer>,
    /// New freezes use it (`agent.freezer`); otherwise SIGSTOP.
    pub freeze_with_freezer: bool,
    cgfs: CgroupFs,
    /// /proc/meminfo and PSI, kept open for the host timer.
    files: std::sync::Mutex<host::HostFiles>,
    /// Woken when a grace starts, so that the agent watches graces closely
    /// only while there are any.
    pub grace_started: Arc<tokio::sync::Notify>,
}

impl LiveHost {
    pub fn new(
        journal: Arc<Journal>,
        probes: Option<Probes>,
        freezer: Option<Freezer>,
        freeze_with_freezer: bool,
    ) -> Self {
        Self {
            journal,
            probes,
            freezer,
            freeze_with_freezer,
            cgfs: CgroupFs::detect(),
            files: Default::default(),
            grace_started: Arc::default(),
        }
    }
}

impl LiveHost {
    fn files(&self) -> std::sync::MutexGuard<'_, host::HostFiles> {
        // A panic while reading leaves nothing half-written that matters.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Host for LiveHost {
    type Pidfd = Pidfd;

    fn now(&self) -> f64 {
        mono_now()
    }

    fn wall_ms(&self) -> u64 {
        journal::unix_ms()
    }

    fn stat(&self, pid: u32) -> Option<Stat> {
        procfs::read_stat(pid).ok()
    }

    fn mem(&self, pid: u32) -> Option<Mem> {
        procfs::read_mem(pid).ok()
    }

    fn exe(&self, pid: u32) -> String {
        procfs::read_exe(pid)
    }

    fn cgroup(&self, pid: u32) -> Option<String> {
        procfs::read_cgroup(pid).ok()
    }

    fn cgroup_paths(&self, pid: u32) -> Option<CgroupPaths> {
        procfs::read_cgroup_paths(pid).ok()
    }

    fn uid(&self, pid: u32) -> Option<u32> {
        procfs::read_uid(pid)
    }

    fn exe_trusted(&self, pid: u32) -> bool {
        procfs::exe_trusted(pid)
    }

    fn cmdline(&self, pid: u32) -> String {
        procfs::read_cmdline(pid)
    }

    fn oom_score_adj(&self, pid: u32) -> i32 {
        procfs::read_oom_score_adj(pid)
    }

    fn tgid(&self, task: u32) -> Option<u32> {
        procfs::read_tgid(task)
    }

    fn ns_pid(&self, pid: u32) -> Option<u32> {
        procfs::read_ns_pid(pid)
    }

    fn meminfo(&self) -> Option<HostMem> {
        self.files()
            .meminfo()
            .inspect_err(|e| tracing::debug!("reading /proc/meminfo: {e}"))
            .ok()
    }

    fn psi_some(&self) -> Option<Psi> {
        self.files().psi_some()
    }

    fn cgroup_limit(&self, path: &str) -> Option<u64> {
        self.cgfs.own_limit(path)
    }

    fn cgroup_usage(&self, path: &str) -> Option<u64> {
        self.cgfs.usage(path)
    }

    fn open_pidfd(&mut self, pid: u32, start_time: u64) -> Result<Pidfd, String> {
        Pidfd::open(pid, start_time).map_err(|e| e.to_string())
    }

    fn signal(&mut self, target: &Pidfd, signal: Signal) -> Result<(), String> {
        let freezer = self.freezer.as_ref();
        let result = match signal {
            Signal::Freeze if !self.freeze_with_freezer => actuator::send(target, signal, None),
            _ => actuator::send(target, signal, freezer),
        };
        result.map_err(|e| e.to_string())
    }

    fn kill_pending(&self, pid: u32) -> bool {
        procfs::sigkill_pending(pid)
    }

    fn stopped(&self, pid: u32, start_time: u64) -> Option<bool> {
        actuator::stopped(self.freezer.as_ref(), pid, start_time)
    }

    fn set_tripwire(&mut self, pid: u32, start_time: u64, wire: Tripwire) {
        let Some(probes) = self.probes.as_mut() else {
            return;
        };
        if let Err(e) = probes.set_tripwire(pid, start_time, wire) {
            tracing::warn!(pid, "arming the tripwire failed: {e}");
        }
    }

    fn set_precise(&mut self, on: bool) -> Result<(), String> {
        match self.probes.as_mut() {
            Some(probes) => probes.set_precise(on),
            None => Err("no eBPF probes are loaded".into()),
        }
    }

    fn record(&mut self, d: Decision) -> Decision {
        self.journal.append(d)
    }

    fn grace_started(&mut self) {
        self.grace_started.notify_one();
    }
}
