//! Prometheus metrics: a snapshot of the agent (plain data) rendered as the
//! text exposition. `http` takes the snapshot and serves it.

pub mod exposition;
pub mod http;

use exposition::{Exposition, Type};

use crate::alert::deliver::ReceiverView;
use sentinel_core::decision::DecisionAction;

/// One of the fastest-growing processes, shown with its identity; at most
/// `metrics.top_growers` of them, so label cardinality stays bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct Grower {
    pub pid: u32,
    pub comm: String,
    pub rule: String,
    pub slope_bytes_per_sec: f64,
    pub charged_bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: String,
    pub mode: String,
    pub dry_run: bool,
    /// Some probe or eBPF itself is missing (status says why).
    pub degraded: bool,
    /// Command lines flagged as crash-looping now.
    pub crash_loops: u64,
    pub host_available_bytes: u64,
    pub host_total_bytes: u64,
    pub host_used_bytes: u64,
    pub host_limit_bytes: u64,
    /// 0 normal, 1 warn, 2 preempt, 3 kill.
    pub host_level: u8,
    /// Memory PSI `some` and `full` avg10, as ratios (0..1).
    pub psi_some: Option<f64>,
    pub psi_full: Option<f64>,
    /// Memory PSI `some` and `full` totals: seconds stalled since boot.
    pub psi_some_seconds: Option<f64>,
    pub psi_full_seconds: Option<f64>,
    /// Tracked processes at each level of their own rule.
    pub process_levels: [u64; 4],
    /// Limited cgroups at each level.
    pub cgroup_levels: [u64; 4],
    pub tracked: u64,
    pub frozen: u64,
    /// Processes waiting for memory, and the longest wait.
    pub queued: u64,
    pub queue_wait_max_secs: f64,
    /// (kind, action, scope, count) since start.
    pub decisions: Vec<(String, String, String, u64)>,
    /// Stops since start: `[action][outcome]` in the order of
    /// `PREEMPT_ACTIONS` and `PREEMPT_OUTCOMES`.
    pub preemptions: [[u64; 3]; 3],
    pub tripwire_fires: u64,
    /// The per-fault probe is attached now (something is within reach of
    /// a line, or it is always on).
    pub precise_attached: bool,
    /// Times it was attached after start.
    pub precise_attachments: u64,
    pub kernel_oom_kills: u64,
    pub probe_events: u64,
    pub lost_events: u64,
    /// (probe, attached).
    pub probes: Vec<(String, bool)>,
    pub top: Vec<Grower>,
    pub journal_write_failures: u64,
    pub last_decision_seq: u64,
    pub alerts_firing: u64,
    pub receivers: Vec<ReceiverView>,
    /// (index, uuid, used, total, level code, readable).
    pub gpus: Vec<(u32, String, u64, u64, u8, bool)>,
    pub gpu_available: bool,
    pub gpu_read_errors: u64,
    /// Admission: reservations, bytes they hold back, queued per priority.
    pub reservations: u64,
    pub reserved_bytes: u64,
    pub admission_queued: [u64; 5],
    pub admission_refusals_unjournalled: u64,
    pub resident_bytes: u64,
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
}

const LEVELS: [&str; 4] = ["normal", "warn", "preempt", "kill"];

/// The actions that stop a process, and what can come of them; every pair
/// is exported from the start, so that `increase()` sees the first stop.
pub const PREEMPT_ACTIONS: [DecisionAction; 3] = [
    DecisionAction::Freeze,
    DecisionAction::Terminate,
    DecisionAction::Kill,
];
pub const PREEMPT_OUTCOMES: [&str; 3] = ["done", "dry-run", "failed"];

/// A family with one sample per PSI kind the host reports (`some`, then
/// `full`), labelled `kind` and `labels`; absent without PSI.
fn psi_family(
    e: &mut Exposition,
    (name, kind): (&str, Type),
    help: &str,
    values: [Option<f64>; 2],
    labels: &[(&str, &str)],
) {
    let reported: Vec<(&str, f64)> = ["some", "full"]
        .into_iter()
        .zip(values)
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    if reported.is_empty() {
        return;
    }
    e.family(name, kind, help);
    for (psi_kind, v) in reported {
        let all: Vec<(&str, &str)> = [("kind", psi_kind)]
            .into_iter()
            .chain(labels.iter().copied())
            .collect();
        e.sample(name, &all, v);
    }
}

