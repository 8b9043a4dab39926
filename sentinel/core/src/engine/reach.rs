//! Two instruments watch memory. The precise one, the kernel's per-fault
//! `rss_stat` program with its tripwire, costs every page fault on the
//! machine a dispatch, whatever the program does (about 3% of a fault
//! storm), so it is attached only while some line is within reach: within
//! what the fastest growth this machine allows covers before the wide
//! watch looks again, plus the time to attach. The wide one is the host
//! timer's own reads: meminfo for the host, the kernel's charge of each
//! governed cgroup, and statm of each process a rule governs. Its cost
//! follows the number of limits, not the fault rate.
//!
//! Without the precise probe no memory event announces a new process, so
//! forks and execs are discovered from their own events.

use std::collections::BTreeMap;

use super::{Engine, Host, Mode, Scope, table::ProcState};
use crate::{config::PreciseProbe, policy::Level};

/// Which instrument watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    /// The per-fault probe and its tripwire are attached.
    Precise,
    /// Only the timer's reads of the scopes that have a line.
    Wide,
}

impl Instrument {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Precise => "precise",
            Self::Wide => "wide",
        }
    }
}

/// What status shows of the instruments.
#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentView {
    pub instrument: Instrument,
    /// Whether the engine switches between them (`precise_probe = "auto"`
    /// with the probe loaded).
    pub on_demand: bool,
    /// Why this one: the nearest line and how far it is.
    pub why: String,
    /// Growth the wide watch cannot miss between two looks: a line nearer
    /// than this attaches the precise probe.
    pub reach_bytes: u64,
    /// Times the precise probe was attached after start.
    pub armed: u64,
    /// Seconds (engine clock) the current instrument has been in use.
    pub since: f64,
    /// The last failure to attach or detach.
    pub error: Option<String>,
}

/// Out of reach, at twice the reach, this long before the precise probe
/// is detached: a scope that hovers near its line does not make it flap.
pub const DISARM_AFTER_SECS: f64 = 10.0;
/// Attaching a tp_btf program takes well under a millisecond here
/// (`cargo xtask bench reach`); this leaves room for a loaded machine.
const ATTACH_ALLOWANCE_SECS: f64 = 0.05;

pub(super) struct InstrumentState {
    pub current: Instrument,
    on_demand: bool,
    why: String,
    armed: u64,
    /// When the current instrument came on (or the agent started).
    pub since: f64,
    /// Since when every line has been out of reach by twice the reach.
    far_since: Option<f64>,
    error: Option<String>,
}

impl InstrumentState {
    /// The agent loads the probe attached; under polling there is none.
    pub fn new(mode: Mode, setting: PreciseProbe) -> Self {
        Self {
            current: Instrument::Precise,
            on_demand: mode == Mode::Ebpf && setting == PreciseProbe::Auto,
            why: match (mode, setting) {
                (Mode::Polling, _) => "no eBPF: /proc is polled".into(),
                (_, PreciseProbe::Always) => "agent.precise_probe = \"always\"".into(),
                _ => "starting".into(),
            },
            armed: 0,
            since: 0.0,
            far_since: None,
            error: None,
        }
    }
}

/// The scope nearest its line, and how far below it it is.
struct Nearest {
    what: String,
    headroom: i64,
}

impl Nearest {
    fn keep_nearer(best: &mut Option<Self>, what: impl FnOnce() -> String, headroom: i64) {
        if best.as_ref().is_none_or(|b| headroom < b.headroom) {
            *best = Some(Self {
                what: what(),
                headroom,
            });
        }
    }
}

