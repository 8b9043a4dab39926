//! The scheduler at a shared limit (cgroup, host, GPU): when several trees
//! grow together toward the preempt line, just enough of them wait, frozen
//! and queued, for the rest to stay under it (`policy::schedule` chooses
//! whom); as memory frees, the queue resumes one at a time. A queued
//! process is waiting, not failing: no freeze timeout or kill applies to
//! it. Only a tree that grows alone to the line is a runaway, for the
//! rule's ladder.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    Engine, Host, Limit, Scope,
    shared::{Grouping, Settle},
    table::{Freeze, ProcState},
    tree_root,
};
use crate::{
    decision::{Decision, DecisionAction, DecisionKind, Outcome},
    model::Series,
    policy::{
        Action, Level,
        schedule::{Unit, Waiting, at_the_line, plan, to_resume},
    },
};

/// Who waits, as decisions say it.
const WHO_WAITS: &str =
    "the fastest growing (among alike ones, the last started) wait so that the others finish first";

/// The trees of a shared limit and the members of each, as the scheduler
/// sees them.
struct Units {
    units: Vec<Unit>,
    /// Running members of each tree, by root, with their growth now.
    members: BTreeMap<u32, Vec<(u32, f64)>>,
}

/// A process queued at a shared limit, as status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedView {
    pub pid: u32,
    pub comm: String,
    /// The shared limit it waits on, and its rule.
    pub scope: String,
    pub rule: String,
    pub waited_secs: f64,
    /// 1 for the next to resume at its limit.
    pub position: usize,
}

impl<H: Host> Engine<H> {
    fn horizon(&self) -> f64 {
        self.cfg.agent.schedule_horizon.as_secs_f64()
    }

    /// A member's growth now, by the measure of its limit (its memory on
    /// the device, for a GPU).
    fn growth(&self, pid: u32, grouping: Grouping, now: f64) -> f64 {
        let min_confidence = self.params().min_confidence;
        let trend = match grouping {
            Grouping::Gpu(d) => self.gpu.trend(d, pid, now),
            _ => self.procs.get(&pid).and_then(|p| p.series.trend(now)),
        };
        trend
            .filter(|t| t.ongoing && t.confidence >= min_confidence)
            .map_or(0.0, |t| t.bytes_per_sec.max(0.0))
    }

    /// The process trees among `pids` (within their cgroup, at host scope:
    /// there a cgroup is one grower for the victim, but its workers wait
    /// their turn one by one). Members already made to wait at `scope` this
    /// episode (in dry-run they run on) count as waiting.
    fn units(&self, pids: &[u32], grouping: Grouping, scope: &Scope, now: f64) -> Units {
        let all: HashSet<u32> = pids.iter().copied().collect();
        let per_cgroup = if grouping == Grouping::Cgroups {
            self.per_cgroup(pids)
        } else {
            HashMap::new()
        };
        let mut by_root: BTreeMap<u32, Unit> = BTreeMap::new();
        let mut members: BTreeMap<u32, Vec<(u32, f64)>> = BTreeMap::new();
        for p in pids.iter().filter_map(|pid| self.procs.get(pid)) {
            let root = match grouping {
                Grouping::Cgroups => tree_root(p.pid, &p.ancestors, &per_cgroup[p.cgroup.as_str()]),
                _ => tree_root(p.pid, &p.ancestors, &all),
            };
            let u = by_root.entry(root).or_insert(Unit {
                root,
                slope: 0.0,
                priority: p.priority,
                started: p.start_time,
                protected: false,
                admitted: false,
            });
            u.admitted |= p.admitted;
            u.priority = u.priority.min(p.priority);
            u.started = u.started.max(p.start_time);
            u.protected |= p.protected.is_some() || self.within_reservation(p);
            let waits = p.acted.get(scope).is_some_and(|&a| a >= Action::Freeze);
            if p.state == ProcState::Running && !waits {
                let growth = self.growth(p.pid, grouping, now);
                u.slope += growth;
                members.entry(root).or_default().push((p.pid, growth));
            }
        }
        let units = by_root
            .into_values()
            .filter(|u| members.contains_key(&u.root))
            .collect();
        Units { units, members }
    }

