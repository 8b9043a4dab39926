//! `GET /metrics` over HTTP/1.1: a snapshot of the agent taken under the
//! engine lock (counts only, no /proc walk), rendered outside it.

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::TokioIo;

use super::{Grower, Snapshot, render};
use crate::{
    agent::{ProcQuery, Shared, SortKey},
    collector::{host, procfs},
};

/// Everything the exposition shows, read from the engine, journal and
/// alerting; `top` growers at most.
pub fn snapshot(shared: &Shared, top: usize) -> Snapshot {
    let mut s = Snapshot {
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Snapshot::default()
    };
    {
        let e = shared.engine();
        s.mode = e.mode.as_str().to_string();
        s.dry_run = e.cfg.agent.dry_run;
        s.degraded = !e.degraded_reason.is_empty();
        s.crash_loops = e.crash_loops().len() as u64;
        let h = e.host_view();
        s.host_available_bytes = h.mem.available;
        s.host_total_bytes = h.mem.total;
        s.host_used_bytes = h.used;
        s.host_limit_bytes = h.limit;
        s.host_level = h.level as u8;
        (s.process_levels, s.frozen) = e.level_counts();
        s.cgroup_levels = e.cgroup_levels();
        s.gpu_available = e.gpu.unavailable.is_empty() && e.gpu.samples > 0;
        s.gpu_read_errors = e.gpu.error_count;
        s.gpus = e
            .gpu_views()
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
            .collect();
        s.tracked = e.tracked() as u64;
        s.kernel_oom_kills = e.kernel_oom_kills;
        if let Some(p) = &e.probes {
            let c = p.counters();
            s.probe_events = c.events;
            s.lost_events = c.lost_events;
            s.tripwire_fires = c.tripwire_fires;
        }
        s.probes = e
            .probe_status
            .iter()
            .map(|p| (p.name.to_string(), p.attached))
            .collect();
        let (views, _) = e.views(&ProcQuery {
            sort: SortKey::Slope,
            limit: top,
            ..ProcQuery::default()
        });
        s.top = views
            .into_iter()
            .filter(|v| v.slope > 0.0)
            .map(|v| Grower {
                pid: v.pid,
                charged_bytes: v.mem.charged(),
                comm: v.comm,
                rule: v.rule,
                slope_bytes_per_sec: v.slope,
            })
            .collect();
        s.decisions = shared
            .journal
            .counts()
            .into_iter()
            .map(|((kind, action, rule), n)| {
                (
                    kind.as_str().to_string(),
                    action,
                    e.scope_of_rule(&rule).to_string(),
                    n,
                )
            })
            .collect();
    }
    // Several rules can share a scope: one sample per label set.
    s.decisions.sort();
    s.decisions.dedup_by(|b, a| {
        let same = (&a.0, &a.1, &a.2) == (&b.0, &b.1, &b.2);
        if same {
            a.3 += b.3;
        }
        same
    });
    let (some, full) = host::read_psi_both();
    s.psi_some = some.map(|p| p / 100.0);
    s.psi_full = full.map(|p| p / 100.0);
    let (granted, held, queued) = shared.admission.summary();
    s.reservations = granted as u64;
    s.reserved_bytes = held;
    s.admission_queued = queued.map(|n| n as u64);
    s.journal_write_failures = shared.journal.health().write_failures;
    s.last_decision_seq = shared.journal.last_seq();
    if let Some(a) = &shared.alerting {
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

fn handle(shared: &Shared, top: usize, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(&snapshot(shared, top)),
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

/// Binds the metrics listener; an error names the address.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l)
}

/// Serves metrics until the agent stops. A scrape takes the engine lock
/// only to copy counts.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>, top: usize) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move {
                    let r = tokio::task::spawn_blocking(move || handle(&shared, top, &req))
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
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
