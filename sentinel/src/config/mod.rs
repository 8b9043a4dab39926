//! The agent's TOML configuration: agent settings and per-process rules.
//!
//! Every error names the file, the line and the key, so that an operator can
//! fix a config from the message alone.

mod api;
mod gpu;
mod outputs;

use std::{fmt, path::Path, time::Duration};

use serde::Deserialize;

pub use api::{ApiSettings, TcpApi};
pub use gpu::GpuPolicy;
pub use outputs::{AlertingSettings, DEFAULT_METRICS, MetricsSettings};

use crate::{
    policy::{Action, Levels, Pattern, PriorityClass, Rule, Selector, restarts::LoopRule},
    units::{ByteSize, Span},
};

pub const DEFAULT_PATH: &str = "/etc/sentinel/sentinel.toml";
pub const DEFAULT_SOCKET: &str = "/run/sentinel/sentinel.sock";
pub const DEFAULT_JOURNAL: &str = "/var/lib/sentinel/journal.redb";

/// `[agent]` keys that a `SENTINEL_<KEY>` environment variable overrides.
pub const ENV_KEYS: &[&str] = &[
    "socket",
    "reaction_horizon",
    "step",
    "rescan_interval",
    "poll_interval",
    "history",
    "dry_run",
    "tripwire",
    "disable_probes",
    "protected",
    "decision_log",
    "journal",
    "journal_max_entries",
    "journal_max_age",
    "socket_group",
    "admin_group",
    "crash_loop_count",
    "crash_loop_window",
    "max_grace",
    "settle_timeout",
    "freeze_timeout",
    "lock_memory",
];

/// What a host needs to stay reachable and to keep its containers alive.
pub const DEFAULT_PROTECTED: &[&str] = &[
    "sshd",
    "systemd",
    "systemd-journal",
    "systemd-logind",
    "systemd-udevd",
    "dbus-daemon",
    "containerd",
    "dockerd",
    "kubelet",
];

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub agent: AgentSettings,
    pub api: ApiSettings,
    pub metrics: MetricsSettings,
    pub alerting: AlertingSettings,
    pub gpu: GpuPolicy,
    /// Defaults for every scope; rules may override them.
    pub levels: Levels,
    pub rules: Vec<Rule>,
    pub cgroup_rules: Vec<CgroupRule>,
    pub host: HostPolicy,
    /// Who is stopped first among equal growers at a shared limit.
    pub priorities: Vec<PriorityClass>,
}

/// A memory cgroup whose limit Sentinel defends: when its members' usage
/// reaches, or is predicted to reach, a level of the limit, the member
/// driving the growth is acted on.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupRule {
    pub name: String,
    /// Regex on the path of the limited cgroup.
    pub selector: Pattern,
    /// Highest rung of the ladder this rule may climb to.
    pub action: Action,
    pub levels: Levels,
}

/// The host as a whole: its limit is all memory plus swap, less a floor
/// of available memory to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPolicy {
    /// Highest rung at host scope. Alert by default: host-wide stopping is
    /// something an operator turns on knowingly.
    pub action: Action,
    pub levels: Levels,
    /// Available memory (MemAvailable + SwapFree) to keep: the host's 100%.
    pub min_available: u64,
    /// Only processes in cgroups matching this may be chosen (e.g. only
    /// workloads, never the platform). `None`: any unprotected process.
    pub candidates: Option<Pattern>,
    /// Memory PSI trigger: a `some` stall of this much per second wakes the
    /// agent to look at the host at once. Zero disables the trigger.
    pub psi_stall: Duration,
    /// How often /proc/meminfo is sampled for the host's trend.
    pub interval: Duration,
}

