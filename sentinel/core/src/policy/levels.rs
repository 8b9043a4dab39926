//! Levels of a limit (warn, preempt, kill) with hysteresis, and the action
//! ladder they climb. Pure: usage, limit and trend in, a level out.

use super::{Action, Params, Verdict, evaluate};
use crate::model::Trend;

/// Shares of a limit at which each level begins, and how far below a level's
/// line usage must fall before that level clears.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    pub warn: f64,
    pub preempt: f64,
    pub kill: f64,
    /// Points of the limit (0.10 = 10 points) below a line at which it clears.
    pub clear: f64,
}

impl Default for Levels {
    /// The incident reports' scheme: warn at 70%, preempt at 85%, kill at
    /// 95%, clear 10 points lower.
    fn default() -> Self {
        Self {
            warn: 0.70,
            preempt: 0.85,
            kill: 0.95,
            clear: 0.10,
        }
    }
}

impl Levels {
    /// Why these levels cannot be used, naming the offending key.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, v) in [
            ("warn", self.warn),
            ("preempt", self.preempt),
            ("kill", self.kill),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err((
                    key,
                    format!("must be a share of the limit in (0, 1], got {v}"),
                ));
            }
        }
        if self.warn > self.preempt {
            return Err(("warn", "must not be above preempt".into()));
        }
        if self.preempt > self.kill {
            return Err(("kill", "must not be below preempt".into()));
        }
        if !(0.0..self.warn).contains(&self.clear) {
            // A clear at or above warn would hold the warn level forever.
            return Err((
                "clear",
                format!("must be at least 0 and below warn, got {}", self.clear),
            ));
        }
        Ok(())
    }

    pub fn share(&self, level: Level) -> f64 {
        match level {
            Level::Normal => 0.0,
            Level::Warn => self.warn,
            Level::Preempt => self.preempt,
            Level::Kill => self.kill,
        }
    }

    /// The bytes at which `level` begins for `limit`.
    pub fn line(&self, level: Level, limit: u64) -> u64 {
        (limit as f64 * self.share(level)) as u64
    }

    /// The bytes below which `level` clears.
    pub fn clear_line(&self, level: Level, limit: u64) -> u64 {
        (limit as f64 * (self.share(level) - self.clear).max(0.0)) as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    #[default]
    Normal,
    Warn,
    Preempt,
    Kill,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Warn => "warn",
            Self::Preempt => "preempt",
            Self::Kill => "kill",
        }
    }

    const RISING: [Level; 3] = [Level::Warn, Level::Preempt, Level::Kill];
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Level::Normal, Level::Warn, Level::Preempt, Level::Kill]
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not one of normal, warn, preempt, kill"))
    }
}

/// The highest level whose line `current` has crossed or is predicted to
/// cross before the agent could act on another sample, with the verdict for
/// that line.
pub fn assess(
    current: u64,
    limit: u64,
    trend: Option<&Trend>,
    levels: &Levels,
    params: &Params,
) -> Option<(Level, Verdict)> {
    Level::RISING.iter().rev().find_map(|&level| {
        evaluate(current, levels.line(level, limit), trend, params).map(|v| (level, v))
    })
}

/// The level a scope is held at: it rises at once, and falls only once
/// usage is `clear` below the held level's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hysteresis {
    pub level: Level,
}

impl Hysteresis {
    /// Raises to `assessed` when higher (returning true: a new level to act
    /// on), else lowers while usage is under the held level's clear line,
    /// but never below what was just assessed (a forecast that still calls
    /// for a level keeps it held).
    pub fn update(
        &mut self,
        assessed: Option<Level>,
        current: u64,
        limit: u64,
        levels: &Levels,
    ) -> bool {
        let assessed = assessed.unwrap_or(Level::Normal);
        if assessed > self.level {
            self.level = assessed;
            return true;
        }
        while self.level > assessed && current < levels.clear_line(self.level, limit) {
            self.level = match self.level {
                Level::Kill => Level::Preempt,
                Level::Preempt => Level::Warn,
                _ => Level::Normal,
            };
        }
        false
    }
}

/// The step of the ladder a level calls for, capped by how far the rule may
/// go: warn alerts, preempt freezes (reversible first), kill terminates or
/// kills. A rule capped at alert only ever alerts.
pub fn rung(level: Level, cap: Action) -> Action {
    let wanted = match level {
        Level::Normal | Level::Warn => Action::Alert,
        Level::Preempt => Action::Freeze,
        Level::Kill => Action::Kill,
    };
    wanted.min(cap)
}

