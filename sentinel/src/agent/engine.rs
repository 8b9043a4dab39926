//! The agent's process table and the loop body that turns samples into
//! decisions. It owns no task or socket: `agent::run` feeds it kernel
//! events and timer ticks, and the API reads views of it.

use std::{collections::HashMap, sync::Arc};

use sentinel_common::{Event, EventKind, counter};

use crate::{
    actuator::{Actuator, Outcome, Pidfd},
    collector::{
        cgroup::CgroupFs,
        procfs::{self, Mem},
    },
    config::Config,
    journal::{Decision, DecisionKind, Journal},
    model::{Series, Trend},
    policy::{self, Action, Params, ProcessFacts, Sampling, Trigger, group, match_rule},
    probes::{ProbeStatus, Probes},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    Running,
    Frozen,
    Killed,
    /// A decision was recorded but nothing signalled (dry-run, alert-only
    /// rules, protected processes); recorded once, not on every sample.
    Flagged,
}

impl ProcState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Frozen => "frozen",
            Self::Killed => "killed",
            Self::Flagged => "flagged",
        }
    }
}

pub struct Proc {
    pub pid: u32,
    pub start_time: u64,
    pub comm: String,
    pub exe: String,
    pub cgroup: String,
    pub ancestors: Vec<u32>,
    pub rule: Option<usize>,
    /// Why the process must never be signalled, if it must not.
    pub protected: Option<String>,
    pub mem: Mem,
    pub series: Series,
    pub state: ProcState,
    pidfd: Option<Pidfd>,
    /// (limited cgroup, cgroup rule) when frozen to relieve that cgroup, so
    /// it can be resumed when the cgroup's pressure clears.
    frozen_for: Option<(String, String)>,
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
    /// Effective limit of each cgroup path seen, cleared on every rescan.
    group_limits: HashMap<String, Option<(String, u64)>>,
    /// Per limited cgroup: no new victim before this time.
    settle_until: HashMap<String, f64>,
}

