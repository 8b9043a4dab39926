//! Memory pressure: the kernel's PSI trigger wakes the engine, which warns
//! when tasks really stalled as long as the trigger was armed for. The
//! stall is measured from /proc/pressure/memory's `some total` over the
//! trigger's window, so a wake-up without that stall (seen on an idle
//! machine) is not a decision, and the decision says what was armed and
//! what was seen.

use crate::units::human_bytes;
use std::{collections::VecDeque, time::Duration};

use super::{Engine, Host};
use crate::{
    decision::{Decision, DecisionAction, DecisionKind, Outcome, ScopeKind},
    model::Psi,
    policy::Level,
};

/// A memory-pressure warning is repeated at most this often.
const ALERT_EVERY_SECS: f64 = 60.0;

/// The trigger the kernel accepted: this much stall within this window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsiArmed {
    pub stall: Duration,
    pub window: Duration,
}

/// PSI as the engine follows it.
#[derive(Debug, Default)]
pub(super) struct PsiState {
    pub avg10: Option<f64>,
    pub armed: Option<PsiArmed>,
    /// (time, some total in µs), oldest first, covering the trigger's
    /// window and a sample before it.
    totals: VecDeque<(f64, u64)>,
    alerted: Option<f64>,
    /// Wake-ups without the stall they were armed for.
    pub unconfirmed: u64,
}

impl PsiState {
    pub fn sample(&mut self, now: f64, psi: Option<Psi>) {
        self.avg10 = psi.map(|p| p.avg10);
        let Some(p) = psi else { return };
        self.totals.push_back((now, p.total_us));
        let keep = self.armed.map_or(0.0, |a| a.window.as_secs_f64());
        while self.totals.len() > 2 && self.totals[1].0 <= now - keep {
            self.totals.pop_front();
        }
    }

    /// Microseconds some task stalled on memory over the last window (or
    /// as much of it as was sampled): the latest total less the last one
    /// at or before the window's start.
    fn stalled_us(&self, now: f64, window: Duration) -> Option<(u64, f64)> {
        let (_, last) = *self.totals.back()?;
        let start = now - window.as_secs_f64();
        let (t0, first) = self
            .totals
            .iter()
            .rev()
            .find(|(t, _)| *t <= start)
            .or_else(|| self.totals.front())
            .copied()?;
        Some((last.saturating_sub(first), now - t0))
    }
}

impl<H: Host> Engine<H> {
    /// The kernel accepted a trigger (or none, or it stopped).
    pub fn set_psi_trigger(&mut self, armed: Option<PsiArmed>) {
        self.host_state.psi.armed = armed;
    }

    /// The PSI trigger fired. When tasks did stall as long as it was
    /// armed for, look at the host now and warn (at most once a minute)
    /// even if no line is near: PSI sees pressure, such as reclaim
    /// thrashing, that usage alone does not.
    pub fn on_pressure(&mut self, now: f64) {
        self.tick(now);
        let Some(armed) = self.host_state.psi.armed else {
            return;
        };
        let psi = &self.host_state.psi;
        let Some((stalled_us, over)) = psi.stalled_us(now, armed.window) else {
            return;
        };
        if u128::from(stalled_us) < armed.stall.as_micros() {
            self.host_state.psi.unconfirmed += 1;
            tracing::debug!(
                stalled_ms = stalled_us / 1000,
                "PSI trigger woke the agent without the stall it was armed for; no decision"
            );
            return;
        }
        if psi.alerted.is_some_and(|t| now - t < ALERT_EVERY_SECS) {
            return;
        }
        self.host_state.psi.alerted = Some(now);
        self.record_pressure(armed, stalled_us, over, now);
    }

    fn record_pressure(&mut self, armed: PsiArmed, stalled_us: u64, over: f64, now: f64) {
        let limit = self.host_limit();
        let used = self.host_state.used();
        let d = self.record(Decision {
            time_unix_ms: self.host.wall_ms(),
            kind: DecisionKind::Pressure,
            rule: "host".into(),
            scope: Some(ScopeKind::Host),
            level: Some(Level::Warn),
            action: DecisionAction::Alert,
            outcome: Outcome::Recorded,
            reason: format!(
                "memory pressure: tasks stalled on memory for {} ms in the last {over:.1} s (trigger: {} ms within {} s; PSI some avg10 {:.2}%); host at {} of {}",
                stalled_us / 1000,
                armed.stall.as_millis(),
                armed.window.as_secs_f64(),
                self.host_state.psi.avg10.unwrap_or(0.0),
                human_bytes(used as f64),
                human_bytes(limit.bytes as f64)
            ),
            charged_bytes: used,
            slope_bytes_per_sec: self
                .host_state
                .series
                .trend(now)
                .map(|t| t.bytes_per_sec)
                .unwrap_or(0.0),
            limit_bytes: limit.bytes,
            ..Default::default()
        });
        tracing::warn!(seq = d.seq, "{}", d.reason);
    }
}
