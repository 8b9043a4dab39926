//! The process table: what the engine knows of each process, how it is
//! discovered, which rule and priority class select it, why it may never
//! be signalled, and the in-kernel tripwire that goes with its rule.

use std::collections::HashMap;

use super::{Engine, Host, Mode, Scope, Tripwire, index::ProcMut};
use crate::{
    model::{Mem, Series},
    policy::{
        Action, Hysteresis, Level, ProcessFacts, match_rule, priority_of,
        protect::{protection_of, unit_of},
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    Running,
    /// Stopped (SIGSTOP) as a runaway: the rule's ladder goes on from here.
    Frozen,
    /// Stopped (SIGSTOP) to wait its turn at a shared limit while others
    /// finish: resumed as memory frees, never escalated.
    Queued,
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
            Self::Queued => "queued",
            Self::Terminating => "terminating",
            Self::Killed => "killed",
        }
    }

    /// Stopped growing because of Sentinel: its memory counts toward a
    /// shared limit, its growth no longer does.
    pub(super) fn stopped(self) -> bool {
        self != Self::Running
    }

    /// The rung this state is the result of, if any.
    pub(super) fn rung(self) -> Option<Action> {
        match self {
            Self::Running => None,
            Self::Frozen | Self::Queued => Some(Action::Freeze),
            Self::Terminating => Some(Action::Terminate),
            Self::Killed => Some(Action::Kill),
        }
    }
}

/// Why a process was frozen (or queued): its scope and rule, when, and
/// how fast it grew then.
#[derive(Debug, Clone)]
pub(super) struct Freeze {
    pub scope: Scope,
    pub rule: String,
    pub since: f64,
    pub slope: f64,
}

pub(super) struct Proc<F> {
    pub pid: u32,
    pub start_time: u64,
    pub comm: String,
    pub exe: String,
    pub cgroup: String,
    /// Its real uid, when /proc said.
    pub uid: Option<u32>,
    /// Its systemd system unit, or empty.
    pub unit: String,
    /// Parent, grandparent, ... up to pid 1.
    pub ancestors: Vec<u32>,
    pub rule: Option<usize>,
    /// Its rule counts file-backed pages too.
    pub include_file: bool,
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
    pub acted: HashMap<Scope, Action>,
    pub pidfd: Option<F>,
    /// So that it is resumed when that scope's pressure clears (or, under
    /// a rule that allows it, killed once frozen for `freeze_timeout`).
    pub frozen_for: Option<Freeze>,
    /// Counted once toward crash-loop detection, however many rungs it
    /// climbs.
    pub loop_counted: bool,
    /// What the scheduler at each shared limit decided about it.
    pub turns: HashMap<Scope, Turn>,
}

/// A process let run (or resumed, or, in dry-run, that would wait) by the
/// scheduler at one shared limit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Turn {
    /// When, and how fast it grew then: until a schedule horizon has
    /// passed, its growth counts at least at that rate, while its samples
    /// may not show it yet.
    pub since: f64,
    pub slope: f64,
    /// In dry-run, it would wait: it runs on, counted as waiting.
    pub would_wait: bool,
    /// Resumed to show whether it fits (or by an operator), not because
    /// it did: alone at the line it is a runaway.
    pub trial: bool,
}

impl<F> Proc<F> {
    /// A running process nothing is known of yet, under no rule, keeping
    /// `history_secs` of samples.
    pub(super) fn bare(pid: u32, history_secs: f64) -> Self {
        Self {
            pid,
            start_time: 0,
            comm: String::new(),
            exe: String::new(),
            cgroup: String::new(),
            uid: None,
            unit: String::new(),
            ancestors: Vec::new(),
            rule: None,
            include_file: false,
            priority: 0,
            protected: None,
            mem: Mem::default(),
            series: Series::new(history_secs),
            state: ProcState::Running,
            held: Hysteresis::default(),
            acted: HashMap::new(),
            pidfd: None,
            frozen_for: None,
            loop_counted: false,
            turns: HashMap::new(),
        }
    }
}

