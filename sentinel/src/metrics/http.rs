//! `GET /metrics` over HTTP/1.1: a snapshot of the agent taken under the
//! engine lock (counts only, no /proc walk), rendered outside it.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_stream::StreamExt;

use sentinel_core::{
    decision::DecisionKind,
    engine::{Instrument, Mode, ProcView},
};

use super::{Grower, PREEMPT_ACTIONS, PREEMPT_OUTCOMES, Snapshot, render};
use crate::{
    alert::Alerting,
    collector::{host, procfs},
    journal::CountKey,
    relay::TcpConnections,
    service::Sentinel,
};

/// The fastest growers (of those listed), with their identity.
fn growers(listed: Vec<ProcView>) -> Vec<Grower> {
    listed
        .into_iter()
        .filter(|v| v.slope > 0.0)
        .map(|v| Grower {
            pid: v.pid,
            charged_bytes: v.mem.charged(),
            comm: v.comm,
            rule: v.rule,
            slope_bytes_per_sec: v.slope,
        })
        .collect()
}

/// Decisions since start by kind, action and scope, as label values, in
/// the order of those values.
fn decision_counts(counts: &[(CountKey, u64)]) -> Vec<(String, String, String, u64)> {
    let mut by_label: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for ((kind, action, scope, _), n) in counts {
        let scope = scope.map(|s| s.as_str()).unwrap_or("");
        *by_label
            .entry((kind.as_str(), action.as_str(), scope))
            .or_default() += n;
    }
    by_label
        .into_iter()
        .map(|((k, a, s), n)| (k.to_string(), a.to_string(), s.to_string(), n))
        .collect()
}

/// Stops since start, by action and by whether they were carried out:
/// what the rules meant for real actions count, apart from dry-run.
fn preemption_counts(counts: &[(CountKey, u64)]) -> [[u64; 3]; 3] {
    let mut out = [[0; 3]; 3];
    for ((kind, action, _, outcome), n) in counts {
        let a = PREEMPT_ACTIONS.iter().position(|x| x == action);
        let o = PREEMPT_OUTCOMES.iter().position(|x| x == outcome);
        if let (DecisionKind::Preempt, Some(a), Some(o)) = (kind, a, o) {
            out[a][o] += n;
        }
    }
    out
}

/// Everything the exposition shows, read from the agent's named
/// operations, the journal and alerting; `top` growers at most.
pub fn snapshot(sentinel: &Sentinel, alerting: Option<&Alerting>, top: usize) -> Snapshot {
    let o = sentinel.overview();
    let wide = o.instrument.instrument == Instrument::Wide;
    let h = o.host;
    let top = sentinel.growers(top);
    let journal = sentinel.journal();
    let counts = journal.counts();
    let mut s = Snapshot {
        version: env!("CARGO_PKG_VERSION").to_string(),
        mode: o.startup.mode.as_str().to_string(),
        dry_run: o.dry_run,
        degraded: !o.startup.degraded_reason.is_empty(),
        crash_loops: o.crash_loops.len() as u64,
        host_available_bytes: h.mem.available,
        host_total_bytes: h.mem.total,
        host_used_bytes: h.used,
        host_limit_bytes: h.limit,
        host_level: h.level as u8,
        process_levels: o.process_levels,
        frozen: o.frozen,
        queued: o.queued.len() as u64,
        queue_wait_max_secs: o.queued.iter().map(|q| q.waited_secs).fold(0.0, f64::max),
        cgroup_levels: o.cgroup_levels,
        gpu_available: o.gpu.unavailable.is_empty() && o.gpu.passes > 0,
        gpu_read_errors: o.gpu.read_errors,
        gpus: o
            .gpu
            .devices
            .into_iter()
            .map(|g| {
                (
                    g.index,
                    g.uuid,
                    g.used,
                    g.total,
                    g.level as u8,
                    g.error.is_none(),
                )
            })
            .collect(),
        tracked: o.tracked as u64,
        kernel_oom_kills: o.kernel_oom_kills,
        probe_events: o.counters.events,
        lost_events: o.counters.lost_events,
        tripwire_fires: o.counters.tripwire_fires,
        precise_attached: !wide && o.startup.mode == Mode::Ebpf,
        precise_attachments: o.instrument.armed,
        probes: o
            .startup
            .probes
            .iter()
            .map(|p| {
                (
                    p.name.to_string(),
                    p.attached && !(wide && p.name == "rss_stat"),
                )
            })
            .collect(),
        top: growers(top),
        decisions: decision_counts(&counts),
        preemptions: preemption_counts(&counts),
        journal_write_failures: journal.health().write_failures,
        last_decision_seq: journal.last_seq(),
        ..Snapshot::default()
    };
    let (some, full) = host::read_psi_both();
    s.psi_some = some.map(|p| p.avg10 / 100.0);
    s.psi_full = full.map(|p| p.avg10 / 100.0);
    s.psi_some_seconds = some.map(|p| p.total_us as f64 / 1e6);
    s.psi_full_seconds = full.map(|p| p.total_us as f64 / 1e6);
    let (granted, held, queued) = sentinel.admission.summary();
    s.reservations = granted as u64;
    s.reserved_bytes = held;
    s.admission_queued = queued.map(|n| n as u64);
    s.admission_refusals_unjournalled = sentinel.admission.unjournalled();
    if let Some(a) = alerting {
        s.alerts_firing = a.firing() as u64;
        s.receivers = a.receivers();
    }
    if let Ok((cpu, rss, start)) = procfs::usage(std::process::id()) {
        s.cpu_seconds = cpu;
        s.resident_bytes = rss;
        s.start_time_seconds = start;
    }
    s
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static headers")
}

/// What a scrape reads.
#[derive(Clone)]
pub struct Source {
    pub sentinel: Arc<Sentinel>,
    pub alerting: Option<Arc<Alerting>>,
    /// Fastest growers shown at most.
    pub top: usize,
}

fn handle(src: &Source, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(&snapshot(&src.sentinel, src.alerting.as_deref(), src.top)),
        ),
        (&Method::GET, "/") => reply(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "Sentinel agent: metrics at /metrics\n".into(),
        ),
        (_, "/metrics" | "/") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET only\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found; metrics are at /metrics\n".into(),
        ),
    }
}

/// Binds the metrics listener, with the address it got (port 0 is any).
pub fn bind(addr: SocketAddr) -> std::io::Result<(TcpConnections, SocketAddr)> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    let bound = l.local_addr()?;
    let l = tokio::net::TcpListener::from_std(l)?;
    Ok((
        Box::pin(tokio_stream::wrappers::TcpListenerStream::new(l)),
        bound,
    ))
}

/// Serves metrics until the agent stops. A scrape takes the engine lock
/// only to copy counts.
/// Scrapes served at once; more are closed at accept (Prometheus scrapes
/// once an interval: anything beyond is someone else's connections, which
/// must not take the agent's descriptors or threads).
pub const MAX_SCRAPERS: usize = 16;

pub async fn serve(mut incoming: TcpConnections, src: Source) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPERS));
    while let Some(next) = incoming.next().await {
        let stream = match next {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors: the listener stays readable, so an
                // immediate retry would spin.
                tracing::debug!("metrics: cannot accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let src = src.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req| {
                let src = src.clone();
                async move {
                    let r = tokio::task::spawn_blocking(move || handle(&src, &req))
                        .await
                        .unwrap_or_else(|_| {
                            reply(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "text/plain",
                                "snapshot failed\n".into(),
                            )
                        });
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            // One request per connection, its headers within 5 s, all of
            // it within 30 s: an idle or slow client holds a slot briefly.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}
