//! The agent's process table and the loop body that turns samples into
//! decisions at three scopes: a process under its rule, a limited cgroup,
//! and the host. It owns no task or socket: `agent::run` feeds it kernel
//! events and timer ticks, and the API reads views of it.

mod admission;
mod gpu;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

pub use gpu::{GpuDeviceView, GpuState};

use sentinel_common::{Event, EventKind, counter};

use crate::{
    actuator::{Actuator, Pidfd},
    collector::{
        cgroup::{CgroupFs, is_within},
        host::{self, HostMem},
        procfs::{self, Mem},
    },
    config::Config,
    journal::{Decision, DecisionKind, Journal, unix_ms},
    model::{Series, Trend, seconds_to_limit},
    policy::{
        self, Action, Hysteresis, Level, Levels, Params, ProcessFacts, Sampling, Trigger, group,
        levels::{assess, grace_secs, rung},
        match_rule, priority_of,
        restarts::{CrashLoop, Restarts},
    },
    probes::{ProbeStatus, Probes},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    Running,
    Frozen,
    /// Sent SIGTERM; SIGKILL follows at the end of its grace if the rule
    /// allows kill.
    Terminating,
    Killed,
}

impl ProcState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Frozen => "frozen",
            Self::Terminating => "terminating",
            Self::Killed => "killed",
        }
    }

    /// Stopped growing because of Sentinel: its memory counts toward a
    /// shared limit, its growth no longer does.
    fn stopped(self) -> bool {
        self != Self::Running
    }
}

/// Where a limit comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The process's own rule.
    Process,
    /// A limited memory cgroup (its path).
    Cgroup(String),
    Host,
    /// A GPU's memory (its NVML index).
    Gpu(u32),
    /// One process's memory on one GPU, under its rule's `gpu_limit`.
    GpuProcess {
        device: u32,
        pid: u32,
    },
}

/// How the members of a shared limit form growers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grouping {
    /// Process trees (a cgroup's limit).
    Trees,
    /// Cgroups as one grower each (the host).
    Cgroups,
    /// Process trees, measured by their memory on this GPU.
    Gpu(u32),
}

pub struct Proc {
    pub pid: u32,
    pub start_time: u64,
    pub comm: String,
    pub exe: String,
    pub cgroup: String,
    pub ancestors: Vec<u32>,
    pub rule: Option<usize>,
    /// Its rule counts file-backed pages too.
    include_file: bool,
    /// From the first priority class that selects it (0 when none).
    pub priority: i32,
    /// Why the process must never be signalled, if it must not.
    pub protected: Option<String>,
    pub mem: Mem,
    pub series: Series,
    pub state: ProcState,
    /// Its level under its own rule.
    pub held: Hysteresis,
    /// The highest rung already taken (or, in dry-run, recorded) for each
    /// scope, so that a decision is made once per rung and episode rather
    /// than on every sample. A scope's entry goes when its level clears.
    acted: HashMap<Scope, Action>,
    pidfd: Option<Pidfd>,
    /// The scope and rule it was frozen for, and when, so that it is
    /// resumed when that scope's pressure clears (or, under a rule that
    /// allows it, killed once it has been frozen for `freeze_timeout`).
    frozen_for: Option<(Scope, String, f64)>,
    /// Counted once toward crash-loop detection, however many rungs it
    /// climbs.
    loop_counted: bool,
}

impl Proc {
    /// What its own rule measures: charged memory, plus file-backed pages
    /// when the rule opts in. Its series (and so its slope, also at shared
    /// limits) follows the same measure.
    pub fn usage(&self) -> u64 {
        self.mem
            .charged()
            .saturating_add(if self.include_file { self.mem.file } else { 0 })
    }
}

/// What the API shows of a process.
#[derive(Debug, Clone)]
pub struct ProcView {
    pub pid: u32,
    pub comm: String,
    pub cgroup: String,
    pub rule: String,
    pub mem: Mem,
    pub slope: f64,
    pub limit: u64,
    pub seconds_to_limit: Option<f64>,
    pub state: ProcState,
    pub level: Level,
    /// GPU memory over all devices.
    pub gpu_bytes: u64,
    /// Its pid inside its own PID namespace, for GPU processes in
    /// containers (0 when the same as `pid` or not known).
    pub ns_pid: u32,
}

/// One process: its view, its samples (seconds ago, bytes; oldest first)
/// and the seconds to each of its rule's lines (warn, preempt, kill, limit)
/// at its current slope.
pub struct ProcDetail {
    pub view: ProcView,
    pub samples: Vec<(f64, u64)>,
    pub eta: [Option<f64>; 4],
}

/// Which processes a listing wants, in what order, from where.
#[derive(Debug, Clone, Default)]
pub struct ProcQuery {
    pub matched_only: bool,
    pub cgroup_prefix: String,
    pub comm: String,
    pub rule: String,
    pub sort: SortKey,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Fastest growers first.
    #[default]
    Slope,
    /// Biggest first.
    Charged,
    /// Soonest to its limit first.
    Eta,
    Pid,
}

impl std::str::FromStr for SortKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "slope" => Ok(Self::Slope),
            "charged" => Ok(Self::Charged),
            "eta" => Ok(Self::Eta),
            "pid" => Ok(Self::Pid),
            other => Err(format!("`{other}` is not one of slope, charged, eta, pid")),
        }
    }
}

/// What the API shows of the host.
#[derive(Debug, Clone, Copy)]
pub struct HostView {
    pub mem: HostMem,
    /// Used bytes (capacity less headroom) and the host's 100% line.
    pub used: u64,
    pub limit: u64,
    pub level: Level,
    pub psi_some_avg10: Option<f64>,
    pub psi_trigger: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ebpf,
    Polling,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ebpf => "ebpf",
            Self::Polling => "procfs-polling",
        }
    }
}

/// A shared limit's state between decisions.
#[derive(Default)]
struct ScopeState {
    held: Hysteresis,
    /// After acting: the victims whose action must take effect (memory
    /// freed, or the process confirmed stopped) before another is chosen.
    settle: Option<(Vec<u32>, f64)>,
}

/// The host between /proc/meminfo samples.
struct HostState {
    mem: HostMem,
    series: Series,
    /// Charged bytes moved by known processes' events since the last
    /// sample, so the host is judged between samples without reading
    /// /proc/meminfo. New, exec'd and exited processes move it only at the
    /// next sample: their pages may be shared (fork) or not yet freed.
    drift: i64,
    last_eval: f64,
    /// Usage at the last judgement: the tick judges again only on movement.
    last_eval_used: u64,
    psi_avg10: Option<f64>,
    psi_trigger: bool,
    psi_alerted: Option<f64>,
}

impl HostState {
    fn used(&self) -> u64 {
        (self.mem.used() as i64).saturating_add(self.drift).max(0) as u64
    }
}

/// One limit as the decision needs it.
struct Limit {
    scope: Scope,
    rule: String,
    bytes: u64,
    levels: Levels,
    cap: Action,
}

impl Limit {
    /// A process rule's limit.
    fn of_rule(rule: &policy::Rule) -> Self {
        Self {
            scope: Scope::Process,
            rule: rule.name.clone(),
            bytes: rule.limit_bytes,
            levels: rule.levels,
            cap: rule.action,
        }
    }
}

pub struct Engine {
    pub cfg: Config,
    pub mode: Mode,
    pub degraded_reason: String,
    pub probe_status: Vec<ProbeStatus>,
    pub probes: Option<Probes>,
    pub journal: Arc<Journal>,
    pub kernel_oom_kills: u64,
    procs: HashMap<u32, Proc>,
    actuator: Box<dyn Actuator>,
    self_pid: u32,
    page_size: u64,
    cgfs: CgroupFs,
    /// GPU devices and their processes' GPU memory, from NVML.
    pub gpu: gpu::GpuState,
    /// Reservations by tree root: (bytes, used), from admission control.
    reserved: HashMap<u32, (u64, u64)>,
    /// Effective limit of each cgroup path seen, cleared on every rescan.
    group_limits: HashMap<String, Option<(String, u64)>>,
    scopes: HashMap<Scope, ScopeState>,
    host: HostState,
    restarts: Restarts,
    /// SIGKILL due after an unanswered SIGTERM: pid -> (deadline, scope,
    /// rule), re-checked against the rule in force when it comes due.
    graces: HashMap<u32, (f64, Scope, String)>,
    /// Woken when a grace starts, so that the loop watches graces closely
    /// only while there are any.
    pub grace_started: Arc<tokio::sync::Notify>,
    /// Processes an operator protected through the API: pid -> why.
    operator_protected: HashMap<u32, String>,
    /// Where the running policy came from, and its text.
    pub policy_source: String,
    pub policy_text: String,
}

/// Why an operator's request about a process could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("pid {0} is not a process Sentinel tracks")]
    NotFound(u32),
    #[error("pid {pid} is {state}, not frozen")]
    NotFrozen { pid: u32, state: &'static str },
    #[error("pid {pid}: {why}")]
    Failed { pid: u32, why: String },
}

