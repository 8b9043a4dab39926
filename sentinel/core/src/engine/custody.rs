//! Who holds a frozen process while the agent is not running. A stop
//! leaves what it froze frozen and says so; the next start takes back,
//! from the journal, every process it froze that is still stopped, so that
//! its rule (resume on clear, freeze timeout, operators) governs it again;
//! and a freeze someone else thawed, then or later, is noticed and the
//! rule decides again.

use std::collections::BTreeMap;

use super::{
    Engine, Host, Scope, Signal, device_of_rule, is_within,
    table::{Freeze, ProcState, Turn},
};
use crate::{
    decision::{Decision, DecisionAction, DecisionKind, Outcome, ScopeKind},
    model::Series,
    policy::{Action, Level},
};

/// A process the journal says Sentinel left stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub pid: u32,
    pub start_time: u64,
    /// Waiting its turn at a shared limit, rather than frozen as a runaway.
    pub queued: bool,
    pub scope: ScopeKind,
    pub rule: String,
    /// How fast it grew when it was stopped (what its turn is planned by).
    pub slope: f64,
    /// The decision that stopped it.
    pub seq: u64,
    pub time_unix_ms: u64,
}

impl Held {
    fn of(d: &Decision, queued: bool) -> Option<Self> {
        Some(Self {
            pid: d.pid,
            start_time: d.start_time,
            queued,
            scope: d.scope?,
            rule: d.rule.clone(),
            slope: d.slope_bytes_per_sec,
            seq: d.seq,
            time_unix_ms: d.time_unix_ms,
        })
    }
}

/// The processes Sentinel left stopped, by the journal (oldest first):
/// frozen or queued since this boot and not resumed, ended or found thawed
/// since. Entries without a start time (older journals) name no process
/// safely and are skipped.
pub fn held_by_journal<'a>(
    decisions: impl IntoIterator<Item = &'a Decision>,
    boot_unix_ms: u64,
) -> Vec<Held> {
    use DecisionAction as A;
    use DecisionKind as K;
    let mut held: BTreeMap<(u32, u64), Held> = BTreeMap::new();
    for d in decisions {
        if d.pid == 0 || d.start_time == 0 || d.time_unix_ms < boot_unix_ms {
            continue;
        }
        let key = (d.pid, d.start_time);
        let done = d.outcome == Outcome::Done;
        match (d.kind, d.action) {
            (K::Preempt, A::Freeze) if done => held.extend(Held::of(d, false).map(|h| (key, h))),
            (K::Queue, A::Freeze) if done => held.extend(Held::of(d, true).map(|h| (key, h))),
            // Taken back (or left) by an earlier run: still held. The
            // first freeze's entry, when retention kept it, says since when.
            (K::Custody, A::Adopted | A::LeftFrozen) if !held.contains_key(&key) => {
                held.extend(Held::of(d, false).map(|h| (key, h)));
            }
            (K::Resume, _) if !d.outcome.failed() => {
                held.remove(&key);
            }
            (K::Preempt, A::Terminate | A::Kill) if done => {
                held.remove(&key);
            }
            (K::KernelOomKill, _) => {
                held.remove(&key);
            }
            _ => {}
        }
    }
    held.into_values().collect()
}

impl<H: Host> Engine<H> {
    /// What the agent does at start, after its policy is set: a first scan
    /// of the processes, taking back what it left stopped, and a first
    /// look at the host.
    /// `unowned`: processes found in the kernel's freezer under the
    /// agent's name (pid, start time), whether or not the journal says so.
    pub fn start(&mut self, pids: Vec<u32>, held: Vec<Held>, unowned: Vec<(u32, u64)>, now: f64) {
        self.started_at = Some(now);
        // The instrument loaded with the probes has been on since now.
        self.instrument.since = now;
        self.rescan(pids);
        self.recover(held, now);
        self.release_unowned(unowned);
        self.tick(now);
    }

    /// Processes the freezer holds for the agent that no journal entry
    /// gave back to it (a crash between freeze and journal, a journal
    /// lost or pruned): nothing would ever resume them, so they are thawed.
    fn release_unowned(&mut self, frozen: Vec<(u32, u64)>) {
        for (pid, start_time) in frozen {
            let held = self.procs.get(&pid).is_some_and(|p| {
                p.start_time == start_time
                    && matches!(p.state, ProcState::Frozen | ProcState::Queued)
            });
            if !held {
                self.release(
                    pid,
                    start_time,
                    "found frozen by an earlier run of the agent with no record of it: thawed, since nothing else would",
                );
            }
        }
    }

