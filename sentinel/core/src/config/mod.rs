//! The agent's TOML configuration: agent settings and per-process rules.
//!
//! Every error names the file, the line and the key, so that an operator can
//! fix a config from the message alone.

mod api;
mod env;
mod error;
mod gpu;
mod host;
mod outputs;
mod parse;
mod reload;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use api::{ApiSettings, ConnectionLimits, TcpApi};
pub use env::ENV_KEYS;
pub use error::{ConfigError, KeyLabel};
pub use gpu::GpuPolicy;
pub use outputs::{
    AlertingSettings, ClientIdentity, DEFAULT_METRICS, MetricsSettings, ReceiverTls,
};
pub use reload::keep_start_only;

use crate::policy::{
    Action, Levels, Pattern, PriorityClass, Rule,
    protect::{Protection, default_protections},
    restarts::LoopRule,
};

pub const DEFAULT_PATH: &str = "/etc/sentinel/sentinel.toml";
pub const DEFAULT_SOCKET: &str = "/run/sentinel/sentinel.sock";
pub const DEFAULT_JOURNAL: &str = "/var/lib/sentinel/journal.redb";

/// Every probe name, as status reports them; `agent.disable_probes` takes
/// these.
pub const PROBE_NAMES: [&str; 10] = [
    "rss_stat",
    "page_fault_user",
    "sched_process_fork",
    "mmap",
    "munmap",
    "brk",
    "oom_mark_victim",
    "sched_process_exec",
    "sched_process_exit",
    "cgroup_attach_task",
];

#[derive(Debug, Clone, PartialEq)]
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
    /// Processes never signalled (`[[protect]]`; the built-in set when
    /// the config has none).
    pub protect: Vec<Protection>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            agent: AgentSettings::default(),
            api: ApiSettings::default(),
            metrics: MetricsSettings::default(),
            alerting: AlertingSettings::default(),
            gpu: GpuPolicy::default(),
            levels: Levels::default(),
            rules: Vec::new(),
            cgroup_rules: Vec::new(),
            host: HostPolicy::default(),
            priorities: Vec::new(),
            protect: default_protections(),
        }
    }
}

impl Config {
    /// What in this config works but is weaker than it looks, for
    /// `policy check` and the agent's log: protections by name alone.
    pub fn warnings(&self) -> Vec<String> {
        const CLAIMABLE: &str = "any process can take a name (its file name, or prctl PR_SET_NAME), so anyone can claim this protection; protect by executable, unit, uid or cgroup with [[protect]] instead";
        let names = self
            .agent
            .protected
            .iter()
            .map(|n| format!("agent.protected `{n}`: {CLAIMABLE}"));
        let entries = self
            .protect
            .iter()
            .filter(|p| p.selector.by_name_only())
            .map(|p| {
                format!(
                    "[[protect]] `{}` matches the name only: {CLAIMABLE}",
                    p.name
                )
            });
        let tls_unused = (self.alerting.tls != ReceiverTls::default()
            && !self.alerting.any_https())
        .then(|| {
            "[alerting.tls] is set but no receiver is https://: alerts go out in plain text"
                .to_string()
        });
        names.chain(entries).chain(tls_unused).collect()
    }
}

/// The host's floor of available memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinAvailable {
    Bytes(u64),
    /// A share of RAM, at most `at_most` bytes.
    Share {
        percent: f64,
        at_most: Option<u64>,
    },
}

impl MinAvailable {
    /// The floor on a host with `ram` bytes of RAM.
    pub fn of(&self, ram: u64) -> u64 {
        match *self {
            Self::Bytes(b) => b,
            Self::Share { percent, at_most } => {
                let b = (ram as f64 * percent / 100.0) as u64;
                at_most.map_or(b, |m| b.min(m))
            }
        }
    }
}

/// earlyoom's 10% of RAM, which its users know; capped at 4 GiB, because
/// on a large host a tenth is far more than the kernel needs to reclaim
/// and run (a 512 GiB host would keep 51 GiB idle).
pub const DEFAULT_MIN_AVAILABLE: MinAvailable = MinAvailable::Share {
    percent: 10.0,
    at_most: Some(4 << 30),
};

/// The host's levels: its limit is already the floor, so they sit close to
/// it. Frozen a little before the floor, killed at it if freezing did not
/// stop the fall; a burst that levels off above the floor only warns.
pub const HOST_LEVELS: Levels = Levels {
    warn: 0.90,
    preempt: 0.97,
    kill: 1.0,
    clear: 0.05,
};

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
    /// Highest rung at host scope: the whole ladder by default (freeze,
    /// then kill), so a host is protected out of the box; `alert` for
    /// operators who want to watch first.
    pub action: Action,
    pub levels: Levels,
    /// Available memory (MemAvailable + SwapFree) to keep: the host's 100%.
    pub min_available: MinAvailable,
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
            action: Action::Kill,
            levels: HOST_LEVELS,
            min_available: DEFAULT_MIN_AVAILABLE,
            candidates: None,
            psi_stall: Duration::from_millis(150),
            interval: Duration::from_millis(100),
        }
    }
}