/// Window over which growth shares are measured.
const GROWTH_WINDOW_SECS: f64 = 2.0;
/// A memory-pressure warning is repeated at most this often.
const PSI_ALERT_EVERY_SECS: f64 = 60.0;
/// Between meminfo samples the host is judged at most this often.
const HOST_EVAL_EVERY_SECS: f64 = 0.005;

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

impl Engine {
    pub fn new(
        cfg: Config,
        mode: Mode,
        probes: Option<Probes>,
        actuator: Box<dyn Actuator>,
        journal: Arc<Journal>,
    ) -> Self {
        let probe_status = probes
            .as_ref()
            .map(|p| p.status.clone())
            .unwrap_or_default();
        let restarts = Restarts::new(cfg.agent.crash_loop);
        let history = cfg.agent.history.as_secs_f64();
        Self {
            cfg,
            mode,
            degraded_reason: String::new(),
            probe_status,
            probes,
            journal,
            kernel_oom_kills: 0,
            procs: HashMap::new(),
            actuator,
            self_pid: std::process::id(),
            page_size: crate::probes::page_size(),
            cgfs: CgroupFs::detect(),
            gpu: gpu::GpuState::default(),
            reserved: HashMap::new(),
            group_limits: HashMap::new(),
            scopes: HashMap::new(),
            host: HostState {
                mem: HostMem::default(),
                series: Series::new(history),
                drift: 0,
                last_eval: f64::NEG_INFINITY,
                last_eval_used: 0,
                psi_avg10: None,
                psi_trigger: false,
                psi_alerted: None,
            },
            restarts,
            graces: HashMap::new(),
            grace_started: Arc::default(),
            operator_protected: HashMap::new(),
            policy_source: String::new(),
            policy_text: String::new(),
        }
    }

    pub fn params(&self) -> Params {
        Params {
            horizon_secs: self.cfg.agent.reaction_horizon.as_secs_f64(),
            sampling: match self.mode {
                Mode::Ebpf => Sampling::Step {
                    step_bytes: self.cfg.agent.step_bytes,
                },
                Mode::Polling => Sampling::Poll {
                    interval_secs: self.cfg.agent.poll_interval.as_secs_f64(),
                },
            },
            min_confidence: 0.6,
        }
    }

    /// Swaps in a validated config and re-matches every known process. The
    /// listeners cannot move under a running server, so they are kept.
    pub fn apply_config(&mut self, mut cfg: Config) {
        cfg.agent.socket = self.cfg.agent.socket.clone();
        if cfg.agent.dry_run != self.cfg.agent.dry_run {
            tracing::warn!("dry_run changes take effect at the next restart");
            cfg.agent.dry_run = self.cfg.agent.dry_run;
        }
        if cfg.api != self.cfg.api
            || cfg.metrics != self.cfg.metrics
            || cfg.alerting != self.cfg.alerting
        {
            tracing::warn!(
                "[api], [metrics] and [alerting] changes take effect at the next restart"
            );
            cfg.api = self.cfg.api.clone();
            cfg.metrics = self.cfg.metrics.clone();
            cfg.alerting = self.cfg.alerting.clone();
        }
        self.restarts.set_rule(cfg.agent.crash_loop);
        self.cfg = cfg;
        let mut procs = std::mem::take(&mut self.procs);
        for p in procs.values_mut() {
            // `agent.protected` may have changed.
            p.protected = self.protected_reason(p.pid, &p.comm, false);
            self.bind_rule(p);
        }
        let pids: Vec<u32> = procs.keys().copied().collect();
        self.procs = procs;
        for pid in pids {
            self.sync_tripwire(pid);
        }
        // A raised limit may have cleared a frozen process's pressure.
        self.resume_cleared(mono_now());
    }

    pub fn tracked(&self) -> usize {
        self.procs.len()
    }

    pub fn set_psi_trigger(&mut self, armed: bool) {
        self.host.psi_trigger = armed;
    }

    fn protected_reason(&self, pid: u32, comm: &str, kernel_thread: bool) -> Option<String> {
        if let Some(why) = self.operator_protected.get(&pid) {
            Some(why.clone())
        } else if pid == 1 {
            Some("pid 1".into())
        } else if pid == self.self_pid {
            Some("the agent itself".into())
        } else if kernel_thread {
            Some("kernel thread".into())
        } else if procfs::read_oom_score_adj(pid) == -1000 {
            Some("oom_score_adj -1000".into())
        } else if self.cfg.agent.protected.iter().any(|n| n == comm) {
            Some(format!("`{comm}` is in agent.protected"))
        } else {
            None
        }
    }

    /// Reads a process from /proc into the table; `None` if it is gone or a
    /// kernel thread.
    fn discover(&mut self, pid: u32) -> Option<&mut Proc> {
        if self.procs.contains_key(&pid) {
            return self.procs.get_mut(&pid);
        }
        let stat = procfs::read_stat(pid).ok()?;
        if stat.kernel_thread {
            return None;
        }
        let protected = self.protected_reason(pid, &stat.comm, stat.kernel_thread);
        let mut p = Proc {
            pid,
            start_time: stat.start_time,
            comm: stat.comm,
            exe: procfs::read_exe(pid),
            cgroup: procfs::read_cgroup(pid).unwrap_or_default(),
            ancestors: procfs::read_ancestors(stat.ppid),
            rule: None,
            include_file: false,
            priority: 0,
            protected,
            mem: Mem::default(),
            series: Series::new(self.cfg.agent.history.as_secs_f64()),
            state: ProcState::Running,
            held: Hysteresis::default(),
            acted: HashMap::new(),
            pidfd: None,
            frozen_for: None,
            loop_counted: false,
        };
        self.bind_rule(&mut p);
        self.procs.insert(pid, p);
        self.sync_tripwire(pid);
        self.procs.get_mut(&pid)
    }

    /// The in-kernel entry for a process: its ceiling at its preempt line
    /// (never closer than a step to its limit), so that even an allocation
    /// faster than the agent can react stops there; `WATCH_ONLY` when
    /// nothing may be signalled (its events still wake the agent); None
    /// when no rule governs it.
    fn tripwire_ceiling(&self, p: &Proc) -> Option<u64> {
        let rule = &self.cfg.rules[p.rule?];
        if p.state != ProcState::Running {
            return None;
        }
        // Not re-armed for a process already frozen this episode (an
        // operator resumed it): the kernel would stop it again at once.
        let frozen_before = p
            .acted
            .get(&Scope::Process)
            .is_some_and(|&a| a >= Action::Freeze);
        let armable = self.mode == Mode::Ebpf
            && self.cfg.agent.tripwire
            && !self.cfg.agent.dry_run
            && p.protected.is_none()
            && !frozen_before
            && rule.action >= Action::Freeze;
        Some(if armable {
            tripwire_ceiling(
                rule.limit_bytes,
                rule.levels.line(Level::Preempt, rule.limit_bytes),
                self.cfg.agent.step_bytes,
            )
        } else {
            // Governed without a tripwire: still wake the agent at once.
            crate::probes::WATCH_ONLY
        })
    }

    fn sync_tripwire(&mut self, pid: u32) {
        let Some(p) = self.procs.get(&pid) else {
            return;
        };
        let ceiling = self.tripwire_ceiling(p);
        let Some(probes) = self.probes.as_mut() else {
            return;
        };
        match ceiling {
            Some(c) => {
                if let Err(e) = probes.arm_tripwire(pid, c) {
                    tracing::warn!(pid, "arming the tripwire failed: {e}");
                }
            }
            None => probes.disarm_tripwire(pid),
        }
    }

    /// Matches the process against the rules and takes a pidfd when one
    /// governs it, so a later signal cannot reach a reused pid.
    fn bind_rule(&self, p: &mut Proc) {
        let facts = ProcessFacts {
            pid: p.pid,
            comm: &p.comm,
            exe: &p.exe,
            cgroup: &p.cgroup,
            ancestors: &p.ancestors,
        };
        p.rule = match_rule(&self.cfg.rules, &facts);
        p.priority = priority_of(&self.cfg.priorities, &facts);
        p.include_file = p.rule.is_some_and(|r| self.cfg.rules[r].include_file);
        if p.rule.is_some() && p.pidfd.is_none() {
            match Pidfd::open(p.pid, p.start_time) {
                Ok(fd) => p.pidfd = Some(fd),
                Err(e) => tracing::debug!(pid = p.pid, "pidfd_open: {e}"),
            }
        }
        if let Some(r) = p.rule {
            tracing::debug!(pid = p.pid, comm = %p.comm, rule = %self.cfg.rules[r].name, "process matched");
        }
    }

