//! Wiring: probes -> engine -> journal, timers, the API socket, signals.

pub mod engine;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use tokio::{net::UnixListener, sync::mpsc};

pub use self::engine::{Engine, Mode, OpError, ProcQuery, ProcState, ProcView, SortKey, mono_now};
use crate::{
    actuator::{Actuator, DryRun, Signaller},
    collector::ringbuf,
    config::Config,
    journal::Journal,
    probes::{LoadOptions, Probes},
};

/// What the API handlers share with the agent loop.
pub struct Shared {
    pub engine: Mutex<Engine>,
    pub journal: Arc<Journal>,
    pub started: Instant,
    pub access: crate::api::access::AccessPolicy,
    /// Alert delivery, when any receiver is configured.
    pub alerting: Option<Arc<crate::alert::Alerting>>,
    /// Memory reservations and the queue for them.
    pub admission: crate::api::admission::Hub,
}

impl Shared {
    pub fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config_path: PathBuf,
    pub socket: Option<String>,
    pub dry_run: bool,
    /// Skip eBPF entirely and poll /proc (for kernels without BPF, and to
    /// test the fallback).
    pub no_ebpf: bool,
    /// What `join_host_cgroup_namespace` did, run before the runtime.
    pub cgroup_namespace: Option<Result<bool, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(
        "socket {0} is held by a running agent; stop it first, or give this one another path with --socket"
    )]
    SocketInUse(String),
    #[error("socket {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error("API server: {0}")]
    Serve(#[from] crate::api::ServeError),
    #[error(transparent)]
    Tls(#[from] crate::api::TlsSetupError),
    #[error(
        "metrics.listen {addr}: cannot listen: {source} (set another address, or [metrics] enabled = false)"
    )]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("agent.{key}: no group named `{name}` on this host")]
    NoSuchGroup { key: &'static str, name: String },
}

/// Refuses a socket that a live agent answers on, so a second agent fails
/// before it loads anything.
async fn check_socket_free(path: &str) -> Result<(), AgentError> {
    if Path::new(path).exists() && tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(AgentError::SocketInUse(path.to_string()));
    }
    Ok(())
}

/// Binds the API socket, replacing a stale one left by a crash. Done last,
/// so a client that can connect talks to an agent whose probes are live.
async fn bind_socket(path: &str, group: Option<u32>) -> Result<UnixListener, AgentError> {
    check_socket_free(path).await?;
    let p = Path::new(path);
    let err = |source| AgentError::Socket {
        path: path.to_string(),
        source,
    };
    if p.exists() {
        std::fs::remove_file(p).map_err(err)?;
    }
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let listener = UnixListener::bind(p).map_err(err)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(p, None, Some(gid)).map_err(err)?;
    }
    Ok(listener)
}

/// Waits on the PSI trigger (POLLPRI) and hands each firing to the engine.
async fn watch_pressure(
    trigger: crate::collector::host::PsiTrigger,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    use tokio::io::{Interest, unix::AsyncFd};
    // SAFETY: the trigger owns its file and keeps it open, unchanged, until
    // it is dropped, which happens only with the AsyncFd.
    let fd = unsafe { AsyncFd::register_with_interest(trigger, Interest::PRIORITY) }
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    loop {
        let mut guard = fd.ready(Interest::PRIORITY).await?;
        guard.clear_ready();
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || s.engine().on_pressure(mono_now())).await;
    }
}

/// Samples every GPU each `every` and hands the pass to the engine, on a
/// thread of its own: NVML calls block. Without a driver it says so once
/// and ends; a failing pass is reported when its error changes and the
/// next pass is tried as usual.
fn sample_gpus(shared: &Shared, library: &str, every: std::time::Duration) {
    let gpu = match crate::collector::gpu::Gpu::open(library) {
        Ok(g) => g,
        Err(why) => {
            shared.engine().gpu_unavailable(why);
            return;
        }
    };
    let driver = gpu.driver_version().unwrap_or_default();
    tracing::info!(%driver, "GPU monitoring on");
    shared.engine().gpu.driver = driver;
    let mut last_error = String::new();
    loop {
        let started = Instant::now();
        match gpu.sample() {
            Ok(sample) => {
                last_error.clear();
                shared.engine().observe_gpu(sample, mono_now());
            }
            Err(e) => {
                if e != last_error {
                    tracing::warn!("GPU sampling failed: {e}");
                    last_error = e.clone();
                }
                let mut eng = shared.engine();
                eng.gpu.unavailable = e;
                eng.gpu.error_count += 1;
            }
        }
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
}

fn join_reason(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}; {b}")
    }
}