    /// Thaws a process an earlier run froze, whatever this run may do
    /// (also in dry-run: the freeze was real), and journals it.
    fn release(&mut self, pid: u32, start_time: u64, why: &str) {
        let outcome = match self.host.open_pidfd(pid, start_time) {
            Ok(fd) => match self.host.signal(&fd, Signal::Resume) {
                Ok(()) => Outcome::Done,
                Err(e) => Outcome::Failed(e),
            },
            Err(e) => Outcome::Failed(e),
        };
        let d = self.note(
            pid,
            DecisionKind::Resume,
            String::new(),
            None,
            DecisionAction::Resume,
            outcome,
            why.to_string(),
        );
        let d = Decision { start_time, ..d };
        let d = self.record(d);
        tracing::warn!(seq = d.seq, pid, comm = %d.comm, outcome = %d.outcome, "{}", d.reason);
    }

    /// At start, after the first scan: takes back each process the journal
    /// says Sentinel left stopped. One that is gone, or whose pid now
    /// names another process, is skipped; one that runs again was thawed
    /// by someone else, which is recorded, and its rule decides again.
    pub fn recover(&mut self, held: Vec<Held>, now: f64) {
        let wall = self.host.wall_ms();
        let mut queues = Vec::new();
        for h in held {
            let Some(p) = self.procs.get(&h.pid) else {
                continue;
            };
            if p.start_time != h.start_time {
                continue;
            }
            match self.host.stopped(h.pid, h.start_time) {
                Some(true) if self.cfg.agent.dry_run => self.release(
                    h.pid,
                    h.start_time,
                    "frozen by an earlier run, and this one runs in dry-run (it would only say what it would do): thawed",
                ),
                Some(true) => {
                    let ago = wall.saturating_sub(h.time_unix_ms) as f64 / 1e3;
                    let scope = self.adopt(&h, now - ago);
                    if h.queued && !queues.contains(&scope) {
                        queues.push(scope);
                    }
                }
                Some(false) => {
                    let why = format!(
                        "thawed by someone else while the agent was not running (it had stopped it in decision {}); its rule decides again",
                        h.seq
                    );
                    self.record_thaw(h.pid, h.scope, h.rule, Outcome::Recorded, why);
                }
                None => {}
            }
        }
        self.readmit(&queues, now);
    }

    /// Where the last agent kept a queue, it let the others run: they go
    /// on as admitted, rather than be planned afresh from growth the new
    /// agent has not seen yet (and queued beside those that waited).
    fn readmit(&mut self, scopes: &[Scope], now: f64) {
        let candidates = self.cfg.host.candidates.clone();
        self.procs.for_each_mut(|p| {
            if p.state != ProcState::Running {
                return;
            }
            for scope in scopes {
                let member = match scope {
                    Scope::Cgroup(path) => is_within(&p.cgroup, path),
                    Scope::Host => candidates.as_ref().is_none_or(|c| c.is_match(&p.cgroup)),
                    _ => false,
                };
                if member {
                    p.turns.entry(scope.clone()).or_insert(Turn {
                        since: now,
                        slope: 0.0,
                        would_wait: false,
                        trial: false,
                    });
                }
            }
        });
    }

    /// The scope a journalled stop was made for, as the engine names it now.
    fn scope_of(&mut self, h: &Held) -> Scope {
        match h.scope {
            ScopeKind::Cgroup => {
                let cgroup = self.procs.get(&h.pid).map(|p| p.cgroup.clone());
                cgroup
                    .and_then(|c| self.cgroup_limit(&c))
                    .map(|l| l.scope)
                    // Its cgroup lost its limit or rule meanwhile: frozen
                    // for a cgroup no rule defends, resumed on the next tick.
                    .unwrap_or_else(|| Scope::Cgroup(String::new()))
            }
            ScopeKind::Host => Scope::Host,
            ScopeKind::Gpu => device_of_rule(&h.rule).map_or(Scope::Process, Scope::Gpu),
            ScopeKind::Process | ScopeKind::Admission => Scope::Process,
        }
    }

    /// Takes back one stopped process; the scope it is held for.
    fn adopt(&mut self, h: &Held, since: f64) -> Scope {
        let scope = self.scope_of(h);
        let Some(mut p) = self.procs.get_mut(&h.pid) else {
            return scope;
        };
        p.state = if h.queued {
            ProcState::Queued
        } else {
            ProcState::Frozen
        };
        p.frozen_for = Some(Freeze {
            scope: scope.clone(),
            rule: h.rule.clone(),
            since,
            slope: h.slope,
        });
        p.acted.insert(scope.clone(), Action::Freeze);
        if p.pidfd.is_none() {
            p.pidfd = self.host.open_pidfd(p.pid, p.start_time).ok();
        }
        drop(p);
        let kind = if h.queued {
            "waiting its turn"
        } else {
            "frozen"
        };
        let reason = format!(
            "taken back after the agent restarted: {kind} since decision {} ({:.0} s ago), for {} under rule {}",
            h.seq,
            (self.host.now() - since).max(0.0),
            scope.describe(),
            h.rule
        );
        let d = Decision {
            scope: Some(scope.kind()),
            slope_bytes_per_sec: h.slope,
            ..self.note(
                h.pid,
                DecisionKind::Custody,
                h.rule.clone(),
                Some(Level::Preempt),
                DecisionAction::Adopted,
                Outcome::Done,
                reason,
            )
        };
        let d = self.record(d);
        tracing::info!(seq = d.seq, pid = h.pid, comm = %d.comm, "{}", d.reason);
        self.sync_tripwire(h.pid);
        scope
    }

