//! The agent's tasks, one function each. Each reaches the engine only
//! through the agent's named operations ([`Sentinel`]).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use sentinel_core::{
    config::{Config, ConfigError},
    engine::{Mode, PolicyError, PsiArmed},
};
use tokio::sync::mpsc;

use crate::{
    collector::{self, host::PsiTrigger, procfs, ringbuf},
    service::Sentinel,
};

/// Kernel events: drained from the ring buffer, handed to the engine in
/// batches.
pub fn events(ring: RingBuf<MapData>, precise: Arc<AtomicBool>, sentinel: Arc<Sentinel>) {
    let (tx, mut rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        if let Err(e) = ringbuf::forward(ring, precise, tx).await {
            tracing::error!("ring buffer reader stopped: {e}");
        }
    });
    tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            sentinel.handle_batch(&batch);
        }
    });
}

/// How often the agent's timers run.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    pub rescan: Duration,
    /// When the kernel reports forks, execs and exits: how often the
    /// known processes are read again (see `Pass::due`).
    pub reconcile: Duration,
    /// The kernel reports forks, execs and exits: /proc is listed in full
    /// only after it lost some of those reports.
    pub lifecycle: bool,
    pub poll: Duration,
    pub tick: Duration,
    /// The host timer while the per-fault probe rests.
    pub rest: Duration,
    pub mode: Mode,
}

impl Intervals {
    pub fn of(cfg: &Config, mode: Mode, lifecycle: bool) -> Self {
        Self {
            rescan: cfg.agent.rescan_interval,
            reconcile: cfg.agent.reconcile_interval,
            lifecycle,
            poll: cfg.agent.poll_interval,
            tick: cfg.host.interval,
            rest: cfg.agent.rest_interval,
            mode,
        }
    }
}

/// The host tick and admission pass, on a thread of their own: a tokio
/// timer wakes its runtime two or three times per tick (the wheel's
/// levels), and an idle agent's cost is mostly wake-ups. Its period
/// follows the instrument: `rest` while the per-fault probe rests. It
/// pings systemd's watchdog after each tick: if the engine stops ticking
/// (a lock never released), the pings stop and systemd restarts the agent.
pub fn host_clock(
    sentinel: Arc<Sentinel>,
    every: Intervals,
    watchdog: Option<Arc<super::notify::Notifier>>,
) -> std::io::Result<Worker> {
    // In the runtime's context, as the tick was on a worker before: what a
    // decision sets off may spawn tasks.
    let runtime = tokio::runtime::Handle::current();
    Worker::spawn("sentinel-tick", move |stop| {
        let _context = runtime.enter();
        loop {
            let period = if sentinel.at_rest() {
                every.rest
            } else {
                every.tick
            };
            if !stop.sleep(period) {
                return;
            }
            sentinel.tick();
            sentinel.admission.pass(&sentinel);
            if let Some(w) = &watchdog {
                w.tick();
            }
        }
    })
}

/// A thread of the agent's that holds the engine, stopped and joined
/// before the agent leaves: the journal closes cleanly only once nothing
/// holds the engine.
pub struct Worker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a worker's loop waits on between passes.
pub struct StopSignal(std::sync::mpsc::Receiver<()>);

impl StopSignal {
    /// Sleeps `period`; false as soon as the worker is told to stop.
    pub fn sleep(&self, period: Duration) -> bool {
        self.0.recv_timeout(period) == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
    }
}

