//! The one owner of the engine's lock. Everything that reaches the engine
//! (the agent's tasks, the API, metrics, alerting, admission control) does
//! so through a named operation here, and nothing else locks it. No
//! transport: the gRPC layer converts and calls, errors stay domain errors.

pub mod admission;
mod throttle;

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use sentinel_common::Event;
use sentinel_core::{
    config::Config,
    decision::{Decision, ScopeKind},
    engine::{
        Applied, Engine, GpuDeviceView, HostView, InstrumentView, Mode, OpError, PolicyError,
        ProcDetail, ProcQuery, ProcView, PsiArmed, QueuedView, SortKey,
    },
    model::GpuSample,
    policy::restarts::CrashLoop,
};

use crate::{
    collector::procfs,
    host::{LiveHost, mono_now},
    journal::Journal,
    probes::{ProbeCounters, ProbeStatus},
};

/// What the agent found at start: how it watches, and what it had to do
/// without.
#[derive(Debug, Clone)]
pub struct Startup {
    pub mode: Mode,
    /// Empty when nothing is degraded.
    pub degraded_reason: String,
    pub probes: Vec<ProbeStatus>,
}

/// The GPUs as status shows them.
#[derive(Debug, Clone, Default)]
pub struct GpuOverview {
    pub devices: Vec<GpuDeviceView>,
    /// Why GPU monitoring is off; empty while NVML answers.
    pub unavailable: String,
    pub driver: String,
    /// Pids NVML reports that the agent cannot see.
    pub unmapped: Vec<u32>,
    pub read_errors: u64,
    /// NVML passes so far.
    pub passes: u64,
}

/// The agent at a glance: what status and metrics show.
#[derive(Debug, Clone)]
pub struct Overview {
    pub startup: Startup,
    pub dry_run: bool,
    pub rules: usize,
    pub tracked: usize,
    pub kernel_oom_kills: u64,
    pub counters: ProbeCounters,
    pub host: HostView,
    /// Tracked processes at each level of their own rule, how many are
    /// frozen (runaways) and how many queued (waiting for memory).
    pub process_levels: [u64; 4],
    pub frozen: u64,
    pub queued: Vec<QueuedView>,
    /// Limited cgroups at each level.
    pub cgroup_levels: [u64; 4],
    /// Crash loops, each with the seconds since its last preemption.
    pub crash_loops: Vec<(CrashLoop, f64)>,
    pub gpu: GpuOverview,
    /// Which instrument watches memory, and why.
    pub instrument: InstrumentView,
    /// Seconds the current instrument has been in use.
    pub instrument_seconds: f64,
}

/// What an alert reported, to be checked against now.
#[derive(Debug, Clone)]
pub enum AlertCheck {
    /// The process waits its turn at a shared limit.
    Waiting(u32),
    /// The process (pid) is frozen, or the rule's scope is at warn or
    /// above.
    Condition(u32, String, Option<ScopeKind>),
}

/// A process as the API shows it: the engine's view and the kernel's
/// counters of its faults and mappings.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    pub view: ProcView,
    pub faults: Option<u64>,
    pub mapped_bytes: Option<i64>,
}

pub struct Sentinel {
    engine: Mutex<Engine<LiveHost>>,
    journal: Arc<Journal>,
    startup: Startup,
    started: Instant,
    /// Memory reservations and the queue for them.
    pub admission: admission::Queue,
}

impl Sentinel {
    pub fn new(engine: Engine<LiveHost>, startup: Startup) -> Self {
        let journal = engine.host().journal.clone();
        Self {
            engine: Mutex::new(engine),
            journal,
            startup,
            started: Instant::now(),
            admission: admission::Queue::default(),
        }
    }

    fn engine(&self) -> MutexGuard<'_, Engine<LiveHost>> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The decision journal (it has its own lock: reading it never waits
    /// on the engine).
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    pub fn uptime_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Wakes when a grace before SIGKILL starts.
    pub fn grace_started(&self) -> Arc<tokio::sync::Notify> {
        self.engine().host().grace_started.clone()
    }

    // What the agent's tasks feed in.

    pub fn handle_batch(&self, batch: &[Event]) {
        self.engine().handle_batch(batch);
    }

    /// Whether the per-fault probe rests (the host timer slows down).
    pub fn at_rest(&self) -> bool {
        self.engine().at_rest()
    }

    pub fn tick(&self) {
        self.engine().tick(mono_now());
    }

    /// Ends the graces that are due; whether any are left.
    pub fn expire_graces(&self) -> bool {
        self.engine().expire_graces(mono_now())
    }

    pub fn rescan(&self, pids: Vec<u32>) {
        self.engine().rescan(pids);
    }

    /// Between full passes: identity checks only.
    pub fn recheck(&self) {
        self.engine().recheck();
    }

    /// The known processes read again, /proc not listed.
    pub fn refresh(&self) {
        self.engine().refresh();
    }

    /// Reports the kernel's programs could not put in the ring buffer so
    /// far (it was full); none without probes.
    pub fn lost_events(&self) -> u64 {
        self.engine()
            .host()
            .probes
            .as_ref()
            .map_or(0, |p| p.lost_events())
    }

    pub fn poll(&self) {
        self.engine().poll_matched();
    }

    pub fn on_pressure(&self) {
        self.engine().on_pressure(mono_now());
    }

    pub fn set_psi_trigger(&self, armed: Option<PsiArmed>) {
        self.engine().set_psi_trigger(armed);
    }