    /// A new memory reading for `pid` at monotonic time `t`. Readings older
    /// than the last one are dropped: after a tripwire jumps the queue, the
    /// samples from before it must not overwrite what the kernel saw last.
    pub fn observe(&mut self, pid: u32, mem: Mem, t: f64) {
        let known = self.procs.contains_key(&pid);
        let Some(p) = self.discover(pid) else {
            return;
        };
        if p.series.last().is_some_and(|l| l.t > t) {
            return;
        }
        let before = p.mem.charged();
        p.mem = mem;
        let usage = p.usage();
        p.series.push(t, usage);
        let delta = (mem.charged() as i64).saturating_sub(before as i64);
        if known {
            self.host.drift = self.host.drift.saturating_add(delta);
        }
        self.evaluate(pid, t);
        self.evaluate_group(pid, t);
        if delta > 0 {
            self.maybe_evaluate_host(t);
        }
    }

    /// Process scope: the process's own rule.
    fn evaluate(&mut self, pid: u32, now: f64) {
        let params = self.params();
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        let Some(ri) = p.rule else {
            return;
        };
        let rule = &self.cfg.rules[ri];
        let usage = p.usage();
        let limit = Limit::of_rule(rule);
        match p.state {
            ProcState::Killed => return,
            ProcState::Terminating => {
                // Still running its SIGTERM handler: at the limit the grace
                // is over.
                if usage >= limit.bytes && self.graces.contains_key(&pid) {
                    self.hurry_grace(pid, now);
                }
                return;
            }
            _ => {}
        }
        // A stopped process is where it is: its old growth forecasts nothing.
        let trend = match p.state {
            ProcState::Running => p.series.trend(now),
            _ => None,
        };
        let assessed = assess(usage, limit.bytes, trend.as_ref(), &limit.levels, &params);
        p.held.update(
            assessed.as_ref().map(|a| a.0),
            usage,
            limit.bytes,
            &limit.levels,
        );
        if p.held.level == Level::Normal {
            // Cleared: a later rise is a new episode, warned about again.
            p.acted.remove(&Scope::Process);
        }
        let Some((level, verdict)) = assessed else {
            return;
        };
        let ttl = time_left(usage, limit.bytes, trend.map(|t| t.bytes_per_sec));
        self.act(pid, &limit, level, verdict, trend, ttl, now);
    }

    /// The limited cgroup holding `pid`, its limit, and the rule defending it.
    fn cgroup_limit(&mut self, cgroup: &str) -> Option<Limit> {
        let eff = match self.group_limits.get(cgroup) {
            Some(e) => e.clone(),
            None => {
                let e = self.cgfs.effective_limit(cgroup);
                self.group_limits.insert(cgroup.to_string(), e.clone());
                e
            }
        };
        let (path, bytes) = eff?;
        let rule = self
            .cfg
            .cgroup_rules
            .iter()
            .find(|r| r.selector.is_match(&path))?;
        Some(Limit {
            scope: Scope::Cgroup(path),
            rule: rule.name.clone(),
            bytes,
            levels: rule.levels,
            cap: rule.action,
        })
    }

    /// Cgroup scope: the limited cgroup holding `pid`.
    fn evaluate_group(&mut self, pid: u32, now: f64) {
        if self.cfg.cgroup_rules.is_empty() {
            return;
        }
        let Some(cg) = self.procs.get(&pid).map(|p| p.cgroup.clone()) else {
            return;
        };
        let Some(limit) = self.cgroup_limit(&cg) else {
            return;
        };
        let Scope::Cgroup(path) = &limit.scope else {
            return;
        };
        let members: Vec<u32> = self.group_members(path).map(|p| p.pid).collect();
        let usage = self.cgroup_usage(path);
        self.relieve(&limit, usage, &members, Grouping::Trees, now);
    }

    fn host_limit(&self) -> Limit {
        let h = &self.cfg.host;
        Limit {
            scope: Scope::Host,
            rule: "host".into(),
            bytes: self
                .host
                .mem
                .capacity()
                .saturating_sub(h.min_available)
                .max(1),
            levels: h.levels,
            cap: h.action,
        }
    }

    /// Host scope between meminfo samples, on a process's growth: judged
    /// only near a line, and at most every `HOST_EVAL_EVERY_SECS`, so a
    /// quiet host costs nothing per event.
    fn maybe_evaluate_host(&mut self, now: f64) {
        if now - self.host.last_eval >= HOST_EVAL_EVERY_SECS && self.host_near_a_line() {
            self.evaluate_host(now);
        }
    }

    /// Whether the host is close enough to its warn line (or already held
    /// at a level) for a judgement that looks at every process to be due.
    fn host_near_a_line(&self) -> bool {
        if self.host.mem.total == 0 {
            return false;
        }
        let limit = self.host_limit();
        let gate = (limit.levels.line(Level::Warn, limit.bytes) as f64 * 0.9) as u64;
        let held = self.scopes.get(&Scope::Host).map(|s| s.held.level);
        self.host.used() >= gate || held.is_some_and(|l| l > Level::Normal)
    }

    /// Host scope: all memory plus swap, less the floor to keep available.
    /// Only processes that moved within the growth window (or that the
    /// agent stopped) can be victims, so quiet ones are not even looked at.
    fn evaluate_host(&mut self, now: f64) {
        self.host.last_eval = now;
        self.host.last_eval_used = self.host.used();
        let limit = self.host_limit();
        if limit.bytes <= 1 {
            return;
        }
        let candidates = &self.cfg.host.candidates;
        let members: Vec<u32> = self
            .procs
            .values()
            .filter(|p| candidates.as_ref().is_none_or(|c| c.is_match(&p.cgroup)))
            .map(|p| p.pid)
            .collect();
        let usage = self.host.used();
        self.relieve(&limit, usage, &members, Grouping::Cgroups, now);
    }

    /// A fresh /proc/meminfo sample, then everything due on the agent's
    /// timer: frozen processes whose pressure cleared (or whose freeze ran
    /// out), and the host's judgement when it moved near a line.
    pub fn tick(&mut self, now: f64) {
        match host::read_meminfo() {
            Ok(mem) => {
                self.host.mem = mem;
                self.host.drift = 0;
                self.host.series.push(now, mem.used());
            }
            Err(e) => tracing::debug!("reading /proc/meminfo: {e}"),
        }
        self.host.psi_avg10 = host::read_psi_avg10("some");
        let _ = self.expire_graces(now);
        self.resume_cleared(now);
        self.escalate_long_freezes(now);
        self.restarts.prune(now);
        let moved =
            self.host.used().abs_diff(self.host.last_eval_used) >= self.cfg.agent.step_bytes;
        let settling = self
            .scopes
            .get(&Scope::Host)
            .is_some_and(|s| s.settle.is_some());
        if (moved || settling) && self.host_near_a_line() {
            self.evaluate_host(now);
        }
    }

    /// The PSI trigger fired: tasks are stalling on memory. Look at the host
    /// now, and warn (at most once a minute) even if no line is near: PSI
    /// sees pressure, such as reclaim thrashing, that usage alone does not.
    pub fn on_pressure(&mut self, now: f64) {
        self.tick(now);
        if self
            .host
            .psi_alerted
            .is_some_and(|t| now - t < PSI_ALERT_EVERY_SECS)
        {
            return;
        }
        self.host.psi_alerted = Some(now);
        let limit = self.host_limit();
        let used = self.host.used();
        let d = self.journal.append(Decision {
            time_unix_ms: unix_ms(),
            kind: DecisionKind::Pressure,
            rule: "host".into(),
            level: Level::Warn.as_str().into(),
            action: Action::Alert.as_str().into(),
            outcome: "recorded".into(),
            reason: format!(
                "memory pressure: tasks stalled on memory for {} ms within one second (PSI some avg10 {:.2}%); host at {used} of {} B",
                self.cfg.host.psi_stall.as_millis(),
                self.host.psi_avg10.unwrap_or(0.0),
                limit.bytes
            ),
            charged_bytes: used,
            slope_bytes_per_sec: self
                .host
                .series
                .trend(now)
                .map(|t| t.bytes_per_sec)
                .unwrap_or(0.0),
            limit_bytes: limit.bytes,
            ..Default::default()
        });
        tracing::warn!(seq = d.seq, "{}", d.reason);
    }

    /// Whether the last action on a shared limit has taken effect: each
    /// victim gone, confirmed stopped, or out of its grace; or time is up.
    fn settled(&self, victims: &[u32], until: f64, now: f64) -> bool {
        now >= until
            || victims.iter().all(|v| {
                let Some(p) = self.procs.get(v) else {
                    return true;
                };
                let state = procfs::read_stat(*v).map(|s| s.state);
                match p.state {
                    ProcState::Running => true,
                    ProcState::Frozen => matches!(state, Ok('T' | 't')),
                    ProcState::Terminating | ProcState::Killed => {
                        matches!(state, Err(_) | Ok('Z' | 'X'))
                    }
                }
            })
    }

