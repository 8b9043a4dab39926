//! Process scope: a new memory reading, the process's own rule, and the
//! kernel's tripwire stopping it first.

use super::{Engine, Host, Limit, Scope, ladder::Step, table::ProcState};
use crate::{
    model::{Mem, seconds_to_limit},
    policy::{
        Action, Level, Trigger, Verdict,
        levels::{assess, rung},
    },
};

/// Seconds until `usage` reaches `limit` at `slope`: zero when already
/// there, `None` when not growing toward it.
pub(super) fn time_left(usage: u64, limit: u64, slope: Option<f64>) -> Option<f64> {
    if usage >= limit {
        Some(0.0)
    } else {
        seconds_to_limit(usage, limit, slope.unwrap_or(0.0))
    }
}

impl<H: Host> Engine<H> {
    /// A new memory reading for `pid` at monotonic time `t`. Readings older
    /// than the last one are dropped: after a tripwire jumps the queue, the
    /// samples from before it must not overwrite what the kernel saw last.
    pub fn observe(&mut self, pid: u32, mem: Mem, t: f64) {
        let known = self.procs.contains_key(&pid);
        let Some(mut p) = self.discover(pid) else {
            return;
        };
        if p.series.last().is_some_and(|l| l.t > t) {
            return;
        }
        let before = p.mem.charged();
        p.mem = mem;
        let usage = p.usage();
        p.series.push(t, usage);
        let delta = (mem.charged() as i64).saturating_sub(before as i64);
        drop(p);
        if known {
            self.host_state.drift = self.host_state.drift.saturating_add(delta);
        }
        self.evaluate(pid, t);
        self.evaluate_group(pid, t);
        if delta > 0 {
            self.maybe_evaluate_host(t);
        }
    }

    /// Process scope: the process's own rule.
    fn evaluate(&mut self, pid: u32, now: f64) {
        let params = self.params();
        let Some(mut p) = self.procs.get_mut(&pid) else {
            return;
        };
        let Some(ri) = p.rule else {
            return;
        };
        let limit = Limit::of_rule(&self.cfg.rules[ri]);
        let usage = p.usage();
        match p.state {
            ProcState::Killed => return,
            ProcState::Terminating => {
                // Still running its SIGTERM handler: at the limit the grace
                // is over.
                if usage >= limit.bytes && self.graces.contains_key(&pid) {
                    drop(p);
                    self.hurry_grace(pid, now);
                }
                return;
            }
            _ => {}
        }
        // A stopped process is where it is: its old growth forecasts nothing.
        let trend = match p.state {
            ProcState::Running => p.series.trend(now),
            _ => None,
        };
        let assessed = assess(usage, limit.bytes, trend.as_ref(), &limit.levels, &params);
        p.held.update(
            assessed.as_ref().map(|a| a.0),
            usage,
            limit.bytes,
            &limit.levels,
        );
        if p.held.level == Level::Normal {
            // Cleared: a later rise is a new episode, warned about again.
            p.acted.remove(&Scope::Process);
        }
        drop(p);
        let Some((level, verdict)) = assessed else {
            return;
        };
        let ttl = time_left(usage, limit.bytes, trend.map(|t| t.bytes_per_sec));
        let step = Step {
            limit: &limit,
            level,
            verdict,
            trend,
            ttl,
        };
        self.act(pid, step, now);
    }

    /// The kernel stopped `pid` at its ceiling (SIGSTOP from the faulting
    /// task's context). Finish the decision: at least the preempt level,
    /// higher if its usage says so.
    pub(super) fn on_tripwire(&mut self, pid: u32, mem: Mem, ceiling: u64, t: f64) {
        let params = self.params();
        let Some(mut p) = self.procs.get_mut(&pid) else {
            return;
        };
        p.mem = mem;
        let usage = p.usage();
        p.series.push(t, usage);
        if p.state != ProcState::Running {
            return; // userspace acted first
        }
        let Some(ri) = p.rule else {
            return;
        };
        let trend = p.series.trend(t);
        let rule = &self.cfg.rules[ri];
        // Stopped: where it is decides, not where its growth was heading.
        let level = assess(usage, rule.limit_bytes, None, &rule.levels, &params)
            .map(|a| a.0)
            .unwrap_or(Level::Preempt)
            .max(Level::Preempt);
        p.held
            .update(Some(level), usage, rule.limit_bytes, &rule.levels);
        if rung(level, rule.action) > Action::Freeze {
            // Past freezing: it is frozen already (by the kernel), so it is
            // killed outright rather than let run to handle SIGTERM.
            p.state = ProcState::Frozen;
            p.frozen_for = Some(super::table::Freeze {
                scope: Scope::Process,
                rule: rule.name.clone(),
                since: t,
                slope: trend.map_or(0.0, |t| t.bytes_per_sec),
            });
        }
        drop(p);
        let verdict = Verdict {
            trigger: Trigger::Tripwire {
                ceiling_bytes: ceiling,
            },
            reason: format!(
                "in-kernel tripwire stopped it at {usage} bytes (ceiling {ceiling}, limit {}): it grew faster than the agent could react",
                rule.limit_bytes
            ),
        };
        let limit = Limit::of_rule(rule);
        let step = Step {
            limit: &limit,
            level,
            verdict,
            trend,
            ttl: Some(0.0),
        };
        self.act(pid, step, t);
    }
}
