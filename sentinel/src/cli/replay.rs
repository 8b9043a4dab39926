//! `sentinel replay`: the simulator from the command line. It runs the
//! engine itself on a fake host, so what it prints is what the agent
//! would decide.

use std::{io::Write, path::PathBuf};

use sentinel_core::{
    policy::Action,
    sim::{self, SimConfig, SimDecision, scenarios},
    units::{ByteSize, Span, human_bytes},
};

#[derive(clap::Args)]
pub struct Args {
    /// JSON lines: {"t": seconds, "pid": N, "comm": "...", "bytes": N, "root": N}
    pub trace: Option<PathBuf>,
    /// The group's limit (e.g. 1GiB); required with a trace.
    #[arg(long)]
    pub limit: Option<String>,
    #[arg(long, default_value = "20ms")]
    pub horizon: String,
    /// The step at which the trace's samples were reported.
    #[arg(long, default_value = "1MiB")]
    pub step: String,
    /// Run the built-in scenario table and print victim accuracy.
    #[arg(long)]
    pub scenarios: bool,
    /// Highest rung the simulated rule may climb to: alert, freeze,
    /// terminate or kill. Levels are the defaults (warn 70%, preempt 85%,
    /// kill 95% of the limit).
    #[arg(long, default_value = "freeze", value_parser = parse_action)]
    pub action: Action,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Input(String),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

fn config(limit: u64, horizon: &str, step: &str, action: Action) -> Result<SimConfig, ReplayError> {
    let horizon =
        Span::parse(horizon).map_err(|e| ReplayError::Input(format!("--horizon: {e}")))?;
    let step = ByteSize::parse(step).map_err(|e| ReplayError::Input(format!("--step: {e}")))?;
    Ok(SimConfig {
        limit,
        action,
        horizon_secs: horizon.0.as_secs_f64(),
        step_bytes: step.0,
    })
}

fn parse_action(s: &str) -> Result<Action, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("`{s}` is not one of alert, freeze, terminate, kill"))
}

fn print(out: &mut impl Write, d: &SimDecision, json: bool) -> std::io::Result<()> {
    if json {
        let line = serde_json::to_string(d).map_err(std::io::Error::other)?;
        return writeln!(out, "{line}");
    }
    writeln!(
        out,
        "t={:.3}s {} level: {} ({}) pid {} ({}) growing {}/s; group {}: {}",
        d.t,
        d.level,
        d.action,
        d.kind,
        d.pid,
        d.comm,
        human_bytes(d.slope),
        human_bytes(d.group_bytes as f64),
        d.reason
    )
}

pub fn run(a: Args) -> Result<(), ReplayError> {
    let mut out = std::io::stdout().lock();
    if a.scenarios {
        return scenario_table(&mut out, &a.horizon, &a.step);
    }
    let path = a
        .trace
        .ok_or_else(|| ReplayError::Input("give a TRACE file, or --scenarios".into()))?;
    let limit = a
        .limit
        .ok_or_else(|| ReplayError::Input("--limit is required with a trace".into()))?;
    let limit = ByteSize::parse(&limit).map_err(|e| ReplayError::Input(format!("--limit: {e}")))?;
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(&path).map_err(|e| ReplayError::Input(format!("{name}: {e}")))?;
    let samples = sim::parse_trace(&text, &name).map_err(ReplayError::Input)?;
    for d in sim::replay(&samples, &config(limit.0, &a.horizon, &a.step, a.action)?) {
        print(&mut out, &d, a.json)?;
    }
    Ok(())
}

/// The victim-accuracy table: every scenario, what was expected, what the
/// engine did.
fn scenario_table(out: &mut impl Write, horizon: &str, step: &str) -> Result<(), ReplayError> {
    let mut right = 0;
    let all = scenarios::all();
    // The same traces under the policies Sentinel replaces: earlyoom
    // (polls about once a second, kills the biggest below 10% free) and
    // the kernel OOM killer (at the limit, the biggest).
    let mut earlyoom_right = 0;
    let mut kernel_right = 0;
    writeln!(
        out,
        "| scenario | expected | Sentinel's first stop | ok | earlyoom-like (1 s poll, 90%, biggest) | kernel OOM (100%, biggest) |"
    )?;
    writeln!(out, "| --- | --- | --- | --- | --- | --- |")?;
    for sc in &all {
        let cfg = config(sc.limit, horizon, step, Action::Freeze)?;
        let (first, ok) = sentinel_cell(sc, &cfg);
        right += ok as usize;
        let (early, early_ok) = baseline_cell(sc, 0.9, 1.0);
        earlyoom_right += early_ok as usize;
        let (kernel, kernel_ok) = baseline_cell(sc, 1.0, 0.0);
        kernel_right += kernel_ok as usize;
        let expected = match sc.expect {
            scenarios::Expect::Victim(p) => format!("stop pid {p} first"),
            scenarios::Expect::OnlyVictim(p) => format!("stop pid {p} only"),
            scenarios::Expect::Nothing => "no action".to_string(),
        };
        writeln!(
            out,
            "| {} | {expected} | {first} | {} | {early} | {kernel} |",
            sc.name,
            if ok { "yes" } else { "NO" }
        )?;
    }
    writeln!(out, "\nvictim accuracy: {right} of {} scenarios", all.len())?;
    writeln!(
        out,
        "right victim: Sentinel {right} of {n} (reversibly, before 95% of the limit); earlyoom-like {earlyoom_right} of {n} and kernel OOM killer {kernel_right} of {n} (by kill, at 90% and 100%)",
        n = all.len()
    )?;
    if right != all.len() {
        return Err(ReplayError::Input("some scenarios went wrong".into()));
    }
    Ok(())
}

/// What the engine stopped first in one scenario, and whether that was right.
fn sentinel_cell(sc: &scenarios::Scenario, cfg: &SimConfig) -> (String, bool) {
    let d = sim::replay(&sc.samples, cfg);
    let checked = sc.check(&d);
    let ok = checked.is_ok();
    let stops = sim::stops(&d);
    let first = stops
        .first()
        .map(|f| {
            let tree = if f.root == f.pid {
                String::new()
            } else {
                format!(" (tree {})", f.root)
            };
            format!(
                "{} pid {}{tree} at {} of {} ({} stops, {} warnings)",
                f.action,
                f.pid,
                human_bytes(f.group_bytes as f64),
                human_bytes(sc.limit as f64),
                stops.len(),
                d.len() - stops.len()
            )
        })
        .unwrap_or_else(|| format!("none ({} warnings)", d.len()));
    let first = match checked {
        Ok(()) => first,
        Err(e) => format!("{first}: {e}"),
    };
    (first, ok)
}

/// What a kill-the-biggest policy polling every `poll` seconds, acting at
/// `floor` of the limit, would have killed, and whether that was right.
fn baseline_cell(sc: &scenarios::Scenario, floor: f64, poll: f64) -> (String, bool) {
    let kill = sim::biggest_at_the_floor(&sc.samples, sc.limit, floor, poll);
    let what = kill
        .map(|(t, pid, usage)| {
            format!(
                "kills pid {pid} at {} (t={t:.1}s)",
                human_bytes(usage as f64)
            )
        })
        .unwrap_or_else(|| "none".into());
    match sc.check_kill(kill) {
        Ok(()) => (format!("{what}: right victim"), true),
        Err(e) => (format!("{what}: WRONG, {e}"), false),
    }
}