    /// A shared limit (a cgroup's or the host's) over `pids`: at the level
    /// its usage is at or will reach in time, act on the member (or tree)
    /// driving the growth, not the biggest; warn once per rise when nobody
    /// can be acted on. After acting, wait until the action took effect.
    fn relieve(&mut self, limit: &Limit, usage: u64, pids: &[u32], grouping: Grouping, now: f64) {
        let by_cgroup = grouping == Grouping::Cgroups;
        if usage >= limit.bytes {
            // At the limit itself, no grace is left.
            let hurried: Vec<u32> = self
                .graces
                .iter()
                .filter(|(_, g)| g.1 == limit.scope)
                .map(|(pid, _)| *pid)
                .collect();
            for pid in hurried {
                self.hurry_grace(pid, now);
            }
        }
        let state = self.scopes.entry(limit.scope.clone()).or_default();
        if let Some((victims, until)) = state.settle.take()
            && !self.settled(&victims, until, now)
        {
            if let Some(s) = self.scopes.get_mut(&limit.scope) {
                s.settle = Some((victims, until));
            }
            return;
        }
        let params = self.params();
        // (pid, tree root, stopped, frozen) of each member, kept past the
        // borrow.
        let (g, roster) = {
            let members = self.group_view(pids, grouping, now);
            let g = group::decide(
                &members,
                usage,
                limit.bytes,
                &limit.levels,
                limit.cap,
                &params,
                GROWTH_WINDOW_SECS,
                now,
            );
            let roster: Vec<(u32, u32, bool, bool)> = members
                .iter()
                .map(|m| (m.pid, m.root, m.stopped, m.frozen))
                .collect();
            (g, roster)
        };
        let state = self.scopes.entry(limit.scope.clone()).or_default();
        let before = state.held.level;
        let rose = state.held.update(
            g.as_ref().map(|g| g.level),
            usage,
            limit.bytes,
            &limit.levels,
        );
        if before > Level::Normal && state.held.level == Level::Normal {
            // The episode is over: what was done for it no longer counts.
            for p in self.procs.values_mut() {
                p.acted.remove(&limit.scope);
            }
        }
        let Some(g) = g else {
            return;
        };
        let action = rung(g.level, limit.cap);
        let victim = g.victim.as_ref().filter(|_| action > Action::Alert);
        let Some(v) = victim else {
            if rose {
                self.group_alert(limit, &g, usage);
            }
            return;
        };
        let targets: Vec<u32> = roster
            .iter()
            .filter(|&&(pid, root, stopped, frozen)| {
                root == v.root
                    && if v.escalate {
                        frozen
                    } else {
                        // A cgroup judged as one grower at host scope loses
                        // only its growing members, never a steady one.
                        !stopped && (!by_cgroup || self.grew_recently(pid, now))
                    }
            })
            .map(|&(pid, ..)| pid)
            .collect();
        let what = match &limit.scope {
            Scope::Cgroup(path) => format!("cgroup {path} (limit {} B)", limit.bytes),
            Scope::Gpu(d) => format!("GPU {d} (memory {} B)", limit.bytes),
            Scope::GpuProcess { device, pid } => {
                format!(
                    "pid {pid}'s memory on GPU {device} (limit {} B)",
                    limit.bytes
                )
            }
            _ => format!("the host (limit {} B)", limit.bytes),
        };
        let unit = match self.procs.get(&v.root) {
            Some(p) if by_cgroup && p.cgroup.len() > 1 => format!("its cgroup {}", p.cgroup),
            _ => format!("this process (tree {})", v.root),
        };
        let why = if v.escalate {
            "it was frozen for this limit and still holds its memory".to_string()
        } else {
            format!("{unit} has {:.0}% of its recent growth", v.share * 100.0)
        };
        let ttl = time_left(usage, limit.bytes, Some(g.group_slope));
        for pid in &targets {
            let trend = match grouping {
                Grouping::Gpu(d) => self.gpu.trend(d, *pid, now),
                _ => self.procs.get(pid).and_then(|p| p.series.trend(now)),
            };
            let verdict = policy::Verdict {
                trigger: g.verdict.trigger,
                reason: format!(
                    "{what} at {usage} B is at or predicted to reach its {} level ({:.0}%); {why}: {}",
                    g.level.as_str(),
                    limit.levels.share(g.level) * 100.0,
                    g.verdict.reason
                ),
            };
            self.act(*pid, limit, g.level, verdict, trend, ttl, now);
        }
        // Settled once confirmed (or at the timeout, or when a grace ends).
        let until = targets
            .iter()
            .filter_map(|p| self.graces.get(p).map(|g| g.0))
            .fold(now + self.cfg.agent.settle_timeout.as_secs_f64(), f64::max);
        if let Some(s) = self.scopes.get_mut(&limit.scope) {
            s.settle = Some((targets, until));
        }
    }

