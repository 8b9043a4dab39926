//! The action ladder on one process: freeze, terminate with a grace taken
//! from the forecast, kill; each rung taken once per scope and episode,
//! graces that end in SIGKILL, and freezes that run out.

use super::{Engine, Host, Limit, Scope, Signal, table::Freeze, table::ProcState};
use crate::{
    decision::{Decision, DecisionKind, Outcome},
    model::Trend,
    policy::{
        Action, Level, Levels, Trigger, Verdict,
        levels::{grace_secs, rung},
    },
};

/// A SIGKILL due after an unanswered SIGTERM.
#[derive(Debug, Clone)]
pub(super) struct Grace {
    pub deadline: f64,
    pub scope: Scope,
    pub rule: String,
}

/// One call for the ladder: the limit, the level it is at (or will reach
/// in time), why, and the forecast that sizes a grace.
pub(super) struct Step<'a> {
    pub limit: &'a Limit,
    pub level: Level,
    pub verdict: Verdict,
    pub trend: Option<Trend>,
    /// Seconds the forecast leaves until the limit.
    pub ttl: Option<f64>,
}

/// The signal that carries out a rung (an alert signals nothing).
fn signal_of(action: Action) -> Option<Signal> {
    match action {
        Action::Alert => None,
        Action::Freeze => Some(Signal::Freeze),
        Action::Terminate => Some(Signal::Terminate),
        Action::Kill => Some(Signal::Kill),
    }
}

impl<H: Host> Engine<H> {
    /// Takes the ladder's rung for the step's level (capped by the limit's
    /// rule) on `pid`, unless that rung or a higher one was already taken
    /// for this scope, or the process is already there. A kill with time
    /// left before the limit (the forecast) starts as SIGTERM with that time
    /// as its grace; a frozen process is killed outright, since letting it
    /// run to handle SIGTERM would let it grow again.
    pub(super) fn act(&mut self, pid: u32, step: Step<'_>, now: f64) {
        let Some((action, grace)) = self.rung_for(pid, &step) else {
            return;
        };
        let outcome = self.carry_out(pid, action);
        let Some(mut p) = self.procs.get_mut(&pid) else {
            return;
        };
        let failed = outcome.failed();
        let limit = step.limit;
        p.acted.insert(limit.scope.clone(), action);
        if outcome == Outcome::Done
            && let Some(state) = match action {
                Action::Alert => None,
                Action::Freeze => Some(ProcState::Frozen),
                Action::Terminate => Some(ProcState::Terminating),
                Action::Kill => Some(ProcState::Killed),
            }
        {
            p.state = state;
        }
        if action == Action::Freeze {
            p.frozen_for = Some(Freeze {
                scope: limit.scope.clone(),
                rule: limit.rule.clone(),
                since: now,
                slope: step.trend.map_or(0.0, |t| t.bytes_per_sec),
            });
        }
        let mut reason = step.verdict.reason.clone();
        if let Some(why) = &p.protected {
            reason = format!("{reason}; protected ({why}), so only alerted");
        }
        drop(p);
        if let Some(g) = grace
            && self.cap_for(pid, limit) == Action::Kill
            && !failed
        {
            self.graces.insert(
                pid,
                Grace {
                    deadline: now + g,
                    scope: limit.scope.clone(),
                    rule: limit.rule.clone(),
                },
            );
            self.host.grace_started();
            reason = format!("{reason}; SIGKILL in {g:.1} s unless it exits first");
        }
        let crash_loop =
            action >= Action::Freeze && !failed && self.count_crash_loop(pid, now, &mut reason);
        self.journal_step(pid, &step, action, outcome, reason, crash_loop);
        // A process no longer running must not keep an armed ceiling.
        self.sync_tripwire(pid);
    }

    /// How far a protected process may go (nowhere), or the limit's cap.
    fn cap_for(&self, pid: u32, limit: &Limit) -> Action {
        match self.procs.get(&pid) {
            Some(p) if p.protected.is_some() => Action::Alert,
            _ => limit.cap,
        }
    }