impl<F> Proc<F> {
    /// What its own rule measures: charged memory, plus file-backed pages
    /// when the rule opts in. Its series (and so its slope, also at shared
    /// limits) follows the same measure.
    pub fn usage(&self) -> u64 {
        self.mem
            .charged()
            .saturating_add(if self.include_file { self.mem.file } else { 0 })
    }

    fn facts(&self) -> ProcessFacts<'_> {
        ProcessFacts {
            pid: self.pid,
            comm: &self.comm,
            exe: &self.exe,
            cgroup: &self.cgroup,
            ancestors: &self.ancestors,
            uid: self.uid,
            unit: &self.unit,
        }
    }
}

/// Where the in-kernel tripwire is armed: at the preempt line, but never
/// closer than a step to the limit (the kernel's counters lag by up to a
/// per-CPU batch, well under a step), and, for tiny limits, at most half
/// the limit below it.
pub fn tripwire_ceiling(limit: u64, preempt_line: u64, step: u64) -> u64 {
    preempt_line.min(limit.saturating_sub(step).max(limit / 2))
}

/// Deepest parent chain followed: a loop in a corrupt /proc cannot hang
/// the agent.
const MAX_ANCESTORS: usize = 256;

impl<H: Host> Engine<H> {
    /// Why the process may never be signalled, if it may not.
    pub(super) fn protected_reason(&self, p: &Proc<H::Pidfd>) -> Option<String> {
        let pid = p.pid;
        if let Some((_, why)) = self.operator_protected.get(&pid) {
            Some(why.clone())
        } else if pid == 1 {
            Some("pid 1".into())
        } else if pid == self.opts.self_pid {
            Some("the agent itself".into())
        } else if self.host.oom_score_adj(pid) == -1000 {
            Some("oom_score_adj -1000".into())
        } else if let Some(name) =
            protection_of(&self.cfg.protect, &p.facts(), || self.host.exe_trusted(pid))
        {
            Some(format!("protected as `{name}`"))
        } else if self.cfg.agent.protected.contains(&p.comm) {
            Some(format!("`{}` is in agent.protected", p.comm))
        } else {
            None
        }
    }

    /// Parent chain of a process whose parent is `ppid`, up to (and
    /// including) pid 1.
    fn ancestors(&self, mut ppid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        while ppid > 0 && out.len() < MAX_ANCESTORS {
            out.push(ppid);
            if ppid == 1 {
                break;
            }
            ppid = match self.host.stat(ppid) {
                Some(s) => s.ppid,
                None => break,
            };
        }
        out
    }