    /// The members of a shared limit as the pure decision sees them: those
    /// that moved within the growth window or that the agent stopped (quiet
    /// ones cannot be victims), each with the root of its tree among all of
    /// `pids` (within its cgroup, at host scope).
    fn group_view(&self, pids: &[u32], grouping: Grouping, now: f64) -> Vec<group::Member<'_>> {
        if let Grouping::Gpu(device) = grouping {
            return self.gpu_members(device, pids, now);
        }
        let by_cgroup = grouping == Grouping::Cgroups;
        let all: HashSet<u32> = pids.iter().copied().collect();
        let mut per_cgroup: HashMap<&str, HashSet<u32>> = HashMap::new();
        if by_cgroup {
            for p in pids.iter().filter_map(|pid| self.procs.get(pid)) {
                per_cgroup.entry(&p.cgroup).or_default().insert(p.pid);
            }
        }
        pids.iter()
            .filter_map(|pid| self.procs.get(pid))
            .filter(|p| {
                p.state.stopped()
                    || p.series
                        .last()
                        .is_some_and(|l| now - l.t <= GROWTH_WINDOW_SECS)
            })
            .map(|p| {
                let root = if !by_cgroup {
                    tree_root(p.pid, &p.ancestors, &all)
                } else if p.cgroup.len() > 1 && p.protected.is_none() {
                    // At host scope a cgroup (a service, a container) is one
                    // grower, however it splits its growth; named by its
                    // lowest pid. Protected members stay apart so they
                    // cannot shield the rest.
                    per_cgroup[p.cgroup.as_str()]
                        .iter()
                        .copied()
                        .min()
                        .unwrap_or(p.pid)
                } else {
                    tree_root(p.pid, &p.ancestors, &per_cgroup[p.cgroup.as_str()])
                };
                group::Member {
                    pid: p.pid,
                    root,
                    // The measure its series follows, so gains compare.
                    bytes: p.usage(),
                    series: &p.series,
                    stopped: p.state.stopped(),
                    frozen: p.state == ProcState::Frozen,
                    // Growing inside its reservation is what it asked for.
                    protected: p.protected.is_some() || self.within_reservation(p),
                    priority: p.priority,
                }
            })
            .collect()
    }

    /// Whether `pid` gained memory within the growth window.
    fn grew_recently(&self, pid: u32, now: f64) -> bool {
        self.procs.get(&pid).is_some_and(|p| {
            p.usage() > group::bytes_at(&p.series, now - GROWTH_WINDOW_SECS)
                || p.series
                    .trend(now)
                    .is_some_and(|t| t.ongoing && t.bytes_per_sec > 0.0)
        })
    }

    /// A shared limit rose to a level with nobody to act on (or a rule that
    /// only alerts): one warning per rise.
    fn group_alert(&mut self, limit: &Limit, g: &group::GroupDecision, usage: u64) {
        let pid = g.victim.as_ref().map(|v| v.root).unwrap_or(0);
        let (comm, cgroup) = self
            .procs
            .get(&pid)
            .map(|p| (p.comm.clone(), p.cgroup.clone()))
            .unwrap_or_default();
        let cgroup = match &limit.scope {
            Scope::Cgroup(path) => path.clone(),
            _ => cgroup,
        };
        let top = if pid == 0 {
            "nothing is growing".to_string()
        } else {
            format!("the top grower is pid {pid} ({comm})")
        };
        let d = self.journal.append(Decision {
            time_unix_ms: unix_ms(),
            kind: DecisionKind::Preempt,
            pid,
            comm,
            cgroup,
            rule: limit.rule.clone(),
            level: g.level.as_str().into(),
            action: Action::Alert.as_str().into(),
            outcome: "recorded".into(),
            reason: format!(
                "{} at {usage} B reached its {} level ({:.0}% of {} B); {top}: {}",
                match &limit.scope {
                    Scope::Cgroup(p) => format!("cgroup {p}"),
                    Scope::Gpu(d) => format!("GPU {d}"),
                    Scope::GpuProcess { device, pid } => format!("pid {pid} on GPU {device}"),
                    _ => "the host".to_string(),
                },
                g.level.as_str(),
                limit.levels.share(g.level) * 100.0,
                limit.bytes,
                g.verdict.reason
            ),
            charged_bytes: usage,
            slope_bytes_per_sec: g.group_slope,
            limit_bytes: limit.bytes,
            predicted_seconds_to_limit: match g.verdict.trigger {
                Trigger::Predicted { seconds_to_limit } => Some(seconds_to_limit),
                _ => None,
            },
            ..Default::default()
        });
        tracing::warn!(seq = d.seq, rule = %d.rule, "{}", d.reason);
    }

    /// What a limited cgroup's members hold against its limit.
    fn cgroup_usage(&self, group_path: &str) -> u64 {
        self.group_members(group_path)
            .map(|p| p.mem.charged())
            .sum()
    }

    /// Known processes in the cgroup at `group_path` or below it.
    fn group_members<'a>(&'a self, group_path: &'a str) -> impl Iterator<Item = &'a Proc> {
        self.procs
            .values()
            .filter(move |p| is_within(&p.cgroup, group_path))
    }

    /// Where a frozen process's scope stands now: its usage, limit and
    /// levels, or why it must be resumed regardless.
    fn frozen_scope(
        &self,
        p: &Proc,
        scope: &Scope,
        rule: &str,
    ) -> Result<(u64, u64, Levels), String> {
        match scope {
            Scope::Process => {
                let r = p
                    .rule
                    .map(|r| &self.cfg.rules[r])
                    .filter(|r| r.name == rule)
                    .ok_or_else(|| format!("rule `{rule}` no longer governs it"))?;
                Ok((p.usage(), r.limit_bytes, r.levels))
            }
            Scope::Cgroup(path) => {
                let r = self
                    .cfg
                    .cgroup_rules
                    .iter()
                    .find(|r| r.name == rule)
                    .ok_or_else(|| format!("cgroup rule `{rule}` was removed"))?;
                let limit = self
                    .cgfs
                    .own_limit(path)
                    .ok_or_else(|| format!("cgroup {path} has no limit any more"))?;
                Ok((self.cgroup_usage(path), limit, r.levels))
            }
            Scope::Host => {
                let l = self.host_limit();
                Ok((self.host.used(), l.bytes, l.levels))
            }
            Scope::Gpu(d) => {
                let dev = self
                    .gpu
                    .device(*d)
                    .ok_or_else(|| format!("GPU {d} is no longer reported"))?;
                Ok((dev.used, dev.total, self.cfg.gpu.levels))
            }
            Scope::GpuProcess { device, pid } => {
                let r = self
                    .cfg
                    .rules
                    .iter()
                    .find(|r| r.name == rule)
                    .ok_or_else(|| format!("rule `{rule}` was removed"))?;
                let limit = r
                    .gpu_limit_bytes
                    .ok_or_else(|| format!("rule `{rule}` has no gpu_limit any more"))?;
                let used = self.gpu.last_bytes(*device, *pid).unwrap_or(0);
                Ok((used, limit, r.levels))
            }
        }
    }

    /// Resumes processes frozen for a limit once that limit's usage is
    /// below its clear level (the preempt line less `clear`), or once the
    /// rule that froze them is gone, so their work is not lost. If they
    /// grow again, they are judged again.
    pub fn resume_cleared(&mut self, now: f64) {
        let frozen: Vec<(u32, Scope, String)> = self
            .procs
            .values()
            .filter(|p| p.state == ProcState::Frozen)
            .filter_map(|p| p.frozen_for.clone().map(|(s, r, _)| (p.pid, s, r)))
            .collect();
        for (pid, scope, rule) in frozen {
            let Some(p) = self.procs.get(&pid) else {
                continue;
            };
            let (reason, limit, level) = match self.frozen_scope(p, &scope, &rule) {
                Err(why) => (why, 0, Level::Normal),
                Ok((usage, limit, levels)) => {
                    let clear = levels.clear_line(Level::Preempt, limit);
                    if usage >= clear {
                        continue;
                    }
                    let what = match &scope {
                        Scope::Process => "it".to_string(),
                        Scope::Cgroup(path) => format!("cgroup {path}"),
                        Scope::Host => "the host".to_string(),
                        Scope::Gpu(d) => format!("GPU {d}"),
                        Scope::GpuProcess { device, .. } => format!("its memory on GPU {device}"),
                    };
                    let mut held = Hysteresis {
                        level: Level::Preempt,
                    };
                    held.update(None, usage, limit, &levels);
                    (
                        format!(
                            "{what} is at {usage} B, below its clear level {clear} B ({:.0}% of its limit {limit} B)",
                            (levels.preempt - levels.clear) * 100.0
                        ),
                        limit,
                        held.level,
                    )
                }
            };
            let Some(p) = self.procs.get_mut(&pid) else {
                continue;
            };
            let outcome = match &p.pidfd {
                Some(fd) => match self.actuator.resume(fd) {
                    Ok(o) => o.as_str().to_string(),
                    Err(e) => format!("failed: {e}"),
                },
                None => "failed: no pidfd for the process".to_string(),
            };
            p.state = ProcState::Running;
            p.frozen_for = None;
            p.acted.remove(&scope);
            if scope == Scope::Process {
                p.held.level = level;
            }
            // Growth before the freeze says nothing about the time after it.
            p.series = Series::new(self.cfg.agent.history.as_secs_f64());
            let usage = p.usage();
            p.series.push(now, usage);
            let d = self.journal.append(Decision {
                limit_bytes: limit,
                ..note(
                    p,
                    DecisionKind::Resume,
                    rule,
                    level.as_str(),
                    "resume",
                    outcome,
                    reason,
                )
            });
            tracing::info!(seq = d.seq, pid, comm = %d.comm, "resumed: {}", d.reason);
            self.sync_tripwire(pid);
        }
    }

    /// SIGKILL for processes that did not exit within their grace.
    /// Ends the graces that are due; whether any are left.
    pub fn expire_graces(&mut self, now: f64) -> bool {
        if self.graces.is_empty() {
            return false;
        }
        let due: Vec<u32> = self
            .graces
            .iter()
            .filter(|(_, g)| now >= g.0)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in due {
            self.end_grace(pid, "it did not exit within its grace after SIGTERM", now);
        }
        !self.graces.is_empty()
    }

    /// Its scope reached the limit during the grace: kill now.
    fn hurry_grace(&mut self, pid: u32, now: f64) {
        self.end_grace(
            pid,
            "it reached the limit during its grace after SIGTERM",
            now,
        );
    }

    /// Sends the SIGKILL that follows an unanswered SIGTERM, if the process
    /// is still there and the rule in force still allows kill.
    fn end_grace(&mut self, pid: u32, why: &str, now: f64) {
        let Some((_, scope, rule)) = self.graces.remove(&pid) else {
            return;
        };
        if !matches!(procfs::read_stat(pid).map(|s| s.state), Ok(st) if st != 'Z' && st != 'X') {
            return; // it exited
        }
        if self.cap_of(&scope, &rule) != Some(Action::Kill) {
            tracing::info!(pid, rule, "grace ended, but the rule no longer allows kill");
            return;
        }
        self.finish(pid, scope, rule, Action::Kill, why.to_string(), now);
    }

    /// Takes the kill level's rung (capped at `cap`) on `pid` now, with no
    /// grace: the end of a grace or of a freeze.
    fn finish(&mut self, pid: u32, scope: Scope, rule: String, cap: Action, why: String, now: f64) {
        let limit = Limit {
            scope,
            rule,
            bytes: 0,
            levels: Levels::default(),
            cap,
        };
        let verdict = policy::Verdict {
            trigger: Trigger::Crossed,
            reason: why,
        };
        self.act(pid, &limit, Level::Kill, verdict, None, Some(0.0), now);
    }

    /// How far up the ladder the named rule of `scope` may go now.
    fn cap_of(&self, scope: &Scope, rule: &str) -> Option<Action> {
        match scope {
            Scope::Process | Scope::GpuProcess { .. } => self
                .cfg
                .rules
                .iter()
                .find(|r| r.name == rule)
                .map(|r| r.action),
            Scope::Cgroup(_) => self
                .cfg
                .cgroup_rules
                .iter()
                .find(|r| r.name == rule)
                .map(|r| r.action),
            Scope::Host => Some(self.cfg.host.action),
            Scope::Gpu(_) => Some(self.cfg.gpu.action),
        }
    }

    /// Kills processes frozen for `freeze_timeout` without their pressure
    /// clearing, where the rule that froze them allows kill: a freeze is a
    /// window to raise a limit or resume by hand, not a resting state.
    fn escalate_long_freezes(&mut self, now: f64) {
        let timeout = self.cfg.agent.freeze_timeout.as_secs_f64();
        let due: Vec<(u32, Scope, String, f64)> = self
            .procs
            .values()
            .filter(|p| p.state == ProcState::Frozen && p.protected.is_none())
            .filter_map(|p| p.frozen_for.clone().map(|(s, r, t)| (p.pid, s, r, t)))
            .filter(|(_, _, _, since)| now - since >= timeout)
            .collect();
        for (pid, scope, rule, since) in due {
            let Some(cap) = self
                .cap_of(&scope, &rule)
                .filter(|&c| c >= Action::Terminate)
            else {
                continue;
            };
            let why = format!(
                "frozen for {:.0} s without its pressure clearing; the rule allows {}",
                now - since,
                cap.as_str()
            );
            self.finish(pid, scope, rule, cap, why, now);
        }
    }

    /// Takes the ladder's rung for `level` (capped by the limit's rule) on
    /// `pid`, unless that rung or a higher one was already taken for this
    /// scope, or the process is already there. A kill with time left before
    /// the limit (`ttl`, the forecast) starts as SIGTERM with that time as
    /// its grace; a frozen process is killed outright, since letting it run
    /// to handle SIGTERM would let it grow again.
    #[allow(clippy::too_many_arguments)]
    fn act(
        &mut self,
        pid: u32,
        limit: &Limit,
        level: Level,
        verdict: policy::Verdict,
        trend: Option<Trend>,
        ttl: Option<f64>,
        now: f64,
    ) {
        let horizon = self.cfg.agent.reaction_horizon.as_secs_f64();
        let max_grace = self.cfg.agent.max_grace.as_secs_f64();
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        let cap = if p.protected.is_some() {
            Action::Alert
        } else {
            limit.cap
        };
        let mut action = rung(level, cap);
        let mut grace = None;
        if action == Action::Kill
            && p.state == ProcState::Running
            && let Some(g) = grace_secs(ttl, horizon, max_grace)
        {
            action = Action::Terminate;
            grace = Some(g);
        }
        let already = match p.state {
            ProcState::Running => None,
            ProcState::Frozen => Some(Action::Freeze),
            ProcState::Terminating => Some(Action::Terminate),
            ProcState::Killed => Some(Action::Kill),
        };
        if p.acted.get(&limit.scope).is_some_and(|&a| a >= action)
            || (action > Action::Alert && already.is_some_and(|a| a >= action))
        {
            return;
        }
        if p.pidfd.is_none() && action != Action::Alert {
            // Opened late (a group victim no per-process rule governs), but
            // still checked against the start time seen at discovery.
            p.pidfd = Pidfd::open(p.pid, p.start_time).ok();
        }
        let mut reason = verdict.reason;
        if let Some(why) = &p.protected {
            reason = format!("{reason}; protected ({why}), so only alerted");
        }
        // After a tripwire the kernel has already sent SIGSTOP; sending it
        // again costs nothing and does not rely on that.
        let outcome = match (&p.pidfd, action) {
            (_, Action::Alert) => "recorded".to_string(),
            (Some(fd), _) => match self.actuator.act(fd, action) {
                Ok(o) => o.as_str().to_string(),
                Err(e) => format!("failed: {e}"),
            },
            (None, _) => "failed: no pidfd for the process (it may have exited)".to_string(),
        };
        let failed = outcome.starts_with("failed");
        p.acted.insert(limit.scope.clone(), action);
        if outcome == "done" {
            p.state = match action {
                Action::Alert => p.state,
                Action::Freeze => ProcState::Frozen,
                Action::Terminate => ProcState::Terminating,
                Action::Kill => ProcState::Killed,
            };
        }
        if action == Action::Freeze {
            p.frozen_for = Some((limit.scope.clone(), limit.rule.clone(), now));
        }
        if let Some(g) = grace
            && cap == Action::Kill
            && !failed
        {
            self.graces
                .insert(pid, (now + g, limit.scope.clone(), limit.rule.clone()));
            self.grace_started.notify_one();
            reason = format!("{reason}; SIGKILL in {g:.1} s unless it exits first");
        }
        let mut crash_loop = false;
        if action >= Action::Freeze && !failed && !p.loop_counted {
            p.loop_counted = true;
            let cmdline = Some(procfs::read_cmdline(pid))
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| p.comm.clone());
            if let Some(n) = self.restarts.record(&cmdline, now) {
                crash_loop = true;
                reason = format!(
                    "{reason}; crash-looping: `{cmdline}` preempted {n} times within {:.0} s",
                    self.cfg.agent.crash_loop.window_secs
                );
            }
        }
        let predicted = match verdict.trigger {
            Trigger::Predicted { seconds_to_limit } => Some(seconds_to_limit),
            Trigger::Crossed | Trigger::Tripwire { .. } => None,
        };
        let d = self.journal.append(Decision {
            seq: 0,
            time_unix_ms: unix_ms(),
            kind: DecisionKind::Preempt,
            pid,
            comm: p.comm.clone(),
            cgroup: p.cgroup.clone(),
            rule: limit.rule.clone(),
            level: level.as_str().into(),
            action: action.as_str().to_string(),
            outcome,
            reason,
            resident_bytes: p.mem.resident(),
            // What the limit applies to: memory on the device for a GPU.
            charged_bytes: match limit.scope {
                Scope::Gpu(d) => self
                    .gpu
                    .last_bytes(d, pid)
                    .unwrap_or_else(|| p.mem.charged()),
                _ => p.mem.charged(),
            },
            slope_bytes_per_sec: trend.map(|t| t.bytes_per_sec).unwrap_or(0.0),
            limit_bytes: limit.bytes,
            predicted_seconds_to_limit: predicted,
            crash_loop,
        });
        tracing::warn!(
            seq = d.seq, pid, comm = %d.comm, rule = %d.rule, level = %d.level,
            action = %d.action, outcome = %d.outcome, "{}", d.reason
        );
        // A process no longer running must not keep an armed ceiling.
        self.sync_tripwire(pid);
    }

    /// The kernel stopped `pid` at its ceiling (SIGSTOP from the faulting
    /// task's context). Finish the decision: at least the preempt level,
    /// higher if its usage says so.
    fn on_tripwire(&mut self, pid: u32, mem: Mem, ceiling: u64, t: f64) {
        let params = self.params();
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        p.mem = mem;
        let usage = p.usage();
        p.series.push(t, usage);
        if p.state != ProcState::Running {
            return; // userspace acted first
        }
        let Some(ri) = p.rule else {
            return;
        };
        let trend = p.series.trend(t);
        let rule = &self.cfg.rules[ri];
        // Stopped: where it is decides, not where its growth was heading.
        let level = assess(usage, rule.limit_bytes, None, &rule.levels, &params)
            .map(|a| a.0)
            .unwrap_or(Level::Preempt)
            .max(Level::Preempt);
        p.held
            .update(Some(level), usage, rule.limit_bytes, &rule.levels);
        if rung(level, rule.action) > Action::Freeze {
            // Past freezing: it is frozen already (by the kernel), so it is
            // killed outright rather than let run to handle SIGTERM.
            p.state = ProcState::Frozen;
            p.frozen_for = Some((Scope::Process, rule.name.clone(), t));
        }
        let verdict = policy::Verdict {
            trigger: Trigger::Tripwire {
                ceiling_bytes: ceiling,
            },
            reason: format!(
                "in-kernel tripwire stopped it at {usage} bytes (ceiling {ceiling}, limit {}): it grew faster than the agent could react",
                rule.limit_bytes
            ),
        };
        let limit = Limit::of_rule(rule);
        self.act(pid, &limit, level, verdict, trend, Some(0.0), t);
    }

    /// Page counts as bytes. Saturating: a corrupt record (the fuzzer's,
    /// never the kernel's) must not bring the agent down.
    fn pages_to_mem(&self, pages: &[u64; counter::COUNT]) -> Mem {
        let ps = self.page_size;
        Mem {
            anon: pages[counter::ANON].saturating_mul(ps),
            file: pages[counter::FILE].saturating_mul(ps),
            shmem: pages[counter::SHMEM].saturating_mul(ps),
            swap: pages[counter::SWAP].saturating_mul(ps),
        }
    }

    /// Handles a drained ring-buffer batch. Tripwire events go first: when
    /// the agent fell behind, the kernel may already have stopped a process
    /// whose older samples are still queued, and those must not be judged as
    /// if it were still running.
    pub fn handle_batch(&mut self, batch: &[Event]) {
        let is_trip = |e: &&Event| e.kind() == Some(EventKind::Tripwire);
        for e in batch.iter().filter(is_trip) {
            self.handle_event(e);
        }
        for e in batch.iter().filter(|e| !is_trip(e)) {
            self.handle_event(e);
        }
    }

    pub fn handle_event(&mut self, e: &Event) {
        let t = e.ts_ns as f64 * 1e-9;
        match e.kind() {
            Some(EventKind::Rss) => {
                let mem = self.pages_to_mem(&e.pages);
                self.observe(e.tgid, mem, t);
            }
            Some(EventKind::Exit) => {
                // What it frees shows in the next meminfo sample; frozen
                // processes it relieves are resumed on the next tick.
                self.procs.remove(&e.tgid);
                self.graces.remove(&e.tgid);
                self.operator_protected.remove(&e.tgid);
            }
            Some(EventKind::Exec) => {
                // A new program: what matched the old image (and its
                // memory history) no longer applies, so it is read afresh as
                // a new process. Typical case: a child forked from a big
                // parent moves into its cgroup, then execs.
                if self.procs.remove(&e.tgid).is_some() {
                    self.graces.remove(&e.tgid);
                    self.discover(e.tgid);
                }
            }
            Some(EventKind::OomVictim) => self.record_oom(e.tgid),
            Some(EventKind::Fork) => {
                // Children are read from /proc on their first memory event;
                // nothing to do until they grow.
            }
            Some(EventKind::LargeMmap) => {
                tracing::debug!(pid = e.tgid, bytes = e.aux, "large mmap");
            }
            Some(EventKind::Tripwire) => {
                let mem = self.pages_to_mem(&e.pages);
                self.on_tripwire(e.tgid, mem, e.aux.saturating_mul(self.page_size), t);
            }
            None => tracing::debug!(kind = e.kind, "unknown event kind"),
        }
    }

    fn record_oom(&mut self, pid: u32) {
        self.kernel_oom_kills += 1;
        let tgid = procfs::read_tgid(pid).unwrap_or(pid);
        let (comm, cgroup, mem, rule, limit, slope) = match self.procs.get(&tgid) {
            Some(p) => (
                p.comm.clone(),
                p.cgroup.clone(),
                p.mem,
                p.rule
                    .map(|r| self.cfg.rules[r].name.clone())
                    .unwrap_or_default(),
                p.rule.map(|r| self.cfg.rules[r].limit_bytes).unwrap_or(0),
                p.series
                    .trend(mono_now())
                    .map(|t| t.bytes_per_sec)
                    .unwrap_or(0.0),
            ),
            None => (
                procfs::read_stat(tgid).map(|s| s.comm).unwrap_or_default(),
                procfs::read_cgroup(tgid).unwrap_or_default(),
                procfs::read_mem(tgid).unwrap_or_default(),
                String::new(),
                0,
                0.0,
            ),
        };
        let d = self.journal.append(Decision {
            time_unix_ms: unix_ms(),
            kind: DecisionKind::KernelOomKill,
            pid: tgid,
            comm,
            cgroup,
            rule,
            action: "none".into(),
            outcome: "killed by the kernel".into(),
            reason: "the kernel OOM killer chose this process".into(),
            resident_bytes: mem.resident(),
            charged_bytes: mem.charged(),
            slope_bytes_per_sec: slope,
            limit_bytes: limit,
            ..Default::default()
        });
        tracing::error!(seq = d.seq, pid = tgid, comm = %d.comm, cgroup = %d.cgroup, "kernel OOM kill");
    }

    /// Full /proc pass: discovers new processes (with a first sample),
    /// forgets the dead, and picks up rule changes for known ones.
    ///
    /// `pids` is listed by the caller without holding the engine, so that a
    /// large /proc does not stall event handling.
    pub fn rescan(&mut self, pids: Vec<u32>) {
        // Limits can change under us; read them afresh.
        self.group_limits.clear();
        let now = mono_now();
        let live: std::collections::HashSet<u32> = pids.iter().copied().collect();
        self.procs.retain(|pid, _| live.contains(pid));
        self.scopes.retain(|scope, _| match scope {
            Scope::GpuProcess { pid, .. } => live.contains(pid),
            _ => true,
        });
        // The kernel samples ungoverned processes and skips foreign-mm
        // updates, so a process that went quiet right after a skipped change
        // would keep a stale reading: refresh quiet ones from /proc.
        let quiet_after = self.cfg.agent.rescan_interval.as_secs_f64() * 5.0;
        let quiet: Vec<u32> = self
            .procs
            .values()
            .filter(|p| p.series.last().is_none_or(|s| now - s.t > quiet_after))
            .map(|p| p.pid)
            .collect();
        for pid in quiet {
            if let Ok(mem) = procfs::read_mem(pid) {
                self.observe(pid, mem, now);
            }
        }
        self.resume_cleared(now);
        for pid in pids {
            if self.procs.contains_key(&pid) {
                continue;
            }
            if let Ok(mem) = procfs::read_mem(pid) {
                self.observe(pid, mem, now);
            }
        }
    }

    /// Samples processes that a rule governs from /proc (the polling path).
    pub fn poll_matched(&mut self) {
        let pids: Vec<u32> = self
            .procs
            .values()
            .filter(|p| p.rule.is_some() && p.state == ProcState::Running)
            .map(|p| p.pid)
            .collect();
        for pid in pids {
            match procfs::read_mem(pid) {
                Ok(mem) => self.observe(pid, mem, mono_now()),
                Err(_) => {
                    self.procs.remove(&pid);
                }
            }
        }
    }

    /// Processes matching `q`, sorted and paged; with the number matching.
    pub fn views(&self, q: &ProcQuery) -> (Vec<ProcView>, usize) {
        let now = mono_now();
        let mut v: Vec<ProcView> = self
            .procs
            .values()
            .filter(|p| !q.matched_only || p.rule.is_some())
            .filter(|p| p.cgroup.starts_with(&q.cgroup_prefix))
            .filter(|p| p.comm.contains(&q.comm))
            .filter(|p| {
                q.rule.is_empty() || p.rule.is_some_and(|r| self.cfg.rules[r].name == q.rule)
            })
            .map(|p| self.view(p, now))
            .collect();
        let total = v.len();
        match q.sort {
            SortKey::Slope => v.sort_by(|a, b| {
                b.slope
                    .total_cmp(&a.slope)
                    .then(b.mem.charged().cmp(&a.mem.charged()))
                    .then(a.pid.cmp(&b.pid))
            }),
            SortKey::Charged => v.sort_by(|a, b| {
                b.mem
                    .charged()
                    .cmp(&a.mem.charged())
                    .then(a.pid.cmp(&b.pid))
            }),
            SortKey::Eta => v.sort_by(|a, b| {
                let eta = |x: &ProcView| x.seconds_to_limit.unwrap_or(f64::INFINITY);
                eta(a).total_cmp(&eta(b)).then(a.pid.cmp(&b.pid))
            }),
            SortKey::Pid => v.sort_by_key(|x| x.pid),
        }
        let page: Vec<ProcView> = v.into_iter().skip(q.offset).take(q.limit).collect();
        (page, total)
    }

    fn view(&self, p: &Proc, now: f64) -> ProcView {
        let trend = p.series.trend(now).filter(|t| t.ongoing);
        let slope = trend.map(|t| t.bytes_per_sec).unwrap_or(0.0);
        let limit = p.rule.map(|r| self.cfg.rules[r].limit_bytes).unwrap_or(0);
        ProcView {
            pid: p.pid,
            comm: p.comm.clone(),
            cgroup: p.cgroup.clone(),
            rule: p
                .rule
                .map(|r| self.cfg.rules[r].name.clone())
                .unwrap_or_default(),
            mem: p.mem,
            slope,
            limit,
            seconds_to_limit: (limit > 0)
                .then(|| crate::model::seconds_to_limit(p.usage(), limit, slope))
                .flatten(),
            state: p.state,
            level: p.held.level,
            gpu_bytes: self.gpu.bytes_of(p.pid),
            ns_pid: self.gpu.ns_pids.get(&p.pid).copied().unwrap_or(0),
        }
    }

    /// One process in detail.
    pub fn detail(&self, pid: u32) -> Option<ProcDetail> {
        let p = self.procs.get(&pid)?;
        let now = mono_now();
        let view = self.view(p, now);
        let samples = p.series.samples().map(|s| (now - s.t, s.bytes)).collect();
        let mut eta = [None; 4];
        if let Some(r) = p.rule.map(|r| &self.cfg.rules[r]) {
            let lines = [
                r.levels.line(Level::Warn, r.limit_bytes),
                r.levels.line(Level::Preempt, r.limit_bytes),
                r.levels.line(Level::Kill, r.limit_bytes),
                r.limit_bytes,
            ];
            for (e, line) in eta.iter_mut().zip(lines) {
                *e = crate::model::seconds_to_limit(p.usage(), line, view.slope);
            }
        }
        Some(ProcDetail { view, samples, eta })
    }
    /// Records a policy change and who made it.
    pub fn record_policy(&mut self, who: &str, source: &str, text: &str) -> Decision {
        self.policy_source = source.to_string();
        self.policy_text = text.to_string();
        let d = self.journal.append(Decision {
            time_unix_ms: unix_ms(),
            kind: DecisionKind::Policy,
            action: "apply".into(),
            outcome: "done".into(),
            reason: format!(
                "policy from {source} applied by {who}: {} rules, {} cgroup rules, {} priority classes, host action {}",
                self.cfg.rules.len(),
                self.cfg.cgroup_rules.len(),
                self.cfg.priorities.len(),
                self.cfg.host.action.as_str()
            ),
            ..Default::default()
        });
        tracing::info!(seq = d.seq, "{}", d.reason);
        d
    }

    /// An operator resumes a process Sentinel froze. What was done to it
    /// stays on record for this episode, so it is not frozen again at once;
    /// a kill level its rule allows still applies.
    pub fn operator_resume(&mut self, pid: u32, who: &str) -> Result<Decision, OpError> {
        let p = self.procs.get_mut(&pid).ok_or(OpError::NotFound(pid))?;
        if p.state != ProcState::Frozen {
            return Err(OpError::NotFrozen {
                pid,
                state: p.state.as_str(),
            });
        }
        let fd = p.pidfd.as_ref().ok_or_else(|| OpError::Failed {
            pid,
            why: "no pidfd for the process".into(),
        })?;
        let outcome = self
            .actuator
            .resume(fd)
            .map_err(|e| OpError::Failed {
                pid,
                why: e.to_string(),
            })?
            .as_str()
            .to_string();
        let rule = p.frozen_for.take().map(|f| f.1).unwrap_or_default();
        p.state = ProcState::Running;
        let d = self.journal.append(note(
            p,
            DecisionKind::Resume,
            rule,
            p.held.level.as_str(),
            "resume",
            outcome,
            format!("resumed by {who}"),
        ));
        tracing::info!(seq = d.seq, pid, "{}", d.reason);
        self.sync_tripwire(pid);
        Ok(d)
    }

    /// An operator protects a process (never signalled, not even frozen),
    /// or takes that back.
    pub fn operator_protect(&mut self, pid: u32, on: bool, who: &str) -> Result<Decision, OpError> {
        if !self.procs.contains_key(&pid) {
            self.discover(pid).ok_or(OpError::NotFound(pid))?;
        }
        if on {
            self.operator_protected
                .insert(pid, format!("protected by {who}"));
        } else {
            self.operator_protected.remove(&pid);
        }
        let p = self.procs.get(&pid).ok_or(OpError::NotFound(pid))?;
        let why = self.protected_reason(pid, &p.comm, false);
        let p = self.procs.get_mut(&pid).ok_or(OpError::NotFound(pid))?;
        p.protected = why;
        let reason = match (&p.protected, on) {
            (_, true) => format!("protected by {who}: never signalled, only alerted"),
            (Some(still), false) => {
                format!("protection by an operator removed by {who}; still protected: {still}")
            }
            (None, false) => format!("protection removed by {who}"),
        };
        let d = self.journal.append(note(
            p,
            DecisionKind::Protect,
            String::new(),
            "",
            if on { "protect" } else { "unprotect" },
            "done".into(),
            reason,
        ));
        tracing::info!(seq = d.seq, pid, "{}", d.reason);
        self.sync_tripwire(pid);
        Ok(d)
    }

    pub fn host_view(&self) -> HostView {
        let limit = self.host_limit();
        HostView {
            mem: self.host.mem,
            used: self.host.used(),
            limit: limit.bytes,
            level: self
                .scopes
                .get(&Scope::Host)
                .map(|s| s.held.level)
                .unwrap_or_default(),
            psi_some_avg10: self.host.psi_avg10,
            psi_trigger: self.host.psi_trigger,
        }
    }

    /// `host`, `cgroup`, `gpu`, `admission` or `process`: the scope a
    /// rule's decisions are about.
    pub fn scope_of_rule(&self, rule: &str) -> &'static str {
        if rule == "host" {
            "host"
        } else if gpu::device_of_rule(rule).is_some() {
            "gpu"
        } else if rule == "admission" {
            "admission"
        } else if self.cfg.cgroup_rules.iter().any(|r| r.name == rule) {
            "cgroup"
        } else {
            "process"
        }
    }

    /// Whether what an alert about `pid` under `rule` reported still holds:
    /// the process is frozen, or the rule's scope is still at warn or above.
    pub fn alert_holds(&self, pid: u32, rule: &str) -> bool {
        let p = self.procs.get(&pid);
        if p.is_some_and(|p| p.state == ProcState::Frozen) {
            return true;
        }
        let warn = |s: &ScopeState| s.held.level >= Level::Warn;
        match self.scope_of_rule(rule) {
            "host" => self.scopes.get(&Scope::Host).is_some_and(warn),
            "gpu" => gpu::device_of_rule(rule)
                .and_then(|d| self.scopes.get(&Scope::Gpu(d)))
                .is_some_and(warn),
            "cgroup" => {
                let Some(r) = self.cfg.cgroup_rules.iter().find(|r| r.name == rule) else {
                    return false;
                };
                self.scopes.iter().any(|(scope, s)| {
                    matches!(scope, Scope::Cgroup(path) if r.selector.0.is_match(path)) && warn(s)
                })
            }
            _ => {
                p.is_some_and(|p| p.held.level >= Level::Warn)
                    || self.scopes.iter().any(|(scope, s)| {
                        matches!(scope, Scope::GpuProcess { pid: q, .. } if *q == pid) && warn(s)
                    })
            }
        }
    }

    /// Tracked processes at each level (normal, warn, preempt, kill) of
    /// their own rule, and how many are frozen.
    pub fn level_counts(&self) -> ([u64; 4], u64) {
        let mut levels = [0u64; 4];
        let mut frozen = 0;
        for p in self.procs.values() {
            levels[p.held.level as usize] += 1;
            frozen += u64::from(p.state == ProcState::Frozen);
        }
        (levels, frozen)
    }

    /// Limited cgroups at each level.
    pub fn cgroup_levels(&self) -> [u64; 4] {
        let mut levels = [0u64; 4];
        for (scope, s) in &self.scopes {
            if matches!(scope, Scope::Cgroup(_)) {
                levels[s.held.level as usize] += 1;
            }
        }
        levels
    }

    /// Command lines preempted often enough to be crash-looping.
    pub fn crash_loops(&self) -> Vec<CrashLoop> {
        self.restarts.looping(mono_now())
    }
}

