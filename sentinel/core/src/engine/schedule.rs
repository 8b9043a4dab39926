//! The scheduler at a shared limit (cgroup, host, GPU): when several trees
//! grow together toward the preempt line, just enough of them wait, frozen
//! and queued, for the rest to stay under it (`policy::schedule` chooses
//! whom); as memory frees, the queue resumes one at a time. A queued
//! process is waiting, not failing: no freeze timeout or kill applies to
//! it. Only a tree that grows alone to the line is a runaway, for the
//! rule's ladder.

use crate::units::human_bytes;
use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    Engine, Host, Limit, Scope,
    shared::{Grouping, Settle},
    table::{Freeze, ProcState, Turn},
    tree_root,
};
use crate::{
    decision::{Decision, DecisionAction, DecisionKind, Outcome},
    policy::{
        Action, Level,
        schedule::{Unit, at_the_line, plan},
    },
};

/// Who waits, as decisions say it.
const WHO_WAITS: &str =
    "the fastest growing (among alike ones, the last started) wait so that the others finish first";

/// Growth that would take a limit less than this share of the way over a
/// schedule horizon is steady, for the scheduler: a daemon's trickle
/// beside a runaway does not make a stampede.
pub(super) const STEADY_SHARE: f64 = 0.01;

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

/// How the members of `scope` are measured.
fn grouping_of(scope: &Scope) -> Grouping {
    match scope {
        Scope::Gpu(d) => Grouping::Gpu(*d),
        Scope::Host => Grouping::Cgroups,
        _ => Grouping::Trees,
    }
}

impl<H: Host> Engine<H> {
    pub(super) fn horizon(&self) -> f64 {
        self.cfg.agent.schedule_horizon.as_secs_f64()
    }

    /// A member's growth now, by the measure of its limit (its memory on
    /// the device, for a GPU). For a horizon after it was let run at
    /// `scope`, at least as fast as it grew then: a resumed worker's first
    /// samples are too few to tell its pace, and a busy CPU leaves gaps in
    /// anyone's. Unless it has been quiet for a tenth of the horizon: then
    /// it finished its climb, and its old pace would hold a place it no
    /// longer takes.
    pub(super) fn rate(&self, pid: u32, scope: &Scope, now: f64) -> f64 {
        let min_confidence = self.params().min_confidence;
        let (trend, sampled) = match scope {
            Scope::Gpu(d) => (self.gpu.trend(*d, pid, now), self.gpu.last_sampled(*d, pid)),
            _ => {
                let series = self.procs.get(&pid).map(|p| &p.series);
                (
                    series.and_then(|s| s.trend(now)),
                    series.and_then(|s| s.last()).map(|l| l.t),
                )
            }
        };
        let measured = trend
            .filter(|t| t.ongoing && t.confidence >= min_confidence)
            .map_or(0.0, |t| t.bytes_per_sec.max(0.0));
        let quiet = sampled.map_or(f64::INFINITY, |at| now - at);
        let finished = quiet >= self.horizon() / 10.0 && trend.is_none_or(|t| !t.ongoing);
        let credit = self
            .procs
            .get(&pid)
            .and_then(|p| p.turns.get(scope))
            .filter(|t| !t.would_wait && !finished && now - t.since < self.horizon())
            .map_or(0.0, |t| t.slope);
        measured.max(credit)
    }

    /// What a member holds against `scope`'s limit.
    pub(super) fn holds(&self, pid: u32, scope: &Scope) -> u64 {
        match scope {
            Scope::Gpu(d) => self.gpu.last_bytes(*d, pid).unwrap_or(0),
            _ => self.procs.get(&pid).map_or(0, |p| p.mem.charged()),
        }
    }