/// When the per-fault probe runs. Its cost is the kernel's dispatch on
/// every page fault of the machine (about 3% of a fault storm), whatever
/// the program does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreciseProbe {
    /// Only while some process, cgroup or the host is within reach of a
    /// line (`fastest_growth` over one `rest_interval` and the time to
    /// attach); otherwise the wide watch reads the governed scopes'
    /// figures on the host timer.
    Auto,
    /// Always: every process's movement is reported as it happens.
    Always,
}

impl PreciseProbe {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Always => "always",
        }
    }
}

/// The fastest a process (or a cgroup, or the host) can grow on this
/// machine: what the wide watch assumes between two looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastestGrowth {
    /// [`Self::PER_CPU`] for each online CPU, and at least
    /// [`Self::AUTO_FLOOR`]: a machine with more CPUs faults faster.
    Auto,
    /// Bytes per second, as the operator measured or chose.
    Fixed(u64),
}

impl FastestGrowth {
    /// One CPU of our machines faults about 2.5 GB/s in a page-fault storm;
    /// transparent huge pages (a 2 MiB page per fault) leave room above.
    pub const PER_CPU: u64 = 4 << 30;
    /// What a small machine is assumed to reach all the same.
    pub const AUTO_FLOOR: u64 = 8 << 30;

    /// Bytes per second on a machine with `cpus` online CPUs.
    pub fn bytes_per_sec(self, cpus: u32) -> u64 {
        match self {
            Self::Auto => Self::PER_CPU
                .saturating_mul(u64::from(cpus))
                .max(Self::AUTO_FLOOR),
            Self::Fixed(b) => b,
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
    /// Identity checks (a process moved to another cgroup); under polling,
    /// or without the fork/exec/exit probes, also the full /proc pass that
    /// discovers processes.
    pub rescan_interval: Duration,
    /// With the kernel reporting forks, execs and exits: how often the
    /// processes that went quiet are read again (/proc itself is listed
    /// only after the kernel lost some of its reports).
    pub reconcile_interval: Duration,
    /// When the per-fault `rss_stat` probe (and its tripwire) is attached.
    pub precise_probe: PreciseProbe,
    /// How often the wide watch looks while the per-fault probe rests (the
    /// host timer's period then; `host.interval` while it is attached).
    pub rest_interval: Duration,
    /// The fastest a process can grow on this machine: what the wide
    /// watch assumes between two looks when it decides that nothing is
    /// within reach of a line.
    pub fastest_growth: FastestGrowth,
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
    /// select them only alert. A name is anyone's to take: `[[protect]]`
    /// matches what the kernel vouches for. pid 1, kernel threads, the
    /// agent and processes with oom_score_adj -1000 are protected
    /// regardless.
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
    /// When several members of a shared limit grow together, how far ahead
    /// their growth is forecast: enough of them wait, frozen and queued,
    /// for the rest to stay under the preempt line that long. Zero turns
    /// the scheduler off (each member then meets the ladder at the line).
    pub schedule_horizon: Duration,
    /// Lock the agent's own memory (mlockall), so reclaim cannot slow it
    /// when it is needed most.
    pub lock_memory: bool,
    /// A reload (SIGHUP, ApplyPolicy) may bring a policy with no rule that
    /// acts only when it says so: a file emptied or truncated by mistake
    /// would otherwise thaw every frozen process.
    pub allow_empty_policy: bool,
    /// Freeze with the kernel's cgroup v1 freezer where it is mounted, so
    /// that a SIGCONT cannot undo a freeze; otherwise (and under cgroup v2)
    /// SIGSTOP.
    pub freezer: bool,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            socket: DEFAULT_SOCKET.to_string(),
            reaction_horizon: Duration::from_millis(20),
            step_bytes: 1 << 20,
            rescan_interval: Duration::from_secs(2),
            reconcile_interval: Duration::from_secs(60),
            precise_probe: PreciseProbe::Auto,
            rest_interval: Duration::from_millis(250),
            fastest_growth: FastestGrowth::Auto,
            poll_interval: Duration::from_millis(100),
            history: Duration::from_secs(10),
            dry_run: false,
            tripwire: true,
            // The kernel already counts faults per process (/proc/PID/stat);
            // the probe costs about 2% of a page-fault storm's throughput.
            disable_probes: vec!["page_fault_user".to_string()],
            protected: Vec::new(),
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
            schedule_horizon: Duration::from_secs(5),
            lock_memory: true,
            allow_empty_policy: false,
            freezer: true,
        }
    }
}