/// A decision about `p` that carries no forecast: resumes and operators'
/// actions.
fn note(
    p: &Proc,
    kind: DecisionKind,
    rule: String,
    level: &str,
    action: &str,
    outcome: String,
    reason: String,
) -> Decision {
    Decision {
        time_unix_ms: unix_ms(),
        kind,
        pid: p.pid,
        comm: p.comm.clone(),
        cgroup: p.cgroup.clone(),
        rule,
        level: level.into(),
        action: action.into(),
        outcome,
        reason,
        resident_bytes: p.mem.resident(),
        charged_bytes: p.mem.charged(),
        ..Default::default()
    }
}

/// Seconds until `usage` reaches `limit` at `slope`: zero when already
/// there, `None` when not growing toward it.
fn time_left(usage: u64, limit: u64, slope: Option<f64>) -> Option<f64> {
    if usage >= limit {
        Some(0.0)
    } else {
        seconds_to_limit(usage, limit, slope.unwrap_or(0.0))
    }
}

/// The member that names `pid`'s tree inside a group: its ancestor just
/// below the group's topmost member, so a leaker that forks its growth
/// across children is one grower, while the group's main process (a
/// service's or container's first process, ancestor of everything) does not
/// fold the whole group into one. `ancestors` is parent first.
pub fn tree_root(pid: u32, ancestors: &[u32], in_group: &HashSet<u32>) -> u32 {
    let chain: Vec<u32> = ancestors
        .iter()
        .copied()
        .take_while(|a| in_group.contains(a))
        .collect();
    match chain.len() {
        0 | 1 => pid,
        n => chain[n - 2],
    }
}

