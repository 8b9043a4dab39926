//! The gRPC API (`sentinel.v1`): a thin layer over the engine and journal.

pub mod access;
pub mod admission;
pub mod client;

#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!("generated/sentinel.v1.rs");
}

use std::{pin::Pin, sync::Arc};

use tokio::net::UnixListener;
use tokio_stream::{Stream, StreamExt, wrappers::UnixListenerStream};
use tonic::{Request, Response, Status, transport::Server};

use crate::{
    agent::{Engine, OpError, ProcQuery, ProcView, Shared, SortKey},
    config::Config,
    journal::Decision,
};

/// Upper bound on list sizes so one request cannot make the agent build an
/// arbitrarily large reply.
pub const MAX_LIST: u32 = 10_000;

pub struct Service {
    shared: Arc<Shared>,
    watchers: Arc<std::sync::atomic::AtomicUsize>,
}

/// Live WatchDecisions streams at most; more get RESOURCE_EXHAUSTED.
pub const MAX_WATCHERS: usize = 64;
/// A resuming watcher may be this many decisions behind at most; further
/// back, ListDecisions pages through the journal.
pub const MAX_BACKLOG: u64 = 100_000;
/// Largest request accepted (a policy is at most `MAX_POLICY_BYTES`).
pub const MAX_REQUEST_BYTES: usize = 2 << 20;

/// Counts a live watcher for as long as it is held.
struct WatcherSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl From<&Decision> for pb::Decision {
    fn from(d: &Decision) -> Self {
        Self {
            seq: d.seq,
            time_unix_ms: d.time_unix_ms,
            kind: d.kind.as_str().to_string(),
            pid: d.pid,
            comm: d.comm.clone(),
            cgroup: d.cgroup.clone(),
            rule: d.rule.clone(),
            action: d.action.clone(),
            outcome: d.outcome.clone(),
            reason: d.reason.clone(),
            resident_bytes: d.resident_bytes,
            charged_bytes: d.charged_bytes,
            slope_bytes_per_sec: d.slope_bytes_per_sec,
            limit_bytes: d.limit_bytes,
            predicted_seconds_to_limit: d.predicted_seconds_to_limit,
            level: d.level.clone(),
            crash_loop: d.crash_loop,
        }
    }
}

fn process(v: ProcView, faults: Option<u64>, mapped: Option<i64>) -> pb::Process {
    pb::Process {
        pid: v.pid,
        comm: v.comm,
        cgroup: v.cgroup,
        rule: v.rule,
        resident_bytes: v.mem.resident(),
        charged_bytes: v.mem.charged(),
        slope_bytes_per_sec: v.slope,
        limit_bytes: v.limit,
        predicted_seconds_to_limit: v.seconds_to_limit,
        state: v.state.as_str().to_string(),
        page_faults: faults.unwrap_or(0),
        mapped_bytes: mapped.unwrap_or(0),
        level: v.level.as_str().to_string(),
        gpu_bytes: v.gpu_bytes,
        ns_pid: v.ns_pid,
    }
}

fn bounded(limit: u32, default: u32, field: &str) -> Result<usize, Status> {
    match limit {
        0 => Ok(default as usize),
        n if n > MAX_LIST => Err(Status::invalid_argument(format!(
            "{field} is {n}; at most {MAX_LIST}"
        ))),
        n => Ok(n as usize),
    }
}

/// Policies larger than this are refused before parsing.
const MAX_POLICY_BYTES: usize = 1 << 20;

