//! Replay: feeds a recorded or synthetic trace of per-process memory
//! samples through the model and the policy, deterministically and without
//! a kernel, and returns the decisions the agent would make for a group
//! (a cgroup, or the host) with one limit. `sentinel replay TRACE` prints
//! them; the scenario table in the tests pins the engine's behaviour.

pub mod scenarios;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    model::{Series, Trend},
    policy::{
        self, Params, Trigger,
        victim::{Candidate, choose_victim, group_by_root},
    },
};

/// One sample of a trace: a process's charged bytes at time `t` (seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub t: f64,
    pub pid: u32,
    #[serde(default)]
    pub comm: String,
    pub bytes: u64,
    /// Root of the process tree this process belongs to, when the trace
    /// knows it; a tree is judged as one grower.
    #[serde(default)]
    pub root: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimDecision {
    pub t: f64,
    /// The victim (a tree's root when grouped).
    pub pid: u32,
    pub comm: String,
    pub group_bytes: u64,
    pub group_slope: f64,
    pub predicted_seconds_to_limit: Option<f64>,
    /// The victim's share of the group's recent growth.
    pub share: f64,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    pub limit: u64,
    pub params: Params,
    /// Window over which growth shares are measured.
    pub window: f64,
    /// After acting, wait this long (or until the group shrinks) before
    /// choosing another victim, so one pressure event stops one process.
    pub settle: f64,
}

struct Member {
    comm: String,
    root: u32,
    series: Series,
    bytes: u64,
    stopped: bool,
}

/// Bytes of `series` at or before time `t` (its first sample if none).
fn bytes_at(series: &Series, t: f64) -> u64 {
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

/// Runs `samples` (any order; sorted here by time, then pid) through the
/// engine. Stopped processes keep their memory but stop growing: their
/// later samples are ignored, as a frozen process produces none.
pub fn replay(samples: &[Sample], cfg: &SimConfig) -> Vec<SimDecision> {
    let mut samples = samples.to_vec();
    samples.sort_by(|a, b| a.t.total_cmp(&b.t).then(a.pid.cmp(&b.pid)));
    let mut members: BTreeMap<u32, Member> = BTreeMap::new();
    let mut decisions = Vec::new();
    let mut settle_until = f64::NEG_INFINITY;

    for s in &samples {
        let m = members.entry(s.pid).or_insert_with(|| Member {
            comm: s.comm.clone(),
            root: s.root.unwrap_or(s.pid),
            series: Series::new(60.0),
            bytes: 0,
            stopped: false,
        });
        if m.stopped {
            continue;
        }
        m.bytes = s.bytes;
        m.series.push(s.t, s.bytes);

        let now = s.t;
        let group_bytes: u64 = members.values().map(|m| m.bytes).sum();
        // Settle: one pressure event stops one process; the next victim is
        // chosen only once the first action had time to take effect.
        if now < settle_until {
            continue;
        }
        // The group's trend: the sum of its members' ongoing growth.
        let trends: Vec<Option<Trend>> = members
            .values()
            .map(|m| {
                m.series.trend(now).filter(|t| {
                    !m.stopped && t.ongoing && t.confidence >= cfg.params.min_confidence
                })
            })
            .collect();
        let slope: f64 = trends
            .iter()
            .flatten()
            .map(|t| t.bytes_per_sec.max(0.0))
            .sum();
        // The next group sample is due when its fastest-reporting grower
        // reports again.
        let typical_gap = trends
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
            span: cfg.window,
            typical_gap: if typical_gap.is_finite() {
                typical_gap
            } else {
                0.0
            },
        };
        let Some(verdict) =
            policy::evaluate(group_bytes, cfg.limit, Some(&group_trend), &cfg.params)
        else {
            continue;
        };

        let cands: Vec<(Candidate, u32)> = members
            .iter()
            .zip(&trends)
            .filter(|((_, m), _)| !m.stopped)
            .map(|((&pid, m), t)| {
                let gained = m.bytes as i64 - bytes_at(&m.series, now - cfg.window) as i64;
                (
                    Candidate {
                        pid,
                        bytes: m.bytes,
                        gained,
                        slope: t.map(|t| t.bytes_per_sec).unwrap_or(0.0),
                        priority: 0,
                        protected: false,
                    },
                    m.root,
                )
            })
            .collect();
        let grouped = group_by_root(&cands);
        let Some(v) = choose_victim(&grouped) else {
            continue;
        };
        let victim = &grouped[v];
        let total_gain: f64 = grouped.iter().map(|c| c.gained.max(0) as f64).sum();
        let root = victim.pid;
        for m in members.values_mut().filter(|m| m.root == root) {
            m.stopped = true;
        }
        let comm = members
            .get(&root)
            .or_else(|| members.values().find(|m| m.root == root))
            .map(|m| m.comm.clone())
            .unwrap_or_default();
        decisions.push(SimDecision {
            t: now,
            pid: root,
            comm,
            group_bytes,
            group_slope: slope,
            predicted_seconds_to_limit: match verdict.trigger {
                Trigger::Predicted { seconds_to_limit } => Some(seconds_to_limit),
                _ => None,
            },
            share: if total_gain > 0.0 {
                victim.gained.max(0) as f64 / total_gain
            } else {
                0.0
            },
            reason: verdict.reason,
        });
        settle_until = now + cfg.settle;
    }
    decisions
}

