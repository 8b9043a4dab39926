//! A shared limit (a cgroup's, the host's, a GPU's): the level its usage
//! is at or will reach in time, the member (or tree, or cgroup) driving the
//! growth, and settling after acting before another victim is chosen.

use crate::units::human_bytes;
use std::collections::{HashMap, HashSet};

use super::{
    Engine, GROWTH_WINDOW_SECS, Host, Limit, Scope, ladder::Step, process::time_left,
    table::ProcState,
};
use crate::{
    decision::{Decision, DecisionAction, DecisionKind, Outcome},
    policy::{
        Action, Hysteresis, Level, Trigger, Verdict,
        group::{self, GroupDecision, GroupVictim},
        levels::rung,
    },
};

/// How the members of a shared limit form growers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grouping {
    /// Process trees (a cgroup's limit).
    Trees,
    /// Cgroups as one grower each (the host).
    Cgroups,
    /// Process trees, measured by their memory on this GPU.
    Gpu(u32),
}

/// After acting: the victims whose action must take effect (memory freed,
/// or the process confirmed stopped) before another is chosen, and the
/// time by which it is taken as done regardless.
#[derive(Debug, Clone)]
pub(super) struct Settle {
    pub victims: Vec<u32>,
    pub until: f64,
}

/// A shared limit's state between decisions.
#[derive(Default)]
pub(super) struct ScopeState {
    pub held: Hysteresis,
    pub settle: Option<Settle>,
}

/// A member as the victim choice needs it once the decision is made.
struct Rostered {
    pid: u32,
    root: u32,
    stopped: bool,
    frozen: bool,
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

impl<H: Host> Engine<H> {
    /// A shared limit over `pids`: at the level its usage is at or will
    /// reach in time, act on the member (or tree) driving the growth, not
    /// the biggest; warn once per rise when nobody can be acted on. After
    /// acting, wait until the action took effect.
    pub(super) fn relieve(
        &mut self,
        limit: &Limit,
        usage: u64,
        pids: &[u32],
        grouping: Grouping,
        now: f64,
    ) {
        if usage >= limit.bytes {
            self.hurry_graces_of(&limit.scope, now);
        }
        if self.still_settling(&limit.scope, now) || self.schedule(limit, usage, pids, now) {
            return;
        }
        let (g, roster) = self.decide_group(limit, usage, pids, grouping, now);
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
            self.procs.for_each_mut(|p| {
                p.acted.remove(&limit.scope);
            });
        }
        let Some(g) = g else {
            return;
        };
        let action = rung(g.level, limit.cap);
        let Some(v) = g.victim.as_ref().filter(|_| action > Action::Alert) else {
            if rose {
                self.group_alert(limit, &g, usage);
            }
            return;
        };
        if !v.escalate && self.queue_at_the_line(limit, usage, pids, now) {
            return;
        }
        if !v.escalate && g.level < Level::Kill && self.finishes_in_the_headroom(limit, v.root) {
            return;
        }
        let targets = self.targets(v, &roster, grouping, now);
        self.stop_targets(limit, &g, v, &targets, usage, grouping, now);
        // Settled once confirmed (or at the timeout, or when a grace ends).
        let until = targets
            .iter()
            .filter_map(|p| self.graces.get(p).map(|g| g.deadline))
            .fold(now + self.cfg.agent.settle_timeout.as_secs_f64(), f64::max);
        if let Some(s) = self.scopes.get_mut(&limit.scope) {
            s.settle = Some(Settle {
                victims: targets,
                until,
            });
        }
    }

    /// Whether the last action on `scope` has yet to take effect: then no
    /// other victim is chosen.
    fn still_settling(&mut self, scope: &Scope, now: f64) -> bool {
        let state = self.scopes.entry(scope.clone()).or_default();
        let Some(settle) = state.settle.take() else {
            return false;
        };
        if self.settled(&settle, now) {
            return false;
        }
        if let Some(s) = self.scopes.get_mut(scope) {
            s.settle = Some(settle);
        }
        true
    }

    /// Whether the last action on a shared limit has taken effect: each
    /// victim gone, confirmed stopped, or out of its grace; or time is up.
    fn settled(&self, settle: &Settle, now: f64) -> bool {
        now >= settle.until
            || settle.victims.iter().all(|v| {
                let Some(p) = self.procs.get(v) else {
                    return true;
                };
                match p.state {
                    ProcState::Running => true,
                    // SIGSTOP's `T`, or the freezer's FROZEN (shown as `D`).
                    ProcState::Frozen | ProcState::Queued => {
                        self.host.stopped(*v, p.start_time) == Some(true)
                    }
                    ProcState::Terminating | ProcState::Killed => {
                        self.host.stat(*v).is_none_or(|s| s.dead())
                    }
                }
            })
    }

    /// The pure decision over the group's members, and who each member is
    /// (kept past the members' borrow of the table).
    fn decide_group(
        &self,
        limit: &Limit,
        usage: u64,
        pids: &[u32],
        grouping: Grouping,
        now: f64,
    ) -> (Option<GroupDecision>, Vec<Rostered>) {
        let members = self.group_view(pids, grouping, now);
        let g = group::decide(
            &members,
            usage,
            limit.bytes,
            &limit.levels,
            limit.cap,
            &self.params(),
            GROWTH_WINDOW_SECS,
            now,
        );
        let roster = members
            .iter()
            .map(|m| Rostered {
                pid: m.pid,
                root: m.root,
                stopped: m.stopped,
                frozen: m.frozen,
            })
            .collect();
        (g, roster)
    }

