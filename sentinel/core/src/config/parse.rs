//! The file as serde reads it, and its checked conversion into [`Config`].

use std::{path::Path, time::Duration};

use serde::Deserialize;

use super::{
    AgentSettings, ApiSettings, CgroupRule, Config, ConfigError, FastestGrowth, GpuPolicy,
    HostPolicy, KeyLabel, api,
    error::{key_at, position},
    gpu, outputs,
};
use crate::{
    policy::{
        Action, Levels, Pattern, PriorityClass, Rule, Selector,
        protect::{Protection, default_protections},
        restarts::LoopRule,
    },
    units::{ByteSize, Span, human_bytes},
};

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
    protect: Option<Vec<toml::Spanned<RawProtect>>>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtect {
    name: String,
    #[serde(rename = "match")]
    selector: toml::Spanned<RawMatch>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLevels {
    warn: Option<f64>,
    preempt: Option<f64>,
    kill: Option<f64>,
    clear: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    #[serde(default = "host_action")]
    action: Action,
    levels: Option<toml::Spanned<RawLevels>>,
    min_available: Option<toml::Spanned<String>>,
    min_available_cap: Option<toml::Spanned<ByteSize>>,
    candidates: Option<toml::Spanned<String>>,
    psi_stall: Option<Span>,
    interval: Option<Span>,
}

fn host_action() -> Action {
    HostPolicy::default().action
}

pub(super) fn alert() -> Action {
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
    reconcile_interval: Option<Span>,
    precise_probe: Option<super::PreciseProbe>,
    rest_interval: Option<Span>,
    fastest_growth: Option<RawGrowth>,
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
    schedule_horizon: Option<Span>,
    lock_memory: Option<bool>,
    allow_empty_policy: Option<bool>,
    freezer: Option<bool>,
}

/// `fastest_growth`: "auto", or bytes per second ("12GiB", or a number).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawGrowth {
    Int(u64),
    Str(String),
    /// Said to be wrong with the same words as a bad string.
    Other(toml::Value),
}

impl RawGrowth {
    fn check(self) -> Result<FastestGrowth, String> {
        let bytes = match self {
            Self::Str(s) if s == "auto" => return Ok(FastestGrowth::Auto),
            Self::Str(s) => {
                ByteSize::parse(&s)
                    .map_err(|e| {
                        format!(
                            "{e}; or \"auto\" ({}/s per CPU)",
                            human_bytes(FastestGrowth::PER_CPU as f64)
                        )
                    })?
                    .0
            }
            Self::Int(n) => n,
            Self::Other(v) => {
                return Err(format!(
                    "`{v}` is not a rate: bytes per second (\"12GiB\", or a whole number), or \"auto\""
                ));
            }
        };
        if bytes < 1 << 20 {
            return Err("must be at least 1MiB (bytes per second), or \"auto\"".into());
        }
        Ok(FastestGrowth::Fixed(bytes))
    }
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
    uid: Option<OneOrMany>,
    unit: Option<toml::Spanned<String>>,
}

/// `uid = 0` or `uid = [0, 104]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
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
        let growth = a.fastest_growth.map(RawGrowth::check);
        let mut agent = AgentSettings {
            socket: a.socket.unwrap_or(d.socket),
            reaction_horizon: a
                .reaction_horizon
                .map(|s| s.0)
                .unwrap_or(d.reaction_horizon),
            step_bytes: a.step.map(|s| s.0).unwrap_or(d.step_bytes),
            rescan_interval: a.rescan_interval.map(|s| s.0).unwrap_or(d.rescan_interval),
            reconcile_interval: a
                .reconcile_interval
                .map(|s| s.0)
                .unwrap_or(d.reconcile_interval),
            precise_probe: a.precise_probe.unwrap_or(d.precise_probe),
            rest_interval: a.rest_interval.map(|s| s.0).unwrap_or(d.rest_interval),
            fastest_growth: d.fastest_growth,
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
            schedule_horizon: a
                .schedule_horizon
                .map(|s| s.0)
                .unwrap_or(d.schedule_horizon),
            lock_memory: a.lock_memory.unwrap_or(d.lock_memory),
            allow_empty_policy: a.allow_empty_policy.unwrap_or(d.allow_empty_policy),
            freezer: a.freezer.unwrap_or(d.freezer),
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
        if let Some(g) = growth {
            agent.fastest_growth = g.map_err(|msg| range_err("fastest_growth", &msg))?;
        }
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
        positive("rescan_interval", agent.rescan_interval)?;
        positive("reconcile_interval", agent.reconcile_interval)?;
        if agent.rest_interval < Duration::from_millis(10) {
            return Err(range_err("rest_interval", "must be at least 10ms"));
        }
        if agent.poll_interval < Duration::from_millis(10) {
            return Err(range_err("poll_interval", "must be at least 10ms"));
        }
        if let Some(bad) = agent
            .disable_probes
            .iter()
            .find(|p| !super::PROBE_NAMES.contains(&p.as_str()))
        {
            return Err(range_err(
                "disable_probes",
                &format!(
                    "unknown probe `{bad}` (known: {})",
                    super::PROBE_NAMES.join(", ")
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
        // The host's levels are its own (`HOST_LEVELS`), not the global
        // ones: its limit is already the floor.
        let host = match raw.host {
            None => HostPolicy::default(),
            Some(h) => {
                let h = h.into_inner();
                let d = HostPolicy::default();
                let candidates = h.candidates.map(&pattern).transpose()?;
                let min_available =
                    super::host::min_available(h.min_available, h.min_available_cap)
                        .map_err(|(offset, msg)| invalid(offset, msg))?;
                let p = HostPolicy {
                    action: h.action,
                    levels: levels_of(d.levels, h.levels, "host.levels")?,
                    min_available,
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
                uid: m.uid.map(|u| match u {
                    OneOrMany::One(u) => vec![u],
                    OneOrMany::Many(us) => us,
                }),
                unit: m.unit.map(&pattern).transpose()?,
            };
            if selector.is_empty() || selector.uid.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid(
                    start,
                    format!(
                        "{what} `{name}` matches every process; give at least one of comm, exe, cgroup, descendant_of, uid, unit"
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
        let protect = match raw.protect {
            None => default_protections(),
            Some(entries) => {
                let mut protect: Vec<Protection> = Vec::new();
                for spanned in entries {
                    // One name may have several entries (by executable,
                    // by unit): any of them protects.
                    let r = spanned.into_inner();
                    let selector = selector_of("protection", &r.name, r.selector)?;
                    protect.push(Protection {
                        name: r.name,
                        selector,
                    });
                }
                protect
            }
        };
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
            protect,
        })
    }
}
