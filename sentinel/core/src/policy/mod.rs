//! Rules and the decision to act. Pure: facts about a process and its trend
//! in, a decision out; the agent does the I/O.

pub mod admission;
pub mod group;
pub mod levels;
pub mod protect;
pub mod restarts;
mod rules;
pub mod schedule;
pub mod victim;

pub use levels::{Hysteresis, Level, Levels};
pub use rules::{
    Action, Pattern, PriorityClass, ProcessFacts, Rule, Selector, match_rule, priority_of,
};

use crate::model::{Trend, seconds_to_limit};
use crate::units::human_bytes;

/// What the agent knows about how fresh its samples are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The kernel reports every `step_bytes` of movement.
    Step { step_bytes: u64 },
    /// /proc is polled every `interval_secs`.
    Poll { interval_secs: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// The agent's latency from a sample to a delivered signal, plus margin.
    pub horizon_secs: f64,
    pub sampling: Sampling,
    /// Below this share of steps in the slope's direction, a trend is noise.
    pub min_confidence: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// Already at or past the limit.
    Crossed,
    /// Predicted to cross before the agent could see and act on another sample.
    Predicted { seconds_to_limit: f64 },
    /// The kernel's armed ceiling stopped the process first.
    Tripwire { ceiling_bytes: u64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub trigger: Trigger,
    pub reason: String,
}

/// How long until the agent could react if it waited: the time until the
/// next sample can arrive plus the reaction horizon. With step sampling the
/// next sample is due when the process has grown another step, or, for one
/// that grows in jumps, after its usual gap between samples.
pub fn lead_time(params: &Params, bytes_per_sec: f64, typical_gap: f64) -> f64 {
    let next_sample = match params.sampling {
        Sampling::Step { step_bytes } if bytes_per_sec > 0.0 => {
            (step_bytes as f64 / bytes_per_sec).max(typical_gap)
        }
        Sampling::Step { .. } => f64::INFINITY,
        Sampling::Poll { interval_secs } => interval_secs,
    };
    next_sample + params.horizon_secs
}

/// Decides whether a process at `current` bytes with `trend` must be stopped
/// now to keep it under `limit`.
///
/// A burst that has stopped (not `ongoing`) is never extrapolated, so a jump
/// that plateaus below the limit is left alone; a growth that will cross the
/// limit before the agent could react to another sample is stopped now.
pub fn evaluate(
    current: u64,
    limit: u64,
    trend: Option<&Trend>,
    params: &Params,
) -> Option<Verdict> {
    if current >= limit {
        return Some(Verdict {
            trigger: Trigger::Crossed,
            reason: format!(
                "{} charged is at or above the line {}",
                human_bytes(current as f64),
                human_bytes(limit as f64)
            ),
        });
    }
    let t = trend?;
    if !t.ongoing || t.bytes_per_sec <= 0.0 || t.confidence < params.min_confidence {
        return None;
    }
    let ttl = seconds_to_limit(current, limit, t.bytes_per_sec)?;
    let lead = lead_time(params, t.bytes_per_sec, t.typical_gap);
    (ttl <= lead).then(|| Verdict {
        trigger: Trigger::Predicted { seconds_to_limit: ttl },
        reason: format!(
            "growing {:.1} MB/s, predicted to reach the line in {:.0} ms, within the {:.0} ms it takes to react",
            t.bytes_per_sec / 1e6,
            ttl * 1e3,
            lead * 1e3
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Series;

    const MIB: u64 = 1 << 20;

    fn params() -> Params {
        Params {
            horizon_secs: 0.1,
            sampling: Sampling::Step { step_bytes: MIB },
            min_confidence: 0.6,
        }
    }

    /// Feeds a trace sampled the way the kernel reports (every step) and
    /// returns the resident bytes at the first decision, if any.
    fn run(trace: impl Fn(f64) -> u64, until: f64, limit: u64) -> Option<u64> {
        let mut s = Series::new(10.0);
        let mut reported = 0u64;
        let mut t = 0.0;
        while t < until {
            let b = trace(t);
            if b.abs_diff(reported) >= MIB {
                reported = b;
                s.push(t, b);
            }
            if evaluate(reported, limit, s.trend(t).as_ref(), &params()).is_some() {
                return Some(reported);
            }
            t += 0.0005;
        }
        None
    }

    #[test]
    fn a_200mb_per_s_leak_is_stopped_before_the_limit() {
        let at = run(|t| (200e6 * t) as u64, 5.0, 256 * MIB).expect("acted");
        assert!(at < 256 * MIB);
        // acted within the reaction horizon's worth of growth, not far earlier
        assert!(at > 256 * MIB - 25 * MIB, "acted at {}", at / MIB);
    }

    #[test]
    fn burst_then_plateau_below_the_limit_is_left_alone() {
        // 300 MiB in 0.15 s, then flat, under a 512 MiB limit.
        let trace = |t: f64| ((t / 0.15).min(1.0) * (300 * MIB) as f64) as u64;
        assert_eq!(run(trace, 5.0, 512 * MIB), None);
    }

    #[test]
    fn jump_to_70_percent_and_hold_is_left_alone() {
        let trace = |t: f64| if t < 0.01 { 0 } else { 700 * MIB };
        assert_eq!(run(trace, 3.0, 1000 * MIB), None);
    }

    #[test]
    fn slow_leak_is_stopped_within_a_step_of_the_limit() {
        let at = run(|t| 100 * MIB + (2e6 * t) as u64, 120.0, 200 * MIB).expect("acted");
        assert!(
            (197 * MIB..200 * MIB).contains(&at),
            "acted at {}",
            at / MIB
        );
    }

    #[test]
    fn crossing_is_always_acted_on() {
        let v = evaluate(300, 256, None, &params()).unwrap();
        assert_eq!(v.trigger, Trigger::Crossed);
    }

    #[test]
    fn polling_uses_the_poll_interval_as_lead() {
        let p = Params {
            sampling: Sampling::Poll { interval_secs: 0.5 },
            ..params()
        };
        assert!((lead_time(&p, 1e9, 0.0) - 0.6).abs() < 1e-9);
        assert!((lead_time(&params(), 1e6, 0.0) - 1.148576).abs() < 1e-9);
        assert!((lead_time(&params(), 1e12, 0.0) - 0.1).abs() < 1e-5);
        // A process that grows in jumps half a second apart.
        assert!((lead_time(&params(), 1e8, 0.5) - 0.6).abs() < 1e-9);
    }
}