    /// The rung the step calls for, and the grace a kill starts with;
    /// `None` when it (or a higher one) was taken already.
    fn rung_for(&self, pid: u32, step: &Step<'_>) -> Option<(Action, Option<f64>)> {
        let p = self.procs.get(&pid)?;
        let horizon = self.cfg.agent.reaction_horizon.as_secs_f64();
        let max_grace = self.cfg.agent.max_grace.as_secs_f64();
        let mut action = rung(step.level, self.cap_for(pid, step.limit));
        let mut grace = None;
        if action == Action::Kill
            && p.state == ProcState::Running
            && let Some(g) = grace_secs(step.ttl, horizon, max_grace)
        {
            action = Action::Terminate;
            grace = Some(g);
        }
        let taken = p.acted.get(&step.limit.scope).is_some_and(|&a| a >= action)
            || (action > Action::Alert && p.state.rung().is_some_and(|a| a >= action));
        (!taken).then_some((action, grace))
    }

    /// Signals the rung through the process's handle (in dry-run, decides
    /// only). After a tripwire the kernel has already sent SIGSTOP; sending
    /// it again costs nothing and does not rely on that.
    pub(super) fn carry_out(&mut self, pid: u32, action: Action) -> Outcome {
        let Some(signal) = signal_of(action) else {
            return Outcome::Recorded;
        };
        let dry_run = self.cfg.agent.dry_run;
        let Some(mut p) = self.procs.get_mut(&pid) else {
            return Outcome::Failed("the process is gone".into());
        };
        if p.pidfd.is_none() {
            // Opened late (a group victim no per-process rule governs), but
            // still checked against the start time seen at discovery.
            p.pidfd = self.host.open_pidfd(p.pid, p.start_time).ok();
        }
        match &p.pidfd {
            None => Outcome::Failed("no pidfd for the process (it may have exited)".into()),
            Some(_) if dry_run => Outcome::DryRun,
            Some(fd) => match self.host.signal(fd, signal) {
                Ok(()) => Outcome::Done,
                Err(e) => Outcome::Failed(e),
            },
        }
    }

