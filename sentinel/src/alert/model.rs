//! From decisions to alerts, and when they resolve. Pure: decisions and
//! the time come in, alerts to send come out.
//!
//! An alert is keyed by its name, pid and rule. It fires on the decision,
//! is sent again every resend interval while its condition holds (each
//! send valid for three intervals, so a dead agent's alerts lapse), and is
//! resolved once the condition is gone, though never sooner than
//! `min_firing` after it fired, so a receiver that groups alerts for a few
//! seconds still sees a process that a kill ended at once.

use std::collections::{BTreeMap, HashMap};

use sentinel_core::{
    decision::{DecisionAction, Outcome, ScopeKind},
    policy::Level,
};

use crate::journal::{Decision, DecisionKind};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub alertname: &'static str,
    pub pid: u32,
    pub rule: String,
    /// Which scope the rule is at, so that the agent can tell whether the
    /// condition still holds.
    pub scope: Option<ScopeKind>,
}

/// The alert a process frozen to wait its turn raises: it holds while the
/// process waits.
pub const WAITING: &str = "SentinelWaitingForMemory";

/// What ends an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The scope falls below its warn level and the process is not frozen
    /// (the agent is asked).
    Cleared,
    /// Nothing to ask: `min_firing` after the last occurrence.
    Lapsed,
}

/// One alert as receivers get it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: u64,
    /// For a firing alert, when it lapses unless sent again; for a
    /// resolved one, when it ended.
    pub ends_at_ms: u64,
    pub resolved: bool,
}

struct Active {
    alert: Alert,
    until: Until,
    /// The last decision behind it (a repeat of a one-off event counts).
    last_ms: u64,
    sent_ms: u64,
}

pub struct Tracker {
    host: String,
    resend_ms: u64,
    min_firing_ms: u64,
    active: HashMap<Key, Active>,
}

/// A stop decided in dry-run: said as what would have been done, and not
/// as a page.
pub const WOULD_PREEMPT: &str = "SentinelWouldPreempt";

/// A stop that was tried and did not happen.
pub const PREEMPTION_FAILED: &str = "SentinelPreemptionFailed";

/// `warning` for warnings, `critical` for what stopped or lost a process
/// (or failed to stop it), `info` for what only informs.
fn severity(alertname: &str) -> &'static str {
    match alertname {
        "SentinelReservationGranted" | WAITING | WOULD_PREEMPT => "info",
        "SentinelMemoryWarning"
        | "SentinelMemoryPressure"
        | "SentinelAdmissionDenied"
        | "SentinelReservationEnded" => "warning",
        _ => "critical",
    }
}

fn past_participle(a: DecisionAction) -> &'static str {
    match a {
        DecisionAction::Freeze => "frozen",
        DecisionAction::Terminate => "terminated",
        DecisionAction::Kill => "killed",
        other => other.as_str(),
    }
}

fn level(d: &Decision) -> &'static str {
    d.level.map(Level::as_str).unwrap_or("")
}

fn describe(d: &Decision, alertname: &str) -> String {
    match alertname {
        "SentinelMemoryWarning" => format!(
            "pid {} ({}) at {} of rule {}: {}",
            d.pid,
            d.comm,
            level(d),
            d.rule,
            d.reason
        ),
        "SentinelPreempted" => format!(
            "Sentinel {} pid {} ({}) at {} of rule {}: {}",
            match d.action {
                DecisionAction::Freeze => "froze",
                other => past_participle(other),
            },
            d.pid,
            d.comm,
            level(d),
            d.rule,
            d.reason
        ),
        WOULD_PREEMPT => format!(
            "Sentinel would have {} pid {} ({}) at {} of rule {} (dry-run: nothing was done): {}",
            past_participle(d.action),
            d.pid,
            d.comm,
            level(d),
            d.rule,
            d.reason
        ),
        PREEMPTION_FAILED => format!(
            "Sentinel did not {} pid {} ({}) at {} of rule {}: {}; it had decided: {}",
            d.action,
            d.pid,
            d.comm,
            level(d),
            d.rule,
            d.outcome,
            d.reason
        ),
        _ => d.reason.clone(),
    }
}

impl Tracker {
    pub fn new(host: String, resend_ms: u64, min_firing_ms: u64) -> Self {
        Self {
            host,
            resend_ms,
            min_firing_ms,
            active: HashMap::new(),
        }
    }

    /// Alerts that are firing now.
    pub fn firing(&self) -> usize {
        self.active.len()
    }

    pub fn keys(&self) -> impl Iterator<Item = (&Key, Until)> {
        self.active.iter().map(|(k, a)| (k, a.until))
    }