/// Parses a trace in JSON lines, one [`Sample`] per line; errors name the line.
pub fn parse_trace(text: &str, name: &str) -> Result<Vec<Sample>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{name}:{}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{scenarios::*, *};
    use crate::policy::Sampling;

    fn cfg(limit: u64) -> SimConfig {
        SimConfig {
            limit,
            params: Params {
                horizon_secs: 0.02,
                sampling: Sampling::Step { step_bytes: STEP },
                min_confidence: 0.6,
            },
            window: 2.0,
            settle: 1.0,
        }
    }

    /// The scenario table: in every growth scenario the grower is chosen
    /// (and only it), before the limit; in the plateau scenarios nothing is.
    #[test]
    fn scenario_table() {
        for sc in all() {
            let d = replay(&sc.samples, &cfg(sc.limit));
            match sc.expect {
                Expect::Victim(pid) | Expect::OnlyVictim(pid) => {
                    assert!(!d.is_empty(), "{}: no decision", sc.name);
                    assert_eq!(d[0].pid, pid, "{}: wrong victim {:?}", sc.name, d[0]);
                    assert!(
                        d[0].group_bytes < sc.limit,
                        "{}: acted at or past the limit {:?}",
                        sc.name,
                        d[0]
                    );
                    if sc.expect == Expect::OnlyVictim(pid) {
                        assert_eq!(d.len(), 1, "{}: more than one victim {d:?}", sc.name);
                    }
                }
                Expect::Nothing => assert!(d.is_empty(), "{}: unexpected {d:?}", sc.name),
            }
        }
    }

    #[test]
    fn replay_is_deterministic_and_order_independent() {
        let sc = linear_leak_beside_steady();
        let a = replay(&sc.samples, &cfg(sc.limit));
        let mut rev = sc.samples.clone();
        rev.reverse();
        let b = replay(&rev, &cfg(sc.limit));
        assert_eq!(a, b);
    }

    #[test]
    fn traces_round_trip_through_json_lines() {
        let sc = sawtooth();
        let text: String = sc
            .samples
            .iter()
            .map(|s| serde_json::to_string(s).unwrap() + "\n")
            .collect();
        let back = parse_trace(&text, "t").unwrap();
        assert_eq!(back.len(), sc.samples.len());
        for (a, b) in back.iter().zip(&sc.samples) {
            assert!(
                (a.t - b.t).abs() < 1e-12
                    && a.pid == b.pid
                    && a.bytes == b.bytes
                    && a.comm == b.comm
            );
        }
        let e = parse_trace("{\"t\": 1}\n", "trace.jsonl").unwrap_err();
        assert!(e.starts_with("trace.jsonl:1:"), "{e}");
    }
}