/// `SENTINEL_MEASURE_DISPATCH_ONLY=1`: the benchmark's instrument for the
/// kernel's own cost of running a program on rss_stat. The agent then sees
/// no memory events, and says so in status.
fn dispatch_only() -> bool {
    std::env::var_os("SENTINEL_MEASURE_DISPATCH_ONLY").is_some_and(|v| v == "1")
}

/// Whether pid 1's cgroups, as /proc/1/cgroup shows them from here, lie
/// outside this cgroup namespace (`/..`): then paths the agent reads are
/// relative to a namespace of its own, not the host's.
pub fn outside_namespace(init_cgroup: &str) -> bool {
    init_cgroup
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .any(|path| path.starts_with("/.."))
}

/// In a container that shares the host's PID namespace (a DaemonSet with
/// hostPID), /proc/PID/cgroup is relative to the container's own cgroup
/// namespace (`/../../kubepods...`), which no rule or candidate pattern
/// written for host paths matches. Joining pid 1's cgroup namespace makes
/// every path the host's. setns applies to the calling thread and to the
/// threads it starts, so this runs before the runtime starts any.
/// Ok(false): nothing to do (already sharing pid 1's view).
pub fn join_host_cgroup_namespace() -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let Ok(init) = std::fs::read_to_string("/proc/1/cgroup") else {
        return Ok(false);
    };
    if !outside_namespace(&init) {
        return Ok(false);
    }
    let f = std::fs::File::open("/proc/1/ns/cgroup")?;
    // SAFETY: a valid namespace fd; setns only changes this thread's
    // cgroup namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWCGROUP) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

/// Gives back what loading cost. Parsing the kernel's BTF for the probes
/// and the first /proc walk allocate tens of MiB that are free afterwards
/// but stay in the heap unless trimmed; and locked pages could not be
/// trimmed at all, so this comes before `lock_memory`.
fn trim_heap() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
}

/// Keeps the agent's pages in RAM, so that it is not itself slowed by
/// reclaim or swap-in at the moment memory runs out. ONFAULT locks pages
/// as they are touched, so reserved but unused memory (thread stacks)
/// costs nothing.
fn lock_memory() {
    // SAFETY: mlockall has no memory-safety preconditions.
    let r = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    if r == 0 {
        tracing::debug!("agent memory locked");
    } else {
        tracing::warn!(
            "could not lock the agent's memory ({}): under memory pressure its own pages may be reclaimed; give it CAP_IPC_LOCK or LimitMEMLOCK=infinity",
            std::io::Error::last_os_error()
        );
    }
}