fn mib(bytes: i64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

impl<H: Host> Engine<H> {
    pub fn instrument(&self) -> InstrumentView {
        let s = &self.instrument;
        InstrumentView {
            instrument: s.current,
            on_demand: s.on_demand,
            why: s.why.clone(),
            reach_bytes: self.reach_bytes(),
            armed: s.armed,
            since: s.since,
            error: s.error.clone(),
        }
    }

    fn reach_bytes(&self) -> u64 {
        let secs = self.cfg.agent.rest_interval.as_secs_f64() + ATTACH_ALLOWANCE_SECS;
        let rate = self.cfg.agent.fastest_growth.bytes_per_sec(self.opts.cpus);
        (rate as f64 * secs) as u64
    }

    /// Whether the per-fault probe rests: processes must be found from
    /// fork and exec events, and the host timer runs at `rest_interval`.
    pub fn at_rest(&self) -> bool {
        self.instrument.current == Instrument::Wide
    }

    /// The wide watch's look at the processes a rule governs (statm each):
    /// the cgroups and the host are read by [`Self::nearest_line`].
    pub(super) fn watch_wide(&mut self, now: f64) {
        if !self.at_rest() {
            return;
        }
        let governed: Vec<u32> = self
            .procs
            .governed()
            .filter(|p| p.state == ProcState::Running)
            .map(|p| p.pid)
            .collect();
        for pid in governed {
            match self.host.mem(pid) {
                Some(mem) => self.observe(pid, mem, now),
                None => {
                    self.forget(pid);
                }
            }
        }
    }

    /// A fork or exec seen while wide: read the process now, since no
    /// memory event will (its rule may put it within reach at once).
    pub(super) fn discover_now(&mut self, pid: u32, now: f64) {
        let Some(mem) = self.host.mem(pid) else {
            return;
        };
        self.observe(pid, mem, now);
        let Some((rule, cgroup)) = self.procs.get(&pid).map(|p| (p.rule, p.cgroup.clone())) else {
            return;
        };
        let shared = !self.cfg.cgroup_rules.is_empty() && self.cgroup_limit(&cgroup).is_some();
        if rule.is_some() || shared {
            self.choose_instrument(now);
        }
    }

    /// A task of `pid` moved to another cgroup. Under a new memory cgroup
    /// it is read afresh, rules and all (one the agent holds is left as
    /// it is: its custody comes first; the agent's own freezer moves it
    /// too); one the agent does not know yet is read now while at rest,
    /// since no memory event will announce it.
    pub(super) fn on_moved(&mut self, pid: u32, now: f64) {
        let known = match self.procs.get(&pid) {
            Some(p) if p.state == ProcState::Running => Some(p.cgroup.clone()),
            Some(_) => return,
            None => None,
        };
        match known {
            Some(old) => {
                if self.host.cgroup(pid).is_none_or(|cg| cg == old) {
                    return;
                }
                tracing::debug!(pid, "moved to another memory cgroup: read afresh");
                self.forget(pid);
                self.discover_now(pid, now);
            }
            None if self.at_rest() => self.discover_now(pid, now),
            None => {}
        }
    }

    /// The line nearest to being crossed: the host's, each governed
    /// cgroup's (the kernel's own charge) and each governed process's (its
    /// last sample). Anything the agent holds, waits on or reserved counts
    /// as at its line: following it needs every event.
    fn nearest_line(&mut self) -> Option<Nearest> {
        let mut best: Option<Nearest> = None;
        let held = self.procs.held_count();
        if held > 0 {
            Nearest::keep_nearer(&mut best, || format!("{held} processes held"), 0);
        }
        if !self.graces.is_empty() {
            Nearest::keep_nearer(&mut best, || "a grace before SIGKILL runs".into(), 0);
        }
        if !self.reserved.is_empty() {
            let n = self.reserved.len();
            Nearest::keep_nearer(&mut best, || format!("{n} admission reservations"), 0);
        }
        if self.host_state.mem.total > 0 {
            let limit = self.host_limit();
            let line = limit.levels.line(Level::Warn, limit.bytes);
            let headroom = line as i64 - self.host_state.used() as i64;
            Nearest::keep_nearer(&mut best, || "the host's warn line".into(), headroom);
        }
        for p in self.procs.governed() {
            let (Some(ri), ProcState::Running) = (p.rule, p.state) else {
                continue;
            };
            let rule = &self.cfg.rules[ri];
            let line = rule.levels.line(Level::Warn, rule.limit_bytes);
            let headroom = line as i64 - p.usage() as i64;
            Nearest::keep_nearer(
                &mut best,
                || format!("pid {} ({}) under rule `{}`", p.pid, p.comm, rule.name),
                headroom,
            );
        }
        if !self.cfg.cgroup_rules.is_empty() {
            let cgroups: Vec<String> = self.procs.cgroups().map(str::to_owned).collect();
            let mut limits = BTreeMap::new();
            for cg in cgroups {
                if let Some(limit) = self.cgroup_limit(&cg)
                    && let Scope::Cgroup(path) = &limit.scope
                {
                    limits.insert(path.clone(), limit);
                }
            }
            for (path, limit) in limits {
                let usage = self
                    .host
                    .cgroup_usage(&path)
                    .unwrap_or_else(|| self.cgroup_usage(&path));
                let line = limit.levels.line(Level::Warn, limit.bytes);
                Nearest::keep_nearer(
                    &mut best,
                    || format!("cgroup {path} under rule `{}`", limit.rule),
                    line as i64 - usage as i64,
                );
            }
        }
        best
    }

    /// Attaches the precise probe when a line comes within reach; detaches
    /// it once every line has stayed twice as far for
    /// [`DISARM_AFTER_SECS`].
    pub(super) fn choose_instrument(&mut self, now: f64) {
        if !self.instrument.on_demand {
            return;
        }
        let reach = self.reach_bytes() as i64;
        let nearest = self.nearest_line();
        let (what, headroom) = nearest
            .map(|n| (n.what, n.headroom))
            .unwrap_or_else(|| ("no line at all".into(), i64::MAX));
        let distance = if headroom == i64::MAX {
            "none governed".to_string()
        } else if headroom <= 0 {
            "at or past its line".to_string()
        } else {
            format!("{} below its line", mib(headroom))
        };
        let why = format!("nearest: {what}, {distance}; reach {}", mib(reach));
        match self.instrument.current {
            Instrument::Wide if headroom <= reach => self.switch(Instrument::Precise, why, now),
            Instrument::Precise if headroom > reach.saturating_mul(2) => {
                let far_since = *self.instrument.far_since.get_or_insert(now);
                if now - far_since >= DISARM_AFTER_SECS {
                    self.switch(Instrument::Wide, why, now);
                } else {
                    self.instrument.why = why;
                }
            }
            _ => {
                self.instrument.far_since = None;
                self.instrument.why = why;
            }
        }
    }

    /// A reload's `agent.precise_probe`: "always" attaches at once.
    pub(super) fn set_precise_probe(&mut self, setting: PreciseProbe, now: f64) {
        let loaded = self.opts.mode == Mode::Ebpf;
        self.instrument.on_demand = loaded && setting == PreciseProbe::Auto;
        if loaded && !self.instrument.on_demand && self.at_rest() {
            self.switch(
                Instrument::Precise,
                "agent.precise_probe = \"always\"".into(),
                now,
            );
        }
    }

    fn switch(&mut self, to: Instrument, why: String, now: f64) {
        self.instrument.far_since = None;
        if let Err(e) = self.host.set_precise(to == Instrument::Precise) {
            // Tried again every tick while it matters: said once per error.
            if self.instrument.error.as_ref() != Some(&e) {
                tracing::warn!("cannot switch to the {} instrument: {e}", to.as_str());
            }
            self.instrument.why = format!("{why}; cannot switch to {}: {e}", to.as_str());
            self.instrument.error = Some(e);
            return;
        }
        tracing::info!(instrument = to.as_str(), "{why}");
        self.instrument.current = to;
        self.instrument.since = now;
        self.instrument.why = why;
        self.instrument.error = None;
        if to == Instrument::Precise {
            self.instrument.armed += 1;
            // Nothing was reported while wide: every known process's figure
            // is as old as the switch. Read them once; events follow.
            let pids: Vec<u32> = self.procs.keys().copied().collect();
            for pid in pids {
                if let Some(mem) = self.host.mem(pid) {
                    self.observe(pid, mem, now);
                }
            }
        }
    }
}
