//! Output shared by several subcommands: a decision as one line of text or
//! JSON (`decisions`, `policy apply`, `resume`, `protect`, `unprotect`),
//! and the growth rate and time-to-limit cells (`top` and decisions).

use std::io::Write;

use serde::Serialize;

use sentinel_api::pb;
use sentinel_core::units::human_bytes;

/// JSON shape of a decision for `--json` (one object per line).
#[derive(Serialize)]
pub struct DecisionJson<'a> {
    pub seq: u64,
    pub time_unix_ms: u64,
    pub kind: &'a str,
    pub pid: u32,
    pub comm: &'a str,
    pub cgroup: &'a str,
    pub rule: &'a str,
    pub level: &'a str,
    pub action: &'a str,
    pub outcome: &'a str,
    pub reason: &'a str,
    pub resident_bytes: u64,
    pub charged_bytes: u64,
    pub slope_bytes_per_sec: f64,
    pub limit_bytes: u64,
    pub predicted_seconds_to_limit: Option<f64>,
    pub crash_loop: bool,
}

impl<'a> From<&'a pb::Decision> for DecisionJson<'a> {
    fn from(d: &'a pb::Decision) -> Self {
        Self {
            seq: d.seq,
            time_unix_ms: d.time_unix_ms,
            kind: &d.kind,
            pid: d.pid,
            comm: &d.comm,
            cgroup: &d.cgroup,
            rule: &d.rule,
            level: &d.level,
            action: &d.action,
            outcome: &d.outcome,
            reason: &d.reason,
            resident_bytes: d.resident_bytes,
            charged_bytes: d.charged_bytes,
            slope_bytes_per_sec: d.slope_bytes_per_sec,
            limit_bytes: d.limit_bytes,
            predicted_seconds_to_limit: d.predicted_seconds_to_limit,
            crash_loop: d.crash_loop,
        }
    }
}

pub(super) fn rate(bps: f64) -> String {
    if bps.abs() < 1.0 {
        "0".into()
    } else {
        format!("{}/s", human_bytes(bps))
    }
}

pub(super) fn eta(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1e3),
        Some(s) if s < 120.0 => format!("{s:.1}s"),
        Some(s) => format!("{:.0}m", s / 60.0),
    }
}

pub(super) fn print_decision(
    out: &mut impl Write,
    d: &pb::Decision,
    json: bool,
) -> std::io::Result<()> {
    if json {
        let line = serde_json::to_string(&DecisionJson::from(d)).map_err(std::io::Error::other)?;
        return writeln!(out, "{line}");
    }
    writeln!(
        out,
        "#{} {}{} pid {} ({}) rule {} level {} action {} [{}]: charged {} of limit {}, slope {}, eta {} in {}: {}",
        d.seq,
        d.kind,
        if d.crash_loop { " CRASH-LOOP" } else { "" },
        d.pid,
        d.comm,
        if d.rule.is_empty() { "-" } else { &d.rule },
        if d.level.is_empty() { "-" } else { &d.level },
        d.action,
        d.outcome,
        human_bytes(d.charged_bytes as f64),
        // A resume or a host-wide note has no limit of its own to show.
        if d.limit_bytes == 0 {
            "-".into()
        } else {
            human_bytes(d.limit_bytes as f64)
        },
        rate(d.slope_bytes_per_sec),
        eta(d.predicted_seconds_to_limit),
        d.cgroup,
        d.reason
    )
}