fn bounded_text(text: &str) -> Result<(), Status> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(Status::resource_exhausted(format!(
            "toml is {} bytes; at most {MAX_POLICY_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

fn process_ref(r: pb::ProcessRef) -> Result<u32, Status> {
    if r.pid == 0 {
        return Err(Status::invalid_argument("pid must be above 0"));
    }
    Ok(r.pid)
}

fn op_status(e: OpError) -> Status {
    match e {
        OpError::NotFound(_) => Status::not_found(e.to_string()),
        OpError::NotFrozen { .. } => Status::failed_precondition(e.to_string()),
        OpError::Failed { .. } => Status::internal(e.to_string()),
    }
}

type DecisionStream = Pin<Box<dyn Stream<Item = Result<pb::Decision, Status>> + Send>>;

impl Service {
    /// A process as the API shows it, with its fault and mapping counts.
    fn process(&self, e: &Engine, v: ProcView) -> pb::Process {
        let (f, m) = match &e.probes {
            Some(p) => (p.faults(v.pid), p.mapped_bytes(v.pid)),
            None => (None, None),
        };
        // Without the fault probe, the kernel's own per-process count.
        let f = f.or_else(|| {
            crate::collector::procfs::read_stat(v.pid)
                .ok()
                .map(|s| s.faults)
        });
        process(v, f, m)
    }
}

#[tonic::async_trait]
impl pb::sentinel_server::Sentinel for Service {
    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, Status> {
        let journal = self.shared.journal.health();
        // Before the engine's lock: a grant pass takes this one, then that.
        let admission = self.shared.admission.summary();
        let e = self.shared.engine();
        let host = e.host_view();
        let now = crate::agent::mono_now();
        let c = e.probes.as_ref().map(|p| p.counters()).unwrap_or_default();
        Ok(Response::new(pb::Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            mode: e.mode.as_str().to_string(),
            degraded_reason: e.degraded_reason.clone(),
            probes: e
                .probe_status
                .iter()
                .map(|p| pb::Probe {
                    name: p.name.to_string(),
                    attached: p.attached,
                    detail: p.detail.clone(),
                })
                .collect(),
            tracked_processes: e.tracked() as u64,
            rules: e.cfg.rules.len() as u32,
            dry_run: e.cfg.agent.dry_run,
            last_decision_seq: self.shared.journal.last_seq(),
            kernel_oom_kills: e.kernel_oom_kills,
            probe_events: c.events,
            lost_events: c.lost_events,
            host_available_bytes: host.mem.available,
            host_total_bytes: host.mem.total,
            host_used_bytes: host.used,
            host_limit_bytes: host.limit,
            host_level: host.level.as_str().to_string(),
            psi_some_avg10: host.psi_some_avg10,
            psi_trigger: host.psi_trigger,
            journal_path: journal.path,
            journal_write_failures: journal.write_failures,
            crash_loops: e
                .crash_loops()
                .into_iter()
                .map(|l| pb::CrashLoop {
                    cmdline: l.cmdline,
                    count: l.count as u32,
                    seconds_ago: (now - l.last).max(0.0),
                })
                .collect(),
            uptime_seconds: self.shared.started.elapsed().as_secs_f64(),
            tripwire_fires: c.tripwire_fires,
            gpus: e
                .gpu_views()
                .into_iter()
                .map(|g| pb::GpuDevice {
                    index: g.index,
                    uuid: g.uuid,
                    name: g.name,
                    total_bytes: g.total,
                    used_bytes: g.used,
                    level: g.level.as_str().to_string(),
                    error: g.error.unwrap_or_default(),
                })
                .collect(),
            gpu_unavailable: e.gpu.unavailable.clone(),
            gpu_driver: e.gpu.driver.clone(),
            gpu_unmapped_pids: e.gpu.unmapped.iter().copied().collect(),
            reservations: admission.0 as u32,
            reserved_bytes: admission.1,
            admission_queued: admission.2.iter().map(|&n| n as u32).collect(),
        }))
    }

    async fn list_processes(
        &self,
        req: Request<pb::ListProcessesRequest>,
    ) -> Result<Response<pb::ListProcessesResponse>, Status> {
        let r = req.into_inner();
        let limit = bounded(r.limit, 20, "limit")?;
        let sort: SortKey = r
            .sort
            .parse()
            .map_err(|e| Status::invalid_argument(format!("sort: {e}")))?;
        // The token is the offset of the next page; opaque to clients.
        let offset = if r.page_token.is_empty() {
            0
        } else {
            r.page_token.parse::<usize>().map_err(|_| {
                Status::invalid_argument(format!(
                    "page_token `{}` is not one this server gave",
                    r.page_token
                ))
            })?
        };
        let q = ProcQuery {
            matched_only: r.matched_only,
            cgroup_prefix: r.cgroup_prefix,
            comm: r.comm,
            rule: r.rule,
            sort,
            offset,
            limit,
        };
        let e = self.shared.engine();
        let (views, total) = e.views(&q);
        let next = offset + views.len();
        let processes = views.into_iter().map(|v| self.process(&e, v)).collect();
        Ok(Response::new(pb::ListProcessesResponse {
            processes,
            next_page_token: if next < total {
                next.to_string()
            } else {
                String::new()
            },
            total: total as u64,
        }))
    }

    async fn get_process(
        &self,
        req: Request<pb::ProcessRef>,
    ) -> Result<Response<pb::ProcessDetail>, Status> {
        let pid = process_ref(req.into_inner())?;
        let e = self.shared.engine();
        let crate::agent::engine::ProcDetail { view, samples, eta } =
            e.detail(pid).ok_or_else(|| {
                Status::not_found(format!("pid {pid} is not a process Sentinel tracks"))
            })?;
        Ok(Response::new(pb::ProcessDetail {
            process: Some(self.process(&e, view)),
            samples: samples
                .into_iter()
                .map(|(ago, bytes)| pb::Sample {
                    seconds_ago: ago,
                    bytes,
                })
                .collect(),
            seconds_to_warn: eta[0],
            seconds_to_preempt: eta[1],
            seconds_to_kill: eta[2],
            seconds_to_limit: eta[3],
        }))
    }

    async fn list_decisions(
        &self,
        req: Request<pb::ListDecisionsRequest>,
    ) -> Result<Response<pb::ListDecisionsResponse>, Status> {
        let r = req.into_inner();
        let limit = bounded(r.limit, 100, "limit")?;
        let keep = |d: &Decision| {
            r.pid.is_none_or(|p| d.pid == p)
                && (r.kind.is_empty() || d.kind.as_str() == r.kind)
                && (r.rule.is_empty() || d.rule == r.rule)
                && (r.action.is_empty() || d.action == r.action)
        };
        let decisions = self
            .shared
            .journal
            .since_where(r.after_seq, limit, &keep)
            .iter()
            .map(pb::Decision::from)
            .collect();
        Ok(Response::new(pb::ListDecisionsResponse { decisions }))
    }

    async fn get_policy(
        &self,
        _: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let e = self.shared.engine();
        Ok(Response::new(pb::Policy {
            source: e.policy_source.clone(),
            toml: e.policy_text.clone(),
        }))
    }

    async fn validate_policy(
        &self,
        req: Request<pb::PolicyText>,
    ) -> Result<Response<pb::ValidatePolicyResponse>, Status> {
        let text = req.into_inner().toml;
        bounded_text(&text)?;
        Ok(Response::new(match Config::parse(&text, "policy") {
            Ok(c) => pb::ValidatePolicyResponse {
                valid: true,
                error: String::new(),
                rules: c.rules.len() as u32,
                cgroup_rules: c.cgroup_rules.len() as u32,
            },
            Err(e) => pb::ValidatePolicyResponse {
                valid: false,
                error: e.to_string(),
                rules: 0,
                cgroup_rules: 0,
            },
        }))
    }

    async fn apply_policy(
        &self,
        req: Request<pb::PolicyText>,
    ) -> Result<Response<pb::ApplyPolicyResponse>, Status> {
        let peer = self.shared.access.require_admin(&req, "ApplyPolicy")?;
        let text = req.into_inner().toml;
        bounded_text(&text)?;
        // Refused whole when invalid: the running policy stays.
        // The agent's SENTINEL_* environment applies here as to its file.
        let env: Vec<(String, String)> = std::env::vars().collect();
        let cfg = Config::parse_with_env(&text, "policy", &env)
            .map_err(|e| Status::invalid_argument(format!("policy refused: {e}")))?;
        let mut e = self.shared.engine();
        e.apply_config(cfg);
        let d = e.record_policy(&peer, &format!("ApplyPolicy by {peer}"), &text);
        Ok(Response::new(pb::ApplyPolicyResponse {
            decision: Some(pb::Decision::from(&d)),
        }))
    }

    async fn resume(&self, req: Request<pb::ProcessRef>) -> Result<Response<pb::Decision>, Status> {
        let peer = self.shared.access.require_admin(&req, "Resume")?;
        let pid = process_ref(req.into_inner())?;
        let d = self
            .shared
            .engine()
            .operator_resume(pid, &peer)
            .map_err(op_status)?;
        Ok(Response::new(pb::Decision::from(&d)))
    }

    async fn protect(
        &self,
        req: Request<pb::ProcessRef>,
    ) -> Result<Response<pb::Decision>, Status> {
        let peer = self.shared.access.require_admin(&req, "Protect")?;
        let pid = process_ref(req.into_inner())?;
        let d = self
            .shared
            .engine()
            .operator_protect(pid, true, &peer)
            .map_err(op_status)?;
        Ok(Response::new(pb::Decision::from(&d)))
    }

    async fn unprotect(
        &self,
        req: Request<pb::ProcessRef>,
    ) -> Result<Response<pb::Decision>, Status> {
        let peer = self.shared.access.require_admin(&req, "Unprotect")?;
        let pid = process_ref(req.into_inner())?;
        let d = self
            .shared
            .engine()
            .operator_protect(pid, false, &peer)
            .map_err(op_status)?;
        Ok(Response::new(pb::Decision::from(&d)))
    }

    type WatchDecisionsStream = DecisionStream;

    async fn watch_decisions(
        &self,
        req: Request<pb::WatchDecisionsRequest>,
    ) -> Result<Response<Self::WatchDecisionsStream>, Status> {
        use std::sync::atomic::Ordering;
        if self.watchers.fetch_add(1, Ordering::Relaxed) >= MAX_WATCHERS {
            self.watchers.fetch_sub(1, Ordering::Relaxed);
            return Err(Status::resource_exhausted(format!(
                "{MAX_WATCHERS} decision streams are open already; close one or poll ListDecisions"
            )));
        }
        let slot = WatcherSlot(self.watchers.clone());
        let journal = self.shared.journal.clone();
        // Subscribe before reading the backlog so nothing falls between the
        // two; duplicates are then skipped by sequence number.
        let mut live = journal.subscribe();
        let mut last = journal.last_seq();
        let mut backlog = Vec::new();
        if let Some(after) = req.into_inner().after_seq {
            if last.saturating_sub(after) > MAX_BACKLOG {
                return Err(Status::resource_exhausted(format!(
                    "after_seq {after} is {} decisions behind (at most {MAX_BACKLOG}); page with ListDecisions, then watch from nearer",
                    last - after
                )));
            }
            backlog = journal.since(after, usize::MAX);
            last = backlog.last().map(|d| d.seq).unwrap_or(after.max(last));
        }
        let stream = async_stream(backlog, move |tx| async move {
            let _slot = slot;
            loop {
                // A client that went away frees its slot at once, not at
                // the next decision.
                let next = tokio::select! {
                    _ = tx.closed() => return,
                    next = live.recv() => next,
                };
                match next {
                    Ok(d) if d.seq <= last => continue,
                    Ok(d) => {
                        last = d.seq;
                        if tx.send(Ok(pb::Decision::from(&d))).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "watcher fell {n} decisions behind; resume with after_seq={last}"
                            ))))
                            .await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream that yields `backlog` first, then what `live` sends.
fn async_stream<F, Fut>(backlog: Vec<Decision>, live: F) -> DecisionStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::Decision, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(live(tx));
    let head = tokio_stream::iter(
        backlog
            .iter()
            .map(|d| Ok(pb::Decision::from(d)))
            .collect::<Vec<_>>(),
    );
    Box::pin(head.chain(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The API's own descriptors, for server reflection: generic clients
/// (grpcurl, grpcui) discover `sentinel.v1` without the proto file.
const DESCRIPTOR: &[u8] = include_bytes!("generated/sentinel_descriptor.bin");

/// The TCP listener with what its mutual TLS needs, read and checked
/// before anything is served so a bad file stops the agent at start.
pub struct TlsListener {
    pub incoming: tonic::transport::server::TcpIncoming,
    pub tls: tonic::transport::ServerTlsConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("api.{key} {path}: cannot read: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("api.tcp {addr}: cannot listen: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("api: TLS setup from {cert}, {key} and {ca}: {source}")]
    Tls {
        cert: String,
        key: String,
        ca: String,
        source: tonic::transport::Error,
    },
}

impl TlsListener {
    pub fn bind(tcp: &crate::config::TcpApi) -> Result<Self, TlsSetupError> {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let read = |key: &'static str, path: &std::path::Path| {
            std::fs::read(path).map_err(|source| TlsSetupError::Read {
                key,
                path: path.display().to_string(),
                source,
            })
        };
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                read("tls_cert", &tcp.cert)?,
                read("tls_key", &tcp.key)?,
            ))
            .client_ca_root(Certificate::from_pem(read(
                "tls_client_ca",
                &tcp.client_ca,
            )?))
            .client_auth_optional(false)
            .timeout(std::time::Duration::from_secs(10));
        // Build it once here: a key that does not match its certificate, or
        // a file that is not PEM, is an error at start, not at first client.
        Server::builder()
            .tls_config(tls.clone())
            .map_err(|source| TlsSetupError::Tls {
                cert: tcp.cert.display().to_string(),
                key: tcp.key.display().to_string(),
                ca: tcp.client_ca.display().to_string(),
                source,
            })?;
        let incoming = tonic::transport::server::TcpIncoming::bind(tcp.listen)
            .map_err(|source| TlsSetupError::Bind {
                addr: tcp.listen,
                source,
            })?
            .with_nodelay(Some(true));
        Ok(Self { incoming, tls })
    }
}

/// Serves `sentinel.v1`, the standard `grpc.health.v1` (SERVING while the
/// agent runs) and server reflection on the Unix socket, and on TCP with
/// mutual TLS when configured, until `shutdown`.
pub async fn serve(
    shared: Arc<Shared>,
    listener: UnixListener,
    tcp: Option<TlsListener>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::sentinel_server::SentinelServer<Service>>()
        .await;
    health
        .set_serving::<pb::admission_server::AdmissionServer<admission::Service>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(DESCRIPTOR)
        .build_v1()?;
    // One service for both listeners, so the stream limit counts them all.
    let admission = pb::admission_server::AdmissionServer::new(admission::Service {
        shared: shared.clone(),
    })
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let sentinel = pb::sentinel_server::SentinelServer::new(Service {
        shared,
        watchers: Arc::default(),
    })
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let unix = Server::builder()
        .add_service(sentinel.clone())
        .add_service(admission.clone())
        .add_service(health_service.clone())
        .add_service(reflection.clone())
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), wait(stopped.clone()));
    let tcp = async {
        let Some(t) = tcp else {
            return Ok(());
        };
        Server::builder()
            .tls_config(t.tls)?
            .add_service(sentinel)
            .add_service(admission)
            .add_service(health_service)
            .add_service(reflection)
            .serve_with_incoming_shutdown(t.incoming, wait(stopped))
            .await
    };
    let signal = async {
        shutdown.await;
        let _ = stop.send(true);
    };
    let (u, t, ()) = tokio::join!(unix, tcp, signal);
    u?;
    t?;
    Ok(())
}
