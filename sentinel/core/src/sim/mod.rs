//! Replay: feeds a recorded or synthetic trace of per-process memory
//! samples to the engine itself, through the fake host, deterministically
//! and without a kernel. The trace's processes share one limited cgroup,
//! defended by one cgroup rule; what the engine decides is what the agent
//! would decide. `sentinel replay TRACE` prints it; the scenario table in
//! the tests pins the engine's behaviour.

pub mod scenarios;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{
    config::{CgroupRule, Config},
    decision::{DecisionAction, DecisionKind},
    fake::{FakeHost, FakeProc, World},
    policy::{Action, Level, Pattern},
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

/// One of the engine's decisions about the trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimDecision {
    pub t: f64,
    /// "preempt" (a runaway, or a warning), or "queue" (frozen to wait
    /// its turn while others finish).
    pub kind: String,
    /// "warn", "preempt" or "kill".
    pub level: String,
    /// The rung taken: "alert", "freeze", "terminate" or "kill".
    pub action: String,
    /// The process acted on (the top grower, for a warning).
    pub pid: u32,
    /// The root of its tree, as the trace gives it (else itself).
    pub root: u32,
    pub comm: String,
    /// What the group held when the engine decided.
    pub group_bytes: u64,
    /// The slope behind the decision: the process's, or for a warning
    /// the group's.
    pub slope: f64,
    pub predicted_seconds_to_limit: Option<f64>,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// The group's limit; levels are the defaults (warn 70%, preempt 85%,
    /// kill 95%).
    pub limit: u64,
    /// Highest rung of the ladder the group's rule may climb to.
    pub action: Action,
    /// The agent's reaction horizon, in seconds.
    pub horizon_secs: f64,
    /// The step at which the trace's samples were reported.
    pub step_bytes: u64,
}

/// The cgroup every trace process lives in.
const GROUP: &str = "/replay";
/// The group's first process, parent of every tree in the trace: a
/// service's or container's main process, under which trees are told
/// apart.
const TOP: u32 = u32::MAX - 1;

/// The policy a replay runs: one cgroup rule over the trace's group.
fn policy(cfg: &SimConfig) -> Config {
    let mut c = Config::default();
    c.agent.reaction_horizon = std::time::Duration::from_secs_f64(cfg.horizon_secs);
    c.agent.step_bytes = cfg.step_bytes;
    c.cgroup_rules.push(CgroupRule {
        name: "replay".into(),
        selector: Pattern(regex::Regex::new("^/replay$").expect("a valid pattern")),
        action: cfg.action,
        levels: c.levels,
    });
    c
}

/// Each traced process's parent: its tree's root when the trace gives
/// one, else the group's top process.
fn parents(samples: &[Sample]) -> BTreeMap<u32, u32> {
    samples
        .iter()
        .map(|s| (s.pid, s.root.filter(|&r| r != s.pid).unwrap_or(TOP)))
        .collect()
}

/// A fake host with the group, its top process and every tree's root
/// (with no memory until the trace samples it), so that trees are known
/// from the start; the other processes appear at their first sample.
fn host_of(parents: &BTreeMap<u32, u32>, limit: u64) -> FakeHost {
    let mut host = FakeHost::default();
    host.cgroup_limits.insert(GROUP.into(), limit);
    host.spawn(TOP, FakeProc::new(0, "replay-top", GROUP));
    let roots: BTreeSet<u32> = parents.values().copied().filter(|&r| r != TOP).collect();
    for r in roots {
        let parent = parents.get(&r).copied().unwrap_or(TOP);
        host.spawn(r, FakeProc::new(parent, "", GROUP));
    }
    host
}

/// Runs `samples` (any order; sorted here by time, then pid) through the
/// engine. Frozen processes keep their memory but stop growing: their
/// later samples are ignored, as a frozen process produces none. Killed
/// ones free their memory at once.
pub fn replay(samples: &[Sample], cfg: &SimConfig) -> Vec<SimDecision> {
    let mut samples = samples.to_vec();
    samples.sort_by(|a, b| a.t.total_cmp(&b.t).then(a.pid.cmp(&b.pid)));
    let parents = parents(&samples);
    let mut world = World::new(policy(cfg), host_of(&parents, cfg.limit));
    let mut seen = BTreeSet::new();
    for s in &samples {
        if seen.insert(s.pid) && !world.host().procs.contains_key(&s.pid) {
            world.run_until(s.t);
            let p = FakeProc::new(parents[&s.pid], &s.comm, GROUP);
            world.spawn_traced(s.pid, p);
        }
        if let Some(p) = world.host_mut().procs.get_mut(&s.pid)
            && p.comm.is_empty()
        {
            p.comm.clone_from(&s.comm);
        }
        world.sample(s.pid, s.t, s.bytes);
    }
    let root_of = |pid: u32| match parents.get(&pid) {
        Some(&r) if r != TOP => r,
        _ => pid,
    };
    world
        .host()
        .journal
        .iter()
        .filter(|r| matches!(r.decision.kind, DecisionKind::Preempt | DecisionKind::Queue))
        .map(|r| {
            let d = &r.decision;
            SimDecision {
                t: r.t,
                kind: d.kind.as_str().to_string(),
                level: d.level.map(Level::as_str).unwrap_or("").to_string(),
                action: d.action.as_str().to_string(),
                pid: d.pid,
                root: root_of(d.pid),
                comm: d.comm.clone(),
                group_bytes: r.cgroup_usage,
                slope: d.slope_bytes_per_sec,
                predicted_seconds_to_limit: d.predicted_seconds_to_limit,
                reason: d.reason.clone(),
            }
        })
        .collect()
}

/// Decisions that signal something (everything but warnings).
pub fn stops(decisions: &[SimDecision]) -> Vec<&SimDecision> {
    decisions
        .iter()
        .filter(|d| d.action != DecisionAction::Alert.as_str())
        .collect()
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
mod tests;