pub fn render(s: &Snapshot) -> String {
    let mut e = Exposition::new();
    e.family(
        "sentinel_build_info",
        Type::Gauge,
        "Version and mode of the running agent (always 1).",
    )
    .sample(
        "sentinel_build_info",
        &[
            ("version", &s.version),
            ("mode", &s.mode),
            ("dry_run", if s.dry_run { "true" } else { "false" }),
        ],
        1.0,
    );
    e.single(
        "sentinel_degraded",
        Type::Gauge,
        "1 when a probe or eBPF is unavailable and the agent sees growth later (sentinel status says why).",
        f64::from(u8::from(s.degraded)),
    );
    e.single(
        "sentinel_crash_loops",
        Type::Gauge,
        "Command lines preempted often enough to count as crash-looping.",
        s.crash_loops as f64,
    );
    e.single(
        "sentinel_host_memory_available_bytes",
        Type::Gauge,
        "MemAvailable plus SwapFree.",
        s.host_available_bytes as f64,
    );
    e.single(
        "sentinel_host_memory_total_bytes",
        Type::Gauge,
        "MemTotal plus SwapTotal.",
        s.host_total_bytes as f64,
    );
    e.single(
        "sentinel_host_memory_used_bytes",
        Type::Gauge,
        "Host usage as Sentinel judges it: total less available.",
        s.host_used_bytes as f64,
    );
    e.single(
        "sentinel_host_memory_limit_bytes",
        Type::Gauge,
        "The host's 100% line: total less host.min_available.",
        s.host_limit_bytes as f64,
    );
    e.single(
        "sentinel_host_level",
        Type::Gauge,
        "The host scope's level: 0 normal, 1 warn, 2 preempt, 3 kill.",
        f64::from(s.host_level),
    );
    psi_family(
        &mut e,
        ("sentinel_host_memory_pressure_ratio", Type::Gauge),
        "Memory PSI avg10: share of time tasks stalled on memory (some or full).",
        [s.psi_some, s.psi_full],
        &[("window", "10s")],
    );
    psi_family(
        &mut e,
        ("sentinel_host_memory_pressure_seconds_total", Type::Counter),
        "Memory PSI total: seconds some (or all) tasks stalled on memory since boot, as node_exporter's node_pressure_memory_*_seconds_total; its rate() is the stall share over any window.",
        [s.psi_some_seconds, s.psi_full_seconds],
        &[],
    );
    e.family(
        "sentinel_processes",
        Type::Gauge,
        "Tracked processes by the level of their own rule.",
    );
    for (l, n) in LEVELS.iter().zip(s.process_levels) {
        e.sample("sentinel_processes", &[("level", l)], n as f64);
    }
    e.family(
        "sentinel_cgroups",
        Type::Gauge,
        "Limited cgroups under a cgroup rule, by level.",
    );
    for (l, n) in LEVELS.iter().zip(s.cgroup_levels) {
        e.sample("sentinel_cgroups", &[("level", l)], n as f64);
    }
    e.single(
        "sentinel_tracked_processes",
        Type::Gauge,
        "Processes the agent tracks.",
        s.tracked as f64,
    );
    e.single(
        "sentinel_frozen_processes",
        Type::Gauge,
        "Processes Sentinel holds frozen now as runaways (queued ones are counted apart).",
        s.frozen as f64,
    );
    e.single(
        "sentinel_queued_processes",
        Type::Gauge,
        "Processes frozen to wait their turn at a shared limit while others finish.",
        s.queued as f64,
    );
    e.single(
        "sentinel_queue_wait_seconds_max",
        Type::Gauge,
        "How long the longest-waiting queued process has waited (0 when none waits).",
        s.queue_wait_max_secs,
    );
    e.family(
        "sentinel_decisions_total",
        Type::Counter,
        "Decisions since the agent started, by kind, action and scope.",
    );
    for (kind, action, scope, n) in &s.decisions {
        e.sample(
            "sentinel_decisions_total",
            &[("kind", kind), ("action", action), ("scope", scope)],
            *n as f64,
        );
    }
    e.family(
        "sentinel_preemptions_total",
        Type::Counter,
        "Processes Sentinel stopped since it started, by action, and whether the stop was done, only decided (dry-run) or failed.",
    );
    for (action, row) in PREEMPT_ACTIONS.iter().zip(&s.preemptions) {
        for (outcome, n) in PREEMPT_OUTCOMES.iter().zip(row) {
            e.sample(
                "sentinel_preemptions_total",
                &[("action", action.as_str()), ("outcome", outcome)],
                *n as f64,
            );
        }
    }
    e.single(
        "sentinel_tripwire_fires_total",
        Type::Counter,
        "Processes the in-kernel tripwire stopped.",
        s.tripwire_fires as f64,
    );
    e.single(
        "sentinel_precise_probe_attached",
        Type::Gauge,
        "1 while the per-fault rss_stat probe and its tripwires are attached (a line is within reach); 0 while only the wide watch runs.",
        f64::from(u8::from(s.precise_attached)),
    );
    e.single(
        "sentinel_precise_probe_attachments_total",
        Type::Counter,
        "Times the per-fault probe was attached because a line came within reach.",
        s.precise_attachments as f64,
    );
    e.single(
        "sentinel_kernel_oom_kills_total",
        Type::Counter,
        "Kernel OOM kills seen (each one a miss).",
        s.kernel_oom_kills as f64,
    );
    e.single(
        "sentinel_probe_events_total",
        Type::Counter,
        "Events the eBPF probes delivered.",
        s.probe_events as f64,
    );
    e.single(
        "sentinel_probe_lost_events_total",
        Type::Counter,
        "Events lost because the ring buffer was full.",
        s.lost_events as f64,
    );
    e.family(
        "sentinel_probe_attached",
        Type::Gauge,
        "Whether each probe is attached now (0 means degraded, except rss_stat while sentinel_precise_probe_attached is 0: it rests until a line comes within reach).",
    );
    for (name, attached) in &s.probes {
        e.sample(
            "sentinel_probe_attached",
            &[("probe", name)],
            f64::from(u8::from(*attached)),
        );
    }
    e.family(
        "sentinel_top_grower_slope_bytes_per_second",
        Type::Gauge,
        "Growth rate of the fastest-growing processes (bounded set).",
    );
    for g in &s.top {
        let pid = g.pid.to_string();
        e.sample(
            "sentinel_top_grower_slope_bytes_per_second",
            &[("pid", &pid), ("comm", &g.comm), ("rule", &g.rule)],
            g.slope_bytes_per_sec,
        );
    }
    e.family(
        "sentinel_top_grower_charged_bytes",
        Type::Gauge,
        "Charged memory (anon + shmem + swap) of the fastest-growing processes.",
    );
    for g in &s.top {
        let pid = g.pid.to_string();
        e.sample(
            "sentinel_top_grower_charged_bytes",
            &[("pid", &pid), ("comm", &g.comm), ("rule", &g.rule)],
            g.charged_bytes as f64,
        );
    }
    e.single(
        "sentinel_journal_write_failures_total",
        Type::Counter,
        "Decisions that could not be written to the journal file.",
        s.journal_write_failures as f64,
    );
    e.single(
        "sentinel_last_decision_seq",
        Type::Gauge,
        "Sequence number of the latest decision.",
        s.last_decision_seq as f64,
    );
    e.single(
        "sentinel_alerts_firing",
        Type::Gauge,
        "Alerts Sentinel is sending as firing.",
        s.alerts_firing as f64,
    );
    e.single(
        "sentinel_gpu_available",
        Type::Gauge,
        "1 while NVML answers (sentinel status says why not).",
        f64::from(u8::from(s.gpu_available)),
    );
    e.single(
        "sentinel_gpu_read_errors_total",
        Type::Counter,
        "Failed NVML reads of a device (each pass that failed for it).",
        s.gpu_read_errors as f64,
    );
    type PerGpu = fn(&(u32, String, u64, u64, u8, bool)) -> f64;
    let per_gpu: [(&str, &str, PerGpu); 4] = [
        (
            "sentinel_gpu_memory_used_bytes",
            "GPU memory in use per device.",
            |g| g.2 as f64,
        ),
        (
            "sentinel_gpu_memory_total_bytes",
            "GPU memory per device.",
            |g| g.3 as f64,
        ),
        (
            "sentinel_gpu_level",
            "A GPU's level as a shared limit: 0 normal, 1 warn, 2 preempt, 3 kill.",
            |g| f64::from(g.4),
        ),
        (
            "sentinel_gpu_readable",
            "1 when the last read of the device succeeded.",
            |g| f64::from(u8::from(g.5)),
        ),
    ];
    if !s.gpus.is_empty() {
        for (name, help, value) in per_gpu {
            e.family(name, Type::Gauge, help);
            for g in &s.gpus {
                let index = g.0.to_string();
                e.sample(name, &[("gpu", &index), ("uuid", &g.1)], value(g));
            }
        }
    }
    e.single(
        "sentinel_admission_reservations",
        Type::Gauge,
        "Memory reservations granted and not yet released.",
        s.reservations as f64,
    );
    e.single(
        "sentinel_admission_reserved_bytes",
        Type::Gauge,
        "What reservations still hold back (granted less what their trees use).",
        s.reserved_bytes as f64,
    );
    e.single(
        "sentinel_admission_refusals_unjournalled_total",
        Type::Counter,
        "Admission refusals counted into a client's summary rather than journalled one by one (rate limit per client).",
        s.admission_refusals_unjournalled as f64,
    );
    e.family(
        "sentinel_admission_queued",
        Type::Gauge,
        "Reservation requests waiting, per priority.",
    );
    for (p, n) in sentinel_core::policy::admission::Priority::ALL
        .iter()
        .zip(s.admission_queued)
    {
        e.sample(
            "sentinel_admission_queued",
            &[("priority", p.as_str())],
            n as f64,
        );
    }
    type PerReceiver = fn(&ReceiverView) -> f64;
    let per_receiver: [(&str, Type, &str, PerReceiver); 6] = [
        (
            "sentinel_alert_queue_length",
            Type::Gauge,
            "Alerts waiting for delivery, per receiver.",
            |r| r.queued as f64,
        ),
        (
            "sentinel_alerts_delivered_total",
            Type::Counter,
            "Alerts a receiver accepted.",
            |r| r.counters.delivered as f64,
        ),
        (
            "sentinel_alert_delivery_failures_total",
            Type::Counter,
            "Failed delivery requests (each retried).",
            |r| r.counters.failures as f64,
        ),
        (
            "sentinel_alerts_dropped_total",
            Type::Counter,
            "Alerts dropped from a full queue (the journal keeps every decision).",
            |r| r.counters.dropped as f64,
        ),
        (
            "sentinel_alert_breaker_state",
            Type::Gauge,
            "Circuit breaker per receiver: 0 closed, 1 open, 2 half-open.",
            |r| f64::from(r.breaker.code()),
        ),
        (
            "sentinel_alert_breaker_opened_total",
            Type::Counter,
            "Times a receiver's circuit breaker opened.",
            |r| r.breaker_opened as f64,
        ),
    ];
    if !s.receivers.is_empty() {
        for (name, kind, help, value) in per_receiver {
            e.family(name, kind, help);
            for r in &s.receivers {
                e.sample(
                    name,
                    &[("receiver", &r.name), ("type", r.kind.as_str())],
                    value(r),
                );
            }
        }
    }
    e.single(
        "process_resident_memory_bytes",
        Type::Gauge,
        "The agent's own resident memory.",
        s.resident_bytes as f64,
    );
    e.single(
        "process_cpu_seconds_total",
        Type::Counter,
        "The agent's own CPU time, user and system.",
        s.cpu_seconds,
    );
    e.single(
        "process_start_time_seconds",
        Type::Gauge,
        "When the agent started, in seconds since the Unix epoch.",
        s.start_time_seconds,
    );
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample line belongs to the family declared above it, and no
    /// family is declared twice: what Prometheus's parser insists on.
    fn check_format(text: &str) {
        let mut declared = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(declared.insert(name.clone()), "{name} declared twice");
                current = name;
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "{line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
            }
        }
    }

    /// Metric names (`sentinel_*`, `process_*`) in a text of queries.
    fn names_in(text: &str) -> std::collections::BTreeSet<String> {
        let re = regex::Regex::new(r"\b(sentinel_[a-z0-9_]+|process_[a-z_]+)\b").unwrap();
        re.find_iter(text).map(|m| m.as_str().to_string()).collect()
    }

    #[test]
    fn the_shipped_dashboard_and_rules_only_use_metrics_the_agent_exports() {
        use crate::alert::{breaker::BreakerState, deliver};
        // As on a host with PSI, a GPU and a receiver: every family the
        // agent can export is rendered.
        let s = Snapshot {
            psi_some: Some(0.0),
            psi_full: Some(0.0),
            psi_some_seconds: Some(0.0),
            psi_full_seconds: Some(0.0),
            gpus: vec![(0, "GPU-0".into(), 1 << 30, 16 << 30, 0, true)],
            receivers: vec![deliver::ReceiverView {
                kind: deliver::Kind::Alertmanager,
                name: "http://am:9093".into(),
                queued: 0,
                breaker: BreakerState::Closed,
                breaker_opened: 0,
                counters: deliver::Counters::default(),
            }],
            ..Snapshot::default()
        };
        let exported: std::collections::BTreeSet<String> = render(&s)
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect();
        for (file, text) in [
            (
                "deploy/grafana/sentinel-dashboard.json",
                include_str!("../../../deploy/grafana/sentinel-dashboard.json"),
            ),
            (
                "deploy/prometheus/sentinel-rules.yml",
                include_str!("../../../deploy/prometheus/sentinel-rules.yml"),
            ),
        ] {
            // Only what sits in expressions: the dashboard's "expr" fields,
            // the rules' `expr:` lines.
            let exprs: String = text
                .lines()
                .filter(|l| l.contains("\"expr\"") || l.trim_start().starts_with("expr:"))
                .collect::<Vec<_>>()
                .join("\n");
            let used = names_in(&exprs);
            assert!(
                used.len() >= 5,
                "{file}: found too few metrics to mean anything: {used:?}"
            );
            let unknown: Vec<_> = used.difference(&exported).collect();
            assert!(
                unknown.is_empty(),
                "{file} uses metrics the agent does not export: {unknown:?}"
            );
        }
    }

    #[test]
    fn a_snapshot_renders_every_family_in_base_units() {
        let s = Snapshot {
            version: "0.1.0".into(),
            mode: "ebpf".into(),
            host_available_bytes: 1 << 30,
            psi_some: Some(0.25),
            psi_some_seconds: Some(12.5),
            process_levels: [10, 2, 1, 0],
            frozen: 1,
            decisions: vec![("preempt".into(), "freeze".into(), "process".into(), 3)],
            preemptions: [[3, 0, 0], [0, 0, 0], [0, 2, 1]],
            probes: vec![("rss_stat".into(), true)],
            top: vec![Grower {
                pid: 42,
                comm: "leak\"er".into(),
                rule: "workers".into(),
                slope_bytes_per_sec: 5e7,
                charged_bytes: 1 << 20,
            }],
            resident_bytes: 20 << 20,
            cpu_seconds: 1.5,
            ..Snapshot::default()
        };
        let text = render(&s);
        check_format(&text);
        for line in [
            "sentinel_host_memory_available_bytes 1073741824",
            "sentinel_host_memory_pressure_ratio{kind=\"some\",window=\"10s\"} 0.25",
            "sentinel_host_memory_pressure_seconds_total{kind=\"some\"} 12.5",
            "sentinel_processes{level=\"warn\"} 2",
            "sentinel_frozen_processes 1",
            "sentinel_decisions_total{kind=\"preempt\",action=\"freeze\",scope=\"process\"} 3",
            "sentinel_preemptions_total{action=\"freeze\",outcome=\"done\"} 3",
            "sentinel_preemptions_total{action=\"terminate\",outcome=\"done\"} 0",
            "sentinel_preemptions_total{action=\"kill\",outcome=\"dry-run\"} 2",
            "sentinel_preemptions_total{action=\"kill\",outcome=\"failed\"} 1",
            "sentinel_probe_attached{probe=\"rss_stat\"} 1",
            "sentinel_top_grower_slope_bytes_per_second{pid=\"42\",comm=\"leak\\\"er\",rule=\"workers\"} 50000000",
            "process_resident_memory_bytes 20971520",
            "process_cpu_seconds_total 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        // No PSI on the kernel: no pressure family rather than a fake 0.
        let text = render(&Snapshot::default());
        check_format(&text);
        assert!(!text.contains("pressure_ratio"));
        assert!(!text.contains("pressure_seconds_total"));
        assert!(!text.contains("sentinel_alert_queue_length"));
    }
}