    /// Who of the victim's tree (or cgroup) is acted on: its frozen members
    /// when escalating, else its running ones; a cgroup judged as one
    /// grower at host scope loses only its growing members, never a steady
    /// one.
    fn targets(
        &self,
        v: &GroupVictim,
        roster: &[Rostered],
        grouping: Grouping,
        now: f64,
    ) -> Vec<u32> {
        let by_cgroup = grouping == Grouping::Cgroups;
        roster
            .iter()
            .filter(|m| {
                m.root == v.root
                    && if v.escalate {
                        m.frozen
                    } else {
                        !m.stopped && (!by_cgroup || self.grew_recently(m.pid, now))
                    }
            })
            .map(|m| m.pid)
            .collect()
    }

    /// Takes the ladder's rung on each target, each decision saying why
    /// the scope and this grower.
    #[allow(clippy::too_many_arguments)]
    fn stop_targets(
        &mut self,
        limit: &Limit,
        g: &GroupDecision,
        v: &GroupVictim,
        targets: &[u32],
        usage: u64,
        grouping: Grouping,
        now: f64,
    ) {
        let what = match &limit.scope {
            Scope::Cgroup(path) => {
                format!("cgroup {path} (limit {})", human_bytes(limit.bytes as f64))
            }
            Scope::Gpu(d) => format!("GPU {d} (memory {})", human_bytes(limit.bytes as f64)),
            Scope::GpuProcess { device, pid } => {
                format!(
                    "pid {pid}'s memory on GPU {device} (limit {})",
                    human_bytes(limit.bytes as f64)
                )
            }
            _ => format!("the host (limit {})", human_bytes(limit.bytes as f64)),
        };
        let unit = match self.procs.get(&v.root) {
            Some(p) if grouping == Grouping::Cgroups && p.cgroup.len() > 1 => {
                format!("its cgroup {}", p.cgroup)
            }
            _ => format!("this process (tree {})", v.root),
        };
        let why = if v.escalate {
            "it was frozen for this limit and still holds its memory".to_string()
        } else {
            format!("{unit} has {:.0}% of its recent growth", v.share * 100.0)
        };
        let ttl = time_left(usage, limit.bytes, Some(g.group_slope));
        for pid in targets {
            let trend = match grouping {
                Grouping::Gpu(d) => self.gpu.trend(d, *pid, now),
                _ => self.procs.get(pid).and_then(|p| p.series.trend(now)),
            };
            let verdict = Verdict {
                trigger: g.verdict.trigger,
                reason: format!(
                    "{what} at {} is at or predicted to reach its {} level ({:.0}%); {why}: {}",
                    human_bytes(usage as f64),
                    g.level.as_str(),
                    limit.levels.share(g.level) * 100.0,
                    g.verdict.reason
                ),
            };
            let step = Step {
                limit,
                level: g.level,
                verdict,
                trend,
                ttl,
            };
            self.act(*pid, step, now);
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
        let per_cgroup = if by_cgroup {
            self.per_cgroup(pids)
        } else {
            HashMap::new()
        };
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

    /// The members among `pids` of each cgroup: at host scope a process's
    /// tree is formed within its cgroup.
    pub(super) fn per_cgroup(&self, pids: &[u32]) -> HashMap<&str, HashSet<u32>> {
        let mut m: HashMap<&str, HashSet<u32>> = HashMap::new();
        for p in pids.iter().filter_map(|pid| self.procs.get(pid)) {
            m.entry(&p.cgroup).or_default().insert(p.pid);
        }
        m
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
    fn group_alert(&mut self, limit: &Limit, g: &GroupDecision, usage: u64) {
        // Whom it is about: the top grower, or the protected one driving
        // the growth when nobody else may be acted on.
        let victim = g.victim.as_ref().map(|v| v.root);
        let pid = victim.or(g.protected_grower).unwrap_or(0);
        let (comm, cgroup, protected) = self
            .procs
            .get(&pid)
            .map(|p| (p.comm.clone(), p.cgroup.clone(), p.protected.clone()))
            .unwrap_or_default();
        let cgroup = match &limit.scope {
            Scope::Cgroup(path) => path.clone(),
            _ => cgroup,
        };
        let top = match (victim, pid) {
            (Some(_), _) => format!("the top grower is pid {pid} ({comm})"),
            (None, 0) => "nothing is growing".to_string(),
            (None, _) => format!(
                "its growth is driven by pid {pid} ({comm}), which may not be signalled ({}): nothing was stopped",
                protected
                    .as_deref()
                    .unwrap_or("it grows within its reservation")
            ),
        };
        let d = self.record(Decision {
            time_unix_ms: self.host.wall_ms(),
            kind: DecisionKind::Preempt,
            pid,
            comm,
            cgroup,
            rule: limit.rule.clone(),
            scope: Some(limit.scope.kind()),
            level: Some(g.level),
            action: DecisionAction::Alert,
            outcome: Outcome::Recorded,
            reason: format!(
                "{} at {} reached its {} level ({:.0}% of {}); {top}: {}",
                limit.scope.describe(),
                human_bytes(usage as f64),
                g.level.as_str(),
                limit.levels.share(g.level) * 100.0,
                human_bytes(limit.bytes as f64),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_grouped_below_the_groups_top_process() {
        // top 10 -> worker 20 -> children 30, 31; top 10 -> other 21.
        let g: HashSet<u32> = [10, 20, 21, 30, 31].into_iter().collect();
        assert_eq!(tree_root(30, &[20, 10, 1], &g), 20);
        assert_eq!(tree_root(31, &[20, 10, 1], &g), 20);
        assert_eq!(tree_root(20, &[10, 1], &g), 20);
        assert_eq!(tree_root(21, &[10, 1], &g), 21);
        assert_eq!(tree_root(10, &[1], &g), 10);
        // Started from outside the group (e.g. by a test harness).
        assert_eq!(tree_root(40, &[5, 1], &g), 40);
    }
}
