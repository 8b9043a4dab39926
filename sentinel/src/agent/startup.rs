//! Everything the agent does before it serves: the config, the listeners
//! (bound early, so a taken port or a bad certificate stops it before it
//! loads anything), the probes, the journal and the engine. The result
//! says what runs and what had to do without.

use std::{path::Path, sync::Arc};

use sentinel_core::{
    config::{Config, ConnectionLimits},
    engine::{Engine, Held, Mode, Options},
};

use super::{AgentError, RunOptions};
use crate::{
    actuator::Freezer,
    alert::Alerting,
    api::{TlsListener, access::AccessPolicy},
    host::LiveHost,
    journal::{Journal, Retention},
    probes::{LoadOptions, Probes},
    relay::{
        TcpConnections,
        dial::{self, Network},
    },
    service::{Sentinel, Startup},
};

/// What the agent started with, ready for its tasks.
pub struct Started {
    pub sentinel: Arc<Sentinel>,
    pub cfg: Config,
    /// The API's connection caps, fitted under the descriptor limit.
    pub connections: ConnectionLimits,
    pub access: AccessPolicy,
    /// The API socket's path and the group that owns it.
    pub socket: String,
    pub socket_group: Option<u32>,
    pub tcp: Option<TlsListener>,
    pub metrics: Option<MetricsListener>,
    pub alerting: Option<Arc<Alerting>>,
    /// The ring buffer, and whether the per-fault probe is attached (its
    /// reader drains less often while it rests).
    pub ring: Option<(
        aya::maps::RingBuf<aya::maps::MapData>,
        std::sync::Arc<std::sync::atomic::AtomicBool>,
    )>,
    /// The kernel reports every fork, exec and exit.
    pub lifecycle: bool,
}

fn startup_probe_attached(probes: &Option<Probes>, name: &str) -> bool {
    probes
        .as_ref()
        .is_some_and(|p| p.status.iter().any(|s| s.name == name && s.attached))
}

/// `SENTINEL_MEASURE_DISPATCH_ONLY=1`: the benchmark's instrument for the
/// kernel's own cost of running a program on rss_stat. The agent then sees
/// no memory events, and says so in status.
fn dispatch_only() -> bool {
    std::env::var_os("SENTINEL_MEASURE_DISPATCH_ONLY").is_some_and(|v| v == "1")
}

/// The group named by `key`, as a gid.
fn group(key: &'static str, name: &Option<String>) -> Result<Option<(String, u32)>, AgentError> {
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
}

/// The probes, how memory is watched with them, and what is missing.
fn load_probes(cfg: &Config, no_ebpf: bool, degraded: &mut Vec<String>) -> (Option<Probes>, Mode) {
    if no_ebpf {
        degraded.push("eBPF disabled with --no-ebpf".to_string());
        return (None, Mode::Polling);
    }
    // Loading parses the kernel's BTF, the agent's largest allocation
    // ever; what start-up ran so far need not be resident beside it.
    super::memory::release_startup_code();
    let probes = match Probes::load(&LoadOptions {
        step_bytes: cfg.agent.step_bytes,
        large_mmap_bytes: 64 << 20,
        disabled: cfg.agent.disable_probes.clone(),
        dispatch_only: dispatch_only(),
    }) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}; falling back to /proc polling");
            degraded.push(e.to_string());
            return (None, Mode::Polling);
        }
    };
    let mode = if probes.rss_attached() {
        Mode::Ebpf
    } else {
        Mode::Polling
    };
    let missing: Vec<&str> = probes
        .status
        .iter()
        // Probes turned off in the config are a choice, not a degradation.
        .filter(|s| !s.attached && !cfg.agent.disable_probes.iter().any(|d| d == s.name))
        .map(|s| s.name)
        .collect();
    if !missing.is_empty() {
        degraded.push(format!("probes not attached: {}", missing.join(", ")));
    }
    if dispatch_only() {
        degraded.clear();
        degraded.push("SENTINEL_MEASURE_DISPATCH_ONLY=1: rss_stat returns at once (benchmark instrument); memory is not watched".into());
    }
    (Some(probes), mode)
}

