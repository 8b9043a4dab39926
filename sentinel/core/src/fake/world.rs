//! The kernel and the agent's timers around a fake host: processes that
//! grow by script while they run (a frozen one's clock stops), events
//! step-sampled as the eBPF program sends them, the armed tripwire
//! stopping a process at its ceiling, exits reaped, and the agent's tick,
//! grace watch and rescan on their intervals. Time moves in steps of a
//! millisecond, so a test of seconds runs in milliseconds.

use std::collections::BTreeMap;

use sentinel_common::{Event, EventKind, counter};

use super::{BOOT_UNIX_MS, FakeHost, FakeProc};
use crate::{
    config::Config,
    engine::{Engine, Mode, Options, Tripwire, held_by_journal},
    model::Mem,
};

/// A process's charged bytes at each point of its running time (seconds,
/// not counting time frozen); `None` once it exits by itself.
pub type Script = Box<dyn Fn(f64) -> Option<u64>>;

/// Bytes per page of the fake kernel.
const PAGE: u64 = 4096;
/// Online CPUs of the fake machine: as many as ours.
const CPUS: u32 = 2;

/// What the engine is told at start, as the agent tells it in `mode`; with
/// eBPF its cgroup probe reports every move (`World::move_to`).
fn options(mode: Mode) -> Options {
    Options {
        mode,
        self_pid: AGENT_PID,
        page_size: PAGE,
        cpus: CPUS,
        moves_reported: mode == Mode::Ebpf,
    }
}
/// The time step.
const DT: f64 = 0.001;
/// The agent's own pid in a fake world: never one of its processes.
pub const AGENT_PID: u32 = 999_999;

struct Scripted {
    script: Script,
    /// Seconds it has run.
    age: f64,
}

/// When each of the agent's timers is next due.
struct Timers {
    tick: f64,
    graces: f64,
    rescan: f64,
    /// The known processes read again, when the kernel reports lifecycle
    /// events.
    reconcile: f64,
    poll: f64,
}

pub struct World {
    pub engine: Engine<FakeHost>,
    /// Polling: no kernel events; the agent reads /proc on its timer.
    mode: Mode,
    scripts: BTreeMap<u32, Scripted>,
    /// Charged bytes the kernel last reported of each process.
    reported: BTreeMap<u32, u64>,
    due: Timers,
    /// While the agent is stalled (stopped, or starved of CPU), the
    /// kernel's events wait here and its timers do not run.
    stalled: Option<Vec<Event>>,
}

fn event(kind: EventKind, pid: u32, t: f64, mem: Mem, aux: u64) -> Event {
    let mut pages = [0u64; counter::COUNT];
    pages[counter::ANON] = mem.anon / PAGE;
    pages[counter::FILE] = mem.file / PAGE;
    pages[counter::SHMEM] = mem.shmem / PAGE;
    pages[counter::SWAP] = mem.swap / PAGE;
    Event {
        kind: kind as u32,
        tgid: pid,
        ts_ns: (t * 1e9) as u64,
        pages,
        aux,
        aux2: 0,
    }
}

impl World {
    /// A world on eBPF sampling, with `host` as it stands.
    pub fn new(cfg: Config, host: FakeHost) -> Self {
        Self::with_mode(cfg, host, Mode::Ebpf)
    }

    pub fn with_mode(cfg: Config, host: FakeHost, mode: Mode) -> Self {
        let opts = options(mode);
        let now = host.now;
        Self {
            engine: Engine::new(cfg, opts, host),
            mode,
            scripts: BTreeMap::new(),
            reported: BTreeMap::new(),
            due: Timers {
                tick: now,
                graces: now,
                rescan: now,
                reconcile: now,
                poll: now,
            },
            stalled: None,
        }
    }

    /// The agent restarts on `cfg` (a crash, an upgrade, a rollout): a new
    /// engine on the same host and journal, started as the agent starts.
    /// With `graceful`, the old one stopped as on SIGTERM first.
    pub fn restart_agent(&mut self, cfg: Config, graceful: bool) {
        if graceful {
            self.engine.leave_frozen();
        }
        let opts = options(self.mode);
        let placeholder = Engine::new(cfg.clone(), opts, FakeHost::default());
        let host = std::mem::replace(&mut self.engine, placeholder).into_host();
        let now = host.now;
        let held = held_by_journal(host.decisions(), BOOT_UNIX_MS);
        let pids = host.procs.keys().copied().collect();
        let unowned = host
            .procs
            .iter()
            .filter(|(_, p)| p.in_freezer)
            .map(|(pid, p)| (*pid, p.start_time))
            .collect();
        self.engine = Engine::new(cfg, opts, host);
        self.engine.start(pids, held, unowned, now);
        self.stalled = None;
    }

