//! What arrives from outside on its own: kernel events from the ring
//! buffer, full /proc passes, and /proc polling where eBPF is not loaded.

use std::collections::HashSet;

use sentinel_common::{Event, EventKind, counter};

use super::{Engine, Host, Mode, Scope, table::ProcState};
use crate::{
    decision::{Decision, DecisionAction, DecisionKind, Outcome, ScopeKind},
    model::Mem,
};

/// The most of one kind of memory a record may say a process holds.
const MAX_PLAUSIBLE_BYTES: u64 = 1 << 50;

impl<H: Host> Engine<H> {
    /// Page counts as bytes. Saturating: a corrupt record (the fuzzer's,
    /// never the kernel's) must not bring the agent down.
    /// Bytes from the kernel's page counts. No process holds a pebibyte
    /// of one kind: a record that says so is corrupt, and is held to it so
    /// that sums over many processes cannot overflow (found by fuzzing).
    fn pages_to_mem(&self, pages: &[u64; counter::COUNT]) -> Mem {
        let ps = self.opts.page_size;
        let bytes = |n: u64| n.saturating_mul(ps).min(MAX_PLAUSIBLE_BYTES);
        Mem {
            anon: bytes(pages[counter::ANON]),
            file: bytes(pages[counter::FILE]),
            shmem: bytes(pages[counter::SHMEM]),
            swap: bytes(pages[counter::SWAP]),
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
                self.forget(e.tgid);
                self.operator_protected.remove(&e.tgid);
            }
            Some(EventKind::Exec) => {
                // A new program: what matched the old image (and its
                // memory history) no longer applies, so it is read afresh as
                // a new process. Typical case: a child forked from a big
                // parent moves into its cgroup, then execs.
                // At rest no memory event will announce it: read it now.
                let known = self.forget(e.tgid);
                if self.at_rest() {
                    self.discover_now(e.tgid, t);
                } else if known {
                    self.discover(e.tgid);
                }
            }
            Some(EventKind::OomVictim) => self.record_oom(e.tgid),
            Some(EventKind::Fork) => {
                // Children are read from /proc on their first memory event.
                // One with a pid the table still holds for another process
                // (its exit event lost) is a new process reusing it: what
                // was known of the old one must not stick. The start time
                // decides: a rescan may have found this very child before
                // its fork event arrived (the probe wakes the agent lazily),
                // and forgetting it then would drop its place in a queue.
                if let Ok(child) = u32::try_from(e.aux)
                    && self.procs.get(&child).is_some_and(|p| {
                        self.host
                            .stat(child)
                            .is_none_or(|s| s.start_time != p.start_time)
                    })
                {
                    self.forget(child);
                }
                if let Ok(child) = u32::try_from(e.aux)
                    && self.at_rest()
                {
                    self.discover_now(child, t);
                }
            }
            Some(EventKind::Moved) => {
                let pid = self.host.tgid(e.tgid).unwrap_or(e.tgid);
                self.on_moved(pid, t);
            }
            Some(EventKind::LargeMmap) => {
                tracing::debug!(pid = e.tgid, bytes = e.aux, "large mmap");
            }
            Some(EventKind::Tripwire) => {
                let mem = self.pages_to_mem(&e.pages);
                let ceiling = e.aux.saturating_mul(self.opts.page_size);
                self.on_tripwire(e.tgid, mem, ceiling, t);
            }
            None => tracing::debug!(kind = e.kind, "unknown event kind"),
        }
    }

    fn record_oom(&mut self, task: u32) {
        self.kernel_oom_kills += 1;
        let pid = self.host.tgid(task).unwrap_or(task);
        let now = self.host.now();
        let mut d = Decision {
            time_unix_ms: self.host.wall_ms(),
            kind: DecisionKind::KernelOomKill,
            pid,
            action: DecisionAction::None,
            outcome: Outcome::KilledByKernel,
            reason: "the kernel OOM killer chose this process".into(),
            scope: Some(ScopeKind::Process),
            ..Default::default()
        };
        let mem = match self.procs.get(&pid) {
            Some(p) => {
                d.comm = p.comm.clone();
                d.cgroup = p.cgroup.clone();
                if let Some(r) = p.rule.map(|r| &self.cfg.rules[r]) {
                    d.rule = r.name.clone();
                    d.limit_bytes = r.limit_bytes;
                }
                d.slope_bytes_per_sec = p.series.trend(now).map(|t| t.bytes_per_sec).unwrap_or(0.0);
                p.mem
            }
            None => {
                d.comm = self.host.stat(pid).map(|s| s.comm).unwrap_or_default();
                d.cgroup = self.host.cgroup(pid).unwrap_or_default();
                self.host.mem(pid).unwrap_or_default()
            }
        };
        d.resident_bytes = mem.resident();
        d.charged_bytes = mem.charged();
        let d = self.record(d);
        tracing::error!(seq = d.seq, pid, comm = %d.comm, cgroup = %d.cgroup, "kernel OOM kill");
    }

    /// Full /proc pass: discovers new processes (with a first sample),
    /// forgets the dead, and picks up rule changes for known ones.
    ///
    /// `pids` is listed by the caller without holding the engine, so that a
    /// large /proc does not stall event handling.
    pub fn rescan(&mut self, pids: Vec<u32>) {
        let live: HashSet<u32> = pids.iter().copied().collect();
        self.procs.retain(|pid, _| live.contains(pid));
        self.scopes.retain(|scope, _| match scope {
            Scope::GpuProcess { pid, .. } => live.contains(pid),
            _ => true,
        });
        self.refresh();
        let now = self.host.now();
        for pid in pids {
            if self.procs.contains_key(&pid) {
                continue;
            }
            if let Some(mem) = self.host.mem(pid) {
                self.observe(pid, mem, now);
            }
        }
    }

    /// The known processes without listing /proc, when the kernel reports
    /// forks, execs and exits and none of its reports was lost: the quiet
    /// ones read afresh, and identities and limits checked again.
    pub fn refresh(&mut self) {
        // Limits can change under us; read them afresh.
        self.group_limits.clear();
        let now = self.host.now();
        // The kernel samples ungoverned processes and skips foreign-mm
        // updates, and while the per-fault probe rests it reports no
        // resident-set change at all: a process that went quiet would keep
        // a stale reading. Refresh quiet ones from /proc.
        let quiet_after = self.cfg.agent.rescan_interval.as_secs_f64() * 5.0;
        let quiet: Vec<u32> = self
            .procs
            .values()
            .filter(|p| p.series.last().is_none_or(|s| now - s.t > quiet_after))
            .map(|p| p.pid)
            .collect();
        for pid in quiet {
            if let Some(mem) = self.host.mem(pid) {
                self.observe(pid, mem, now);
            }
        }
        self.check_identities(quiet_after, now);
        self.resume_cleared(now);
    }

    /// Between full passes, when the kernel reports forks, execs and
    /// exits: limits read afresh, and, unless the kernel reports cgroup
    /// moves too, the cgroups of the processes that moved memory lately.
    /// No walk over every process when it does.
    pub fn recheck(&mut self) {
        self.group_limits.clear();
        let now = self.host.now();
        if !self.opts.moves_reported {
            let quiet_after = self.cfg.agent.rescan_interval.as_secs_f64() * 5.0;
            self.check_identities(quiet_after, now);
        }
        self.resume_cleared(now);
    }

    /// What events cannot tell: a pid now held by another process (polling
    /// has no fork or exit events), and a process that moved itself into
    /// another cgroup without exec. Both are read afresh, rules and all.
    /// Cgroups are re-read only for processes that moved memory lately:
    /// a quiet one gives no limit anything to act on.
    fn check_identities(&mut self, quiet_after: f64, now: f64) {
        let polling = self.opts.mode == Mode::Polling;
        let stale: Vec<u32> = self
            .procs
            .values()
            .filter(|p| p.state == ProcState::Running)
            .filter(|p| {
                let reused = polling
                    && self
                        .host
                        .stat(p.pid)
                        .is_some_and(|s| s.start_time != p.start_time);
                let active = p.series.last().is_some_and(|s| now - s.t <= quiet_after);
                let moved = active && self.host.cgroup(p.pid).is_some_and(|cg| cg != p.cgroup);
                reused || moved
            })
            .map(|p| p.pid)
            .collect();
        for pid in stale {
            tracing::debug!(pid, "a new process, or a cgroup change: read afresh");
            self.forget(pid);
            if let Some(mem) = self.host.mem(pid) {
                self.observe(pid, mem, now);
            }
        }
    }

    /// Samples from /proc the processes a limit governs: their own rule's,
    /// or a cgroup rule's (the polling path).
    pub fn poll_matched(&mut self) {
        let cgroups: HashSet<String> = if self.cfg.cgroup_rules.is_empty() {
            HashSet::new()
        } else {
            self.procs.cgroups().map(str::to_owned).collect()
        };
        let governed: HashSet<String> = cgroups
            .into_iter()
            .filter(|cg| self.cgroup_limit(cg).is_some())
            .collect();
        let pids: Vec<u32> = self
            .procs
            .values()
            .filter(|p| p.state == ProcState::Running)
            .filter(|p| p.rule.is_some() || governed.contains(&p.cgroup))
            .map(|p| p.pid)
            .collect();
        for pid in pids {
            match self.host.mem(pid) {
                Some(mem) => {
                    let now = self.host.now();
                    self.observe(pid, mem, now);
                }
                None => {
                    self.procs.remove(&pid);
                }
            }
        }
    }
}