/// A host agent that cannot write its journal still protects the host:
/// it keeps decisions in memory and says so.
/// The kernel's v1 freezer, where there is one (whatever `agent.freezer`
/// says, what an earlier run froze with it must be seen and thawed), and
/// whether new freezes use it.
fn freezer(cfg: &Config) -> (Option<Freezer>, bool) {
    let f = Freezer::detect();
    if let Some(f) = &f {
        f.sweep();
    }
    let used = cfg.agent.freezer && f.is_some();
    if used {
        tracing::info!("freezes use the kernel's cgroup v1 freezer: a SIGCONT cannot undo them");
    } else {
        tracing::info!(
            "freezes use SIGSTOP (no cgroup v1 freezer of its own, or agent.freezer = false): a SIGCONT undoes one; the agent notices and its rule decides again"
        );
    }
    (f, used)
}

/// What the journal says an earlier run of the agent left stopped since
/// this boot (before it, a pid and start time may name anyone).
fn held_since_boot(journal: &Journal) -> Vec<Held> {
    let boot = match crate::collector::procfs::boot_time() {
        Ok(secs) => secs * 1000,
        Err(e) => {
            tracing::error!(
                "cannot tell when the host booted ({e}): processes an earlier run froze are not taken back"
            );
            return Vec::new();
        }
    };
    let held = journal.held_since(boot);
    if !held.is_empty() {
        tracing::info!(
            processes = held.len(),
            "the journal names processes an earlier run left stopped"
        );
    }
    held
}

fn open_journal(cfg: &Config, degraded: &mut Vec<String>) -> Arc<Journal> {
    let retention = Retention::of(cfg);
    let path = &cfg.agent.journal;
    match Journal::open_or_recover(Path::new(path), cfg.agent.decision_log, retention) {
        Ok((j, report, recovered)) => {
            if let Some(r) = recovered {
                let aside = r
                    .moved_to
                    .map(|m| format!(", moved aside to {}", m.display()))
                    .unwrap_or_default();
                let why = format!(
                    "journal {path} was damaged ({}){aside}; a new one numbers decisions from {}",
                    r.why,
                    r.floor + 1
                );
                tracing::error!("{why}");
                degraded.push(why);
            }
            if report.repaired {
                tracing::warn!(path = %path, "journal was not closed cleanly and was repaired");
            }
            if !report.damaged.is_empty() {
                tracing::error!(
                    path = %path,
                    damaged = ?report.damaged,
                    "journal entries that cannot be read back are kept in the file and skipped"
                );
                degraded.push(format!(
                    "journal has {} unreadable entries",
                    report.damaged.len()
                ));
            }
            tracing::info!(path = %path, entries = report.entries, last_seq = report.last_seq, "journal open");
            Arc::new(j)
        }
        Err(e) => {
            tracing::error!("{e}; keeping decisions in memory only");
            degraded.push(format!("decisions kept in memory only: {e}"));
            Arc::new(Journal::new(cfg.agent.decision_log))
        }
    }
}

/// What joining the host's cgroup namespace (done before the runtime)
/// came to.
/// Raises the open-file limit as far as allowed (the unit asks for 65536;
/// an unlimited hard limit is taken as the kernel's `fs.nr_open`) and
/// returns the API's connection caps fitted under it, so that clients can
/// never take the descriptors the engine needs. The config keeps what it
/// says, so a reload does not see the fitted caps as a change.
fn descriptors(cfg: &Config, degraded: &mut Vec<String>) -> ConnectionLimits {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            let most = lim.rlim_max.min(nr_open);
            if lim.rlim_cur < most {
                let raised = libc::rlimit {
                    rlim_cur: most,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim = raised;
                }
            }
        }
    }
    let scrapers = crate::metrics::http::MAX_SCRAPERS as u64;
    let (fitted, note) = crate::api::gate::fit(cfg.api.connections, lim.rlim_cur, scrapers);
    if let Some(note) = note {
        tracing::warn!("{note}");
        degraded.push(note);
    }
    fitted
}

fn namespace_note(opts: &RunOptions, degraded: &mut Vec<String>) {
    match &opts.cgroup_namespace {
        Some(Ok(true)) => {
            tracing::info!("joined the host's cgroup namespace: cgroup paths are the host's");
        }
        Some(Err(e)) => {
            let why = format!(
                "the agent runs in a cgroup namespace of its own and cannot join pid 1's ({e}): cgroup paths outside it read /../.., which cgroup rules and host candidates do not match"
            );
            tracing::warn!("{why}");
            degraded.push(why);
        }
        _ => {}
    }
}

/// The metrics connections, with the address they come to (the relay's,
/// when relayed).
pub type MetricsListener = (TcpConnections, std::net::SocketAddr);

