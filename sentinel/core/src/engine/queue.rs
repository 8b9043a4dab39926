//! The queue at each shared limit: who waits, in what order, and when the
//! next one resumes (`policy::schedule::to_resume`), one a tick, so that
//! each resumed one is judged again before the next.

use crate::units::human_bytes;
use std::collections::BTreeMap;

use super::{
    Engine, Host, Scope,
    table::{Freeze, ProcState, Turn},
};
use crate::{
    decision::{Decision, DecisionAction, DecisionKind},
    model::Series,
    policy::{
        Action, Level,
        schedule::{Resume, Room, Waiting, progress, to_resume},
    },
};

pub use super::schedule::QueuedView;

/// How long, in schedule horizons, the next in line waits for the trees
/// let run to end before it tries anyway: long enough for a stampede's
/// workers to finish, short enough that a long-lived process started with
/// them does not hold the queue for good.
const PATIENCE_HORIZONS: f64 = 3.0;

/// After a start, how long the queue waits before letting anyone in: a
/// restarted agent knows nothing yet of how fast the workers it left
/// running grow, and would take them for idle.
const WARM_UP_SECS: f64 = 1.0;

impl<H: Host> Engine<H> {
    /// The members of a shared limit, as its judgement lists them.
    fn members_of(&self, scope: &Scope) -> Vec<u32> {
        match scope {
            Scope::Cgroup(path) => self.group_members(path).map(|p| p.pid).collect(),
            Scope::Gpu(d) => self.gpu.pids_on(*d),
            _ => {
                let candidates = &self.cfg.host.candidates;
                self.procs
                    .values()
                    .filter(|p| candidates.as_ref().is_none_or(|c| c.is_match(&p.cgroup)))
                    .map(|p| p.pid)
                    .collect()
            }
        }
    }

    /// Where `scope` stands for its queue, or why its queue is released:
    /// the limit or rule is gone, or the rule no longer freezes.
    fn room(&self, scope: &Scope, rule: &str, any: u32, now: f64) -> Result<Room, String> {
        let s = self.standing(any, scope, rule)?;
        if self.cap_of(scope, rule).is_none_or(|c| c < Action::Freeze) {
            return Err(format!("rule `{rule}` no longer freezes"));
        }
        let steady = super::schedule::STEADY_SHARE * s.limit as f64 / self.horizon().max(1e-9);
        let (mut running_slope, mut workers_hold, mut idle) = (0.0, 0, true);
        for pid in self.members_of(scope) {
            let Some(p) = self.procs.get(&pid) else {
                continue;
            };
            if p.state != ProcState::Running {
                continue;
            }
            idle = false;
            let rate = self.rate(pid, scope, now);
            if rate >= steady {
                running_slope += rate;
            }
            if p.turns.get(scope).is_some_and(|t| !t.would_wait) {
                workers_hold += self.holds(pid, scope);
            }
        }
        Ok(Room {
            usage: s.usage,
            line: s.levels.line(Level::Preempt, s.limit),
            running_slope,
            workers_hold,
            idle,
        })
    }

    /// Resumes, at each limit with a queue, the next queued process when
    /// `policy::schedule::to_resume` says so; all of them when the queue is
    /// released (its limit or rule gone, or the rule no longer freezes), and
    /// any that became protected.
    pub(super) fn resume_queued(&mut self, now: f64) {
        let mut queues: BTreeMap<Scope, (String, Vec<Waiting>)> = BTreeMap::new();
        let mut protected = Vec::new();
        for p in self.procs.held().filter(|p| p.state == ProcState::Queued) {
            let Some(f) = &p.frozen_for else { continue };
            if p.protected.is_some() {
                protected.push(p.pid);
                continue;
            }
            queues
                .entry(f.scope.clone())
                .or_insert_with(|| (f.rule.clone(), Vec::new()))
                .1
                .push(Waiting {
                    root: p.pid,
                    priority: p.priority,
                    since: f.since,
                    slope: f.slope,
                    held: self.holds(p.pid, &f.scope),
                });
        }
        for pid in protected {
            self.resume_from_queue(pid, "it is protected now", true, now);
        }
        if self.started_at.is_some_and(|t| now - t < WARM_UP_SECS) {
            return;
        }
        for (scope, (rule, waiting)) in queues {
            let room = match self.room(&scope, &rule, waiting[0].root, now) {
                Ok(r) => r,
                Err(why) => {
                    for w in &waiting {
                        self.resume_from_queue(w.root, &why, true, now);
                    }
                    continue;
                }
            };
            let patience = PATIENCE_HORIZONS * self.horizon();
            if let Some((pid, resume)) = to_resume(&waiting, &room, self.horizon(), now, patience) {
                let why = resume_reason(&scope, &room, resume);
                self.resume_from_queue(pid, &why, resume.is_trial(), now);
            }
        }
    }