    /// Counts a process's first stop toward its command line's crash loop;
    /// whether that makes it one (and says so in `reason`).
    fn count_crash_loop(&mut self, pid: u32, now: f64, reason: &mut String) -> bool {
        let Some(mut p) = self.procs.get_mut(&pid) else {
            return false;
        };
        if p.loop_counted {
            return false;
        }
        p.loop_counted = true;
        let cmdline = Some(self.host.cmdline(pid))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| p.comm.clone());
        let Some(n) = self.restarts.record(&cmdline, now) else {
            return false;
        };
        *reason = format!(
            "{reason}; crash-looping: `{cmdline}` preempted {n} times within {:.0} s",
            self.cfg.agent.crash_loop.window_secs
        );
        true
    }

    fn journal_step(
        &mut self,
        pid: u32,
        step: &Step<'_>,
        action: Action,
        outcome: Outcome,
        reason: String,
        crash_loop: bool,
    ) {
        let Some(p) = self.procs.get(&pid) else {
            return;
        };
        let limit = step.limit;
        let d = self.record(Decision {
            seq: 0,
            time_unix_ms: self.host.wall_ms(),
            kind: DecisionKind::Preempt,
            pid,
            start_time: p.start_time,
            comm: p.comm.clone(),
            cgroup: p.cgroup.clone(),
            rule: limit.rule.clone(),
            scope: Some(limit.scope.kind()),
            level: Some(step.level),
            action: action.into(),
            outcome,
            reason,
            resident_bytes: p.mem.resident(),
            // What the limit applies to: memory on the device for a GPU.
            charged_bytes: match limit.scope {
                Scope::Gpu(d) => self
                    .gpu
                    .last_bytes(d, pid)
                    .unwrap_or_else(|| p.mem.charged()),
                _ => p.mem.charged(),
            },
            slope_bytes_per_sec: step.trend.map(|t| t.bytes_per_sec).unwrap_or(0.0),
            limit_bytes: limit.bytes,
            predicted_seconds_to_limit: match step.verdict.trigger {
                Trigger::Predicted { seconds_to_limit } => Some(seconds_to_limit),
                Trigger::Crossed | Trigger::Tripwire { .. } => None,
            },
            crash_loop,
        });
        tracing::warn!(
            seq = d.seq, pid, comm = %d.comm, rule = %d.rule, level = d.level.map_or("", Level::as_str),
            action = %d.action, outcome = %d.outcome, "{}", d.reason
        );
    }

    /// Takes the kill level's rung (capped at `cap`) on `pid` now, with no
    /// grace: the end of a grace or of a freeze.
    fn finish(&mut self, pid: u32, scope: Scope, rule: String, cap: Action, why: String, now: f64) {
        let limit = Limit {
            scope,
            rule,
            bytes: 0,
            levels: Levels::default(),
            cap,
        };
        let step = Step {
            limit: &limit,
            level: Level::Kill,
            verdict: Verdict {
                trigger: Trigger::Crossed,
                reason: why,
            },
            trend: None,
            ttl: Some(0.0),
        };
        self.act(pid, step, now);
    }

    /// SIGKILL for processes that did not exit within their grace.
    /// Ends the graces that are due; whether any are left.
    pub fn expire_graces(&mut self, now: f64) -> bool {
        if self.graces.is_empty() {
            return false;
        }
        let due: Vec<u32> = self
            .graces
            .iter()
            .filter(|(_, g)| now >= g.deadline)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in due {
            self.end_grace(pid, "it did not exit within its grace after SIGTERM", now);
        }
        !self.graces.is_empty()
    }

    /// Its scope reached the limit during the grace: kill now.
    pub(super) fn hurry_grace(&mut self, pid: u32, now: f64) {
        self.end_grace(
            pid,
            "it reached the limit during its grace after SIGTERM",
            now,
        );
    }

    /// At a shared limit itself, no grace is left to anyone it started.
    pub(super) fn hurry_graces_of(&mut self, scope: &Scope, now: f64) {
        let hurried: Vec<u32> = self
            .graces
            .iter()
            .filter(|(_, g)| g.scope == *scope)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in hurried {
            self.hurry_grace(pid, now);
        }
    }

    /// Sends the SIGKILL that follows an unanswered SIGTERM, if the process
    /// is still there and the rule in force still allows kill.
    fn end_grace(&mut self, pid: u32, why: &str, now: f64) {
        let Some(g) = self.graces.remove(&pid) else {
            return;
        };
        if self.host.stat(pid).is_none_or(|s| s.dead()) {
            return; // it exited
        }
        if self.cap_of(&g.scope, &g.rule) != Some(Action::Kill) {
            tracing::info!(
                pid,
                rule = g.rule,
                "grace ended, but the rule no longer allows kill"
            );
            return;
        }
        self.finish(pid, g.scope, g.rule, Action::Kill, why.to_string(), now);
    }

    /// Kills processes frozen for `freeze_timeout` without their pressure
    /// clearing, where the rule that froze them allows kill: a freeze is a
    /// window to raise a limit or resume by hand, not a resting state.
    pub(super) fn escalate_long_freezes(&mut self, now: f64) {
        let timeout = self.cfg.agent.freeze_timeout.as_secs_f64();
        let due: Vec<(u32, Freeze)> = self
            .procs
            .held()
            .filter(|p| p.state == ProcState::Frozen && p.protected.is_none())
            .filter_map(|p| p.frozen_for.clone().map(|f| (p.pid, f)))
            .filter(|(_, f)| now - f.since >= timeout)
            .collect();
        for (pid, f) in due {
            let Some(cap) = self
                .cap_of(&f.scope, &f.rule)
                .filter(|&c| c >= Action::Terminate)
            else {
                continue;
            };
            let why = format!(
                "frozen for {:.0} s without its pressure clearing; the rule allows {}",
                now - f.since,
                cap.as_str()
            );
            self.finish(pid, f.scope, f.rule, cap, why, now);
        }
    }
}