    /// The agent stops running (SIGSTOP, or starved of CPU): the kernel
    /// goes on, its events queue up.
    pub fn stall_agent(&mut self) {
        self.stalled.get_or_insert_with(Vec::new);
    }

    /// The agent runs again and drains what queued meanwhile, in one batch.
    pub fn wake_agent(&mut self) {
        if let Some(batch) = self.stalled.take() {
            self.engine.handle_batch(&batch);
        }
    }

    /// Hands kernel events to the agent, or queues them while it stalls.
    fn deliver(&mut self, e: Event) {
        match &mut self.stalled {
            Some(queue) => queue.push(e),
            None => self.engine.handle_batch(&[e]),
        }
    }

    pub fn host(&self) -> &FakeHost {
        self.engine.host()
    }

    pub fn host_mut(&mut self) -> &mut FakeHost {
        self.engine.host_mut()
    }

    pub fn now(&self) -> f64 {
        self.host().now
    }

    /// Adds a process that grows by `script` from now on.
    pub fn spawn(&mut self, pid: u32, p: FakeProc, script: Script) {
        let ppid = p.ppid;
        self.engine.host_mut().spawn(pid, p);
        self.scripts.insert(pid, Scripted { script, age: 0.0 });
        // As the kernel: the child exists when its fork is reported.
        self.report_fork(pid, ppid);
    }

    /// What the fork probe reports of a new process: its parent forked it.
    /// Also called on its own, for an event that arrives late.
    pub fn report_fork(&mut self, child: u32, parent: u32) {
        if self.mode == Mode::Ebpf {
            let t = self.now();
            let e = event(EventKind::Fork, parent, t, Mem::default(), u64::from(child));
            self.deliver(e);
        }
    }

    /// The process moves itself (or is moved) to `cgroup`, and the kernel
    /// says so.
    pub fn move_to(&mut self, pid: u32, cgroup: &str) {
        if let Some(p) = self.engine.host_mut().procs.get_mut(&pid) {
            p.cgroup = cgroup.to_string();
        }
        if self.mode == Mode::Ebpf {
            let t = self.now();
            self.deliver(event(EventKind::Moved, pid, t, Mem::default(), 0));
        }
    }

    /// Adds a process whose memory only [`World::sample`] moves (a trace).
    pub fn spawn_traced(&mut self, pid: u32, p: FakeProc) {
        self.engine.host_mut().spawn(pid, p);
    }

    /// A trace's sample: time moves to `t`, then, if the process still
    /// runs, its memory is `bytes` and the kernel reports it. A frozen
    /// process produces no samples, and a killed one none ever again.
    pub fn sample(&mut self, pid: u32, t: f64, bytes: u64) {
        self.run_until(t);
        // Between the world's steps: the sample keeps its own time.
        let host = self.engine.host_mut();
        host.now = host.now.max(t);
        let Some(p) = self.engine.host_mut().procs.get_mut(&pid) else {
            return;
        };
        if p.state != 'R' {
            return;
        }
        p.mem.anon = bytes;
        self.report(pid, true);
    }

    /// Runs the world until `until`.
    pub fn run_until(&mut self, until: f64) {
        while self.now() + DT <= until + 1e-9 {
            let t = self.now() + DT;
            self.engine.host_mut().now = t;
            self.grow(DT);
            self.reap();
            self.timers(t);
        }
    }

    /// Runs the world for `secs` more.
    pub fn run_for(&mut self, secs: f64) {
        let until = self.now() + secs;
        self.run_until(until);
    }

