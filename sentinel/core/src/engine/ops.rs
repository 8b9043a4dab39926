//! What operators ask of the engine: a new policy, resuming a process
//! Sentinel froze, protecting a process or taking that back. Each is
//! journalled with who asked.

use super::{Engine, Host, Signal, table::ProcState};
use crate::{
    decision::{Decision, DecisionAction, DecisionKind, Outcome, ScopeKind},
    policy::Level,
};

/// Why an operator's request about a process could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("pid {0} is not a process Sentinel tracks")]
    NotFound(u32),
    #[error("pid {pid} is {state}, not frozen")]
    NotFrozen { pid: u32, state: &'static str },
    #[error("pid {pid}: {why}")]
    Failed { pid: u32, why: String },
}

/// Why a new policy was refused; the running one stays.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "policy refused: it has no rule that can stop a process (no [[rule]], no [[cgroup]], host and gpu actions at most alert), \
         while the running policy {running}; applying it would drop every rule{thaw}. \
         To run without rules on purpose, set `allow_empty_policy = true` under [agent] in the new policy"
    )]
    DropsEveryRule { running: String, thaw: String },
}

/// A policy that was applied: its journal entry, and the keys it asked to
/// change that take effect only at the next start.
#[derive(Debug, Clone)]
pub struct Applied {
    pub decision: Decision,
    pub start_only: Vec<&'static str>,
}

impl<H: Host> Engine<H> {
    /// Replaces the running policy, unless it would silently drop every
    /// rule (a file emptied by mistake), and journals who applied it.
    pub fn apply_policy(
        &mut self,
        cfg: crate::config::Config,
        who: &str,
        source: &str,
        text: &str,
    ) -> Result<Applied, PolicyError> {
        let (_, frozen, queued) = self.level_counts();
        if !cfg.has_rules()
            && !cfg.agent.allow_empty_policy
            && (self.cfg.has_rules() || frozen + queued > 0)
        {
            return Err(PolicyError::DropsEveryRule {
                running: if self.cfg.has_rules() {
                    format!(
                        "has {} rules, {} cgroup rules, host action {}",
                        self.cfg.rules.len(),
                        self.cfg.cgroup_rules.len(),
                        self.cfg.host.action.as_str()
                    )
                } else {
                    "has none either".into()
                },
                thaw: if frozen + queued > 0 {
                    format!(
                        " and resume the {frozen} frozen and {queued} queued processes it holds"
                    )
                } else {
                    String::new()
                },
            });
        }
        for w in cfg.warnings() {
            tracing::warn!("policy from {source}: {w}");
        }
        let start_only = self.apply_config(cfg);
        let decision = self.record_policy(who, source, text, &start_only);
        Ok(Applied {
            decision,
            start_only,
        })
    }

    /// Journals a decision. One about a process carries its start time, so
    /// that the journal names that process and not a later one with its
    /// pid.
    pub(super) fn record(&mut self, mut d: Decision) -> Decision {
        if d.start_time == 0
            && let Some(p) = self.procs.get(&d.pid)
        {
            d.start_time = p.start_time;
        }
        self.host.record(d)
    }

