//! Frozen processes are resumed when the pressure they were frozen for
//! clears, or when the rule that froze them is gone, so their work is not
//! lost.

use super::{Engine, Host, Scope, Signal, table::ProcState};
use crate::units::human_bytes;
use crate::{
    decision::{Decision, DecisionAction, DecisionKind, Outcome},
    model::Series,
    policy::{Hysteresis, Level, Levels},
};

/// Where a frozen process's scope stands now.
pub(super) struct Standing {
    pub usage: u64,
    pub limit: u64,
    pub levels: Levels,
}

impl<H: Host> Engine<H> {
    /// Resumes processes frozen for a limit once that limit's usage is
    /// below its clear level (the preempt line less `clear`), or once the
    /// rule that froze them is gone. If they grow again, they are judged
    /// again.
    pub fn resume_cleared(&mut self, now: f64) {
        let frozen: Vec<(u32, Scope, String)> = self
            .procs
            .held()
            .filter(|p| p.state == ProcState::Frozen)
            .filter_map(|p| p.frozen_for.clone().map(|f| (p.pid, f.scope, f.rule)))
            .collect();
        for (pid, scope, rule) in frozen {
            let (reason, limit, level) = match self.standing(pid, &scope, &rule) {
                Err(why) => (why, 0, Level::Normal),
                Ok(s) => {
                    let clear = s.levels.clear_line(Level::Preempt, s.limit);
                    if s.usage >= clear {
                        continue;
                    }
                    let mut held = Hysteresis {
                        level: Level::Preempt,
                    };
                    held.update(None, s.usage, s.limit, &s.levels);
                    let what = match &scope {
                        Scope::GpuProcess { device, .. } => format!("its memory on GPU {device}"),
                        other => other.describe(),
                    };
                    (
                        format!(
                            "{what} is at {}, below its clear level {} ({:.0}% of its limit {})",
                            human_bytes(s.usage as f64),
                            human_bytes(clear as f64),
                            (s.levels.preempt - s.levels.clear) * 100.0,
                            human_bytes(s.limit as f64)
                        ),
                        s.limit,
                        held.level,
                    )
                }
            };
            self.resume(pid, &scope, rule, level, limit, reason, now);
        }
    }

    /// Sends SIGCONT and starts the process's story afresh.
    #[allow(clippy::too_many_arguments)]
    fn resume(
        &mut self,
        pid: u32,
        scope: &Scope,
        rule: String,
        level: Level,
        limit: u64,
        reason: String,
        now: f64,
    ) {
        let outcome = self.send_resume(pid);
        let history = self.cfg.agent.history.as_secs_f64();
        let Some(mut p) = self.procs.get_mut(&pid) else {
            return;
        };
        p.state = ProcState::Running;
        p.frozen_for = None;
        p.acted.remove(scope);
        if *scope == Scope::Process {
            p.held.level = level;
        }
        // Growth before the freeze says nothing about the time after it.
        p.series = Series::new(history);
        let usage = p.usage();
        p.series.push(now, usage);
        drop(p);
        let d = Decision {
            limit_bytes: limit,
            scope: Some(scope.kind()),
            ..self.note(
                pid,
                DecisionKind::Resume,
                rule,
                Some(level),
                DecisionAction::Resume,
                outcome,
                reason,
            )
        };
        let d = self.record(d);
        tracing::info!(seq = d.seq, pid, comm = %d.comm, "resumed: {}", d.reason);
        self.sync_tripwire(pid);
    }

    /// SIGCONT through the process's handle (in dry-run, decided only).
    pub(super) fn send_resume(&mut self, pid: u32) -> Outcome {
        let dry_run = self.cfg.agent.dry_run;
        match self.procs.get(&pid).and_then(|p| p.pidfd.as_ref()) {
            None => Outcome::Failed("no pidfd for the process".into()),
            Some(_) if dry_run => Outcome::DryRun,
            Some(fd) => match self.host.signal(fd, Signal::Resume) {
                Ok(()) => Outcome::Done,
                Err(e) => Outcome::Failed(e),
            },
        }
    }

    /// Where a frozen process's scope stands now, or why it must be
    /// resumed regardless.
    pub(super) fn standing(&self, pid: u32, scope: &Scope, rule: &str) -> Result<Standing, String> {
        let p = self.procs.get(&pid).ok_or("gone")?;
        let standing = |usage, limit, levels| Standing {
            usage,
            limit,
            levels,
        };
        match scope {
            Scope::Process => {
                let r = p
                    .rule
                    .map(|r| &self.cfg.rules[r])
                    .filter(|r| r.name == rule)
                    .ok_or_else(|| format!("rule `{rule}` no longer governs it"))?;
                Ok(standing(p.usage(), r.limit_bytes, r.levels))
            }
            Scope::Cgroup(path) => {
                let r = self
                    .cfg
                    .cgroup_rules
                    .iter()
                    .find(|r| r.name == rule)
                    .ok_or_else(|| format!("cgroup rule `{rule}` was removed"))?;
                let limit = self
                    .host
                    .cgroup_limit(path)
                    .ok_or_else(|| format!("cgroup {path} has no limit any more"))?;
                Ok(standing(self.cgroup_usage(path), limit, r.levels))
            }
            Scope::Host => {
                let l = self.host_limit();
                Ok(standing(self.host_state.used(), l.bytes, l.levels))
            }
            Scope::Gpu(d) => {
                let dev = self
                    .gpu
                    .device(*d)
                    .ok_or_else(|| format!("GPU {d} is no longer reported"))?;
                Ok(standing(dev.used, dev.total, self.cfg.gpu.levels))
            }
            Scope::GpuProcess { device, pid } => {
                let r = self
                    .cfg
                    .rules
                    .iter()
                    .find(|r| r.name == rule)
                    .ok_or_else(|| format!("rule `{rule}` was removed"))?;
                let limit = r
                    .gpu_limit_bytes
                    .ok_or_else(|| format!("rule `{rule}` has no gpu_limit any more"))?;
                let used = self.gpu.last_bytes(*device, *pid).unwrap_or(0);
                Ok(standing(used, limit, r.levels))
            }
        }
    }
}
