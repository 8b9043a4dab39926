//! A shared limit (a cgroup's or the host's): the level the group is at or
//! predicted to reach, from its members' growth, and the member to act on.
//! Pure; used by the agent on live groups and by the replay simulator.

use super::{
    Action, Params, Verdict,
    levels::{Level, Levels, assess},
    victim::{Candidate, choose_victim, group_by_root},
};
use crate::model::{Series, Trend};

/// One member of a group as the decision sees it.
pub struct Member<'a> {
    pub pid: u32,
    /// Root of its process tree within the group (itself when alone).
    pub root: u32,
    pub bytes: u64,
    pub series: &'a Series,
    /// Already stopped (frozen, terminating or killed): its memory counts,
    /// its growth does not.
    pub stopped: bool,
    /// Stopped by a freeze, so the kill level may escalate it.
    pub frozen: bool,
    pub protected: bool,
    /// Its priority class (lower is stopped first among equal growers).
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupDecision {
    /// The highest level crossed or predicted to be crossed in time.
    pub level: Level,
    pub verdict: Verdict,
    /// Whom to act on; `None` when nobody is growing (size alone never
    /// makes a victim), so the decision can only alert.
    pub victim: Option<GroupVictim>,
    /// The tree root growing most, when it is protected (or growing within
    /// its reservation): never acted on, but named.
    pub protected_grower: Option<u32>,
    pub group_bytes: u64,
    pub group_slope: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupVictim {
    /// A tree root when members were grouped.
    pub root: u32,
    /// Its share of the group's recent growth.
    pub share: f64,
    /// Already stopped: the kill level escalates a frozen grower (its
    /// memory is still held) before it picks a new one.
    pub escalate: bool,
}

/// Bytes of `series` at or before time `t` (its first sample if none).
pub fn bytes_at(series: &Series, t: f64) -> u64 {
    let mut v = None;
    for s in series.samples() {
        if s.t <= t {
            v = Some(s.bytes);
        } else {
            break;
        }
    }
    v.or_else(|| series.samples().next().map(|s| s.bytes))
        .unwrap_or(0)
}

/// The level `usage` of the group is at or will reach in time, and its
/// victim. At the kill level, when the rule may go past freezing (`cap`),
/// a grower already frozen is escalated first (it still holds its memory);
/// otherwise the running member (or tree) growing now with the largest
/// share of the growth over `window` seconds, or at the kill level, when
/// nobody grows now, the one that gained most. The group's trend is the
/// sum of its running members' ongoing growth.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    members: &[Member<'_>],
    usage: u64,
    limit: u64,
    levels: &Levels,
    cap: Action,
    params: &Params,
    window: f64,
    now: f64,
) -> Option<GroupDecision> {
    let trends: Vec<Option<Trend>> = members
        .iter()
        .map(|m| {
            m.series
                .trend(now)
                .filter(|t| !m.stopped && t.ongoing && t.confidence >= params.min_confidence)
        })
        .collect();
    let slope: f64 = trends
        .iter()
        .flatten()
        .map(|t| t.bytes_per_sec.max(0.0))
        .sum();
    // The next group sample is due when its fastest-reporting grower
    // reports again.
    let gap = trends
        .iter()
        .flatten()
        .filter(|t| t.bytes_per_sec > 0.0)
        .map(|t| t.typical_gap)
        .fold(f64::INFINITY, f64::min);
    let group_trend = Trend {
        bytes_per_sec: slope,
        confidence: 1.0,
        ongoing: slope > 0.0,
        samples: 3,
        span: window,
        typical_gap: if gap.is_finite() { gap } else { 0.0 },
    };
    let (level, verdict) = assess(usage, limit, Some(&group_trend), levels, params)?;
    let candidate = |m: &Member<'_>, t: Option<&Trend>| {
        (
            Candidate {
                pid: m.pid,
                bytes: m.bytes,
                gained: m.bytes as i64 - bytes_at(m.series, now - window) as i64,
                slope: t.map(|t| t.bytes_per_sec).unwrap_or(0.0),
                priority: m.priority,
                protected: m.protected,
            },
            m.root,
        )
    };
    let frozen: Vec<Candidate> = group_by_root(
        &members
            .iter()
            .filter(|m| m.frozen)
            .map(|m| candidate(m, None))
            .collect::<Vec<_>>(),
    );
    let escalated = (level == Level::Kill && cap >= Action::Terminate)
        .then(|| {
            frozen
                .iter()
                .filter(|c| !c.protected)
                .max_by_key(|c| c.bytes)
                .map(|c| GroupVictim {
                    root: c.pid,
                    share: 0.0,
                    escalate: true,
                })
        })
        .flatten();
    let running = group_by_root(
        &members
            .iter()
            .zip(&trends)
            .filter(|(m, _)| !m.stopped)
            .map(|(m, t)| candidate(m, t.as_ref()))
            .collect::<Vec<_>>(),
    );
    let victim = escalated.or_else(|| {
        let v = &running[choose_victim(&running, level == Level::Kill)?];
        let total_gain: f64 = running.iter().map(|c| c.gained.max(0) as f64).sum();
        Some(GroupVictim {
            root: v.pid,
            share: if total_gain > 0.0 {
                v.gained.max(0) as f64 / total_gain
            } else {
                0.0
            },
            escalate: false,
        })
    });
    // The biggest grower, when it may not be touched: the decision names
    // it rather than saying nobody grows.
    let protected_grower = running
        .iter()
        .filter(|c| c.gained > 0)
        .max_by_key(|c| c.gained)
        .filter(|c| c.protected)
        .map(|c| c.pid);
    Some(GroupDecision {
        level,
        verdict,
        victim,
        protected_grower,
        group_bytes: usage,
        group_slope: slope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Sampling;

    const MIB: u64 = 1 << 20;

    fn grower(start: u64, rate: f64) -> Series {
        let mut s = Series::new(60.0);
        for i in 0..50 {
            let t = i as f64 * 0.01;
            s.push(t, start + (rate * t) as u64);
        }
        s
    }

    fn params() -> Params {
        Params {
            horizon_secs: 0.02,
            sampling: Sampling::Step { step_bytes: MIB },
            min_confidence: 0.6,
        }
    }

    fn member(pid: u32, series: &Series, priority: i32, protected: bool) -> Member<'_> {
        Member {
            pid,
            root: pid,
            bytes: 150 * MIB,
            series,
            stopped: false,
            frozen: false,
            protected,
            priority,
        }
    }

    /// The group's decision at `usage` of a 1000 MiB limit.
    fn decide_at(members: &[Member<'_>], usage: u64) -> Option<GroupDecision> {
        decide(
            members,
            usage,
            1000 * MIB,
            &Levels::default(),
            Action::Freeze,
            &params(),
            2.0,
            0.49,
        )
    }

    #[test]
    fn equal_growers_go_by_priority_class_and_protected_are_skipped() {
        let (a, b) = (grower(100 * MIB, 100e6), grower(100 * MIB, 100e6));
        let d = decide_at(
            &[member(1, &a, 10, false), member(2, &b, -10, false)],
            900 * MIB,
        )
        .unwrap();
        assert_eq!(d.level, Level::Preempt);
        assert_eq!(d.victim.unwrap().root, 2, "the lower class goes first");
        let d = decide_at(
            &[member(1, &a, 10, false), member(2, &b, -10, true)],
            900 * MIB,
        )
        .unwrap();
        assert_eq!(d.victim.unwrap().root, 1, "never the protected one");
    }

    #[test]
    fn below_every_line_and_not_growing_toward_one_is_no_decision() {
        let s = grower(100 * MIB, 0.0);
        assert_eq!(decide_at(&[member(1, &s, 0, false)], 600 * MIB), None);
    }
}
