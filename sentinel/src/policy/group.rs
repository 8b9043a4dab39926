//! A shared limit (a cgroup's, later the host's): predict when the group
//! reaches its line from its members' growth, and name the member driving
//! it. Pure; used by the agent on live cgroups and by the replay simulator.

use super::{
    Params, Verdict, evaluate,
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
    /// Already stopped: its memory counts, its growth does not.
    pub stopped: bool,
    pub protected: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupDecision {
    pub verdict: Verdict,
    /// The victim: a tree root when members were grouped.
    pub root: u32,
    /// The victim's share of the group's recent growth.
    pub share: f64,
    pub group_bytes: u64,
    pub group_slope: f64,
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

/// Decides whether the group must be relieved now, and of whom: the group's
/// trend is the sum of its members' ongoing growth; growth shares are
/// measured over `window` seconds.
pub fn decide(
    members: &[Member<'_>],
    line: u64,
    params: &Params,
    window: f64,
    now: f64,
) -> Option<GroupDecision> {
    let group_bytes: u64 = members.iter().map(|m| m.bytes).sum();
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
    let verdict = evaluate(group_bytes, line, Some(&group_trend), params)?;
    let cands: Vec<(Candidate, u32)> = members
        .iter()
        .zip(&trends)
        .filter(|(m, _)| !m.stopped)
        .map(|(m, t)| {
            (
                Candidate {
                    pid: m.pid,
                    bytes: m.bytes,
                    gained: m.bytes as i64 - bytes_at(m.series, now - window) as i64,
                    slope: t.map(|t| t.bytes_per_sec).unwrap_or(0.0),
                    priority: 0,
                    protected: m.protected,
                },
                m.root,
            )
        })
        .collect();
    let grouped = group_by_root(&cands);
    let victim = &grouped[choose_victim(&grouped)?];
    let total_gain: f64 = grouped.iter().map(|c| c.gained.max(0) as f64).sum();
    Some(GroupDecision {
        verdict,
        root: victim.pid,
        share: if total_gain > 0.0 {
            victim.gained.max(0) as f64 / total_gain
        } else {
            0.0
        },
        group_bytes,
        group_slope: slope,
    })
}