    /// The alert a decision raises, if any: warnings and actions on a
    /// process or scope, memory pressure, and kernel OOM kills.
    pub fn alert_of(&self, d: &Decision) -> Option<(Key, Alert, Until)> {
        use DecisionAction as A;
        let (alertname, until) = match d.kind {
            DecisionKind::Preempt if d.action == A::Alert => {
                ("SentinelMemoryWarning", Until::Cleared)
            }
            DecisionKind::Preempt => match d.outcome {
                Outcome::DryRun => (WOULD_PREEMPT, Until::Cleared),
                Outcome::Failed(_) => (PREEMPTION_FAILED, Until::Cleared),
                _ => ("SentinelPreempted", Until::Cleared),
            },
            DecisionKind::KernelOomKill => ("SentinelKernelOomKill", Until::Lapsed),
            DecisionKind::Pressure => ("SentinelMemoryPressure", Until::Lapsed),
            // Waiting is not failing: said, but not as a preemption; and
            // only when it really waits (not in dry-run).
            DecisionKind::Queue if d.outcome == Outcome::Done => (WAITING, Until::Cleared),
            DecisionKind::Admission => match d.action {
                A::Granted => ("SentinelReservationGranted", Until::Lapsed),
                A::Denied | A::TimedOut | A::Displaced => {
                    ("SentinelAdmissionDenied", Until::Lapsed)
                }
                A::Expired | A::Orphaned => ("SentinelReservationEnded", Until::Lapsed),
                _ => return None,
            },
            _ => return None,
        };
        let mut labels = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                labels.insert(k.to_string(), v.to_string());
            }
        };
        put("alertname", alertname);
        put("severity", severity(alertname));
        put("host", &self.host);
        if d.pid != 0 {
            put("pid", &d.pid.to_string());
        }
        put("comm", &d.comm);
        put("cgroup", &d.cgroup);
        put("rule", &d.rule);
        put("scope", d.scope.map(ScopeKind::as_str).unwrap_or(""));
        put("level", level(d));
        put("action", d.action.as_str());
        if d.outcome == Outcome::DryRun {
            put("dry_run", "true");
        }
        put(
            "container_id",
            super::labels::container_id(&d.cgroup).unwrap_or(""),
        );
        put(
            "pod_uid",
            &super::labels::pod_uid(&d.cgroup).unwrap_or_default(),
        );
        let mut annotations = BTreeMap::new();
        annotations.insert("summary".into(), describe(d, alertname));
        annotations.insert("description".into(), d.reason.clone());
        annotations.insert("outcome".into(), d.outcome.to_string());
        annotations.insert("decision_seq".into(), d.seq.to_string());
        if d.limit_bytes > 0 {
            annotations.insert("charged_bytes".into(), d.charged_bytes.to_string());
            annotations.insert("limit_bytes".into(), d.limit_bytes.to_string());
        }
        let key = Key {
            alertname,
            pid: d.pid,
            rule: d.rule.clone(),
            scope: d.scope,
        };
        let alert = Alert {
            labels,
            annotations,
            starts_at_ms: d.time_unix_ms,
            ends_at_ms: 0,
            resolved: false,
        };
        Some((key, alert, until))
    }

    fn lapse_ms(&self, now_ms: u64) -> u64 {
        now_ms + 3 * self.resend_ms
    }

    /// The alerts to send for a decision: the new or changed alert, and
    /// the resolution of what it replaces (same key, other labels).
    pub fn on_decision(&mut self, d: &Decision, now_ms: u64) -> Vec<Alert> {
        let Some((key, mut alert, until)) = self.alert_of(d) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let ends = self.lapse_ms(now_ms);
        if let Some(a) = self.active.get_mut(&key) {
            if a.alert.labels == alert.labels {
                // The same alert again: keep its start, refresh the rest.
                alert.starts_at_ms = a.alert.starts_at_ms;
            } else {
                let mut old = a.alert.clone();
                old.resolved = true;
                old.ends_at_ms = now_ms;
                out.push(old);
            }
        }
        alert.ends_at_ms = ends;
        out.push(alert.clone());
        self.active.insert(
            key,
            Active {
                alert,
                until,
                last_ms: now_ms,
                sent_ms: now_ms,
            },
        );
        out
    }

    /// Resolutions of alerts whose condition is gone (`holds` says whether
    /// a `Cleared` alert's condition still holds) and resends of the rest.
    pub fn sweep(&mut self, now_ms: u64, holds: impl Fn(&Key) -> bool) -> Vec<Alert> {
        let mut out = Vec::new();
        let (resend, min_firing, lapse) =
            (self.resend_ms, self.min_firing_ms, self.lapse_ms(now_ms));
        let mut keys: Vec<Key> = self.active.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let a = self.active.get_mut(&key).expect("listed just above");
            let old_enough = now_ms.saturating_sub(a.last_ms) >= min_firing;
            let over = match a.until {
                Until::Cleared => old_enough && !holds(&key),
                Until::Lapsed => old_enough,
            };
            if over {
                let mut alert = self.active.remove(&key).expect("present").alert;
                alert.resolved = true;
                alert.ends_at_ms = now_ms;
                out.push(alert);
            } else if now_ms.saturating_sub(a.sent_ms) >= resend {
                a.sent_ms = now_ms;
                a.alert.ends_at_ms = lapse;
                out.push(a.alert.clone());
            }
        }
        out
    }
}