    /// Scripted processes that run grow (or exit); each reported when it
    /// moved by a step.
    fn grow(&mut self, dt: f64) {
        let pids: Vec<u32> = self.scripts.keys().copied().collect();
        for pid in pids {
            let running = self.host().procs.get(&pid).is_some_and(|p| p.state == 'R');
            if !running {
                continue;
            }
            let s = self.scripts.get_mut(&pid).expect("listed");
            s.age += dt;
            match (s.script)(s.age) {
                Some(bytes) => {
                    if let Some(p) = self.engine.host_mut().procs.get_mut(&pid) {
                        p.mem.anon = bytes;
                    }
                    self.report(pid, false);
                }
                None => {
                    if let Some(p) = self.engine.host_mut().procs.get_mut(&pid) {
                        p.state = 'Z';
                    }
                }
            }
        }
    }

    /// What the eBPF program does on a resident-set change: stop the
    /// process at an armed ceiling, else report it once it moved by a step
    /// (or always, for a trace already sampled that way).
    fn report(&mut self, pid: u32, always: bool) {
        if self.mode == Mode::Polling || self.host().precise_detached {
            return;
        }
        let t = self.now();
        let step = self.engine.config().agent.step_bytes;
        let host = self.engine.host_mut();
        let Some(p) = host.procs.get_mut(&pid) else {
            return;
        };
        let bytes = p.mem.charged();
        let owned = host.tripwire_owners.get(&pid) == Some(&p.start_time);
        if let Some(Tripwire::Ceiling(c)) = host.tripwires.get(&pid).copied()
            && bytes >= c
            && owned
        {
            // The fault that crosses the ceiling is the last one.
            p.mem.anon = p.mem.anon.saturating_sub(bytes - c);
            p.state = 'T';
            let mem = p.mem;
            self.reported.insert(pid, mem.charged());
            self.deliver(event(EventKind::Tripwire, pid, t, mem, c / PAGE));
            return;
        }
        let last = self.reported.get(&pid).copied();
        if always || last.is_none_or(|l| l.abs_diff(bytes) >= step) {
            let mem = p.mem;
            self.reported.insert(pid, bytes);
            self.deliver(event(EventKind::Rss, pid, t, mem, 0));
        }
    }

    /// Processes that exited (by themselves or by a signal) leave the
    /// host, and the kernel says so.
    fn reap(&mut self) {
        let t = self.now();
        let dead: Vec<u32> = self
            .host()
            .procs
            .iter()
            .filter(|(_, p)| p.state == 'Z')
            .map(|(pid, _)| *pid)
            .collect();
        for pid in dead {
            self.engine.host_mut().procs.remove(&pid);
            self.scripts.remove(&pid);
            self.reported.remove(&pid);
            if self.mode == Mode::Ebpf {
                self.deliver(event(EventKind::Exit, pid, t, Mem::default(), 0));
            }
        }
    }

    /// The agent's timers: the host tick, the grace watch, the /proc pass.
    fn timers(&mut self, t: f64) {
        if self.stalled.is_some() {
            return;
        }
        let cfg = self.engine.config();
        let (tick, rest, rescan, reconcile, poll) = (
            cfg.host.interval.as_secs_f64(),
            cfg.agent.rest_interval.as_secs_f64(),
            cfg.agent.rescan_interval.as_secs_f64(),
            cfg.agent.reconcile_interval.as_secs_f64(),
            cfg.agent.poll_interval.as_secs_f64(),
        );
        if t >= self.due.graces {
            self.due.graces = t + 0.01;
            self.engine.expire_graces(t);
        }
        if t >= self.due.tick {
            self.engine.tick(t);
            // As the agent: slower while the per-fault probe rests.
            self.due.tick = t + if self.engine.at_rest() { rest } else { tick };
        }
        if self.mode == Mode::Polling && t >= self.due.poll {
            self.due.poll = t + poll;
            self.engine.poll_matched();
        }
        if t >= self.due.rescan {
            self.due.rescan = t + rescan;
            // As the agent: with fork, exec and exit reported (and none
            // lost: the fake's ring never fills), /proc is never listed
            // again; the known processes are read every reconcile interval.
            if self.mode == Mode::Polling {
                let pids = self.host().procs.keys().copied().collect();
                self.engine.rescan(pids);
            } else if t >= self.due.reconcile {
                self.due.reconcile = t + reconcile;
                self.engine.refresh();
            } else {
                self.engine.recheck();
            }
        }
    }
}