    /// Trees that start growing beside others are let run while what runs
    /// stays under the preempt line for the schedule horizon, and queued
    /// otherwise, now, while they hold little. Whether it queued any.
    pub(super) fn schedule(
        &mut self,
        limit: &Limit,
        usage: u64,
        pids: &[u32],
        grouping: Grouping,
        now: f64,
    ) -> bool {
        let horizon = self.horizon();
        if horizon <= 0.0 || limit.cap < Action::Freeze {
            return false;
        }
        let u = self.units(pids, grouping, &limit.scope, now);
        let line = limit.levels.line(Level::Preempt, limit.bytes);
        let plan = plan(&u.units, usage, line, horizon);
        for root in &plan.admit {
            for &(pid, _) in u.members.get(root).into_iter().flatten() {
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.admitted = true;
                }
            }
        }
        if plan.queue.is_empty() {
            return false;
        }
        let growing = u.units.iter().filter(|x| x.slope > 0.0).count();
        let slope: f64 = u.units.iter().map(|x| x.slope).sum();
        let why = format!(
            "{} trees grow together at {:.0} MB/s and would reach its preempt line ({line} B) within {horizon:.0} s; {WHO_WAITS}",
            growing,
            slope / 1e6
        );
        self.queue_trees(limit, &u, &plan.queue, usage, &why, now);
        true
    }

    /// At the line itself: when other trees still grow, the one that waits
    /// is queued rather than preempted. Whether it was.
    pub(super) fn queue_at_the_line(
        &mut self,
        limit: &Limit,
        usage: u64,
        pids: &[u32],
        grouping: Grouping,
        now: f64,
    ) -> bool {
        if self.horizon() <= 0.0 {
            return false;
        }
        let u = self.units(pids, grouping, &limit.scope, now);
        let growing = u.units.iter().filter(|x| x.slope > 0.0).count();
        let Some(root) = at_the_line(&u.units, growing) else {
            return false;
        };
        let why = format!("{growing} trees grow at its preempt line; {WHO_WAITS}");
        self.queue_trees(limit, &u, &[root], usage, &why, now);
        true
    }

    /// Freezes the growing members of each tree in `roots` as queued (all
    /// its running ones when its growth is spread too thin to show in any
    /// one), and settles until they are confirmed stopped.
    fn queue_trees(
        &mut self,
        limit: &Limit,
        u: &Units,
        roots: &[u32],
        usage: u64,
        why: &str,
        now: f64,
    ) {
        let mut victims = Vec::new();
        for root in roots {
            let members = u.members.get(root).map(Vec::as_slice).unwrap_or(&[]);
            let growing: Vec<u32> = members.iter().filter(|m| m.1 > 0.0).map(|m| m.0).collect();
            let pids = if growing.is_empty() {
                members.iter().map(|m| m.0).collect()
            } else {
                growing
            };
            for pid in pids {
                if self.queue_one(pid, limit, usage, why, now) {
                    victims.push(pid);
                }
            }
        }
        let until = now + self.cfg.agent.settle_timeout.as_secs_f64();
        self.scopes.entry(limit.scope.clone()).or_default().settle =
            Some(Settle { victims, until });
    }

    /// SIGSTOP through the pidfd, journalled as waiting for memory.
    fn queue_one(&mut self, pid: u32, limit: &Limit, usage: u64, why: &str, now: f64) -> bool {
        let grouping = match limit.scope {
            Scope::Gpu(d) => Grouping::Gpu(d),
            _ => Grouping::Trees,
        };
        let slope = self.growth(pid, grouping, now);
        let outcome = self.carry_out(pid, Action::Freeze);
        let Some(p) = self.procs.get_mut(&pid) else {
            return false;
        };
        // Once per episode, also in dry-run (where it runs on, counted as
        // waiting) and when the signal failed.
        p.acted.insert(limit.scope.clone(), Action::Freeze);
        let done = outcome == Outcome::Done;
        if done {
            p.state = ProcState::Queued;
            p.frozen_for = Some(Freeze {
                scope: limit.scope.clone(),
                rule: limit.rule.clone(),
                since: now,
                slope,
            });
        }
        let reason = format!(
            "waiting for memory: {} at {usage} B (limit {} B): {why}",
            limit.scope.describe(),
            limit.bytes
        );
        let d = Decision {
            scope: Some(limit.scope.kind()),
            limit_bytes: limit.bytes,
            slope_bytes_per_sec: slope,
            ..self.note(
                pid,
                DecisionKind::Queue,
                limit.rule.clone(),
                Some(Level::Preempt),
                DecisionAction::Freeze,
                outcome,
                reason,
            )
        };
        let d = self.host.record(d);
        tracing::info!(seq = d.seq, pid, comm = %d.comm, rule = %d.rule, outcome = %d.outcome, "{}", d.reason);
        self.sync_tripwire(pid);
        done
    }

    /// The members of a shared limit, as its judgement lists them.
    pub(super) fn members_of(&self, scope: &Scope) -> (Vec<u32>, Grouping) {
        match scope {
            Scope::Cgroup(path) => (
                self.group_members(path).map(|p| p.pid).collect(),
                Grouping::Trees,
            ),
            Scope::Gpu(d) => (self.gpu.pids_on(*d), Grouping::Gpu(*d)),
            _ => {
                let candidates = &self.cfg.host.candidates;
                let pids = self
                    .procs
                    .values()
                    .filter(|p| candidates.as_ref().is_none_or(|c| c.is_match(&p.cgroup)))
                    .map(|p| p.pid)
                    .collect();
                (pids, Grouping::Cgroups)
            }
        }
    }

    /// Resumes, at each limit with a queue, the next queued process when
    /// its growth fits beside what runs, or when nothing there runs and
    /// there is room: one a tick, so each resumed one is judged again.
    pub(super) fn resume_queued(&mut self, now: f64) {
        let mut queues: BTreeMap<Scope, (String, Vec<Waiting>)> = BTreeMap::new();
        for p in self.procs.values().filter(|p| p.state == ProcState::Queued) {
            let Some(f) = &p.frozen_for else { continue };
            queues
                .entry(f.scope.clone())
                .or_insert_with(|| (f.rule.clone(), Vec::new()))
                .1
                .push(Waiting {
                    root: p.pid,
                    priority: p.priority,
                    since: f.since,
                    slope: f.slope,
                });
        }
        for (scope, (rule, waiting)) in queues {
            let Ok(s) = self.standing(waiting[0].root, &scope, &rule) else {
                // Its rule or limit is gone: nothing to wait for.
                for w in &waiting {
                    self.resume_from_queue(w.root, &scope, "the limit it waited for is gone", now);
                }
                continue;
            };
            let (pids, grouping) = self.members_of(&scope);
            let running: Vec<u32> = pids
                .into_iter()
                .filter(|pid| {
                    self.procs
                        .get(pid)
                        .is_some_and(|p| p.state == ProcState::Running)
                })
                .collect();
            let slope: f64 = running
                .iter()
                .map(|&pid| self.growth(pid, grouping, now))
                .sum();
            let line = s.levels.line(Level::Preempt, s.limit);
            let idle = running.is_empty();
            if let Some(pid) = to_resume(&waiting, s.usage, line, slope, idle, self.horizon()) {
                let why = format!(
                    "{} at {} B with {:.0} MB/s growing beside it leaves room below its preempt line ({line} B)",
                    scope.describe(),
                    s.usage,
                    slope / 1e6
                );
                self.resume_from_queue(pid, &scope, &why, now);
            }
        }
    }

    /// SIGCONT for a queued process, its story started afresh.
    fn resume_from_queue(&mut self, pid: u32, scope: &Scope, why: &str, now: f64) {
        let outcome = self.send_resume(pid);
        let history = self.cfg.agent.history.as_secs_f64();
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        let Some(f) = p.frozen_for.take() else {
            return;
        };
        p.state = ProcState::Running;
        p.admitted = true;
        // It may have to wait again, or be the runaway, this episode.
        p.acted.remove(scope);
        // What it grew before it waited says nothing about now.
        p.series = Series::new(history);
        let usage = p.usage();
        p.series.push(now, usage);
        let d = Decision {
            scope: Some(scope.kind()),
            ..self.note(
                pid,
                DecisionKind::Resume,
                f.rule,
                None,
                DecisionAction::Resume,
                outcome,
                format!(
                    "its turn after waiting {:.1} s for memory: {why}",
                    now - f.since
                ),
            )
        };
        let d = self.host.record(d);
        tracing::info!(seq = d.seq, pid, comm = %d.comm, "{}", d.reason);
        self.sync_tripwire(pid);
    }

    /// Every queued process, by limit, in the order they resume.
    pub fn queue_views(&self) -> Vec<QueuedView> {
        let now = self.host.now();
        let mut v: Vec<(String, i32, f64, QueuedView)> = self
            .procs
            .values()
            .filter(|p| p.state == ProcState::Queued)
            .filter_map(|p| {
                let f = p.frozen_for.as_ref()?;
                let view = QueuedView {
                    pid: p.pid,
                    comm: p.comm.clone(),
                    scope: f.scope.describe(),
                    rule: f.rule.clone(),
                    waited_secs: (now - f.since).max(0.0),
                    position: 0,
                };
                Some((view.scope.clone(), -p.priority, f.since, view))
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.total_cmp(&b.2)));
        let mut out: Vec<QueuedView> = Vec::new();
        for (scope, _, _, mut view) in v {
            view.position = 1 + out.iter().filter(|q| q.scope == scope).count();
            out.push(view);
        }
        out
    }
}