    /// The process trees among `pids` (within their cgroup, at host scope:
    /// there a cgroup is one grower for the victim, but its workers wait
    /// their turn one by one). A member that in dry-run would wait counts
    /// as waiting.
    fn units(&self, pids: &[u32], limit: &Limit, now: f64) -> Units {
        let scope = &limit.scope;
        let grouping = grouping_of(scope);
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
            let turn = p.turns.get(scope);
            let u = by_root.entry(root).or_insert(Unit {
                root,
                slope: 0.0,
                priority: p.priority,
                started: p.start_time,
                protected: false,
                admitted: false,
            });
            u.admitted |= turn.is_some_and(|t| !t.would_wait);
            u.priority = u.priority.min(p.priority);
            u.started = u.started.max(p.start_time);
            u.protected |= p.protected.is_some() || self.within_reservation(p);
            if p.state == ProcState::Running && !turn.is_some_and(|t| t.would_wait) {
                let growth = self.rate(p.pid, scope, now);
                u.slope += growth;
                members.entry(root).or_default().push((p.pid, growth));
            }
        }
        let steady = STEADY_SHARE * limit.bytes as f64 / self.horizon().max(1e-9);
        let units = by_root
            .into_values()
            .filter(|u| members.contains_key(&u.root))
            .map(|mut u| {
                if u.slope < steady {
                    u.slope = 0.0;
                }
                u
            })
            .collect();
        Units { units, members }
    }

    /// Trees that start growing beside others are let run while what runs
    /// stays under the preempt line for the schedule horizon, and queued
    /// otherwise, now, while they hold little. Whether it queued any.
    pub(super) fn schedule(&mut self, limit: &Limit, usage: u64, pids: &[u32], now: f64) -> bool {
        let horizon = self.horizon();
        if horizon <= 0.0 || limit.cap < Action::Freeze {
            return false;
        }
        let u = self.units(pids, limit, now);
        let line = limit.levels.line(Level::Preempt, limit.bytes);
        let plan = plan(&u.units, usage, line, horizon);
        // A turn starts once: renewed at every pass, its credit would
        // outlive the growth it stands for.
        for root in &plan.admit {
            for &(pid, slope) in u.members.get(root).into_iter().flatten() {
                if let Some(mut p) = self.procs.get_mut(&pid) {
                    p.turns.entry(limit.scope.clone()).or_insert(Turn {
                        since: now,
                        slope,
                        would_wait: false,
                        trial: false,
                    });
                }
            }
        }
        if plan.queue.is_empty() {
            return false;
        }
        let growing = u.units.iter().filter(|x| x.slope > 0.0).count();
        let slope: f64 = u.units.iter().map(|x| x.slope).sum();
        let why = format!(
            "{} trees grow together at {:.0} MB/s and would reach its preempt line ({}) within {horizon:.0} s; {WHO_WAITS}",
            growing,
            slope / 1e6,
            human_bytes(line as f64)
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
        now: f64,
    ) -> bool {
        if self.horizon() <= 0.0 {
            return false;
        }
        let u = self.units(pids, limit, now);
        let growing = u.units.iter().filter(|x| x.slope > 0.0).count();
        let Some(root) = at_the_line(&u.units, growing) else {
            return false;
        };
        let why = format!("{growing} trees grow at its preempt line; {WHO_WAITS}");
        self.queue_trees(limit, &u, &[root], usage, &why, now);
        true
    }

    /// The last tree of a stampede still growing at the preempt line while
    /// others wait their turn there: the scheduler let it run because it
    /// fit (not as a trial), and stopping it too would leave every worker
    /// holding memory and none finishing. It runs on into the headroom
    /// above the line; at the kill level the ladder takes it, as a runaway.
    pub(super) fn finishes_in_the_headroom(&self, limit: &Limit, root: u32) -> bool {
        let scope = &limit.scope;
        let let_run = self.procs.values().any(|p| {
            (p.pid == root || p.ancestors.contains(&root))
                && p.turns
                    .get(scope)
                    .is_some_and(|t| !t.would_wait && !t.trial)
        });
        let others_wait = self.procs.held().any(|p| {
            p.state == ProcState::Queued && p.frozen_for.as_ref().is_some_and(|f| &f.scope == scope)
        });
        let_run && others_wait
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
            let growing: Vec<(u32, f64)> = members.iter().copied().filter(|m| m.1 > 0.0).collect();
            let pids = if growing.is_empty() {
                members
            } else {
                &growing
            };
            for &(pid, slope) in pids {
                if self.queue_one(pid, slope, limit, usage, why, now) {
                    victims.push(pid);
                }
            }
        }
        let until = now + self.cfg.agent.settle_timeout.as_secs_f64();
        self.scopes.entry(limit.scope.clone()).or_default().settle =
            Some(Settle { victims, until });
    }

    /// SIGSTOP through the pidfd, journalled as waiting for memory.
    fn queue_one(
        &mut self,
        pid: u32,
        slope: f64,
        limit: &Limit,
        usage: u64,
        why: &str,
        now: f64,
    ) -> bool {
        let outcome = self.carry_out(pid, Action::Freeze);
        let Some(mut p) = self.procs.get_mut(&pid) else {
            return false;
        };
        let done = outcome == Outcome::Done;
        if done {
            p.state = ProcState::Queued;
            p.turns.remove(&limit.scope);
            p.frozen_for = Some(Freeze {
                scope: limit.scope.clone(),
                rule: limit.rule.clone(),
                since: now,
                slope,
            });
        } else {
            // Dry-run, or a signal that failed: decided once, not at every
            // sample; it runs on, counted as waiting.
            let turn = Turn {
                since: now,
                slope,
                would_wait: true,
                trial: false,
            };
            p.turns.insert(limit.scope.clone(), turn);
        }
        drop(p);
        let reason = format!(
            "waiting for memory: {} at {} (limit {}): {why}",
            limit.scope.describe(),
            human_bytes(usage as f64),
            human_bytes(limit.bytes as f64)
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
        let d = self.record(d);
        tracing::info!(seq = d.seq, pid, comm = %d.comm, rule = %d.rule, outcome = %d.outcome, "{}", d.reason);
        self.sync_tripwire(pid);
        done
    }
}
