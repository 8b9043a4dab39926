//! Wiring only: start (config, listeners, probes, journal, engine), then
//! one task per input, then serve the API until SIGTERM.

mod memory;
mod namespace;
mod notify;
mod socket;
mod startup;
mod tasks;

use std::{path::PathBuf, sync::Arc};

pub use namespace::{join_host_cgroup_namespace, outside_namespace};
pub use tasks::shutdown;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config_path: PathBuf,
    pub socket: Option<String>,
    pub dry_run: bool,
    /// Skip eBPF entirely and poll /proc (for kernels without BPF, and to
    /// test the fallback).
    pub no_ebpf: bool,
    /// Its own, or a relay's (`sentinel relay`).
    pub network: crate::relay::dial::Network,
    /// What `join_host_cgroup_namespace` did, run before the runtime.
    pub cgroup_namespace: Option<Result<bool, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] sentinel_core::config::ConfigError),
    #[error(
        "socket {0} is held by a running agent; stop it first, or give this one another path with --socket"
    )]
    SocketInUse(String),
    #[error("socket {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "socket {path}: cannot give it to agent.socket_group (gid {gid}): without CAP_CHOWN the agent may give it only to a group it is in; add the group to SupplementaryGroups= (a drop-in of sentinel.service)"
    )]
    SocketGroup { path: String, gid: u32 },
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
    #[error(transparent)]
    AlertingTls(#[from] crate::alert::tls::TlsError),
    #[error("cannot start the host timer's thread: {0}")]
    Clock(std::io::Error),
    #[error("agent.{key}: no group named `{name}` on this host")]
    NoSuchGroup { key: &'static str, name: String },
}

pub async fn run(opts: RunOptions) -> Result<(), AgentError> {
    // One heap per worker thread at most: glibc's default of eight per
    // CPU lets freed memory scatter over arenas that are never trimmed.
    // SAFETY: mallopt only tunes the allocator; called before threads
    // allocate much.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let notifier = notify::Settings::from_env()
        .and_then(notify::Notifier::new)
        .map(Arc::new);
    let s = startup::start(&opts).await?;
    memory::trim_heap();
    if s.cfg.agent.lock_memory {
        memory::release_startup_code();
        memory::lock();
    }
    let sentinel = s.sentinel;
    let mode = sentinel.overview().startup.mode;
    if let Some(a) = &s.alerting {
        tracing::info!(receivers = a.receivers().len(), "alerting on");
        if let Err(e) = crate::alert::spawn(a.clone(), sentinel.clone()) {
            tracing::error!("alerting could not start: {e}; decisions are still journalled");
        }
    }
    let gpus = tasks::gpus(sentinel.clone(), &s.cfg);
    if let Some((l, addr)) = s.metrics {
        let relayed = opts.network.is_relay();
        tracing::info!(%addr, relayed, "metrics at http://{addr}/metrics");
        let src = crate::metrics::http::Source {
            sentinel: sentinel.clone(),
            alerting: s.alerting.clone(),
            top: s.cfg.metrics.top_growers,
        };
        tokio::spawn(crate::metrics::http::serve(l, src));
    }
    tracing::info!(
        mode = mode.as_str(),
        rules = s.cfg.rules.len(),
        dry_run = s.cfg.agent.dry_run,
        socket = %s.socket,
        "sentinel running"
    );
    if let Some((ring, precise)) = s.ring {
        tasks::events(ring, precise, sentinel.clone());
    }
    tasks::pressure(sentinel.clone(), s.cfg.host.psi_stall);
    let every = tasks::Intervals::of(&s.cfg, mode, s.lifecycle);
    if let Some(period) = notifier.as_ref().and_then(|n| n.watchdog()) {
        let longest = every.tick.max(every.rest);
        if longest * 2 > period {
            tracing::warn!(
                "the host timer ticks every {longest:?} at most, and systemd's watchdog wants a ping within {period:?}: it would restart a healthy agent; shorten host.interval and agent.rest_interval, or lengthen WatchdogSec"
            );
        }
    }
    let clock =
        tasks::host_clock(sentinel.clone(), every, notifier.clone()).map_err(AgentError::Clock)?;
    tasks::timers(sentinel.clone(), every);
    tasks::reload_on_hangup(sentinel.clone(), opts.config_path.clone());
    let listener = socket::bind(&s.socket, s.socket_group).await?;
    // Clients connecting from now on are queued until served: ready.
    if let Some(n) = &notifier {
        n.ready(&format!(
            "{} mode, {} rules",
            mode.as_str(),
            s.cfg.rules.len()
        ));
    }
    if let Some(t) = &s.cfg.api.tcp {
        tracing::info!(listen = %t.listen, admins = ?t.admin_names, "API on TCP, mutual TLS");
    }
    let served = crate::api::serve(
        Arc::clone(&sentinel),
        s.access,
        s.connections,
        listener,
        s.tcp,
        tasks::shutdown(),
    )
    .await;
    if let Some(n) = &notifier {
        n.stopping();
    }
    clock.stop();
    if let Some(g) = gpus {
        g.stop();
    }
    // A plain stop keeps what was frozen frozen, for the next start to
    // take back; each is said, in the log and the journal.
    let left = sentinel.leave_frozen();
    if !left.is_empty() {
        tracing::warn!(
            processes = left.len(),
            "stopping with processes left frozen; the next start takes them back (`sentinel thaw-all` or removing the package thaws them)"
        );
    }
    let _ = std::fs::remove_file(&s.socket);
    served.map_err(AgentError::from)
}