    /// Reads a process into the table; `None` if it is gone or a kernel
    /// thread.
    pub(super) fn discover(&mut self, pid: u32) -> Option<ProcMut<'_, H::Pidfd>> {
        if self.procs.contains_key(&pid) {
            return self.procs.get_mut(&pid);
        }
        let stat = self.host.stat(pid)?;
        // A zombie has exited: kept, it would stand for whatever process
        // reuses its pid once it is reaped. But a leader that called
        // pthread_exit shows `Z` while its other threads run on, memory and
        // all: that one is alive.
        let exited = stat.state == 'Z' && self.host.mem(pid).is_none_or(|m| m.resident() == 0);
        if stat.kernel_thread || exited {
            return None;
        }
        // An operator protected the process that had this pid before.
        if self
            .operator_protected
            .get(&pid)
            .is_some_and(|(start, _)| *start != stat.start_time)
        {
            self.operator_protected.remove(&pid);
        }
        let paths = self.host.cgroup_paths(pid).unwrap_or_default();
        let mut p = Proc {
            start_time: stat.start_time,
            exe: self.host.exe(pid),
            unit: paths
                .systemd
                .as_deref()
                .map(|c| unit_of(c).to_string())
                .unwrap_or_default(),
            cgroup: paths.memory,
            uid: self.host.uid(pid),
            ancestors: self.ancestors(stat.ppid),
            comm: stat.comm,
            ..Proc::bare(pid, self.cfg.agent.history.as_secs_f64())
        };
        p.protected = self.protected_reason(&p);
        self.bind_rule(&mut p);
        self.procs.insert(p);
        self.sync_tripwire(pid);
        self.procs.get_mut(&pid)
    }

    /// Matches the process against the rules and takes a pidfd when one
    /// governs it, so a later signal cannot reach a reused pid.
    fn bind_rule(&mut self, p: &mut Proc<H::Pidfd>) {
        let facts = p.facts();
        let (rule, priority) = (
            match_rule(&self.cfg.rules, &facts),
            priority_of(&self.cfg.priorities, &facts),
        );
        (p.rule, p.priority) = (rule, priority);
        p.include_file = p.rule.is_some_and(|r| self.cfg.rules[r].include_file);
        if p.rule.is_some() && p.pidfd.is_none() {
            match self.host.open_pidfd(p.pid, p.start_time) {
                Ok(fd) => p.pidfd = Some(fd),
                Err(e) => tracing::debug!(pid = p.pid, "pidfd_open: {e}"),
            }
        }
        if let Some(r) = p.rule {
            tracing::debug!(pid = p.pid, comm = %p.comm, rule = %self.cfg.rules[r].name, "process matched");
        }
    }

    /// After a policy change: protection, rule and tripwire of every known
    /// process again.
    pub(super) fn rebind_all(&mut self) {
        let mut procs = std::mem::take(&mut self.procs);
        procs.for_each_mut(|p| {
            // Protections may have changed.
            p.protected = self.protected_reason(p);
            self.bind_rule(p);
        });
        let pids: Vec<u32> = procs.keys().copied().collect();
        self.procs = procs;
        for pid in pids {
            self.sync_tripwire(pid);
        }
    }

    /// The in-kernel entry for a process: its ceiling at its preempt line
    /// (never closer than a step to its limit), so that even an allocation
    /// faster than the agent can react stops there; watch-only when nothing
    /// may be signalled (its events still wake the agent); off when no rule
    /// governs it or it no longer runs.
    fn tripwire_of(&self, p: &Proc<H::Pidfd>) -> Tripwire {
        let Some(rule) = p.rule.map(|r| &self.cfg.rules[r]) else {
            return Tripwire::Off;
        };
        if p.state != ProcState::Running {
            return Tripwire::Off;
        }
        // Not re-armed for a process already frozen this episode (an
        // operator resumed it): the kernel would stop it again at once.
        let frozen_before = p
            .acted
            .get(&Scope::Process)
            .is_some_and(|&a| a >= Action::Freeze);
        let armable = self.opts.mode == Mode::Ebpf
            && self.cfg.agent.tripwire
            && !self.cfg.agent.dry_run
            && p.protected.is_none()
            && !frozen_before
            && rule.action >= Action::Freeze;
        if armable {
            Tripwire::Ceiling(tripwire_ceiling(
                rule.limit_bytes,
                rule.levels.line(Level::Preempt, rule.limit_bytes),
                self.cfg.agent.step_bytes,
            ))
        } else {
            Tripwire::WatchOnly
        }
    }

    pub(super) fn sync_tripwire(&mut self, pid: u32) {
        let Some(p) = self.procs.get(&pid) else {
            return;
        };
        let (wire, start_time) = (self.tripwire_of(p), p.start_time);
        self.host.set_tripwire(pid, start_time, wire);
    }

    /// Forgets a process that exited (or exec'd: a new program is read
    /// afresh, what matched the old image no longer applies, and its GPU
    /// contexts did not survive the exec). /proc is no longer listed to
    /// sweep the dead, so its GPU scopes go here too: a later process
    /// under the same pid must not inherit their level.
    pub(super) fn forget(&mut self, pid: u32) -> bool {
        self.graces.remove(&pid);
        self.scopes
            .retain(|scope, _| !matches!(scope, Scope::GpuProcess { pid: p, .. } if *p == pid));
        self.procs.remove(&pid).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tripwire_sits_at_the_preempt_line_and_a_step_under_the_limit() {
        assert_eq!(tripwire_ceiling(256 << 20, 256 << 20, 1 << 20), 255 << 20);
        assert_eq!(tripwire_ceiling(1 << 20, 1 << 20, 1 << 20), 1 << 19);
        assert_eq!(tripwire_ceiling(1000 << 20, 850 << 20, 1 << 20), 850 << 20);
    }
}