impl Worker {
    fn spawn(name: &str, body: impl FnOnce(StopSignal) + Send + 'static) -> std::io::Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(StopSignal(stopped)))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Tells the thread to stop and waits for it (also when dropped, so
    /// an early return of the agent's start joins it too).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a turn of the rescan clock does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// /proc listed: new processes found, the dead forgotten.
    Full,
    /// The known processes that went quiet read again, /proc not listed.
    Refresh,
    /// Limits read again (and, where the kernel does not report cgroup
    /// moves, the cgroups of the recently active): `Engine::recheck`.
    Recheck,
}

impl Pass {
    /// Where the kernel reports forks, execs and exits, /proc is listed
    /// only after some of its reports were lost (the ring buffer was full):
    /// at once, on the next turn. Otherwise the known processes are read
    /// again every `reconcile`, and the active ones checked every turn.
    fn due(every: Intervals, lost: bool, since_refresh: Duration) -> Self {
        if !every.lifecycle || lost {
            Pass::Full
        } else if since_refresh >= every.reconcile {
            Pass::Refresh
        } else {
            Pass::Recheck
        }
    }
}

/// The agent's other clocks: the /proc rescan, polling where eBPF is not
/// loaded, and the grace watch while a grace runs.
pub fn timers(sentinel: Arc<Sentinel>, every: Intervals) {
    let grace_started = sentinel.grace_started();
    tokio::spawn(async move {
        let mut rescan = tokio::time::interval(every.rescan);
        let mut poll = tokio::time::interval(every.poll);
        // SIGKILL after a grace lands within this of its deadline. Watched
        // only while a grace runs: an idle agent should not wake 100 times
        // a second.
        let mut graces = tokio::time::interval(Duration::from_millis(10));
        graces.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut in_grace = false;
        let mut last_refresh = Instant::now();
        let mut lost_before = sentinel.lost_events();
        loop {
            tokio::select! {
                () = grace_started.notified() => in_grace = true,
                _ = graces.tick(), if in_grace => in_grace = sentinel.expire_graces(),
                _ = rescan.tick() => {
                    let s = sentinel.clone();
                    let lost = sentinel.lost_events();
                    let pass = Pass::due(every, lost != lost_before, last_refresh.elapsed());
                    lost_before = lost;
                    if pass != Pass::Recheck {
                        last_refresh = Instant::now();
                    }
                    // /proc is listed without holding the engine, so that a
                    // large /proc does not stall event handling.
                    let _ = tokio::task::spawn_blocking(move || match pass {
                        Pass::Full => s.rescan(procfs::list_pids().unwrap_or_default()),
                        Pass::Refresh => s.refresh(),
                        Pass::Recheck => s.recheck(),
                    }).await;
                }
                _ = poll.tick(), if every.mode == Mode::Polling => {
                    let s = sentinel.clone();
                    let _ = tokio::task::spawn_blocking(move || s.poll()).await;
                }
            }
        }
    });
}

/// Waits on the memory PSI trigger (POLLPRI) and hands each firing to the
/// engine; without a trigger, host pressure is judged from meminfo alone.
pub fn pressure(sentinel: Arc<Sentinel>, stall: Duration) {
    if stall.is_zero() {
        return;
    }
    let trigger = match PsiTrigger::open(stall) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(
                "no memory PSI trigger ({e}); host pressure is judged from /proc/meminfo alone"
            );
            return;
        }
    };
    let armed = PsiArmed {
        stall: trigger.stall,
        window: trigger.window,
    };
    tracing::info!(
        "memory PSI trigger armed: {} ms of stall per {} s",
        armed.stall.as_millis(),
        armed.window.as_secs()
    );
    sentinel.set_psi_trigger(Some(armed));
    tokio::spawn(async move {
        if let Err(e) = watch_pressure(trigger, sentinel.clone()).await {
            tracing::warn!("memory PSI trigger stopped: {e}");
            sentinel.set_psi_trigger(None);
        }
    });
}

async fn watch_pressure(trigger: PsiTrigger, sentinel: Arc<Sentinel>) -> std::io::Result<()> {
    use tokio::io::{Interest, unix::AsyncFd};
    // SAFETY: the trigger owns its file and keeps it open, unchanged, until
    // it is dropped, which happens only with the AsyncFd.
    let fd = unsafe { AsyncFd::register_with_interest(trigger, Interest::PRIORITY) }
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    loop {
        let mut guard = fd.ready(Interest::PRIORITY).await?;
        guard.clear_ready();
        let s = sentinel.clone();
        let _ = tokio::task::spawn_blocking(move || s.on_pressure()).await;
    }
}

