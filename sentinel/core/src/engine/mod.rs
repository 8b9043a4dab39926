//! The decision engine: the process table, scopes and their limits, relief
//! and victim choice, the action ladder, operators' operations and the
//! views the API shows. Pure: it reaches the system only through its
//! [`Host`], so the same code runs in the agent, in tests against a fake
//! host, and in `sentinel replay`.
//!
//! Inputs arrive as kernel events ([`Engine::handle_batch`]), timer ticks
//! ([`Engine::tick`]), /proc passes ([`Engine::rescan`]), GPU passes and
//! operators' requests; each may end in decisions, which go to the host's
//! journal.

mod admission;
mod custody;
mod events;
mod gpu;
mod host;
mod index;
mod ladder;
mod ops;
mod pressure;
mod process;
mod queue;
mod reach;
mod resume;
mod schedule;
mod scopes;
mod shared;
mod table;
mod views;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

pub use admission::{AdmissionPass, pool_name};
pub use custody::{Held, held_by_journal};
pub use gpu::{GpuDeviceView, GpuState, device_of_rule, rule_of};
pub use host::{CgroupPaths, Host, Signal, Tripwire};
pub use ops::{Applied, OpError, PolicyError};
pub use pressure::PsiArmed;
pub use reach::{DISARM_AFTER_SECS, Instrument, InstrumentView};
pub use schedule::QueuedView;
pub use scopes::{effective_limit, is_within};
pub use shared::tree_root;
pub use table::{ProcState, tripwire_ceiling};
pub use views::{HostView, ProcDetail, ProcQuery, ProcView, SortKey};

use self::{index::ProcTable, reach::InstrumentState, scopes::HostState, shared::ScopeState};
use crate::{
    config::Config,
    decision::ScopeKind,
    policy::{self, Action, Levels, Params, Sampling, restarts::Restarts},
};

/// How memory samples reach the engine: it decides how soon the next one
/// can come, and so how early to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The kernel reports every step of movement; the tripwire can be armed.
    Ebpf,
    /// /proc is polled.
    Polling,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ebpf => "ebpf",
            Self::Polling => "procfs-polling",
        }
    }
}

/// Where a limit comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The process's own rule.
    Process,
    /// A limited memory cgroup (its path).
    Cgroup(String),
    Host,
    /// A GPU's memory (its NVML index).
    Gpu(u32),
    /// One process's memory on one GPU, under its rule's `gpu_limit`.
    GpuProcess {
        device: u32,
        pid: u32,
    },
}

impl Scope {
    /// The kind decisions about it carry (a rule's `gpu_limit` is the
    /// process's own rule).
    pub fn kind(&self) -> ScopeKind {
        match self {
            Self::Process | Self::GpuProcess { .. } => ScopeKind::Process,
            Self::Cgroup(_) => ScopeKind::Cgroup,
            Self::Host => ScopeKind::Host,
            Self::Gpu(_) => ScopeKind::Gpu,
        }
    }

    /// How a decision's reason names it.
    fn describe(&self) -> String {
        match self {
            Self::Process => "it".to_string(),
            Self::Cgroup(path) => format!("cgroup {path}"),
            Self::Host => "the host".to_string(),
            Self::Gpu(d) => format!("GPU {d}"),
            Self::GpuProcess { device, pid } => format!("pid {pid} on GPU {device}"),
        }
    }
}

/// One limit as a decision needs it.
#[derive(Debug, Clone)]
struct Limit {
    scope: Scope,
    rule: String,
    bytes: u64,
    levels: Levels,
    cap: Action,
}

impl Limit {
    /// A process rule's limit.
    fn of_rule(rule: &policy::Rule) -> Self {
        Self {
            scope: Scope::Process,
            rule: rule.name.clone(),
            bytes: rule.limit_bytes,
            levels: rule.levels,
            cap: rule.action,
        }
    }
}

/// What the engine is told once, at start.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mode: Mode,
    /// The agent's own pid: never signalled.
    pub self_pid: u32,
    /// Bytes per page, for the kernel's page counts.
    pub page_size: u64,
    /// Online CPUs: how fast this machine can fault (`fastest_growth =
    /// "auto"`).
    pub cpus: u32,
    /// The kernel reports every move to another cgroup
    /// (`cgroup_attach_task`): between passes, no process's cgroup needs
    /// reading again to find one.
    pub moves_reported: bool,
}

/// Window over which growth shares are measured.
const GROWTH_WINDOW_SECS: f64 = 2.0;