    /// A decision about `pid` that carries no forecast: resumes and
    /// operators' actions.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn note(
        &self,
        pid: u32,
        kind: DecisionKind,
        rule: String,
        level: Option<Level>,
        action: DecisionAction,
        outcome: Outcome,
        reason: String,
    ) -> Decision {
        let mut d = Decision {
            time_unix_ms: self.host.wall_ms(),
            kind,
            pid,
            rule,
            level,
            action,
            outcome,
            reason,
            scope: Some(ScopeKind::Process),
            ..Default::default()
        };
        if let Some(p) = self.procs.get(&pid) {
            d.comm = p.comm.clone();
            d.cgroup = p.cgroup.clone();
            d.resident_bytes = p.mem.resident();
            d.charged_bytes = p.mem.charged();
        }
        d
    }

    /// Records a policy change and who made it.
    fn record_policy(
        &mut self,
        who: &str,
        source: &str,
        text: &str,
        start_only: &[&'static str],
    ) -> Decision {
        self.policy_source = source.to_string();
        self.policy_text = text.to_string();
        self.policy_not_in_use = start_only.to_vec();
        let waits = if start_only.is_empty() {
            String::new()
        } else {
            format!(
                "; changed but read only at start, so still the running values until a restart: {}",
                start_only.join(", ")
            )
        };
        let d = self.record(Decision {
            time_unix_ms: self.host.wall_ms(),
            kind: DecisionKind::Policy,
            action: DecisionAction::Apply,
            outcome: Outcome::Done,
            scope: None,
            reason: format!(
                "policy from {source} applied by {who}: {} rules, {} cgroup rules, {} priority classes, host action {}{waits}",
                self.cfg.rules.len(),
                self.cfg.cgroup_rules.len(),
                self.cfg.priorities.len(),
                self.cfg.host.action.as_str()
            ),
            ..Default::default()
        });
        tracing::info!(seq = d.seq, "{}", d.reason);
        d
    }

    /// An operator resumes a process Sentinel froze (or queued). What was
    /// done to it stays on record for this episode, so it is not frozen
    /// again at once; a kill level its rule allows still applies.
    pub fn operator_resume(&mut self, pid: u32, who: &str) -> Result<Decision, OpError> {
        let p = self.procs.get(&pid).ok_or(OpError::NotFound(pid))?;
        if !matches!(p.state, ProcState::Frozen | ProcState::Queued) {
            return Err(OpError::NotFrozen {
                pid,
                state: p.state.as_str(),
            });
        }
        let fd = p.pidfd.as_ref().ok_or_else(|| OpError::Failed {
            pid,
            why: "no pidfd for the process".into(),
        })?;
        let outcome = if self.cfg.agent.dry_run {
            Outcome::DryRun
        } else {
            self.host
                .signal(fd, Signal::Resume)
                .map_err(|why| OpError::Failed { pid, why })?;
            Outcome::Done
        };
        let Some(mut p) = self.procs.get_mut(&pid) else {
            return Err(OpError::NotFound(pid));
        };
        let level = p.held.level;
        // A queued process is let run at its limit; a runaway keeps on
        // record what was done to it this episode.
        let frozen_for = if p.state == ProcState::Queued {
            drop(p);
            let now = self.host.now();
            self.leave_queue(pid, true, now)
        } else {
            p.state = ProcState::Running;
            let f = p.frozen_for.take();
            drop(p);
            f
        };
        let mut d = self.note(
            pid,
            DecisionKind::Resume,
            frozen_for
                .as_ref()
                .map(|f| f.rule.clone())
                .unwrap_or_default(),
            Some(level),
            DecisionAction::Resume,
            outcome,
            format!("resumed by {who}"),
        );
        if let Some(f) = &frozen_for {
            d.scope = Some(f.scope.kind());
        }
        let d = self.record(d);
        tracing::info!(seq = d.seq, pid, "{}", d.reason);
        self.sync_tripwire(pid);
        Ok(d)
    }

    /// An operator protects a process (never signalled, not even frozen),
    /// or takes that back.
    pub fn operator_protect(&mut self, pid: u32, on: bool, who: &str) -> Result<Decision, OpError> {
        if !self.procs.contains_key(&pid) {
            self.discover(pid).ok_or(OpError::NotFound(pid))?;
        }
        if on {
            let start = self.procs.get(&pid).map_or(0, |p| p.start_time);
            self.operator_protected
                .insert(pid, (start, format!("protected by {who}")));
        } else {
            self.operator_protected.remove(&pid);
        }
        let why = self.procs.get(&pid).and_then(|p| self.protected_reason(p));
        let mut p = self.procs.get_mut(&pid).ok_or(OpError::NotFound(pid))?;
        p.protected = why;
        let reason = match (&p.protected, on) {
            (_, true) => format!("protected by {who}: never signalled, only alerted"),
            (Some(still), false) => {
                format!("protection by an operator removed by {who}; still protected: {still}")
            }
            (None, false) => format!("protection removed by {who}"),
        };
        drop(p);
        let d = self.note(
            pid,
            DecisionKind::Protect,
            String::new(),
            None,
            if on {
                DecisionAction::Protect
            } else {
                DecisionAction::Unprotect
            },
            Outcome::Done,
            reason,
        );
        let d = self.record(d);
        tracing::info!(seq = d.seq, pid, "{}", d.reason);
        self.sync_tripwire(pid);
        Ok(d)
    }
}