impl Default for HostPolicy {
    fn default() -> Self {
        Self {
            action: Action::Alert,
            levels: Levels::default(),
            min_available: 0,
            candidates: None,
            psi_stall: Duration::from_millis(150),
            interval: Duration::from_millis(100),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    pub socket: String,
    /// How far ahead a predicted crossing triggers action: the agent's own
    /// worst-case latency from a sample to a delivered signal, plus margin.
    pub reaction_horizon: Duration,
    /// Resident-set movement that makes the kernel report a process.
    pub step_bytes: u64,
    /// Full /proc rescan (discovery and reconciliation).
    pub rescan_interval: Duration,
    /// Sampling of rule-matched processes when eBPF is unavailable.
    pub poll_interval: Duration,
    /// How much history each process keeps for its slope.
    pub history: Duration,
    pub dry_run: bool,
    /// Arm the in-kernel ceiling for processes a rule may signal.
    pub tripwire: bool,
    /// Probes not to attach (names as `sentinel status` shows them).
    pub disable_probes: Vec<String>,
    /// Command names (comm) never signalled, not even frozen; rules that
    /// select them only alert. pid 1, kernel threads, the agent and
    /// processes with oom_score_adj -1000 are protected regardless.
    pub protected: Vec<String>,
    /// Decisions kept in memory (the journal file keeps the rest).
    pub decision_log: usize,
    /// The durable decision journal.
    pub journal: String,
    /// Group that owns the API socket (mode 0660): its members may read.
    pub socket_group: Option<String>,
    /// Members may change policy and signal through the API (as uid 0 may).
    pub admin_group: Option<String>,
    /// Journal retention: at most this many decisions...
    pub journal_max_entries: u64,
    /// ...and none older than this.
    pub journal_max_age: Duration,
    /// The same command line preempted this often within the window is
    /// flagged as crash-looping.
    pub crash_loop: LoopRule,
    /// Longest grace between SIGTERM and SIGKILL; the forecast may give less.
    pub max_grace: Duration,
    /// After acting on a shared limit, how long at most to wait for the
    /// victim's memory to be freed before choosing another.
    pub settle_timeout: Duration,
    /// A process frozen this long without its pressure clearing is killed
    /// (terminated) when the rule that froze it allows that.
    pub freeze_timeout: Duration,
    /// Lock the agent's own memory (mlockall), so reclaim cannot slow it
    /// when it is needed most.
    pub lock_memory: bool,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            socket: DEFAULT_SOCKET.to_string(),
            reaction_horizon: Duration::from_millis(20),
            step_bytes: 1 << 20,
            rescan_interval: Duration::from_secs(2),
            poll_interval: Duration::from_millis(100),
            history: Duration::from_secs(10),
            dry_run: false,
            tripwire: true,
            // The kernel already counts faults per process (/proc/PID/stat);
            // the probe costs about 2% of a page-fault storm's throughput.
            disable_probes: vec!["page_fault_user".to_string()],
            protected: DEFAULT_PROTECTED.iter().map(|s| s.to_string()).collect(),
            decision_log: 10_000,
            journal: DEFAULT_JOURNAL.to_string(),
            socket_group: None,
            admin_group: None,
            journal_max_entries: 1_000_000,
            journal_max_age: Duration::from_secs(30 * 86400),
            crash_loop: LoopRule::default(),
            max_grace: Duration::from_secs(10),
            settle_timeout: Duration::from_secs(5),
            freeze_timeout: Duration::from_secs(30),
            lock_memory: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {key}{message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        /// "key `rule[0].limit`: " or empty when no key applies.
        key: KeyLabel,
        message: String,
    },
}

#[derive(Debug, Default)]
pub struct KeyLabel(pub Option<String>);

impl fmt::Display for KeyLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(k) => write!(f, "key `{k}`: "),
            None => Ok(()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    agent: RawAgent,
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
    #[serde(default)]
    cgroup: Vec<toml::Spanned<RawCgroupRule>>,
    levels: Option<toml::Spanned<RawLevels>>,
    host: Option<toml::Spanned<RawHost>>,
    #[serde(default)]
    priority: Vec<toml::Spanned<RawPriority>>,
    api: Option<toml::Spanned<api::RawApi>>,
    #[serde(default)]
    metrics: outputs::RawMetrics,
    #[serde(default)]
    alerting: outputs::RawAlerting,
    gpu: Option<gpu::RawGpu>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriority {
    name: String,
    priority: i32,
    #[serde(rename = "match")]
    selector: toml::Spanned<RawMatch>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawLevels {
    warn: Option<f64>,
    preempt: Option<f64>,
    kill: Option<f64>,
    clear: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    #[serde(default = "alert")]
    action: Action,
    levels: Option<toml::Spanned<RawLevels>>,
    min_available: Option<ByteSize>,
    candidates: Option<toml::Spanned<String>>,
    psi_stall: Option<Span>,
    interval: Option<Span>,
}

fn alert() -> Action {
    Action::Alert
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCgroupRule {
    name: String,
    #[serde(rename = "match")]
    selector: toml::Spanned<String>,
    #[serde(default)]
    action: Action,
    levels: Option<toml::Spanned<RawLevels>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    socket: Option<String>,
    reaction_horizon: Option<Span>,
    step: Option<ByteSize>,
    rescan_interval: Option<Span>,
    poll_interval: Option<Span>,
    history: Option<Span>,
    dry_run: Option<bool>,
    tripwire: Option<bool>,
    disable_probes: Option<Vec<String>>,
    protected: Option<Vec<String>>,
    decision_log: Option<usize>,
    journal: Option<String>,
    socket_group: Option<String>,
    admin_group: Option<String>,
    journal_max_entries: Option<u64>,
    journal_max_age: Option<Span>,
    crash_loop_count: Option<usize>,
    crash_loop_window: Option<Span>,
    max_grace: Option<Span>,
    settle_timeout: Option<Span>,
    freeze_timeout: Option<Span>,
    lock_memory: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    limit: ByteSize,
    #[serde(default)]
    action: Action,
    levels: Option<toml::Spanned<RawLevels>>,
    #[serde(default)]
    include_file: bool,
    gpu_limit: Option<ByteSize>,
    #[serde(rename = "match")]
    selector: toml::Spanned<RawMatch>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    comm: Option<toml::Spanned<String>>,
    exe: Option<toml::Spanned<String>>,
    cgroup: Option<toml::Spanned<String>>,
    descendant_of: Option<u32>,
}

/// Line and column (1-based) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// The dotted key at `offset`: the nearest table header above it plus the
/// key on its line, with array tables numbered (`rule[1].limit`).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let (line_no, _) = position(text, offset);
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(line_no - 1)?;
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let mut table: Option<String> = None;
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for l in &lines[..line_no.saturating_sub(1).min(lines.len())] {
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let n = counts.entry(name.trim().to_string()).or_insert(0);
            table = Some(format!("{}[{}]", name.trim(), *n));
            *n += 1;
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let name = name.trim();
            // `[rule.match]` belongs to the latest `[[rule]]`.
            table = match name.split_once('.') {
                Some((head, tail)) if counts.contains_key(head) => {
                    Some(format!("{head}[{}].{tail}", counts[head] - 1))
                }
                _ => Some(name.to_string()),
            };
        }
    }
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Reads the config at `path` (the built-in defaults when `path` is the
    /// default location and nothing is there), then applies `SENTINEL_<KEY>` environment variables over its
    /// `[agent]` keys.
    pub fn load_with_env(path: &Path) -> Result<Self, ConfigError> {
        let text = if path == Path::new(DEFAULT_PATH) && !path.exists() {
            String::new()
        } else {
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?
        };
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::parse_with_env(&text, &path.display().to_string(), &env)
    }

    /// `parse`, then the `SENTINEL_<KEY>` variables of `env` over the
    /// `[agent]` keys of the same name (`SENTINEL_DRY_RUN=true`,
    /// `SENTINEL_STEP=2MiB`). The file is checked first on its own, so its
    /// errors keep their lines; an error from an override names it.
    pub fn parse_with_env(
        text: &str,
        path: &str,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let base = Self::parse(text, path)?;
        let overrides: Vec<(String, &str, &str)> = env
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("SENTINEL_")?.to_ascii_lowercase();
                ENV_KEYS
                    .contains(&key.as_str())
                    .then_some((key, k.as_str(), v.as_str()))
            })
            .collect();
        if overrides.is_empty() {
            return Ok(base);
        }
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    path: path.to_string(),
                    line: 1,
                    column: 1,
                    key: KeyLabel(None),
                    message: e.message().to_string(),
                })?;
        let agent = table
            .entry("agent")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let names: Vec<&str> = overrides.iter().map(|o| o.1).collect();
        if let toml::Value::Table(agent) = agent {
            for (key, _, value) in &overrides {
                // A TOML value as written (true, 3, ["a"]), else a string.
                let v = format!("v = {value}")
                    .parse::<toml::Table>()
                    .ok()
                    .and_then(|t| t.get("v").cloned())
                    .unwrap_or_else(|| toml::Value::String(value.to_string()));
                agent.insert(key.clone(), v);
            }
        }
        let merged = toml::to_string(&table).map_err(|e| ConfigError::Invalid {
            path: path.to_string(),
            line: 1,
            column: 1,
            key: KeyLabel(None),
            message: e.to_string(),
        })?;
        Self::parse(&merged, &format!("{path} with {}", names.join(", ")))
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let invalid = |offset: usize, message: String| {
            let (line, column) = position(text, offset);
            ConfigError::Invalid {
                path: path.to_string(),
                line,
                column,
                key: KeyLabel(key_at(text, offset)),
                message,
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            invalid(offset, e.message().to_string())
        })?;

        let d = AgentSettings::default();
        let a = raw.agent;
        let agent = AgentSettings {
            socket: a.socket.unwrap_or(d.socket),
            reaction_horizon: a
                .reaction_horizon
                .map(|s| s.0)
                .unwrap_or(d.reaction_horizon),
            step_bytes: a.step.map(|s| s.0).unwrap_or(d.step_bytes),
            rescan_interval: a.rescan_interval.map(|s| s.0).unwrap_or(d.rescan_interval),
            poll_interval: a.poll_interval.map(|s| s.0).unwrap_or(d.poll_interval),
            history: a.history.map(|s| s.0).unwrap_or(d.history),
            dry_run: a.dry_run.unwrap_or(d.dry_run),
            tripwire: a.tripwire.unwrap_or(d.tripwire),
            disable_probes: a.disable_probes.unwrap_or(d.disable_probes),
            protected: a.protected.unwrap_or(d.protected),
            decision_log: a.decision_log.unwrap_or(d.decision_log),
            journal: a.journal.unwrap_or(d.journal),
            socket_group: a.socket_group,
            admin_group: a.admin_group,
            journal_max_entries: a.journal_max_entries.unwrap_or(d.journal_max_entries),
            journal_max_age: a.journal_max_age.map(|s| s.0).unwrap_or(d.journal_max_age),
            crash_loop: LoopRule {
                count: a.crash_loop_count.unwrap_or(d.crash_loop.count),
                window_secs: a
                    .crash_loop_window
                    .map(|s| s.0.as_secs_f64())
                    .unwrap_or(d.crash_loop.window_secs),
            },
            max_grace: a.max_grace.map(|s| s.0).unwrap_or(d.max_grace),
            settle_timeout: a.settle_timeout.map(|s| s.0).unwrap_or(d.settle_timeout),
            freeze_timeout: a.freeze_timeout.map(|s| s.0).unwrap_or(d.freeze_timeout),
            lock_memory: a.lock_memory.unwrap_or(d.lock_memory),
        };
        // A key set out of range: its own line, wherever it is indented.
        let range_err = |what: &str, msg: &str| {
            let offset = text
                .match_indices(what)
                .map(|(i, _)| i)
                .find(|&i| {
                    let line_start = text[..i].rfind('\n').map(|n| n + 1).unwrap_or(0);
                    text[line_start..i].trim().is_empty()
                        && text[i + what.len()..].trim_start().starts_with('=')
                })
                .unwrap_or(0);
            invalid(offset, msg.to_string())
        };
        let positive = |what: &str, d: Duration| {
            if d.is_zero() {
                Err(range_err(what, "must be above 0"))
            } else {
                Ok(())
            }
        };
        if agent.step_bytes < 4096 {
            return Err(range_err("step", "must be at least 4KiB (one page)"));
        }
        if agent.reaction_horizon > Duration::from_secs(60) {
            return Err(range_err("reaction_horizon", "must be at most 60s"));
        }
        if agent.poll_interval < Duration::from_millis(10) {
            return Err(range_err("poll_interval", "must be at least 10ms"));
        }
        if let Some(bad) = agent
            .disable_probes
            .iter()
            .find(|p| !crate::probes::PROBE_NAMES.contains(&p.as_str()))
        {
            return Err(range_err(
                "disable_probes",
                &format!(
                    "unknown probe `{bad}` (known: {})",
                    crate::probes::PROBE_NAMES.join(", ")
                ),
            ));
        }
        if agent.decision_log == 0 {
            return Err(range_err("decision_log", "must be at least 1"));
        }
        if agent.crash_loop.count < 2 {
            return Err(range_err("crash_loop_count", "must be at least 2"));
        }
        let pattern = |s: toml::Spanned<String>| -> Result<Pattern, ConfigError> {
            let start = s.span().start;
            regex::Regex::new(s.get_ref())
                .map(Pattern)
                .map_err(|e| invalid(start, format!("invalid regex: {e}")))
        };
        // Levels: the global table, then each scope's overrides of it.
        // `at` names the table in errors (`levels`, `rule[0].levels`, ...).
        let levels_of = |base: Levels,
                         raw: Option<toml::Spanned<RawLevels>>,
                         at: &str|
         -> Result<Levels, ConfigError> {
            let Some(raw) = raw else {
                return Ok(base);
            };
            let start = raw.span().start;
            let r = raw.into_inner();
            let l = Levels {
                warn: r.warn.unwrap_or(base.warn),
                preempt: r.preempt.unwrap_or(base.preempt),
                kill: r.kill.unwrap_or(base.kill),
                clear: r.clear.unwrap_or(base.clear),
            };
            l.check().map_err(|(key, msg)| {
                let (line, column) = position(text, start);
                ConfigError::Invalid {
                    path: path.to_string(),
                    line,
                    column,
                    key: KeyLabel(Some(format!("{at}.{key}"))),
                    message: msg,
                }
            })?;
            Ok(l)
        };
        positive("history", agent.history)?;
        positive("journal_max_age", agent.journal_max_age)?;
        if agent.journal_max_entries == 0 {
            return Err(range_err("journal_max_entries", "must be at least 1"));
        }
        if agent.journal.is_empty() {
            return Err(range_err("journal", "must be a file path"));
        }
        positive("settle_timeout", agent.settle_timeout)?;
        positive("freeze_timeout", agent.freeze_timeout)?;
        if agent.crash_loop.window_secs <= 0.0 {
            return Err(range_err("crash_loop_window", "must be above 0"));
        }
        let levels = levels_of(Levels::default(), raw.levels, "levels")?;
        let host = match raw.host {
            None => HostPolicy {
                levels,
                ..HostPolicy::default()
            },
            Some(h) => {
                let h = h.into_inner();
                let d = HostPolicy::default();
                let candidates = h.candidates.map(&pattern).transpose()?;
                let p = HostPolicy {
                    action: h.action,
                    levels: levels_of(levels, h.levels, "host.levels")?,
                    min_available: h.min_available.map(|b| b.0).unwrap_or(d.min_available),
                    candidates,
                    psi_stall: h.psi_stall.map(|s| s.0).unwrap_or(d.psi_stall),
                    interval: h.interval.map(|s| s.0).unwrap_or(d.interval),
                };
                if p.psi_stall >= Duration::from_secs(1) {
                    return Err(range_err(
                        "psi_stall",
                        "must be under 1s (a stall per one-second window)",
                    ));
                }
                if p.interval < Duration::from_millis(10) {
                    return Err(range_err("interval", "must be at least 10ms"));
                }
                p
            }
        };

        let selector_of = |what: &str,
                           name: &str,
                           raw: toml::Spanned<RawMatch>|
         -> Result<Selector, ConfigError> {
            let start = raw.span().start;
            let m = raw.into_inner();
            let selector = Selector {
                comm: m.comm.map(&pattern).transpose()?,
                exe: m.exe.map(&pattern).transpose()?,
                cgroup: m.cgroup.map(&pattern).transpose()?,
                descendant_of: m.descendant_of,
            };
            if selector.is_empty() {
                return Err(invalid(
                    start,
                    format!(
                        "{what} `{name}` matches every process; give at least one of comm, exe, cgroup, descendant_of"
                    ),
                ));
            }
            Ok(selector)
        };

        let mut rules = Vec::new();
        for spanned in raw.rule {
            let rule_start = spanned.span().start;
            let r = spanned.into_inner();
            if r.limit.0 == 0 {
                return Err(invalid(
                    rule_start,
                    format!("rule `{}`: limit must be above 0", r.name),
                ));
            }
            if rules.iter().any(|x: &Rule| x.name == r.name) {
                return Err(invalid(
                    rule_start,
                    format!("rule name `{}` is used twice", r.name),
                ));
            }
            if r.gpu_limit.is_some_and(|g| g.0 == 0) {
                return Err(invalid(
                    rule_start,
                    format!("rule `{}`: gpu_limit must be above 0", r.name),
                ));
            }
            let selector = selector_of("rule", &r.name, r.selector)?;
            rules.push(Rule {
                name: r.name,
                limit_bytes: r.limit.0,
                action: r.action,
                levels: levels_of(levels, r.levels, &format!("rule[{}].levels", rules.len()))?,
                include_file: r.include_file,
                gpu_limit_bytes: r.gpu_limit.map(|g| g.0),
                selector,
            });
        }
        let mut cgroup_rules: Vec<CgroupRule> = Vec::new();
        for spanned in raw.cgroup {
            let start = spanned.span().start;
            let r = spanned.into_inner();
            if cgroup_rules.iter().any(|x| x.name == r.name)
                || rules.iter().any(|x| x.name == r.name)
            {
                return Err(invalid(
                    start,
                    format!("rule name `{}` is used twice", r.name),
                ));
            }
            let selector = pattern(r.selector)?;
            cgroup_rules.push(CgroupRule {
                name: r.name,
                selector,
                action: r.action,
                levels: levels_of(
                    levels,
                    r.levels,
                    &format!("cgroup[{}].levels", cgroup_rules.len()),
                )?,
            });
        }
        let mut priorities: Vec<PriorityClass> = Vec::new();
        for spanned in raw.priority {
            let start = spanned.span().start;
            let c = spanned.into_inner();
            if priorities.iter().any(|x| x.name == c.name) {
                return Err(invalid(
                    start,
                    format!("priority class `{}` is defined twice", c.name),
                ));
            }
            let selector = selector_of("priority class", &c.name, c.selector)?;
            priorities.push(PriorityClass {
                name: c.name,
                priority: c.priority,
                selector,
            });
        }
        let api = match raw.api {
            None => ApiSettings::default(),
            Some(a) => {
                let start = a.span().start;
                a.into_inner()
                    .check(start)
                    .map_err(|(offset, msg)| invalid(offset, msg))?
            }
        };
        let metrics = raw
            .metrics
            .check()
            .map_err(|(offset, msg)| invalid(offset, msg))?;
        let alerting = raw
            .alerting
            .check()
            .map_err(|(offset, msg)| invalid(offset, msg))?;
        let gpu = match raw.gpu {
            None => GpuPolicy {
                levels,
                ..GpuPolicy::default()
            },
            Some(g) => {
                let l = levels_of(levels, g.levels.clone(), "gpu.levels")?;
                g.check(l).map_err(|(offset, msg)| invalid(offset, msg))?
            }
        };
        Ok(Self {
            agent,
            api,
            metrics,
            alerting,
            gpu,
            levels,
            rules,
            cgroup_rules,
            host,
            priorities,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[agent]
socket = "/tmp/s.sock"
reaction_horizon = "150ms"
step = "2MiB"

[[rule]]
name = "workers"
limit = "256MiB"
action = "freeze"
[rule.match]
comm = "^worker"
cgroup = "^/test"

[[rule]]
name = "kids"
limit = "1G"
action = "kill"
match = { descendant_of = 42 }
"#;

    #[test]
    fn parses_a_full_config() {
        let c = Config::parse(GOOD, "good.toml").unwrap();
        assert_eq!(c.agent.socket, "/tmp/s.sock");
        assert_eq!(c.agent.reaction_horizon, Duration::from_millis(150));
        assert_eq!(c.agent.step_bytes, 2 << 20);
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[0].limit_bytes, 256 << 20);
        assert_eq!(c.rules[0].action, Action::Freeze);
        assert_eq!(c.rules[1].action, Action::Kill);
        assert_eq!(c.rules[1].selector.descendant_of, Some(42));
    }

    #[test]
    fn the_shipped_config_is_valid_and_matches_the_defaults() {
        let c = Config::parse(
            include_str!("../../../deploy/sentinel.toml"),
            "deploy/sentinel.toml",
        )
        .unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn cgroup_rules_parse_and_validate() {
        let c = Config::parse(
            "[levels]\nwarn = 0.6\n[[cgroup]]\nname = \"jobs\"\nmatch = \"^/jobs/\"\naction = \"kill\"\nlevels = { preempt = 0.9 }\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(c.cgroup_rules.len(), 1);
        assert_eq!(c.cgroup_rules[0].action, Action::Kill);
        // Its own preempt, the global warn, the default kill.
        let l = c.cgroup_rules[0].levels;
        assert_eq!((l.warn, l.preempt, l.kill), (0.6, 0.9, 0.95));
        let e = err("[[cgroup]]\nname = \"j\"\nmatch = \"^/j\"\nlevels = { kill = 1.5 }\n");
        assert!(
            e.starts_with("/etc/s.toml:4:")
                && e.contains("key `cgroup[0].levels.kill`: must be a share"),
            "{e}"
        );
        let e = err("[agent]\nhistory = \"5s\"\n[levels]\nwarn = 0.9\npreempt = 0.8\n");
        assert!(
            e.contains("key `levels.warn`: must not be above preempt"),
            "{e}"
        );
        let e = err("[host]\n  levels = { clear = 0.8 }\n");
        assert!(e.contains("key `host.levels.clear`"), "{e}");
        let e = err("[agent]\n  history = \"0s\"\n");
        assert!(
            e.starts_with("/etc/s.toml:2:") && e.contains("agent.history") && e.contains("above 0"),
            "{e}"
        );
        let e = err("[[cgroup]]\nname = \"j\"\nmatch = \"(\"\n");
        assert!(
            e.starts_with("/etc/s.toml:3:") && e.contains("invalid regex"),
            "{e}"
        );
    }

    #[test]
    fn host_policy_parses_with_safe_defaults() {
        let c = Config::default();
        assert_eq!(c.host.action, Action::Alert);
        let c = Config::parse(
            "[host]\naction = \"kill\"\nmin_available = \"1GiB\"\ncandidates = \"^/kubepods\"\nlevels = { kill = 0.97 }\n",
            "h.toml",
        )
        .unwrap();
        assert_eq!(c.host.action, Action::Kill);
        assert_eq!(c.host.min_available, 1 << 30);
        assert_eq!(c.host.levels.kill, 0.97);
        assert!(c.host.candidates.unwrap().is_match("/kubepods/pod1"));
        let e = err("[host]\npsi_stall = \"2s\"\n");
        assert!(
            e.starts_with("/etc/s.toml:2:") && e.contains("host.psi_stall"),
            "{e}"
        );
        let e = err("[host]\nactoin = \"kill\"\n");
        assert!(e.contains("actoin"), "{e}");
    }

    #[test]
    fn priority_classes_and_file_pages_opt_in() {
        let c = Config::parse(
            "[[priority]]\nname = \"batch\"\npriority = -10\nmatch = { cgroup = \"^/batch\" }\n[[rule]]\nname = \"cache\"\nlimit = \"1G\"\ninclude_file = true\nmatch = { comm = \"^cache$\" }\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(c.priorities.len(), 1);
        assert_eq!(c.priorities[0].priority, -10);
        assert!(c.rules[0].include_file);
        let e = err("[[priority]]\nname = \"all\"\npriority = 1\nmatch = {}\n");
        assert!(
            e.starts_with("/etc/s.toml:4:") && e.contains("priority class `all` matches every"),
            "{e}"
        );
        let e = err("[[priority]]\nname = \"x\"\npriority = \"high\"\nmatch = { comm = \"x\" }\n");
        assert!(e.contains("priority[0].priority"), "{e}");
    }

    #[test]
    fn environment_overrides_agent_keys_and_names_itself_in_errors() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let c = Config::parse_with_env(
            GOOD,
            "good.toml",
            &env(&[
                ("SENTINEL_DRY_RUN", "true"),
                ("SENTINEL_STEP", "4MiB"),
                ("SENTINEL_PROTECTED", "[\"a\", \"b\"]"),
                ("SENTINEL_LOG", "debug"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert!(c.agent.dry_run);
        assert_eq!(c.agent.step_bytes, 4 << 20);
        assert_eq!(c.agent.protected, vec!["a", "b"]);
        // The rest of the file stands.
        assert_eq!(c.agent.reaction_horizon, Duration::from_millis(150));
        assert_eq!(c.rules.len(), 2);
        let e = Config::parse_with_env(GOOD, "good.toml", &env(&[("SENTINEL_STEP", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("good.toml with SENTINEL_STEP:")
                && e.contains("agent.step")
                && e.contains("lots"),
            "{e}"
        );
        // The file's own errors keep their lines.
        let e = Config::parse_with_env(
            "[agent]\nstep = 1\n",
            "f.toml",
            &env(&[("SENTINEL_DRY_RUN", "true")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("f.toml:2:"), "{e}");
    }

    #[test]
    fn empty_config_is_the_defaults() {
        assert_eq!(Config::parse("", "x").unwrap(), Config::default());
    }

    fn err(text: &str) -> String {
        Config::parse(text, "/etc/s.toml").unwrap_err().to_string()
    }

    #[test]
    fn bad_size_names_file_line_and_key() {
        let e = err("[[rule]]\nname = \"a\"\nlimit = \"12 parsecs\"\nmatch = { comm = \"x\" }\n");
        assert!(e.starts_with("/etc/s.toml:3:"), "{e}");
        assert!(e.contains("rule[0].limit"), "{e}");
        assert!(e.contains("parsecs"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("[agent]\nsokcet = \"/x\"\n");
        assert!(e.starts_with("/etc/s.toml:2:"), "{e}");
        assert!(e.contains("sokcet"), "{e}");
    }

    #[test]
    fn bad_regex_points_at_its_line() {
        let e = err("[[rule]]\nname = \"a\"\nlimit = \"1G\"\n[rule.match]\ncomm = \"(unclosed\"\n");
        assert!(e.starts_with("/etc/s.toml:5:"), "{e}");
        assert!(e.contains("rule[0].match.comm"), "{e}");
        assert!(e.contains("invalid regex"), "{e}");
    }

    #[test]
    fn rules_must_select_something() {
        let e = err("[[rule]]\nname = \"all\"\nlimit = \"1G\"\nmatch = {}\n");
        assert!(e.contains("matches every process"), "{e}");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = err("[agent\n");
        assert!(e.starts_with("/etc/s.toml:1:"), "{e}");
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        let e = err("[agent]\nstep = \"16\"\n");
        assert!(
            e.contains("/etc/s.toml:2:") && e.contains("agent.step"),
            "{e}"
        );
        let e = err(
            "[[rule]]\nname = \"a\"\nlimit = \"1G\"\naction = \"explode\"\nmatch = { comm = \"x\" }\n",
        );
        assert!(e.contains(":4:") && e.contains("rule[0].action"), "{e}");
    }
}