    pub fn observe_gpu(&self, sample: GpuSample) {
        self.engine().observe_gpu(sample, mono_now());
    }

    pub fn gpu_unavailable(&self, why: String) {
        self.engine().gpu_unavailable(why);
    }

    pub fn gpu_driver(&self, driver: String) {
        self.engine().gpu_driver(driver);
    }

    pub fn gpu_pass_failed(&self, why: String) {
        self.engine().gpu_pass_failed(why);
    }

    // What operators ask.

    /// Where the running policy came from, its text, and the keys of that
    /// text not in use until a restart.
    pub fn policy(&self) -> (String, String, Vec<String>) {
        let e = self.engine();
        let (source, text) = e.policy();
        let not_in_use = e.policy_not_in_use().iter().map(|k| k.to_string());
        (source.to_string(), text.to_string(), not_in_use.collect())
    }

    /// Swaps in a validated policy and journals who applied it, unless it
    /// would silently drop every rule.
    pub fn apply_policy(
        &self,
        cfg: Config,
        who: &str,
        source: &str,
        text: &str,
    ) -> Result<Applied, PolicyError> {
        self.engine().apply_policy(cfg, who, source, text)
    }

    /// At a stop: journals each process left frozen for the next start.
    pub fn leave_frozen(&self) -> Vec<Decision> {
        self.engine().leave_frozen()
    }

    pub fn resume(&self, pid: u32, who: &str) -> Result<Decision, OpError> {
        self.engine().operator_resume(pid, who)
    }

    pub fn protect(&self, pid: u32, on: bool, who: &str) -> Result<Decision, OpError> {
        self.engine().operator_protect(pid, on, who)
    }

    // What clients read.

    pub fn overview(&self) -> Overview {
        let e = self.engine();
        let now = mono_now();
        let (process_levels, frozen, _) = e.level_counts();
        let gpu = e.gpu();
        Overview {
            startup: self.startup.clone(),
            dry_run: e.config().agent.dry_run,
            rules: e.config().rules.len(),
            tracked: e.tracked(),
            kernel_oom_kills: e.kernel_oom_kills(),
            counters: e
                .host()
                .probes
                .as_ref()
                .map(|p| p.counters())
                .unwrap_or_default(),
            host: e.host_view(),
            instrument: e.instrument(),
            instrument_seconds: (now - e.instrument().since).max(0.0),
            process_levels,
            frozen,
            queued: e.queue_views(),
            cgroup_levels: e.cgroup_levels(),
            crash_loops: e
                .crash_loops()
                .into_iter()
                .map(|l| {
                    let ago = (now - l.last).max(0.0);
                    (l, ago)
                })
                .collect(),
            gpu: GpuOverview {
                devices: e.gpu_views(),
                unavailable: gpu.unavailable.clone(),
                driver: gpu.driver.clone(),
                unmapped: gpu.unmapped.iter().copied().collect(),
                read_errors: gpu.error_count,
                passes: gpu.samples,
            },
        }
    }

    /// Processes matching `q`, sorted and paged; with the number matching.
    pub fn processes(&self, q: &ProcQuery) -> (Vec<ProcessInfo>, usize) {
        let (infos, total) = {
            let e = self.engine();
            let (views, total) = e.views(q);
            let infos: Vec<ProcessInfo> = views.into_iter().map(|v| counted(&e, v)).collect();
            (infos, total)
        };
        (infos.into_iter().map(with_kernel_faults).collect(), total)
    }

    /// The fastest growers (at most `n`), without their fault counts: what
    /// metrics show, read without touching /proc.
    pub fn growers(&self, n: usize) -> Vec<ProcView> {
        let q = ProcQuery {
            sort: SortKey::Slope,
            limit: n,
            ..ProcQuery::default()
        };
        self.engine().views(&q).0
    }

    /// One process in detail: its samples and the time to each line.
    pub fn process(&self, pid: u32) -> Option<(ProcessInfo, ProcDetail)> {
        let (info, detail) = {
            let e = self.engine();
            let d = e.detail(pid)?;
            (counted(&e, d.view.clone()), d)
        };
        Some((with_kernel_faults(info), detail))
    }

    /// Whether each alert still reports what holds: for a wait, that the
    /// process still waits; otherwise the process frozen, or the alert's
    /// scope (pid, rule, scope) at warn or above.
    pub fn alerts_hold(&self, keys: &[AlertCheck]) -> Vec<bool> {
        let e = self.engine();
        keys.iter()
            .map(|k| match k {
                AlertCheck::Waiting(pid) => e.is_queued(*pid),
                AlertCheck::Condition(pid, rule, scope) => e.alert_holds(*pid, rule, *scope),
            })
            .collect()
    }
}

/// A process's view with the probes' counts of its faults and mappings
/// (BPF map reads, under the engine's lock since the probes are the
/// host's).
fn counted(e: &Engine<LiveHost>, view: ProcView) -> ProcessInfo {
    let (faults, mapped_bytes) = match &e.host().probes {
        Some(p) => (p.faults(view.pid), p.mapped_bytes(view.pid)),
        None => (None, None),
    };
    ProcessInfo {
        view,
        faults,
        mapped_bytes,
    }
}

/// Without the fault probe, the kernel's own per-process count, read
/// after the engine's lock is given back.
fn with_kernel_faults(mut p: ProcessInfo) -> ProcessInfo {
    if p.faults.is_none() {
        p.faults = procfs::read_stat(p.view.pid).ok().map(|s| s.faults);
    }
    p
}
