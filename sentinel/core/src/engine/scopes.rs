//! The two shared limits the engine finds for itself: the limited memory
//! cgroup a process lives in, and the host (all memory and swap, less a
//! floor to keep available), judged between meminfo samples from the
//! processes' own movement.

use super::{Engine, Host, Limit, Scope, shared::Grouping, table::Proc};
use crate::{
    model::{HostMem, Series},
    policy::{Action, Level},
};

/// Between meminfo samples the host is judged at most this often.
const HOST_EVAL_EVERY_SECS: f64 = 0.005;

/// The host between /proc/meminfo samples.
pub(super) struct HostState {
    pub mem: HostMem,
    pub series: Series,
    /// Charged bytes moved by known processes' events since the last
    /// sample, so the host is judged between samples without reading
    /// /proc/meminfo. New, exec'd and exited processes move it only at the
    /// next sample: their pages may be shared (fork) or not yet freed.
    pub drift: i64,
    last_eval: f64,
    /// Usage at the last judgement: the tick judges again only on movement.
    last_eval_used: u64,
    pub psi: super::pressure::PsiState,
}

impl HostState {
    pub fn new(history_secs: f64) -> Self {
        Self {
            mem: HostMem::default(),
            series: Series::new(history_secs),
            drift: 0,
            last_eval: f64::NEG_INFINITY,
            last_eval_used: 0,
            psi: Default::default(),
        }
    }

    pub fn used(&self) -> u64 {
        (self.mem.used() as i64).saturating_add(self.drift).max(0) as u64
    }
}

/// Whether cgroup `path` is `group` or below it.
pub fn is_within(path: &str, group: &str) -> bool {
    path == group || (path.starts_with(group) && path.as_bytes().get(group.len()) == Some(&b'/'))
}

/// The nearest cgroup at or above `path` whose own limit (`own_limit`)
/// is set, and that limit: the line its members share.
pub fn effective_limit(
    path: &str,
    own_limit: impl Fn(&str) -> Option<u64>,
) -> Option<(String, u64)> {
    let mut p = path.trim_end_matches('/').to_string();
    loop {
        if p.is_empty() {
            return None; // the root cgroup has no limit of its own
        }
        if let Some(l) = own_limit(&p) {
            return Some((p, l));
        }
        match p.rfind('/') {
            Some(i) => p.truncate(i),
            None => return None,
        }
    }
}

impl<H: Host> Engine<H> {
    /// The nearest cgroup at or above `path` that has a limit, and that
    /// limit.
    pub(super) fn effective_limit(&self, path: &str) -> Option<(String, u64)> {
        effective_limit(path, |p| self.host.cgroup_limit(p))
    }