    /// SIGCONT for a queued process, let run at its limit from now on.
    fn resume_from_queue(&mut self, pid: u32, why: &str, trial: bool, now: f64) {
        let outcome = self.send_resume(pid);
        let Some(f) = self.leave_queue(pid, trial, now) else {
            return;
        };
        let d = Decision {
            scope: Some(f.scope.kind()),
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
        let d = self.record(d);
        tracing::info!(seq = d.seq, pid, comm = %d.comm, "{}", d.reason);
        self.sync_tripwire(pid);
    }

    /// A queued process runs again (resumed by the queue or an operator):
    /// let run at its limit, its growth counted at its old rate until its
    /// samples show it; what it grew before it waited says nothing about
    /// now. A `trial` did not resume because it fit. What it waited for.
    pub(super) fn leave_queue(&mut self, pid: u32, trial: bool, now: f64) -> Option<Freeze> {
        let history = self.cfg.agent.history.as_secs_f64();
        let mut p = self.procs.get_mut(&pid)?;
        let f = p.frozen_for.take()?;
        p.state = ProcState::Running;
        let turn = Turn {
            since: now,
            slope: f.slope,
            would_wait: false,
            trial,
        };
        p.turns.insert(f.scope.clone(), turn);
        p.acted.remove(&f.scope);
        p.series = Series::new(history);
        let usage = p.usage();
        p.series.push(now, usage);
        Some(f)
    }

    /// Every queued process, by limit, in the order they resume.
    pub fn queue_views(&self) -> Vec<QueuedView> {
        let now = self.host.now();
        type Key = (String, std::cmp::Reverse<i32>, std::cmp::Reverse<u64>, f64);
        let mut v: Vec<(Key, QueuedView)> = self
            .procs
            .held()
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
                // The order `to_resume` takes them in.
                let key = (
                    view.scope.clone(),
                    std::cmp::Reverse(p.priority),
                    std::cmp::Reverse(progress(self.holds(p.pid, &f.scope))),
                    f.since,
                );
                Some((key, view))
            })
            .collect();
        v.sort_by(|(a, _), (b, _)| {
            (&a.0, &a.1, &a.2)
                .cmp(&(&b.0, &b.1, &b.2))
                .then(a.3.total_cmp(&b.3))
        });
        let mut out: Vec<QueuedView> = Vec::new();
        for ((scope, ..), mut view) in v {
            view.position = 1 + out.iter().filter(|q| q.scope == scope).count();
            out.push(view);
        }
        out
    }
}

/// Why the next in line resumes, as its decision says it.
fn resume_reason(scope: &Scope, room: &Room, resume: Resume) -> String {
    let at = format!("{} at {}", scope.describe(), human_bytes(room.usage as f64));
    let line = human_bytes(room.line as f64);
    match resume {
        Resume::Fits => format!(
            "{at}, {:.0} MB/s growing beside it, leaves room below its preempt line ({line})",
            room.running_slope / 1e6
        ),
        Resume::Hopeless => format!(
            "{at}, nothing growing beside it and waiting longer would not make room for its pace: it runs to show whether it fits (alone at the preempt line, {line}, it is a runaway)"
        ),
        Resume::Idle => format!(
            "{at}, nothing else running there: it runs to show whether it fits (alone at the preempt line, {line}, it is a runaway)"
        ),
    }
}
