//! A decision as it is journalled, served and alerted on. Its scope,
//! level, action and outcome are types; they become strings only at the
//! edges (the journal's JSON, the proto, alert labels), where they keep the
//! spelling every earlier journal used.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::policy::{Action, Level};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Sentinel acted (or, in dry-run, would have) on a predicted crossing.
    #[default]
    Preempt,
    /// The kernel OOM killer killed a process: a miss worth seeing.
    KernelOomKill,
    /// A process Sentinel froze was resumed: the pressure cleared.
    Resume,
    /// Memory pressure (PSI) crossed its trigger: an early warning.
    Pressure,
    /// The policy changed (reload or ApplyPolicy), and who changed it.
    Policy,
    /// An operator protected a process, or took the protection back.
    Protect,
    /// Admission control granted, released, expired or refused a memory
    /// reservation (`action` says which).
    Admission,
    /// At a shared limit, a process was frozen to wait its turn while
    /// others finish (not a runaway); it resumes as memory frees.
    Queue,
    /// Who holds a frozen process across the agent's restarts: left frozen
    /// at a stop, taken back at the next start.
    Custody,
}

impl DecisionKind {
    pub const ALL: [Self; 9] = [
        Self::Preempt,
        Self::KernelOomKill,
        Self::Resume,
        Self::Pressure,
        Self::Policy,
        Self::Protect,
        Self::Admission,
        Self::Queue,
        Self::Custody,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preempt => "preempt",
            Self::KernelOomKill => "kernel_oom_kill",
            Self::Resume => "resume",
            Self::Pressure => "pressure",
            Self::Policy => "policy",
            Self::Protect => "protect",
            Self::Admission => "admission",
            Self::Queue => "queue",
            Self::Custody => "custody",
        }
    }
}

/// Which kind of limit a decision is about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// A process under its own rule (also its rule's `gpu_limit`, and the
    /// process a kernel OOM kill or an operator's protection names).
    #[default]
    Process,
    Cgroup,
    Host,
    Gpu,
    Admission,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Cgroup => "cgroup",
            Self::Host => "host",
            Self::Gpu => "gpu",
            Self::Admission => "admission",
        }
    }

    /// What a journal written before decisions carried their scope implies:
    /// the names the agent gave its own scopes' rules. A cgroup rule's name
    /// cannot be told from a process rule's, so those are left unknown.
    fn of_legacy(kind: DecisionKind, rule: &str) -> Option<Self> {
        match (kind, rule) {
            (DecisionKind::Policy, _) => None,
            (DecisionKind::Admission, _) => Some(Self::Admission),
            (DecisionKind::Pressure, _) | (_, "host") => Some(Self::Host),
            (_, r)
                if r.strip_prefix("gpu:")
                    .is_some_and(|d| d.parse::<u32>().is_ok()) =>
            {
                Some(Self::Gpu)
            }
            (DecisionKind::KernelOomKill | DecisionKind::Protect, _) => Some(Self::Process),
            _ => None,
        }
    }
}

/// What was done, or would have been: a rung of the ladder, or one of the
/// other things a decision records.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DecisionAction {
    /// Nothing Sentinel did (a kernel OOM kill).
    #[default]
    None,
    Alert,
    Freeze,
    Terminate,
    Kill,
    Resume,
    /// A policy was applied.
    Apply,
    Protect,
    Unprotect,
    Queued,
    Granted,
    Released,
    Expired,
    Orphaned,
    TimedOut,
    Displaced,
    Denied,
    /// The agent stopped and left the process frozen, for its next start.
    LeftFrozen,
    /// At start, the agent took back a process it had frozen.
    Adopted,
}

impl DecisionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Alert => "alert",
            Self::Freeze => "freeze",
            Self::Terminate => "terminate",
            Self::Kill => "kill",
            Self::Resume => "resume",
            Self::Apply => "apply",
            Self::Protect => "protect",
            Self::Unprotect => "unprotect",
            Self::Queued => "queued",
            Self::Granted => "granted",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Orphaned => "orphaned",
            Self::TimedOut => "timed_out",
            Self::Displaced => "displaced",
            Self::Denied => "denied",
            Self::LeftFrozen => "left_frozen",
            Self::Adopted => "adopted",
        }
    }

    /// The rung of the ladder this is, if it is one.
    pub fn rung(self) -> Option<Action> {
        match self {
            Self::Alert => Some(Action::Alert),
            Self::Freeze => Some(Action::Freeze),
            Self::Terminate => Some(Action::Terminate),
            Self::Kill => Some(Action::Kill),
            _ => None,
        }
    }
}

impl From<Action> for DecisionAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Alert => Self::Alert,
            Action::Freeze => Self::Freeze,
            Action::Terminate => Self::Terminate,
            Action::Kill => Self::Kill,
        }
    }
}

impl fmt::Display for DecisionAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened when a decision was carried out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Outcome {
    /// Nothing to carry out: an alert, a record.
    #[default]
    Recorded,
    Done,
    /// Dry-run: decided, not carried out.
    DryRun,
    /// The kernel OOM killer did it.
    KilledByKernel,
    Failed(String),
}

impl Outcome {
    pub fn failed(&self) -> bool {
        matches!(self, Self::Failed(_))
    }

