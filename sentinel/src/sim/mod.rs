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
    policy::{Action, Hysteresis, Levels, Params, Trigger, group, levels::rung},
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
    /// "warn", "preempt" or "kill".
    pub level: String,
    /// The rung taken: "alert", "freeze", "terminate" or "kill".
    pub action: String,
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
    pub levels: Levels,
    /// Highest rung of the ladder the simulated rule may climb to.
    pub action: Action,
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
    killed: bool,
}

/// Runs `samples` (any order; sorted here by time, then pid) through the
/// engine. Frozen processes keep their memory but stop growing: their
/// later samples are ignored, as a frozen process produces none. Killed
/// ones free their memory at once.
pub fn replay(samples: &[Sample], cfg: &SimConfig) -> Vec<SimDecision> {
    let mut samples = samples.to_vec();
    samples.sort_by(|a, b| a.t.total_cmp(&b.t).then(a.pid.cmp(&b.pid)));
    let mut members: BTreeMap<u32, Member> = BTreeMap::new();
    let mut decisions = Vec::new();
    let mut settle_until = f64::NEG_INFINITY;
    let mut held = Hysteresis::default();

    for s in &samples {
        let m = members.entry(s.pid).or_insert_with(|| Member {
            comm: s.comm.clone(),
            root: s.root.unwrap_or(s.pid),
            series: Series::new(60.0),
            bytes: 0,
            stopped: false,
            killed: false,
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
            .filter(|(_, m)| !m.killed)
            .map(|(&pid, m)| group::Member {
                pid,
                root: m.root,
                bytes: m.bytes,
                series: &m.series,
                stopped: m.stopped,
                frozen: m.stopped && !m.killed,
                protected: false,
                priority: 0,
            })
            .collect();
        let usage: u64 = view.iter().map(|m| m.bytes).sum();
        let g = group::decide(
            &view,
            usage,
            cfg.limit,
            &cfg.levels,
            cfg.action,
            &cfg.params,
            cfg.window,
            now,
        );
        let rose = held.update(g.as_ref().map(|g| g.level), usage, cfg.limit, &cfg.levels);
        let Some(g) = g else {
            continue;
        };
        let action = rung(g.level, cfg.action);
        // Warnings are recorded once per rise; stopping is repeated for
        // each new grower.
        let victim = match (&g.victim, action) {
            (Some(v), a) if a > Action::Alert => v.clone(),
            (v, _) if rose => {
                let pid = v.as_ref().map(|v| v.root).unwrap_or(0);
                decisions.push(sim_decision(now, &g, pid, "", Action::Alert));
                continue;
            }
            _ => continue,
        };
        let root = victim.root;
        for m in members.values_mut().filter(|m| m.root == root) {
            m.stopped = true;
            m.killed |= action >= Action::Terminate;
        }
        let comm = members
            .get(&root)
            .or_else(|| members.values().find(|m| m.root == root))
            .map(|m| m.comm.clone())
            .unwrap_or_default();
        let mut d = sim_decision(now, &g, root, &comm, action);
        d.share = victim.share;
        decisions.push(d);
        settle_until = now + cfg.settle;
    }
    decisions
}

fn sim_decision(
    t: f64,
    g: &group::GroupDecision,
    pid: u32,
    comm: &str,
    action: Action,
) -> SimDecision {
    SimDecision {
        t,
        level: g.level.as_str().to_string(),
        action: action.as_str().to_string(),
        pid,
        comm: comm.to_string(),
        group_bytes: g.group_bytes,
        group_slope: g.group_slope,
        predicted_seconds_to_limit: match g.verdict.trigger {
            Trigger::Predicted { seconds_to_limit } => Some(seconds_to_limit),
            _ => None,
        },
        share: 0.0,
        reason: g.verdict.reason.clone(),
    }
}

/// Decisions that signal something (everything but warnings).
pub fn stops(decisions: &[SimDecision]) -> Vec<&SimDecision> {
    decisions.iter().filter(|d| d.action != "alert").collect()
}

/// What a floor-and-biggest killer does with the same trace, for
/// comparison: earlyoom and the kernel OOM killer look at usage only every
/// `poll_secs` (the kernel: at every allocation, `poll_secs` 0) and, once it
/// is at `floor` of the limit, kill the process with the most memory.
/// Returns (time, victim pid, usage seen) of the first kill, if any.
pub fn biggest_at_the_floor(
    samples: &[Sample],
    limit: u64,
    floor: f64,
    poll_secs: f64,
) -> Option<(f64, u32, u64)> {
    let mut samples = samples.to_vec();
    samples.sort_by(|a, b| a.t.total_cmp(&b.t).then(a.pid.cmp(&b.pid)));
    let mut latest: BTreeMap<u32, u64> = BTreeMap::new();
    let mut next_poll = 0.0;
    for s in &samples {
        latest.insert(s.pid, s.bytes);
        if s.t < next_poll {
            continue;
        }
        next_poll = s.t + poll_secs;
        let usage: u64 = latest.values().sum();
        if usage as f64 >= floor * limit as f64 {
            let (&pid, _) = latest
                .iter()
                .max_by_key(|(pid, b)| (**b, std::cmp::Reverse(**pid)))?;
            return Some((s.t, pid, usage));
        }
    }
    None
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
            levels: Levels::default(),
            action: Action::Freeze,
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
            if let Err(e) = sc.check(&d) {
                panic!("{}: {e}: {d:?}", sc.name);
            }
        }
    }

    #[test]
    fn a_jump_to_the_warn_level_is_warned_once_and_never_stopped() {
        let sc = jump_to_70_percent_and_hold();
        let d = replay(&sc.samples, &cfg(sc.limit));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].level.as_str(), d[0].action.as_str()),
            ("warn", "alert")
        );
    }

    #[test]
    fn the_kill_level_escalates_the_frozen_grower_first() {
        // A leaker frozen at the preempt level keeps its memory; then a
        // second process grows the group past the kill level. The frozen
        // leaker is killed (freeing its memory) under a kill-capped rule.
        let mut s = reported(2, "leaker", None, 6.0, |t| 300 * MIB + (400e6 * t) as u64);
        s.extend(reported(3, "late", None, 6.0, |t| {
            if t < 3.0 { MIB } else { 150 * MIB }
        }));
        let c = SimConfig {
            action: Action::Kill,
            ..cfg(1024 * MIB)
        };
        let d = replay(&s, &c);
        let acts: Vec<(u32, &str)> = stops(&d)
            .iter()
            .map(|d| (d.pid, d.action.as_str()))
            .collect();
        assert_eq!(acts[0], (2, "freeze"), "{d:?}");
        assert!(acts.contains(&(2, "kill")), "{d:?}");
        let kill = acts.iter().position(|a| *a == (2, "kill")).unwrap();
        assert!(
            !acts[..kill].contains(&(3, "kill")),
            "the new grower was killed before the frozen one {d:?}"
        );
    }

    #[test]
    fn the_biggest_at_the_floor_kills_the_steady_process() {
        // The failure Sentinel exists to avoid: a 600 MiB steady process
        // and a leaker; the floor killer takes the steady one, late.
        let sc = linear_leak_beside_steady();
        let (t, pid, usage) = biggest_at_the_floor(&sc.samples, sc.limit, 0.9, 1.0).unwrap();
        assert_eq!(pid, 1);
        assert!(usage as f64 >= 0.9 * sc.limit as f64 && t > 1.0);
        // Plateaus under the floor are left alone by it too.
        assert_eq!(
            biggest_at_the_floor(&burst_then_plateau().samples, 1024 * MIB, 0.9, 1.0),
            None
        );
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