/// How long a process asked to terminate gets before SIGKILL: the time the
/// forecast leaves until the limit, less the reaction horizon, capped.
/// `None` when there is no time for a grace at all (kill at once).
pub fn grace_secs(seconds_to_limit: Option<f64>, horizon: f64, max_grace: f64) -> Option<f64> {
    let left = seconds_to_limit.unwrap_or(max_grace) - horizon;
    (left >= 0.05).then(|| left.min(max_grace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Sampling;

    const MIB: u64 = 1 << 20;

    fn params() -> Params {
        Params {
            horizon_secs: 0.02,
            sampling: Sampling::Step { step_bytes: MIB },
            min_confidence: 0.6,
        }
    }

    fn growing(bps: f64) -> Trend {
        Trend {
            bytes_per_sec: bps,
            confidence: 1.0,
            ongoing: true,
            samples: 10,
            span: 1.0,
            typical_gap: 0.0,
        }
    }

    #[test]
    fn defaults_are_the_incident_scheme_and_valid() {
        let l = Levels::default();
        assert_eq!(l.line(Level::Warn, 1000), 700);
        assert_eq!(l.line(Level::Preempt, 1000), 850);
        assert_eq!(l.line(Level::Kill, 1000), 950);
        assert_eq!(l.clear_line(Level::Preempt, 1000), 750);
        assert!(l.check().is_ok());
        let bad = Levels {
            warn: 0.9,
            ..Levels::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "warn");
        let bad = Levels {
            kill: 1.5,
            ..Levels::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "kill");
    }

    #[test]
    fn a_plateau_is_assessed_by_where_it_sits() {
        let l = Levels::default();
        let limit = 1000 * MIB;
        assert_eq!(assess(600 * MIB, limit, None, &l, &params()), None);
        let at = |b| assess(b, limit, None, &l, &params()).map(|(lv, _)| lv);
        assert_eq!(at(720 * MIB), Some(Level::Warn));
        assert_eq!(at(860 * MIB), Some(Level::Preempt));
        assert_eq!(at(990 * MIB), Some(Level::Kill));
    }

    #[test]
    fn a_fast_grower_is_assessed_by_the_line_it_will_reach_in_time() {
        let l = Levels::default();
        let limit = 1000 * MIB;
        // 2.5 GB/s: 50 MB in 20 ms, from 840 MiB reaches 850 (preempt) in time,
        // not 950 (kill).
        let t = growing(2.5e9);
        let (lv, v) = assess(840 * MIB, limit, Some(&t), &l, &params()).unwrap();
        assert_eq!(lv, Level::Preempt);
        assert!(matches!(
            v.trigger,
            crate::policy::Trigger::Predicted { .. }
        ));
        // From 930 MiB it reaches the kill line in time.
        let (lv, _) = assess(930 * MIB, limit, Some(&t), &l, &params()).unwrap();
        assert_eq!(lv, Level::Kill);
    }

    #[test]
    fn hysteresis_rises_at_once_and_clears_ten_points_lower() {
        let l = Levels::default();
        let limit = 1000;
        let mut h = Hysteresis::default();
        assert!(h.update(Some(Level::Preempt), 860, limit, &l));
        // Still preempt between 750 and 850: no new action, no clearing.
        assert!(!h.update(Some(Level::Preempt), 860, limit, &l));
        assert!(!h.update(None, 800, limit, &l));
        assert_eq!(h.level, Level::Preempt);
        // Below 750: preempt clears; still at or above warn's clear (600).
        h.update(None, 740, limit, &l);
        assert_eq!(h.level, Level::Warn);
        h.update(None, 100, limit, &l);
        assert_eq!(h.level, Level::Normal);
        // Kill straight from normal.
        assert!(h.update(Some(Level::Kill), 990, limit, &l));
        assert_eq!(h.level, Level::Kill);
    }

    #[test]
    fn a_level_still_forecast_is_not_cleared_and_raised_again() {
        // Far under warn's clear line, but a fast grower is forecast to
        // reach warn: held, not dropped and re-raised (a second alert).
        let l = Levels::default();
        let mut h = Hysteresis { level: Level::Warn };
        assert!(!h.update(Some(Level::Warn), 550, 1000, &l));
        assert_eq!(h.level, Level::Warn);
        let bad = Levels {
            clear: 0.7,
            ..Levels::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "clear");
    }

    #[test]
    fn the_ladder_is_capped_by_the_rule() {
        assert_eq!(rung(Level::Warn, Action::Kill), Action::Alert);
        assert_eq!(rung(Level::Preempt, Action::Kill), Action::Freeze);
        assert_eq!(rung(Level::Kill, Action::Kill), Action::Kill);
        assert_eq!(rung(Level::Kill, Action::Terminate), Action::Terminate);
        assert_eq!(rung(Level::Kill, Action::Freeze), Action::Freeze);
        assert_eq!(rung(Level::Preempt, Action::Alert), Action::Alert);
    }

    #[test]
    fn grace_comes_from_the_forecast() {
        assert_eq!(grace_secs(Some(3.0), 0.02, 10.0), Some(2.98));
        assert_eq!(grace_secs(Some(30.0), 0.02, 10.0), Some(10.0));
        assert_eq!(grace_secs(Some(0.03), 0.02, 10.0), None);
        // Already at the line, or not growing: the cap.
        assert_eq!(grace_secs(None, 0.02, 5.0), Some(4.98));
    }
}