pub async fn run(opts: RunOptions) -> Result<(), AgentError> {
    // One heap per worker thread at most: glibc's default of eight per
    // CPU lets freed memory scatter over arenas that are never trimmed.
    // SAFETY: mallopt only tunes the allocator; called before threads
    // allocate much.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let mut cfg = Config::load_with_env(&opts.config_path)?;
    let lock = cfg.agent.lock_memory;
    let policy_text = std::fs::read_to_string(&opts.config_path).unwrap_or_default();
    let group =
        |key: &'static str, name: &Option<String>| -> Result<Option<(String, u32)>, AgentError> {
            name.as_ref()
                .map(|n| {
                    crate::api::access::gid_of(n)
                        .map(|g| (n.clone(), g))
                        .ok_or_else(|| AgentError::NoSuchGroup {
                            key,
                            name: n.clone(),
                        })
                })
                .transpose()
        };
    let socket_group = group("socket_group", &cfg.agent.socket_group)?;
    let access = crate::api::access::AccessPolicy {
        admin_group: group("admin_group", &cfg.agent.admin_group)?,
        tls_admin_names: cfg
            .api
            .tcp
            .as_ref()
            .map(|t| t.admin_names.clone())
            .unwrap_or_default(),
    };
    if let Some(s) = &opts.socket {
        cfg.agent.socket = s.clone();
    }
    cfg.agent.dry_run |= opts.dry_run;
    let socket = cfg.agent.socket.clone();
    check_socket_free(&socket).await?;
    // Bound early so a taken port or a bad certificate stops the agent
    // before it loads probes; connections wait until serving starts.
    let tcp_api = cfg.api.tcp.clone();
    let tcp = tcp_api
        .as_ref()
        .map(crate::api::TlsListener::bind)
        .transpose()?;
    let metrics = cfg
        .metrics
        .listen
        .map(|addr| {
            crate::metrics::http::bind(addr).map_err(|source| AgentError::Metrics { addr, source })
        })
        .transpose()?;
    let top_growers = cfg.metrics.top_growers;
    let gpu = cfg
        .gpu
        .enabled
        .then(|| (cfg.gpu.library.clone(), cfg.gpu.interval));
    let alerting = cfg
        .alerting
        .enabled()
        .then(|| Arc::new(crate::alert::Alerting::new(&cfg.alerting)));

    let (probes, degraded) = if opts.no_ebpf {
        (None, "eBPF disabled with --no-ebpf".to_string())
    } else {
        match Probes::load(&LoadOptions {
            step_bytes: cfg.agent.step_bytes,
            large_mmap_bytes: 64 << 20,
            disabled: cfg.agent.disable_probes.clone(),
            dispatch_only: dispatch_only(),
        }) {
            Ok(p) => (Some(p), String::new()),
            Err(e) => {
                tracing::error!("{e}; falling back to /proc polling");
                (None, e.to_string())
            }
        }
    };
    let mut probes = probes;
    let mode = match &probes {
        Some(p) if p.rss_attached() => Mode::Ebpf,
        _ => Mode::Polling,
    };
    let ring = probes.as_mut().and_then(|p| p.events.take());
    let mut degraded = degraded;
    if let Some(p) = &probes {
        let missing: Vec<&str> = p
            .status
            .iter()
            // Probes turned off in the config are a choice, not a degradation.
            .filter(|s| !s.attached && !cfg.agent.disable_probes.iter().any(|d| d == s.name))
            .map(|s| s.name)
            .collect();
        if !missing.is_empty() {
            degraded = format!("probes not attached: {}", missing.join(", "));
        }
        if dispatch_only() {
            degraded = "SENTINEL_MEASURE_DISPATCH_ONLY=1: rss_stat returns at once (benchmark instrument); memory is not watched".into();
        }
    }

    let retention = crate::journal::Retention {
        max_entries: cfg.agent.journal_max_entries,
        max_age_ms: cfg.agent.journal_max_age.as_millis() as u64,
    };
    // A host agent that cannot write its journal still protects the host:
    // it keeps decisions in memory and says so.
    let journal = match Journal::open(
        Path::new(&cfg.agent.journal),
        cfg.agent.decision_log,
        retention,
    ) {
        Ok((j, report)) => {
            if report.repaired {
                tracing::warn!(path = %cfg.agent.journal, "journal was not closed cleanly and was repaired");
            }
            if !report.damaged.is_empty() {
                tracing::error!(
                    path = %cfg.agent.journal,
                    damaged = ?report.damaged,
                    "journal entries that cannot be read back are kept in the file and skipped"
                );
                degraded = join_reason(
                    &degraded,
                    &format!("journal has {} unreadable entries", report.damaged.len()),
                );
            }
            tracing::info!(path = %cfg.agent.journal, entries = report.entries, last_seq = report.last_seq, "journal open");
            Arc::new(j)
        }
        Err(e) => {
            tracing::error!("{e}; keeping decisions in memory only");
            degraded = join_reason(&degraded, &format!("decisions kept in memory only: {e}"));
            Arc::new(Journal::new(cfg.agent.decision_log))
        }
    };
    let actuator: Box<dyn Actuator> = if cfg.agent.dry_run {
        Box::new(DryRun)
    } else {
        Box::new(Signaller)
    };
    let rescan_every = cfg.agent.rescan_interval;
    let poll_every = cfg.agent.poll_interval;
    let tick_every = cfg.host.interval;
    let psi_stall = cfg.host.psi_stall;
    let rules = cfg.rules.len();
    let dry_run = cfg.agent.dry_run;
    let mut engine = Engine::new(cfg, mode, probes, actuator, journal.clone());
    engine.degraded_reason = match &opts.cgroup_namespace {
        Some(Ok(true)) => {
            tracing::info!("joined the host's cgroup namespace: cgroup paths are the host's");
            degraded
        }
        Some(Err(e)) => {
            let why = format!(
                "the agent runs in a cgroup namespace of its own and cannot join pid 1's ({e}): cgroup paths outside it read /../.., which cgroup rules and host candidates do not match"
            );
            tracing::warn!("{why}");
            join_reason(&degraded, &why)
        }
        _ => degraded,
    };
    engine.policy_source = if policy_text.is_empty() {
        "built-in defaults".to_string()
    } else {
        opts.config_path.display().to_string()
    };
    engine.policy_text = policy_text;
    engine.rescan(crate::collector::procfs::list_pids().unwrap_or_default());
    engine.tick(mono_now());
    trim_heap();
    if lock {
        lock_memory();
    }
    let host = engine.host_view();
    if host.limit <= 1 {
        tracing::error!(
            min_available = engine.cfg.host.min_available,
            capacity = host.mem.capacity(),
            "host.min_available is at or above all memory and swap: host scope is off"
        );
    }
    let shared = Arc::new(Shared {
        engine: Mutex::new(engine),
        journal,
        started: Instant::now(),
        access,
        alerting: alerting.clone(),
        admission: Default::default(),
    });
    if let Some(a) = alerting {
        tracing::info!(receivers = a.receivers().len(), "alerting on");
        if let Err(e) = crate::alert::spawn(a, shared.clone()) {
            tracing::error!("alerting could not start: {e}; decisions are still journalled");
        }
    }
    match gpu {
        Some((library, every)) => {
            let s = shared.clone();
            let started = std::thread::Builder::new()
                .name("sentinel-gpu".into())
                .spawn(move || sample_gpus(&s, &library, every));
            if let Err(e) = started {
                shared
                    .engine()
                    .gpu_unavailable(format!("no thread for GPU sampling: {e}"));
            }
        }
        None => shared
            .engine()
            .gpu_unavailable("disabled in the config ([gpu] enabled = false)".into()),
    }
    if let Some(l) = metrics {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(%addr, "metrics at http://{addr}/metrics");
        }
        tokio::spawn(crate::metrics::http::serve(l, shared.clone(), top_growers));
    }
    tracing::info!(mode = mode.as_str(), rules, dry_run, socket = %socket, "sentinel running");

    let (tx, mut rx) = mpsc::channel(1024);
    if let Some(ring) = ring {
        tokio::spawn(async move {
            if let Err(e) = ringbuf::forward(ring, tx).await {
                tracing::error!("ring buffer reader stopped: {e}");
            }
        });
    }
    let s = shared.clone();
    tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            let mut engine = s.engine();
            engine.handle_batch(&batch);
        }
    });
    if !psi_stall.is_zero() {
        match crate::collector::host::PsiTrigger::open(psi_stall) {
            Ok(trigger) => {
                tracing::info!(
                    "memory PSI trigger armed: {} ms of stall per {} s",
                    (psi_stall * trigger.window.as_secs() as u32).as_millis(),
                    trigger.window.as_secs()
                );
                shared.engine().set_psi_trigger(true);
                let s = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = watch_pressure(trigger, s.clone()).await {
                        tracing::warn!("memory PSI trigger stopped: {e}");
                        s.engine().set_psi_trigger(false);
                    }
                });
            }
            Err(e) => tracing::warn!(
                "no memory PSI trigger ({e}); host pressure is judged from /proc/meminfo alone"
            ),
        }
    }
    let s = shared.clone();
    let grace_started = s.engine().grace_started.clone();
    tokio::spawn(async move {
        let mut rescan = tokio::time::interval(rescan_every);
        let mut poll = tokio::time::interval(poll_every);
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // SIGKILL after a grace lands within this of its deadline. Watched
        // only while a grace runs: an idle agent should not wake 100 times
        // a second.
        let mut graces = tokio::time::interval(std::time::Duration::from_millis(10));
        graces.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut in_grace = false;
        loop {
            tokio::select! {
                () = grace_started.notified() => in_grace = true,
                _ = graces.tick(), if in_grace => in_grace = s.engine().expire_graces(mono_now()),
                // Inline: a /proc/meminfo read and in-memory checks, shorter
                // than handing them to another thread.
                _ = tick.tick() => {
                    s.engine().tick(mono_now());
                    s.admission.pass(&s);
                }
                _ = rescan.tick() => {
                    let s = s.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        let pids = crate::collector::procfs::list_pids().unwrap_or_default();
                        s.engine().rescan(pids)
                    }).await;
                }
                _ = poll.tick(), if mode == Mode::Polling => {
                    let s = s.clone();
                    let _ = tokio::task::spawn_blocking(move || s.engine().poll_matched()).await;
                }
            }
        }
    });

    let s = shared.clone();
    let config_path = opts.config_path.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            // An invalid new policy is refused; the running one stays.
            match Config::load_with_env(&config_path) {
                Ok(cfg) => {
                    let text = std::fs::read_to_string(&config_path).unwrap_or_default();
                    let mut e = s.engine();
                    e.apply_config(cfg);
                    e.record_policy("SIGHUP", &config_path.display().to_string(), &text);
                }
                Err(e) => tracing::error!("config reload refused, keeping the running policy: {e}"),
            }
        }
    });

    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down");
    };
    let listener = bind_socket(&socket, socket_group.map(|g| g.1)).await?;
    if let Some(t) = &tcp_api {
        tracing::info!(listen = %t.listen, admins = ?t.admin_names, "API on TCP, mutual TLS");
    }
    let served = crate::api::serve(shared, listener, tcp, shutdown).await;
    let _ = std::fs::remove_file(&socket);
    served.map_err(AgentError::from)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pid_1_outside_the_namespace_shows_as_dot_dot() {
        let host = "12:memory:/\n0::/init.scope\n";
        let from_a_container = "12:memory:/../../..\n0::/../../../init.scope\n";
        assert!(!super::outside_namespace(host));
        assert!(super::outside_namespace(from_a_container));
        assert!(!super::outside_namespace(""));
    }
}