/// Where the in-kernel tripwire is armed: at the preempt line, but never
/// closer than a step to the limit (the kernel's counters lag by up to a
/// per-CPU batch, well under a step), and, for tiny limits, at most half
/// the limit below it.
pub fn tripwire_ceiling(limit: u64, preempt_line: u64, step: u64) -> u64 {
    preempt_line.min(limit.saturating_sub(step).max(limit / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_record_with_absurd_page_counts_is_handled_not_a_panic() {
        // Found by the `events` fuzz target: pages times the page size
        // overflowed.
        let mut cfg = Config::default();
        cfg.agent.dry_run = true;
        let mut e = Engine::new(
            cfg,
            Mode::Ebpf,
            None,
            Box::new(crate::actuator::DryRun),
            Arc::new(Journal::new(10)),
        );
        let mut ev = Event {
            kind: EventKind::Rss as u32,
            tgid: std::process::id(),
            ts_ns: u64::MAX,
            pages: [u64::MAX; counter::COUNT],
            aux: u64::MAX,
            aux2: 0,
        };
        e.handle_batch(&[ev]);
        ev.kind = EventKind::Tripwire as u32;
        e.handle_batch(&[ev]);
        assert!(e.tracked() <= 1);
    }

    #[test]
    fn trees_are_grouped_below_the_groups_top_process() {
        // top 10 -> worker 20 -> children 30, 31; top 10 -> other 21.
        let g: std::collections::HashSet<u32> = [10, 20, 21, 30, 31].into_iter().collect();
        assert_eq!(tree_root(30, &[20, 10, 1], &g), 20);
        assert_eq!(tree_root(31, &[20, 10, 1], &g), 20);
        assert_eq!(tree_root(20, &[10, 1], &g), 20);
        assert_eq!(tree_root(21, &[10, 1], &g), 21);
        assert_eq!(tree_root(10, &[1], &g), 10);
        // Started from outside the group (e.g. by a test harness).
        assert_eq!(tree_root(40, &[5, 1], &g), 40);
    }

    #[test]
    fn tripwire_sits_at_the_preempt_line_and_a_step_under_the_limit() {
        assert_eq!(tripwire_ceiling(256 << 20, 256 << 20, 1 << 20), 255 << 20);
        assert_eq!(tripwire_ceiling(1 << 20, 1 << 20, 1 << 20), 1 << 19);
        assert_eq!(tripwire_ceiling(1000 << 20, 850 << 20, 1 << 20), 850 << 20);
    }
}