/// Samples every GPU each `every` and hands the pass to the engine, on a
/// thread of its own: NVML calls block. Without a driver it says so once
/// and ends; a failing pass is reported when its error changes and the
/// next pass is tried as usual.
/// The GPU sampler's thread, if GPUs are watched at all.
pub fn gpus(sentinel: Arc<Sentinel>, cfg: &Config) -> Option<Worker> {
    if !cfg.gpu.enabled {
        sentinel.gpu_unavailable("disabled in the config ([gpu] enabled = false)".into());
        return None;
    }
    let (library, every) = (cfg.gpu.library.clone(), cfg.gpu.interval);
    let s = sentinel.clone();
    let started = Worker::spawn("sentinel-gpu", move |stop| {
        sample_gpus(&s, &library, every, &stop)
    });
    started
        .map_err(|e| sentinel.gpu_unavailable(format!("no thread for GPU sampling: {e}")))
        .ok()
}

fn sample_gpus(sentinel: &Sentinel, library: &str, every: Duration, stop: &StopSignal) {
    let gpu = match collector::gpu::Gpu::open(library) {
        Ok(g) => g,
        Err(why) => {
            sentinel.gpu_unavailable(why);
            return;
        }
    };
    let driver = gpu.driver_version().unwrap_or_default();
    tracing::info!(%driver, "GPU monitoring on");
    sentinel.gpu_driver(driver);
    let mut last_error = String::new();
    loop {
        let started = Instant::now();
        match gpu.sample() {
            Ok(sample) => {
                last_error.clear();
                sentinel.observe_gpu(sample);
            }
            Err(e) => {
                if e != last_error {
                    tracing::warn!("GPU sampling failed: {e}");
                    last_error = e.clone();
                }
                sentinel.gpu_pass_failed(e);
            }
        }
        if !stop.sleep(every.saturating_sub(started.elapsed())) {
            return;
        }
    }
}

/// SIGHUP reloads the config file; an invalid one, a missing one, or one
/// that would drop every rule is refused and the running policy stays.
pub fn reload_on_hangup(sentinel: Arc<Sentinel>, config_path: PathBuf) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match reload(&sentinel, &config_path) {
                Ok(start_only) if !start_only.is_empty() => tracing::warn!(
                    "config reloaded; these keys are read only at start and keep their running values until a restart: {}",
                    start_only.join(", ")
                ),
                Ok(_) => tracing::info!("config reloaded"),
                Err(e) => tracing::error!("config reload refused, keeping the running policy: {e}"),
            }
        }
    });
}

#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// One reload. Unlike at start, a missing file is an error: the built-in
/// defaults have no rules, and a deleted file is not a decision to drop
/// them.
fn reload(sentinel: &Sentinel, path: &Path) -> Result<Vec<&'static str>, ReloadError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    let cfg = Config::parse_with_env(&text, &source, &env)?;
    Ok(sentinel
        .apply_policy(cfg, "SIGHUP", &source, &text)?
        .start_only)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(lifecycle: bool) -> Intervals {
        Intervals {
            rescan: Duration::from_secs(2),
            reconcile: Duration::from_secs(60),
            lifecycle,
            poll: Duration::from_millis(100),
            tick: Duration::from_millis(25),
            rest: Duration::from_millis(250),
            mode: if lifecycle { Mode::Ebpf } else { Mode::Polling },
        }
    }

    #[test]
    fn proc_is_listed_only_after_the_kernel_lost_reports_of_forks_and_exits() {
        let (soon, late) = (Duration::from_secs(2), Duration::from_secs(60));
        let reported = every(true);
        assert_eq!(Pass::due(reported, false, soon), Pass::Recheck);
        assert_eq!(Pass::due(reported, false, late), Pass::Refresh);
        assert_eq!(Pass::due(reported, true, soon), Pass::Full);
        // Without the kernel's reports, every turn lists /proc.
        assert_eq!(Pass::due(every(false), false, soon), Pass::Full);
    }
}
