//! What the API, metrics and alerting read of the engine: processes,
//! sorted and paged; one process in detail; the host; counts by level;
//! crash loops; whether what an alert reported still holds.

use super::{Engine, Host, Scope, shared::ScopeState, table::Proc, table::ProcState};
use crate::{
    decision::ScopeKind,
    model::{HostMem, Mem, seconds_to_limit},
    policy::{Level, restarts::CrashLoop},
};

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

fn sort(v: &mut [ProcView], key: SortKey) {
    match key {
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
}

impl<H: Host> Engine<H> {
    /// Processes matching `q`, sorted and paged; with the number matching.
    pub fn views(&self, q: &ProcQuery) -> (Vec<ProcView>, usize) {
        let now = self.host.now();
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
        sort(&mut v, q.sort);
        let page: Vec<ProcView> = v.into_iter().skip(q.offset).take(q.limit).collect();
        (page, total)
    }

    fn view(&self, p: &Proc<H::Pidfd>, now: f64) -> ProcView {
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
                .then(|| seconds_to_limit(p.usage(), limit, slope))
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
        let now = self.host.now();
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
                *e = seconds_to_limit(p.usage(), line, view.slope);
            }
        }
        Some(ProcDetail { view, samples, eta })
    }

    pub fn host_view(&self) -> HostView {
        let limit = self.host_limit();
        HostView {
            mem: self.host_state.mem,
            used: self.host_state.used(),
            limit: limit.bytes,
            level: self
                .scopes
                .get(&Scope::Host)
                .map(|s| s.held.level)
                .unwrap_or_default(),
            psi_some_avg10: self.host_state.psi.avg10,
            psi_trigger: self.host_state.psi.armed.is_some(),
        }
    }

    /// Whether the process is waiting its turn at a shared limit.
    pub fn is_queued(&self, pid: u32) -> bool {
        self.procs
            .get(&pid)
            .is_some_and(|p| p.state == ProcState::Queued)
    }

    /// Whether what an alert about `pid` under `rule` in `scope` reported
    /// still holds: the process is frozen, or the scope is still at warn or
    /// above.
    pub fn alert_holds(&self, pid: u32, rule: &str, scope: Option<ScopeKind>) -> bool {
        let p = self.procs.get(&pid);
        if p.is_some_and(|p| p.state == ProcState::Frozen) {
            return true;
        }
        let warn = |s: &ScopeState| s.held.level >= Level::Warn;
        match scope {
            Some(ScopeKind::Host) => self.scopes.get(&Scope::Host).is_some_and(warn),
            Some(ScopeKind::Gpu) => super::device_of_rule(rule)
                .and_then(|d| self.scopes.get(&Scope::Gpu(d)))
                .is_some_and(warn),
            Some(ScopeKind::Cgroup) => {
                let Some(r) = self.cfg.cgroup_rules.iter().find(|r| r.name == rule) else {
                    return false;
                };
                self.scopes.iter().any(|(scope, s)| {
                    matches!(scope, Scope::Cgroup(path) if r.selector.0.is_match(path)) && warn(s)
                })
            }
            Some(ScopeKind::Admission) | None => false,
            Some(ScopeKind::Process) => {
                p.is_some_and(|p| p.held.level >= Level::Warn)
                    || self.scopes.iter().any(|(scope, s)| {
                        matches!(scope, Scope::GpuProcess { pid: q, .. } if *q == pid) && warn(s)
                    })
            }
        }
    }

    /// Tracked processes at each level (normal, warn, preempt, kill) of
    /// their own rule, how many are frozen (runaways), and how many are
    /// queued (waiting for memory).
    pub fn level_counts(&self) -> ([u64; 4], u64, u64) {
        let mut levels = [0u64; 4];
        let (mut frozen, mut queued) = (0, 0);
        for p in self.procs.values() {
            levels[p.held.level as usize] += 1;
            frozen += u64::from(p.state == ProcState::Frozen);
            queued += u64::from(p.state == ProcState::Queued);
        }
        (levels, frozen, queued)
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
        self.restarts.looping(self.host.now())
    }
}