    /// The limited cgroup holding a process in `cgroup`, its limit, and the
    /// rule defending it.
    pub(super) fn cgroup_limit(&mut self, cgroup: &str) -> Option<Limit> {
        let eff = match self.group_limits.get(cgroup) {
            Some(e) => e.clone(),
            None => {
                let e = self.effective_limit(cgroup);
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
    pub(super) fn evaluate_group(&mut self, pid: u32, now: f64) {
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

    /// What a limited cgroup's members hold against its limit.
    pub(super) fn cgroup_usage(&self, group_path: &str) -> u64 {
        self.group_members(group_path)
            .map(|p| p.mem.charged())
            .fold(0, u64::saturating_add)
    }

    /// Known processes in the cgroup at `group_path` or below it.
    pub(super) fn group_members<'a>(
        &'a self,
        group_path: &'a str,
    ) -> impl Iterator<Item = &'a Proc<H::Pidfd>> {
        self.procs
            .values()
            .filter(move |p| is_within(&p.cgroup, group_path))
    }

    pub(super) fn host_limit(&self) -> Limit {
        let h = &self.cfg.host;
        Limit {
            scope: Scope::Host,
            rule: "host".into(),
            bytes: self
                .host_state
                .mem
                .capacity()
                .saturating_sub(h.min_available.of(self.host_state.mem.total))
                .max(1),
            levels: h.levels,
            cap: h.action,
        }
    }

    /// Host scope between meminfo samples, on a process's growth: judged
    /// only near a line, and at most every `HOST_EVAL_EVERY_SECS`, so a
    /// quiet host costs nothing per event.
    pub(super) fn maybe_evaluate_host(&mut self, now: f64) {
        if now - self.host_state.last_eval >= HOST_EVAL_EVERY_SECS && self.host_near_a_line() {
            self.evaluate_host(now);
        }
    }

    /// Whether the host is close enough to its warn line (or already held
    /// at a level) for a judgement that looks at every process to be due.
    fn host_near_a_line(&self) -> bool {
        if self.host_state.mem.total == 0 {
            return false;
        }
        let limit = self.host_limit();
        let gate = (limit.levels.line(Level::Warn, limit.bytes) as f64 * 0.9) as u64;
        let held = self.scopes.get(&Scope::Host).map(|s| s.held.level);
        self.host_state.used() >= gate || held.is_some_and(|l| l > Level::Normal)
    }

    /// Host scope: all memory plus swap, less the floor to keep available.
    /// Only processes that moved within the growth window (or that the
    /// agent stopped) can be victims, so quiet ones are not even looked at.
    fn evaluate_host(&mut self, now: f64) {
        self.host_state.last_eval = now;
        self.host_state.last_eval_used = self.host_state.used();
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
        let usage = self.host_state.used();
        self.relieve(&limit, usage, &members, Grouping::Cgroups, now);
    }

    /// A fresh /proc/meminfo sample, then everything due on the agent's
    /// timer: frozen processes whose pressure cleared (or whose freeze ran
    /// out), and the host's judgement when it moved near a line.
    pub fn tick(&mut self, now: f64) {
        if let Some(mem) = self.host.meminfo() {
            self.host_state.mem = mem;
            self.host_state.drift = 0;
            self.host_state.series.push(now, mem.used());
        }
        let psi = self.host.psi_some();
        self.host_state.psi.sample(now, psi);
        let _ = self.expire_graces(now);
        self.release_killed();
        self.notice_thaws();
        self.resume_cleared(now);
        self.resume_queued(now);
        self.escalate_long_freezes(now);
        self.restarts.prune(now);
        self.watch_wide(now);
        let moved = self
            .host_state
            .used()
            .abs_diff(self.host_state.last_eval_used)
            >= self.cfg.agent.step_bytes;
        let settling = self
            .scopes
            .get(&Scope::Host)
            .is_some_and(|s| s.settle.is_some());
        if (moved || settling) && self.host_near_a_line() {
            self.evaluate_host(now);
        }
        self.choose_instrument(now);
        debug_assert!(
            self.procs.consistent(),
            "the process table's indexes drifted"
        );
    }

    /// How far up the ladder the named rule of `scope` may go now.
    pub(super) fn cap_of(&self, scope: &Scope, rule: &str) -> Option<Action> {
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
}

#[cfg(test)]
mod tests {
    use super::{effective_limit, is_within};

    #[test]
    fn the_nearest_limited_cgroup_up_the_path_is_the_line() {
        let own = |p: &str| match p {
            "/jobs/job1" => Some(1 << 30),
            "/" | "/jobs" => None,
            _ => None,
        };
        assert_eq!(
            effective_limit("/jobs/job1/worker", own),
            Some(("/jobs/job1".to_string(), 1 << 30))
        );
        assert_eq!(
            effective_limit("/jobs/job1/", own).map(|e| e.1),
            Some(1 << 30)
        );
        assert_eq!(effective_limit("/jobs", own), None);
        assert_eq!(effective_limit("/", own), None);
    }

    #[test]
    fn within_means_the_group_or_below_it() {
        assert!(is_within("/a/b", "/a"));
        assert!(is_within("/a", "/a"));
        assert!(!is_within("/ab", "/a"));
        assert!(!is_within("/", "/a"));
    }
}