/// The API's TCP listener and the metrics listener: bound here, or the
/// relay's connections.
fn listeners(
    cfg: &Config,
    network: &Network,
) -> Result<(Option<TlsListener>, Option<MetricsListener>), AgentError> {
    let (relayed_metrics, relayed_api) = match network {
        Network::Direct => (None, None),
        Network::Relay(path) => dial::accepted(
            path.clone(),
            cfg.metrics.listen.is_some(),
            cfg.api.tcp.is_some(),
        ),
    };
    let tcp = cfg
        .api
        .tcp
        .as_ref()
        .map(|t| TlsListener::bind(t, relayed_api))
        .transpose()?;
    let metrics = match relayed_metrics.zip(cfg.metrics.listen) {
        Some(relayed) => Some(relayed),
        None => cfg
            .metrics
            .listen
            .map(|addr| {
                crate::metrics::http::bind(addr)
                    .map_err(|source| AgentError::Metrics { addr, source })
            })
            .transpose()?,
    };
    Ok((tcp, metrics))
}

/// Loads the config, binds the listeners, loads the probes, opens the
/// journal and builds the engine, with a first /proc pass and meminfo
/// sample in it.
pub async fn start(opts: &RunOptions) -> Result<Started, AgentError> {
    let mut cfg = Config::load_with_env(&opts.config_path)?;
    let policy_text = std::fs::read_to_string(&opts.config_path).unwrap_or_default();
    let socket_group = group("socket_group", &cfg.agent.socket_group)?;
    let access = AccessPolicy {
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
    super::socket::check_free(&socket).await?;
    let (tcp, metrics) = listeners(&cfg, &opts.network)?;
    let alerting = cfg
        .alerting
        .enabled()
        .then(|| Alerting::new(&cfg.alerting, &opts.network).map(Arc::new))
        .transpose()?;

    let mut degraded = Vec::new();
    let (mut probes, mode) = load_probes(&cfg, opts.no_ebpf, &mut degraded);
    let ring = probes
        .as_mut()
        .and_then(|p| Some((p.events.take()?, p.precise_flag())));
    let journal = open_journal(&cfg, &mut degraded);
    namespace_note(opts, &mut degraded);
    for why in crate::actuator::refused_calls() {
        tracing::warn!("{why}");
        degraded.push(why);
    }
    let connections = descriptors(&cfg, &mut degraded);
    let lifecycle = mode == Mode::Ebpf
        && [
            "sched_process_fork",
            "sched_process_exec",
            "sched_process_exit",
        ]
        .iter()
        .all(|name| startup_probe_attached(&probes, name));
    let startup = Startup {
        mode,
        degraded_reason: degraded.join("; "),
        probes: probes
            .as_ref()
            .map(|p| p.status.clone())
            .unwrap_or_default(),
    };
    let options = Options {
        mode,
        self_pid: std::process::id(),
        page_size: crate::probes::page_size(),
        cpus: online_cpus(),
        moves_reported: mode == Mode::Ebpf && startup_probe_attached(&probes, "cgroup_attach_task"),
    };
    let held = held_since_boot(&journal);
    let (freezer, freeze_with_freezer) = freezer(&cfg);
    let unowned = freezer.as_ref().map(|f| f.members()).unwrap_or_default();
    let mut engine = Engine::new(
        cfg.clone(),
        options,
        LiveHost::new(journal, probes, freezer, freeze_with_freezer),
    );
    let source = if policy_text.is_empty() {
        "built-in defaults".to_string()
    } else {
        opts.config_path.display().to_string()
    };
    engine.set_policy_source(source, policy_text);
    engine.start(
        crate::collector::procfs::list_pids().unwrap_or_default(),
        held,
        unowned,
        crate::host::mono_now(),
    );
    let host = engine.host_view();
    if host.limit <= 1 {
        tracing::error!(
            min_available = ?cfg.host.min_available,
            capacity = host.mem.capacity(),
            "host.min_available is at or above all memory and swap: host scope is off"
        );
    }
    let sentinel = Arc::new(Sentinel::new(engine, startup));
    sentinel
        .admission
        .set_refusal_window(cfg.api.refusal_window);
    Ok(Started {
        sentinel,
        cfg,
        connections,
        access,
        socket,
        socket_group: socket_group.map(|g| g.1),
        tcp,
        metrics,
        alerting,
        ring,
        lifecycle,
    })
}

/// Online CPUs, as many as fault at once (not the agent's own affinity or
/// quota: the processes it watches are not bound by them).
fn online_cpus() -> u32 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}