pub struct Engine<H: Host> {
    host: H,
    cfg: Config,
    opts: Options,
    procs: ProcTable<H::Pidfd>,
    /// GPU devices and their processes' GPU memory, from NVML.
    gpu: GpuState,
    /// Reservations by tree root: (bytes, used), from admission control.
    reserved: HashMap<u32, (u64, u64)>,
    /// Effective limit of each cgroup path seen, cleared on every rescan.
    group_limits: HashMap<String, Option<(String, u64)>>,
    scopes: HashMap<Scope, ScopeState>,
    host_state: HostState,
    restarts: Restarts,
    /// SIGKILL due after an unanswered SIGTERM, re-checked against the rule
    /// in force when it comes due.
    graces: BTreeMap<u32, ladder::Grace>,
    /// Processes an operator protected through the API: pid -> (start
    /// time, why); a new process under the pid is not protected.
    operator_protected: HashMap<u32, (u64, String)>,
    /// Where the running policy came from, and its text.
    policy_source: String,
    policy_text: String,
    /// Keys the policy text sets that are read only at start, so the
    /// running values differ from the text's until a restart.
    policy_not_in_use: Vec<&'static str>,
    kernel_oom_kills: u64,
    /// When [`Engine::start`] ran: until what runs has shown its growth,
    /// nobody queued is let in.
    started_at: Option<f64>,
    /// Which instrument watches memory, and why.
    instrument: InstrumentState,
}

impl<H: Host> Engine<H> {
    pub fn new(cfg: Config, opts: Options, host: H) -> Self {
        for w in cfg.warnings() {
            tracing::warn!("{w}");
        }
        let restarts = Restarts::new(cfg.agent.crash_loop);
        let history = cfg.agent.history.as_secs_f64();
        let instrument = InstrumentState::new(opts.mode, cfg.agent.precise_probe);
        Self {
            host,
            cfg,
            opts,
            procs: ProcTable::default(),
            gpu: GpuState::default(),
            reserved: HashMap::new(),
            group_limits: HashMap::new(),
            scopes: HashMap::new(),
            host_state: HostState::new(history),
            restarts,
            graces: BTreeMap::new(),
            operator_protected: HashMap::new(),
            policy_source: String::new(),
            policy_text: String::new(),
            policy_not_in_use: Vec::new(),
            kernel_oom_kills: 0,
            started_at: None,
            instrument,
        }
    }

    pub fn host(&self) -> &H {
        &self.host
    }

    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// The host, once the engine is done with it (a restart in tests).
    pub fn into_host(self) -> H {
        self.host
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn mode(&self) -> Mode {
        self.opts.mode
    }

    pub fn kernel_oom_kills(&self) -> u64 {
        self.kernel_oom_kills
    }

    pub fn tracked(&self) -> usize {
        self.procs.len()
    }

    pub fn gpu(&self) -> &GpuState {
        &self.gpu
    }

    /// Where the running policy came from, and its text.
    pub fn policy(&self) -> (&str, &str) {
        (&self.policy_source, &self.policy_text)
    }

    /// Keys the running policy's text changed that are read only at start:
    /// the agent still uses the values it started with.
    pub fn policy_not_in_use(&self) -> &[&'static str] {
        &self.policy_not_in_use
    }

    /// The policy the engine starts with came from `source`.
    pub fn set_policy_source(&mut self, source: String, text: String) {
        self.policy_source = source;
        self.policy_text = text;
        self.policy_not_in_use.clear();
    }

    pub fn params(&self) -> Params {
        Params {
            horizon_secs: self.cfg.agent.reaction_horizon.as_secs_f64(),
            sampling: match self.opts.mode {
                Mode::Ebpf => Sampling::Step {
                    step_bytes: self.cfg.agent.step_bytes,
                },
                Mode::Polling => Sampling::Poll {
                    interval_secs: self.cfg.agent.poll_interval.as_secs_f64(),
                },
            },
            min_confidence: 0.6,
        }
    }

    /// Swaps in a validated config and re-matches every known process.
    /// What is read only at start (listeners, journal, probes, timers)
    /// keeps its running value; the keys a reload asked to change there are
    /// returned.
    pub fn apply_config(&mut self, mut cfg: Config) -> Vec<&'static str> {
        let start_only = crate::config::keep_start_only(&mut cfg, &self.cfg);
        self.restarts.set_rule(cfg.agent.crash_loop);
        let setting = cfg.agent.precise_probe;
        self.cfg = cfg;
        self.rebind_all();
        // A raised limit may have cleared a frozen process's pressure, and
        // a queue may have lost what it waited for.
        let now = self.host.now();
        self.set_precise_probe(setting, now);
        self.resume_cleared(now);
        self.resume_queued(now);
        start_only
    }
}
