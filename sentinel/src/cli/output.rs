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
    writeln!(out, "{}", decision_line(d))
}

/// What a decision is about: its process, else its cgroup, else the host.
fn subject(d: &pb::Decision) -> String {
    if d.pid != 0 {
        format!("pid {} ({})", d.pid, d.comm)
    } else if !d.cgroup.is_empty() {
        format!("cgroup {}", d.cgroup)
    } else {
        "the host".into()
    }
}

/// One line per decision. A policy change, a pressure warning or an
/// admission event has no charge, limit or slope of a process to show:
/// its reason says what it is about.
fn decision_line(d: &pb::Decision) -> String {
    let head = format!(
        "#{} {}{}",
        d.seq,
        d.kind,
        if d.crash_loop { " CRASH-LOOP" } else { "" }
    );
    match d.kind.as_str() {
        "policy" | "pressure" => {
            format!("{head} action {} [{}]: {}", d.action, d.outcome, d.reason)
        }
        "admission" => format!(
            "{head} {} action {} [{}]: {}",
            subject(d),
            d.action,
            d.outcome,
            d.reason
        ),
        _ => format!(
            "{head} {} rule {} level {} action {} [{}]: charged {} of limit {}, slope {}, eta {}{}: {}",
            subject(d),
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
            // A process's cgroup; a cgroup's own decision named it already.
            if d.pid != 0 && !d.cgroup.is_empty() {
                format!(" in {}", d.cgroup)
            } else {
                String::new()
            },
            d.reason
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(kind: &str, pid: u32, reason: &str) -> pb::Decision {
        pb::Decision {
            seq: 7,
            kind: kind.into(),
            pid,
            comm: if pid == 0 {
                String::new()
            } else {
                "memhog".into()
            },
            cgroup: "/jobs".into(),
            rule: "big".into(),
            level: "preempt".into(),
            action: "freeze".into(),
            outcome: "done".into(),
            reason: reason.into(),
            charged_bytes: 3 << 30,
            limit_bytes: 4 << 30,
            ..Default::default()
        }
    }

    #[test]
    fn a_process_decision_shows_its_figures() {
        let line = decision_line(&decision("preempt", 42, "growing"));
        assert_eq!(
            line,
            "#7 preempt pid 42 (memhog) rule big level preempt action freeze [done]: charged 3.0 GiB of limit 4.0 GiB, slope 0, eta - in /jobs: growing"
        );
    }

    #[test]
    fn a_cgroup_decision_names_the_cgroup_not_pid_zero() {
        let line = decision_line(&decision("preempt", 0, "the group grows"));
        assert!(
            line.starts_with("#7 preempt cgroup /jobs rule big"),
            "{line}"
        );
        assert!(
            !line.contains("pid 0") && !line.contains(" in /jobs"),
            "{line}"
        );
    }

    #[test]
    fn policy_pressure_and_admission_are_not_in_the_process_template() {
        for (kind, pid) in [("policy", 0), ("pressure", 0), ("admission", 42)] {
            let line = decision_line(&decision(kind, pid, "what happened"));
            assert!(!line.contains("pid 0"), "{line}");
            assert!(!line.contains("charged") && !line.contains("eta"), "{line}");
            assert!(line.ends_with(": what happened"), "{line}");
        }
        let admission = decision_line(&decision("admission", 42, "1.0 GiB from the host"));
        assert_eq!(
            admission,
            "#7 admission pid 42 (memhog) action freeze [done]: 1.0 GiB from the host"
        );
    }
}