/// Hysteresis: a cgroup's pressure clears this share of its limit below
/// the line.
const CLEAR_BELOW: f64 = 0.10;
/// Window over which growth shares are measured.
const GROWTH_WINDOW_SECS: f64 = 2.0;
/// After stopping a group's grower, time for the action to take effect
/// before another member may be chosen.
const SETTLE_SECS: f64 = 1.0;

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

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
            group_limits: HashMap::new(),
            settle_until: HashMap::new(),
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
    /// socket cannot move under a running server, so it is kept.
    pub fn apply_config(&mut self, mut cfg: Config) {
        cfg.agent.socket = self.cfg.agent.socket.clone();
        if cfg.agent.dry_run != self.cfg.agent.dry_run {
            tracing::warn!("dry_run changes take effect at the next restart");
            cfg.agent.dry_run = self.cfg.agent.dry_run;
        }
        self.cfg = cfg;
        let mut procs = std::mem::take(&mut self.procs);
        for p in procs.values_mut() {
            self.bind_rule(p);
        }
        let pids: Vec<u32> = procs.keys().copied().collect();
        self.procs = procs;
        for pid in pids {
            self.sync_tripwire(pid);
        }
    }

    pub fn tracked(&self) -> usize {
        self.procs.len()
    }

    fn protected_reason(&self, pid: u32, comm: &str, kernel_thread: bool) -> Option<String> {
        if pid == 1 {
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
            protected,
            mem: Mem::default(),
            series: Series::new(self.cfg.agent.history.as_secs_f64()),
            state: ProcState::Running,
            pidfd: None,
            frozen_for: None,
        };
        self.bind_rule(&mut p);
        self.procs.insert(pid, p);
        self.sync_tripwire(pid);
        self.procs.get_mut(&pid)
    }

    /// The in-kernel entry for a process: its ceiling a little under its
    /// limit, so that even an allocation faster than the agent can react
    /// stops before the limit; `WATCH_ONLY` when nothing may be signalled
    /// (its events still wake the agent); None when no rule governs it.
    fn tripwire_ceiling(&self, p: &Proc) -> Option<u64> {
        let rule = &self.cfg.rules[p.rule?];
        if p.state != ProcState::Running {
            return None;
        }
        let armable = self.mode == Mode::Ebpf
            && self.cfg.agent.tripwire
            && !self.cfg.agent.dry_run
            && p.protected.is_none()
            && rule.action != Action::Alert;
        Some(if armable {
            tripwire_ceiling(rule.limit_bytes, self.cfg.agent.step_bytes)
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

    /// A new memory reading for `pid` at monotonic time `t`.
    pub fn observe(&mut self, pid: u32, mem: Mem, t: f64) {
        let Some(p) = self.discover(pid) else {
            return;
        };
        p.mem = mem;
        p.series.push(t, mem.charged());
        self.evaluate(pid, t);
        self.evaluate_group(pid, t);
    }

    /// Cgroup scope: when the limited cgroup holding `pid` is predicted to
    /// reach its line (a share of its limit), stop the member (or member
    /// tree) driving the growth, not the biggest, then let it settle.
    fn evaluate_group(&mut self, pid: u32, now: f64) {
        if self.cfg.cgroup_rules.is_empty() {
            return;
        }
        let Some(p) = self.procs.get(&pid) else {
            return;
        };
        if p.state != ProcState::Running {
            return;
        }
        let cg = p.cgroup.clone();
        let eff = match self.group_limits.get(&cg) {
            Some(e) => e.clone(),
            None => {
                let e = self.cgfs.effective_limit(&cg);
                self.group_limits.insert(cg, e.clone());
                e
            }
        };
        let Some((group_path, limit)) = eff else {
            return;
        };
        let Some(rule) = self
            .cfg
            .cgroup_rules
            .iter()
            .find(|r| r.selector.is_match(&group_path))
            .cloned()
        else {
            return;
        };
        if self.settle_until.get(&group_path).is_some_and(|&u| now < u) {
            return;
        }
        let line = (limit as f64 * rule.preempt) as u64;
        let in_group: std::collections::HashSet<u32> =
            self.group_members(&group_path).map(|p| p.pid).collect();
        let members: Vec<group::Member<'_>> = in_group
            .iter()
            .filter_map(|pid| self.procs.get(pid))
            .map(|p| group::Member {
                pid: p.pid,
                root: tree_root(p.pid, &p.ancestors, &in_group),
                bytes: p.mem.charged(),
                series: &p.series,
                // Flagged (recorded, not signalled) processes still grow.
                stopped: matches!(p.state, ProcState::Frozen | ProcState::Killed),
                protected: p.protected.is_some(),
            })
            .collect();
        let Some(g) = group::decide(&members, line, &self.params(), GROWTH_WINDOW_SECS, now) else {
            return;
        };
        let victims: Vec<u32> = members
            .iter()
            .filter(|m| m.root == g.root && !m.stopped)
            .map(|m| m.pid)
            .collect();
        self.settle_until
            .insert(group_path.clone(), now + SETTLE_SECS);
        for v in victims {
            let trend = self.procs.get(&v).and_then(|p| p.series.trend(now));
            let verdict = policy::Verdict {
                trigger: g.verdict.trigger,
                reason: format!(
                    "cgroup {group_path} (limit {limit} B) at {} B is predicted to reach {:.0}% of its limit; this process (tree {}) has {:.0}% of its recent growth: {}",
                    g.group_bytes,
                    rule.preempt * 100.0,
                    g.root,
                    g.share * 100.0,
                    g.verdict.reason
                ),
            };
            self.act(v, &rule.name, line, rule.action, verdict, trend);
            if let Some(p) = self.procs.get_mut(&v)
                && p.state == ProcState::Frozen
            {
                p.frozen_for = Some((group_path.clone(), rule.name.clone()));
            }
        }
    }

    /// Known processes in the cgroup at `group_path` or below it.
    fn group_members<'a>(&'a self, group_path: &'a str) -> impl Iterator<Item = &'a Proc> {
        self.procs
            .values()
            .filter(move |p| crate::collector::cgroup::is_within(&p.cgroup, group_path))
    }

    /// Resumes processes frozen for a cgroup once that cgroup is below its
    /// clear level (the line minus 10 points of the limit), so their work
    /// is not lost. If they grow again, they are judged again.
    pub fn resume_cleared(&mut self, now: f64) {
        let frozen: Vec<(u32, String, String)> = self
            .procs
            .values()
            .filter(|p| p.state == ProcState::Frozen)
            .filter_map(|p| p.frozen_for.clone().map(|(g, r)| (p.pid, g, r)))
            .collect();
        for (pid, group_path, rule_name) in frozen {
            let Some(rule) = self
                .cfg
                .cgroup_rules
                .iter()
                .find(|r| r.name == rule_name)
                .cloned()
            else {
                continue;
            };
            let Some(limit) = self.cgfs.own_limit(&group_path) else {
                continue;
            };
            let clear = (limit as f64 * (rule.preempt - CLEAR_BELOW).max(0.0)) as u64;
            let group_bytes: u64 = self
                .group_members(&group_path)
                .map(|p| p.mem.charged())
                .sum();
            if group_bytes >= clear {
                continue;
            }
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
            // Growth before the freeze says nothing about the time after it.
            p.series = Series::new(self.cfg.agent.history.as_secs_f64());
            p.series.push(now, p.mem.charged());
            let d = self.journal.append(Decision {
                seq: 0,
                time_unix_ms: unix_ms(),
                kind: DecisionKind::Resume,
                pid,
                comm: p.comm.clone(),
                cgroup: p.cgroup.clone(),
                rule: rule_name.clone(),
                action: "resume".into(),
                outcome,
                reason: format!(
                    "cgroup {group_path} is at {group_bytes} B, below its clear level {clear} B ({:.0}% of its limit)",
                    (rule.preempt - CLEAR_BELOW) * 100.0
                ),
                resident_bytes: p.mem.resident(),
                charged_bytes: p.mem.charged(),
                slope_bytes_per_sec: 0.0,
                limit_bytes: (limit as f64 * rule.preempt) as u64,
                predicted_seconds_to_limit: None,
            });
            tracing::info!(seq = d.seq, pid, comm = %d.comm, "resumed: {}", d.reason);
            self.sync_tripwire(pid);
        }
    }

    fn evaluate(&mut self, pid: u32, now: f64) {
        let params = self.params();
        let Some(p) = self.procs.get(&pid) else {
            return;
        };
        let Some(ri) = p.rule else {
            return;
        };
        if p.state != ProcState::Running {
            return;
        }
        let rule = &self.cfg.rules[ri];
        let trend = p.series.trend(now);
        let Some(verdict) =
            policy::evaluate(p.mem.charged(), rule.limit_bytes, trend.as_ref(), &params)
        else {
            return;
        };
        let action = if p.protected.is_some() {
            Action::Alert
        } else {
            rule.action
        };
        let (name, limit) = (rule.name.clone(), rule.limit_bytes);
        self.act(pid, &name, limit, action, verdict, trend);
    }

    fn act(
        &mut self,
        pid: u32,
        rule_name: &str,
        limit_bytes: u64,
        action: Action,
        verdict: policy::Verdict,
        trend: Option<Trend>,
    ) {
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
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
        let outcome = match &p.pidfd {
            Some(fd) => match self.actuator.act(fd, action) {
                Ok(o) => o.as_str().to_string(),
                Err(e) => format!("failed: {e}"),
            },
            None if action == Action::Alert => Outcome::Recorded.as_str().to_string(),
            None => "failed: no pidfd for the process (it may have exited)".to_string(),
        };
        p.state = match (outcome.as_str(), action) {
            ("done", Action::Freeze) => ProcState::Frozen,
            ("done", Action::Kill) => ProcState::Killed,
            _ => ProcState::Flagged,
        };
        let predicted = match verdict.trigger {
            Trigger::Predicted { seconds_to_limit } => Some(seconds_to_limit),
            Trigger::Crossed | Trigger::Tripwire { .. } => None,
        };
        let d = Decision {
            seq: 0,
            time_unix_ms: unix_ms(),
            kind: DecisionKind::Preempt,
            pid,
            comm: p.comm.clone(),
            cgroup: p.cgroup.clone(),
            rule: rule_name.to_string(),
            action: action.as_str().to_string(),
            outcome,
            reason,
            resident_bytes: p.mem.resident(),
            charged_bytes: p.mem.charged(),
            slope_bytes_per_sec: trend.map(|t| t.bytes_per_sec).unwrap_or(0.0),
            limit_bytes,
            predicted_seconds_to_limit: predicted,
        };
        let d = self.journal.append(d);
        tracing::warn!(
            seq = d.seq, pid, comm = %d.comm, rule = %d.rule, action = %d.action,
            outcome = %d.outcome, "{}", d.reason
        );
        // A process no longer running must not keep an armed ceiling.
        self.sync_tripwire(pid);
    }

    /// The kernel stopped `pid` at its ceiling (SIGSTOP from the faulting
    /// task's context). Finish the decision: record the freeze, or go on to
    /// kill when the rule says so.
    fn on_tripwire(&mut self, pid: u32, mem: Mem, ceiling: u64, t: f64) {
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        p.mem = mem;
        p.series.push(t, mem.charged());
        if p.state != ProcState::Running {
            return; // userspace acted first
        }
        let Some(ri) = p.rule else {
            return;
        };
        let trend = p.series.trend(t);
        let rule = &self.cfg.rules[ri];
        let verdict = policy::Verdict {
            trigger: Trigger::Tripwire {
                ceiling_bytes: ceiling,
            },
            reason: format!(
                "in-kernel tripwire stopped it at {} charged bytes (ceiling {ceiling}, limit {}): it grew faster than the agent could react",
                mem.charged(),
                rule.limit_bytes
            ),
        };
        let (name, limit, action) = (rule.name.clone(), rule.limit_bytes, rule.action);
        self.act(pid, &name, limit, action, verdict, trend);
    }

    fn pages_to_mem(&self, pages: &[u64; counter::COUNT]) -> Mem {
        let ps = self.page_size;
        Mem {
            anon: pages[counter::ANON] * ps,
            file: pages[counter::FILE] * ps,
            shmem: pages[counter::SHMEM] * ps,
            swap: pages[counter::SWAP] * ps,
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
                self.procs.remove(&e.tgid);
                self.resume_cleared(t);
            }
            Some(EventKind::Exec) => {
                // A new program: what matched the old image (and its
                // memory history) no longer applies, so it is read afresh as
                // a new process. Typical case: a child forked from a big
                // parent moves into its cgroup, then execs.
                if self.procs.remove(&e.tgid).is_some() {
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
                self.on_tripwire(e.tgid, mem, e.aux * self.page_size, t);
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
            seq: 0,
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
            predicted_seconds_to_limit: None,
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

    /// Processes sorted by slope, fastest first.
    pub fn views(&self, limit: usize, matched_only: bool) -> Vec<ProcView> {
        let now = mono_now();
        let mut v: Vec<ProcView> = self
            .procs
            .values()
            .filter(|p| !matched_only || p.rule.is_some())
            .map(|p| {
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
                        .then(|| crate::model::seconds_to_limit(p.mem.charged(), limit, slope))
                        .flatten(),
                    state: p.state,
                }
            })
            .collect();
        v.sort_by(|a, b| {
            b.slope
                .total_cmp(&a.slope)
                .then(b.mem.charged().cmp(&a.mem.charged()))
        });
        v.truncate(limit);
        v
    }
}

/// The member that names `pid`'s tree inside a group: its ancestor just
/// below the group's topmost member, so a leaker that forks its growth
/// across children is one grower, while the group's main process (a
/// service's or container's first process, ancestor of everything) does not
/// fold the whole group into one. `ancestors` is parent first.
pub fn tree_root(pid: u32, ancestors: &[u32], in_group: &std::collections::HashSet<u32>) -> u32 {
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

/// Where the in-kernel tripwire is armed for a limit: one step under it
/// (the kernel's counters lag by up to a per-CPU batch, well under a step),
/// but never below half the limit for tiny limits.
pub fn tripwire_ceiling(limit: u64, step: u64) -> u64 {
    limit.saturating_sub(step).max(limit / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn tripwire_sits_one_step_under_the_limit() {
        assert_eq!(tripwire_ceiling(256 << 20, 1 << 20), 255 << 20);
        assert_eq!(tripwire_ceiling(1 << 20, 1 << 20), 1 << 19);
    }
}