    /// The outcome without a failure's reason: a metric label.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Recorded => "recorded",
            Self::Done => "done",
            Self::DryRun => "dry-run",
            Self::KilledByKernel => "killed-by-kernel",
            Self::Failed(_) => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "recorded" => Self::Recorded,
            "done" => Self::Done,
            "dry-run" => Self::DryRun,
            "killed by the kernel" => Self::KilledByKernel,
            other => Self::Failed(other.strip_prefix("failed: ").unwrap_or(other).to_string()),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Recorded => f.write_str("recorded"),
            Self::Done => f.write_str("done"),
            Self::DryRun => f.write_str("dry-run"),
            Self::KilledByKernel => f.write_str("killed by the kernel"),
            Self::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// A level as the journal spells it: empty when no level applies.
mod level_text {
    use super::*;

    pub fn serialize<S: Serializer>(l: &Option<Level>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(l.map(Level::as_str).unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Level>, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

/// `Default` is an empty record: the fields a kind of decision does not
/// use stay zero.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "Stored")]
pub struct Decision {
    pub seq: u64,
    pub time_unix_ms: u64,
    pub kind: DecisionKind,
    pub pid: u32,
    /// The process's start time (clock ticks after boot): with the pid, it
    /// names one process, so a freeze can be taken back after a restart
    /// without reaching a process that reused the pid. 0 when no process
    /// is named, and in older journals.
    pub start_time: u64,
    pub comm: String,
    pub cgroup: String,
    pub rule: String,
    /// The level of the limit that called for the action; `None` when no
    /// level applies.
    #[serde(with = "level_text")]
    pub level: Option<Level>,
    pub action: DecisionAction,
    pub outcome: Outcome,
    pub reason: String,
    /// anon + file + shmem.
    pub resident_bytes: u64,
    /// anon + shmem + swap: what the limit applies to.
    pub charged_bytes: u64,
    pub slope_bytes_per_sec: f64,
    pub limit_bytes: u64,
    /// Absent when no crossing was predicted (e.g. already crossed).
    pub predicted_seconds_to_limit: Option<f64>,
    /// The same command line was preempted often enough to be a crash loop.
    pub crash_loop: bool,
    /// `None` for decisions about no limit (a policy change), and for
    /// entries of older journals whose scope their rule's name does not
    /// tell.
    pub scope: Option<ScopeKind>,
}

/// A decision as any journal holds it: before decisions carried their
/// scope, it was implied by the rule's name.
#[derive(Deserialize)]
struct Stored {
    seq: u64,
    time_unix_ms: u64,
    kind: DecisionKind,
    pid: u32,
    #[serde(default)]
    start_time: u64,
    comm: String,
    cgroup: String,
    rule: String,
    #[serde(with = "level_text")]
    level: Option<Level>,
    action: DecisionAction,
    outcome: Outcome,
    reason: String,
    resident_bytes: u64,
    charged_bytes: u64,
    slope_bytes_per_sec: f64,
    limit_bytes: u64,
    predicted_seconds_to_limit: Option<f64>,
    crash_loop: bool,
    /// Absent in older journals; present and null for "no scope".
    #[serde(default, deserialize_with = "present")]
    scope: Option<Option<ScopeKind>>,
}

/// Tells a field that is present (even as null) from one that is absent.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<ScopeKind>>, D::Error> {
    Option::<ScopeKind>::deserialize(d).map(Some)
}

impl From<Stored> for Decision {
    fn from(s: Stored) -> Self {
        let scope = s
            .scope
            .unwrap_or_else(|| ScopeKind::of_legacy(s.kind, &s.rule));
        Self {
            seq: s.seq,
            time_unix_ms: s.time_unix_ms,
            kind: s.kind,
            pid: s.pid,
            start_time: s.start_time,
            comm: s.comm,
            cgroup: s.cgroup,
            rule: s.rule,
            level: s.level,
            action: s.action,
            outcome: s.outcome,
            reason: s.reason,
            resident_bytes: s.resident_bytes,
            charged_bytes: s.charged_bytes,
            slope_bytes_per_sec: s.slope_bytes_per_sec,
            limit_bytes: s.limit_bytes,
            predicted_seconds_to_limit: s.predicted_seconds_to_limit,
            crash_loop: s.crash_loop,
            scope,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_keep_the_journals_spelling() {
        let d = Decision {
            level: Some(Level::Preempt),
            action: DecisionAction::TimedOut,
            outcome: Outcome::Failed("no pidfd for the process".into()),
            scope: Some(ScopeKind::Cgroup),
            ..Default::default()
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["level"], "preempt");
        assert_eq!(v["action"], "timed_out");
        assert_eq!(v["outcome"], "failed: no pidfd for the process");
        assert_eq!(v["scope"], "cgroup");
        let back: Decision = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
        let none = Decision {
            level: None,
            scope: None,
            outcome: Outcome::KilledByKernel,
            ..Default::default()
        };
        let v = serde_json::to_value(&none).unwrap();
        assert_eq!(
            (v["level"].as_str(), v["scope"].is_null()),
            (Some(""), true)
        );
        assert_eq!(serde_json::from_value::<Decision>(v).unwrap(), none);
    }

    #[test]
    fn every_outcome_reads_back_as_written() {
        for o in [
            Outcome::Recorded,
            Outcome::Done,
            Outcome::DryRun,
            Outcome::KilledByKernel,
            Outcome::Failed("signalling pid 3 failed: No such process (os error 3)".into()),
        ] {
            assert_eq!(Outcome::parse(&o.to_string()), o);
        }
    }
}