    /// Frozen or queued processes that run again though Sentinel did not
    /// resume them (a SIGCONT from a shell, job control): recorded, and
    /// their rule decides again from what they do now.
    pub(super) fn notice_thaws(&mut self) {
        let thawed: Vec<(u32, Scope, String)> = self
            .procs
            .held()
            .filter(|p| matches!(p.state, ProcState::Frozen | ProcState::Queued))
            .filter(|p| self.host.stopped(p.pid, p.start_time) == Some(false))
            .filter_map(|p| p.frozen_for.clone().map(|f| (p.pid, f.scope, f.rule)))
            .collect();
        for (pid, scope, rule) in thawed {
            let why = format!(
                "thawed by someone else (SIGCONT or job control) while Sentinel held it frozen for {}; its rule decides again",
                scope.describe()
            );
            self.record_thaw(pid, scope.kind(), rule, Outcome::Recorded, why);
            let history = self.cfg.agent.history.as_secs_f64();
            let now = self.host.now();
            if let Some(mut p) = self.procs.get_mut(&pid) {
                p.state = ProcState::Running;
                p.frozen_for = None;
                p.acted.remove(&scope);
                p.turns.remove(&scope);
                p.series = Series::new(history);
                let usage = p.usage();
                p.series.push(now, usage);
            }
            self.sync_tripwire(pid);
        }
    }

    /// Frozen processes someone sent SIGKILL: held by the kernel's freezer
    /// they cannot die, so they are thawed and let die, as a stopped one
    /// would have.
    pub(super) fn release_killed(&mut self) {
        let killed: Vec<(u32, Scope, String)> = self
            .procs
            .held()
            .filter(|p| matches!(p.state, ProcState::Frozen | ProcState::Queued))
            .filter(|p| self.host.kill_pending(p.pid))
            .filter_map(|p| p.frozen_for.clone().map(|f| (p.pid, f.scope, f.rule)))
            .collect();
        for (pid, scope, rule) in killed {
            let outcome = self.send_resume(pid);
            if let Some(mut p) = self.procs.get_mut(&pid) {
                p.state = ProcState::Killed;
                p.frozen_for = None;
            }
            let why = format!(
                "killed by someone else (SIGKILL) while frozen for {}: thawed so that it can die",
                scope.describe()
            );
            self.record_thaw(pid, scope.kind(), rule, outcome, why);
        }
    }

    /// A frozen process that runs again: `outcome` says whether Sentinel
    /// thawed it (done, failed) or someone else did (recorded).
    fn record_thaw(
        &mut self,
        pid: u32,
        scope: ScopeKind,
        rule: String,
        outcome: Outcome,
        why: String,
    ) {
        let d = self.note(
            pid,
            DecisionKind::Resume,
            rule,
            None,
            DecisionAction::Resume,
            outcome,
            why,
        );
        self.record_warn(d, scope);
    }

    /// Journals a custody decision at `scope`, and logs it as a warning:
    /// each says something happened to a frozen process that an operator
    /// should hear of.
    fn record_warn(&mut self, d: Decision, scope: ScopeKind) -> Decision {
        let d = self.record(Decision {
            scope: Some(scope),
            ..d
        });
        tracing::warn!(seq = d.seq, pid = d.pid, comm = %d.comm, outcome = %d.outcome, "{}", d.reason);
        d
    }

    /// At a stop: every process Sentinel holds stopped stays so, for the
    /// next start to take back; each is journalled and logged, so the stop
    /// leaves no process frozen without a word.
    pub fn leave_frozen(&mut self) -> Vec<Decision> {
        let stopped: Vec<(u32, Freeze, bool)> = self
            .procs
            .held()
            .filter(|p| matches!(p.state, ProcState::Frozen | ProcState::Queued))
            .filter_map(|p| {
                let f = p.frozen_for.clone()?;
                Some((p.pid, f, p.state == ProcState::Queued))
            })
            .collect();
        let mut out = Vec::new();
        for (pid, f, queued) in stopped {
            let reason = format!(
                "the agent stopped and left it {} (for {} under rule {}); its next start takes it back",
                if queued { "waiting, frozen" } else { "frozen" },
                f.scope.describe(),
                f.rule
            );
            let scope = f.scope.kind();
            let d = self.note(
                pid,
                DecisionKind::Custody,
                f.rule,
                None,
                DecisionAction::LeftFrozen,
                Outcome::Recorded,
                reason,
            );
            out.push(self.record_warn(d, scope));
        }
        out
    }
}
