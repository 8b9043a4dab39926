//! Replay: feeds a recorded or synthetic trace of per-process memory
//! samples through the model and the policy, deterministically and without
//! a kernel, and returns the decisions the agent would make for a group
//! (a cgroup, or the host) with one limit. `sentinel replay TRACE` prints
//! them; the scenario table in the tests pins the engine's behaviour.

pub mod scenarios;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    model::Series,
    policy::{Params, Trigger, group},
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
        // Settle: one pressure event stops one process; the next victim is
        // chosen only once the first action had time to take effect.
        if now < settle_until {
            continue;
        }
        let view: Vec<group::Member<'_>> = members
            .iter()
            .map(|(&pid, m)| group::Member {
                pid,
                root: m.root,
                bytes: m.bytes,
                series: &m.series,
                stopped: m.stopped,
                protected: false,
            })
            .collect();
        let Some(g) = group::decide(&view, cfg.limit, &cfg.params, cfg.window, now) else {
            continue;
        };
        let root = g.root;
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
            group_bytes: g.group_bytes,
            group_slope: g.group_slope,
            predicted_seconds_to_limit: match g.verdict.trigger {
                Trigger::Predicted { seconds_to_limit } => Some(seconds_to_limit),
                _ => None,
            },
            share: g.share,
            reason: g.verdict.reason,
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