/// RFC 3339 in UTC with milliseconds, as Alertmanager's API takes.
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(a: &str) -> DecisionAction {
        if a.is_empty() {
            DecisionAction::None
        } else {
            serde_json::from_value(a.into()).unwrap()
        }
    }

    fn decision(kind: DecisionKind, pid: u32, act: &str, level: &str) -> Decision {
        Decision {
            seq: 7,
            time_unix_ms: 1_000,
            kind,
            pid,
            comm: "leaker".into(),
            cgroup: "/kubepods/burstable/pod0d6d5b55-1b3b-4c2e-9b6a-6a2f7b0c9e11/3f9a1c0de7b2a4f6c8e0d2b4a6f8c0e2d4b6a8f0c2e4d6b8a0f2c4e6d8b0a2f4".into(),
            rule: "workers".into(),
            level: (!level.is_empty()).then(|| level.parse().unwrap()),
            action: action(act),
            outcome: sentinel_core::decision::Outcome::Done,
            scope: Some(ScopeKind::Process),
            reason: "growing at 50 MB/s".into(),
            limit_bytes: 100,
            charged_bytes: 90,
            ..Decision::default()
        }
    }

    #[test]
    fn an_action_fires_with_its_labels_and_resolves_when_the_condition_clears() {
        let mut t = Tracker::new("node-1".into(), 60_000, 30_000);
        let out = t.on_decision(
            &decision(DecisionKind::Preempt, 42, "freeze", "preempt"),
            1_000,
        );
        assert_eq!(out.len(), 1);
        let a = &out[0];
        assert!(!a.resolved);
        assert_eq!(a.ends_at_ms, 181_000);
        for (k, v) in [
            ("alertname", "SentinelPreempted"),
            ("severity", "critical"),
            ("host", "node-1"),
            ("pid", "42"),
            ("comm", "leaker"),
            ("rule", "workers"),
            ("scope", "process"),
            ("level", "preempt"),
            ("action", "freeze"),
            ("pod_uid", "0d6d5b55-1b3b-4c2e-9b6a-6a2f7b0c9e11"),
            (
                "container_id",
                "3f9a1c0de7b2a4f6c8e0d2b4a6f8c0e2d4b6a8f0c2e4d6b8a0f2c4e6d8b0a2f4",
            ),
        ] {
            assert_eq!(a.labels.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(a.annotations["summary"].starts_with("Sentinel froze pid 42 (leaker)"));

        // Still frozen: nothing until the resend interval, then a resend.
        assert!(t.sweep(30_000, |_| true).is_empty());
        let again = t.sweep(61_000, |_| true);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].starts_at_ms, 1_000);
        assert_eq!(again[0].ends_at_ms, 241_000);

        // Cleared: resolved, once.
        let done = t.sweep(62_000, |_| false);
        assert_eq!(done.len(), 1);
        assert!(done[0].resolved);
        assert_eq!(done[0].ends_at_ms, 62_000);
        assert_eq!(t.firing(), 0);
        assert!(t.sweep(200_000, |_| false).is_empty());
    }

    #[test]
    fn a_kill_that_ends_the_condition_at_once_still_fires_for_min_firing() {
        let mut t = Tracker::new("h".into(), 60_000, 30_000);
        t.on_decision(&decision(DecisionKind::Preempt, 42, "kill", "kill"), 1_000);
        assert!(t.sweep(20_000, |_| false).is_empty(), "held for min_firing");
        assert_eq!(t.sweep(31_000, |_| false).len(), 1);
    }

    #[test]
    fn an_escalation_replaces_the_alert_and_resolves_the_old_label_set() {
        let mut t = Tracker::new("h".into(), 60_000, 0);
        t.on_decision(
            &decision(DecisionKind::Preempt, 42, "freeze", "preempt"),
            1_000,
        );
        let out = t.on_decision(&decision(DecisionKind::Preempt, 42, "kill", "kill"), 2_000);
        assert_eq!(out.len(), 2);
        assert!(out[0].resolved && out[0].labels["action"] == "freeze");
        assert!(!out[1].resolved && out[1].labels["action"] == "kill");
        assert_eq!(t.firing(), 1);
        // A warning is its own alert beside the action.
        t.on_decision(&decision(DecisionKind::Preempt, 42, "alert", "warn"), 3_000);
        assert_eq!(t.firing(), 2);
        // Policy changes raise nothing.
        assert!(
            t.on_decision(&decision(DecisionKind::Policy, 0, "", ""), 4_000)
                .is_empty()
        );
    }

    #[test]
    fn one_off_events_lapse_after_min_firing_since_the_last_one() {
        let mut t = Tracker::new("h".into(), 60_000, 30_000);
        let oom = decision(DecisionKind::KernelOomKill, 9, "", "");
        let a = t.on_decision(&oom, 1_000);
        assert_eq!(a[0].labels["alertname"], "SentinelKernelOomKill");
        t.on_decision(&oom, 20_000);
        assert!(t.sweep(40_000, |_| true).is_empty());
        let r = t.sweep(50_000, |_| true);
        assert!(r.len() == 1 && r[0].resolved);
    }

    #[test]
    fn admission_grants_denials_and_expiries_are_alerts_releases_are_not() {
        let mut t = Tracker::new("h".into(), 60_000, 30_000);
        let mut d = decision(DecisionKind::Admission, 7, "granted", "");
        d.rule = "admission".into();
        d.scope = Some(ScopeKind::Admission);
        let a = t.on_decision(&d, 1_000);
        assert_eq!(a[0].labels["alertname"], "SentinelReservationGranted");
        assert_eq!(a[0].labels["severity"], "info");
        for (act, name) in [
            ("denied", "SentinelAdmissionDenied"),
            ("timed_out", "SentinelAdmissionDenied"),
            ("expired", "SentinelReservationEnded"),
            ("orphaned", "SentinelReservationEnded"),
        ] {
            d.action = action(act);
            let a = t.on_decision(&d, 2_000);
            assert_eq!(a.last().unwrap().labels["alertname"], name, "{act}");
        }
        d.action = action("released");
        assert!(t.on_decision(&d, 3_000).is_empty());
    }

    #[test]
    fn a_wait_for_memory_is_said_but_not_as_a_preemption() {
        let mut t = Tracker::new("h".into(), 60_000, 0);
        let mut d = decision(DecisionKind::Queue, 7, "freeze", "preempt");
        d.scope = Some(ScopeKind::Cgroup);
        let a = t.on_decision(&d, 1_000);
        assert_eq!(a[0].labels["alertname"], WAITING);
        assert_eq!(a[0].labels["severity"], "info");
        assert_eq!(a[0].labels["scope"], "cgroup");
        // It holds while the process waits, and resolves when it runs.
        assert!(t.sweep(2_000, |_| true).is_empty());
        let done = t.sweep(3_000, |_| false);
        assert!(done.len() == 1 && done[0].resolved);
    }

    #[test]
    fn a_dry_run_stop_is_said_as_what_would_have_been_done_and_does_not_page() {
        let mut t = Tracker::new("h".into(), 60_000, 0);
        let mut d = decision(DecisionKind::Preempt, 9, "kill", "kill");
        d.outcome = Outcome::DryRun;
        let a = &t.on_decision(&d, 1_000)[0];
        assert_eq!(a.labels["alertname"], WOULD_PREEMPT);
        assert_eq!(a.labels["severity"], "info");
        assert_eq!(a.labels["dry_run"], "true");
        assert_eq!(a.labels["action"], "kill");
        let summary = &a.annotations["summary"];
        assert!(
            summary.starts_with("Sentinel would have killed pid 9 (leaker) at kill of rule workers (dry-run: nothing was done)"),
            "{summary}"
        );
        assert!(!summary.contains("Sentinel killed"), "{summary}");
        // A real stop carries no dry-run label.
        let real = &t.on_decision(&decision(DecisionKind::Preempt, 10, "kill", "kill"), 1_000)[0];
        assert_eq!(real.labels["alertname"], "SentinelPreempted");
        assert!(!real.labels.contains_key("dry_run"));
    }

    #[test]
    fn a_stop_that_failed_is_not_said_as_done() {
        let mut t = Tracker::new("h".into(), 60_000, 0);
        let mut d = decision(DecisionKind::Preempt, 9, "freeze", "preempt");
        d.outcome = Outcome::Failed("no such process".into());
        let a = &t.on_decision(&d, 1_000)[0];
        assert_eq!(a.labels["alertname"], PREEMPTION_FAILED);
        assert_eq!(a.labels["severity"], "critical");
        let summary = &a.annotations["summary"];
        assert!(
            summary.starts_with("Sentinel did not freeze pid 9 (leaker) at preempt of rule workers: failed: no such process"),
            "{summary}"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_480_109_123), "2026-11-24T00:28:29.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
