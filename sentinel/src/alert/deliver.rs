//! Delivery to one receiver: a bounded queue, retries with backoff, and a
//! circuit breaker. Alerts are only ever queued by the alert task, never
//! by the engine, so nothing here can slow a decision.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sentinel_api::client::error_chain;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::Notify,
};
use tokio_rustls::TlsConnector;
use tonic::transport::Uri;

use super::{
    breaker::{Breaker, BreakerState},
    model::Alert,
    wire,
};
use sentinel_core::config::AlertingSettings;

use crate::{
    host::mono_now,
    relay::{destination, dial::Network},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Alertmanager,
    Webhook,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Webhook => "webhook",
        }
    }
}

/// Largest batch in one request.
const BATCH: usize = 64;
/// First wait after a failure; doubled up to `backoff_max`.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Alerts accepted by the receiver.
    pub delivered: u64,
    /// Requests that failed (each retried).
    pub failures: u64,
    /// Alerts dropped from a full queue.
    pub dropped: u64,
    pub last_error: String,
}

pub struct Outbox {
    pub kind: Kind,
    /// The URL as configured.
    pub name: String,
    url: Uri,
    /// Set for an `https://` receiver.
    tls: Option<TlsConnector>,
    network: Network,
    cap: usize,
    /// Queued alerts with their enqueue number, so a delivery removes
    /// exactly what it sent even if drops moved the front meanwhile.
    queue: Mutex<(u64, VecDeque<(u64, Alert)>)>,
    wake: Notify,
    breaker: Mutex<Breaker>,
    counters: Mutex<Counters>,
}

/// What status and metrics show of a receiver.
#[derive(Debug, Clone)]
pub struct ReceiverView {
    pub kind: Kind,
    pub name: String,
    pub queued: usize,
    pub breaker: BreakerState,
    pub breaker_opened: u64,
    pub counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Outbox {
    /// `tls` is used only when `name` is an `https://` URL.
    pub fn new(
        kind: Kind,
        name: &str,
        s: &AlertingSettings,
        tls: Option<&TlsConnector>,
        network: Network,
    ) -> Self {
        let full = match kind {
            Kind::Alertmanager => format!("{}/api/v2/alerts", name.trim_end_matches('/')),
            Kind::Webhook => name.to_string(),
        };
        Self {
            kind,
            name: name.to_string(),
            // Checked when the config was parsed.
            url: full.parse().unwrap_or_default(),
            tls: tls.filter(|_| name.starts_with("https://")).cloned(),
            network,
            cap: s.queue_size,
            queue: Mutex::new((0, VecDeque::new())),
            wake: Notify::new(),
            breaker: Mutex::new(Breaker::new(
                s.breaker_failures,
                s.breaker_window.as_secs_f64(),
                s.breaker_open.as_secs_f64(),
            )),
            counters: Mutex::new(Counters::default()),
        }
    }

    pub fn push(&self, alerts: &[Alert]) {
        if alerts.is_empty() {
            return;
        }
        let mut dropped = 0;
        {
            let mut q = lock(&self.queue);
            for a in alerts {
                q.0 += 1;
                let n = q.0;
                q.1.push_back((n, a.clone()));
                if q.1.len() > self.cap {
                    q.1.pop_front();
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            lock(&self.counters).dropped += dropped;
            tracing::warn!(receiver = %self.name, dropped, "alert queue full: oldest alerts dropped (the journal keeps every decision)");
        }
        self.wake.notify_one();
    }

    pub fn view(&self) -> ReceiverView {
        let b = lock(&self.breaker);
        ReceiverView {
            kind: self.kind,
            name: self.name.clone(),
            queued: lock(&self.queue).1.len(),
            breaker: b.state(mono_now()),
            breaker_opened: b.opened,
            counters: lock(&self.counters).clone(),
        }
    }

    fn body(&self, alerts: &[Alert]) -> Vec<u8> {
        match self.kind {
            Kind::Alertmanager => wire::alertmanager(alerts),
            Kind::Webhook => wire::webhook(alerts),
        }
    }

    /// Delivers queued alerts until the agent stops.
    pub async fn run(self: Arc<Self>, timeout: Duration, backoff_max: Duration) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let batch: Vec<(u64, Alert)> = {
                let q = lock(&self.queue);
                q.1.iter().take(BATCH).cloned().collect()
            };
            if batch.is_empty() {
                self.wake.notified().await;
                continue;
            }
            let wait = lock(&self.breaker).wait(mono_now());
            if wait > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                continue;
            }
            let last = batch.last().map(|b| b.0).unwrap_or(0);
            let alerts: Vec<Alert> = batch.into_iter().map(|b| b.1).collect();
            let sent = post(
                &self.url,
                self.tls.as_ref(),
                &self.network,
                self.body(&alerts),
                timeout,
            )
            .await;
            match sent {
                Ok(()) => {
                    lock(&self.queue).1.retain(|(n, _)| *n > last);
                    lock(&self.breaker).success();
                    lock(&self.counters).delivered += alerts.len() as u64;
                    backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    let state = {
                        let mut b = lock(&self.breaker);
                        b.failure(mono_now());
                        b.state(mono_now())
                    };
                    {
                        let mut c = lock(&self.counters);
                        c.failures += 1;
                        c.last_error = e.clone();
                    }
                    tracing::warn!(receiver = %self.name, breaker = state.as_str(), "alert delivery failed: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(backoff_max);
                }
            }
        }
    }
}

/// One HTTP/1.1 POST of JSON on a fresh connection (alerts are rare; a
/// pool would only hold sockets open to receivers that may be gone), over
/// TLS when `tls` is given.
async fn post(
    url: &Uri,
    tls: Option<&TlsConnector>,
    network: &Network,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    let attempt = async {
        let (bare, port) = destination(url).ok_or("no host in the URL")?;
        let bare = bare.as_str();
        let host = url.host().unwrap_or(bare);
        let stream = network
            .connect(bare, port)
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
        match tls {
            None => exchange(stream, url, body).await,
            Some(tls) => {
                let name =
                    rustls_pki_types::ServerName::try_from(bare.to_string()).map_err(|e| {
                        format!("`{bare}` cannot be checked against a certificate: {e}")
                    })?;
                let stream = tls
                    .connect(name, stream)
                    .await
                    .map_err(|e| tls_hint(format!("TLS with {host}:{port}: {e}")))?;
                // TLS 1.3 servers judge the client's certificate after the
                // handshake: their refusal comes with the first request.
                exchange(stream, url, body).await.map_err(tls_hint)
            }
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// The request and its answer on an open connection.
async fn exchange<S>(stream: S, url: &Uri, body: Vec<u8>) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| error_chain(&e))?;
    tokio::spawn(conn);
    let authority = url.authority().map(|a| a.as_str()).unwrap_or_default();
    let req = hyper::Request::post(url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("sentinel/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| error_chain(&e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp
        .into_body()
        .collect()
        .await
        .map(|b| {
            String::from_utf8_lossy(&b.to_bytes())
                .chars()
                .take(200)
                .collect::<String>()
        })
        .unwrap_or_default();
    Err(format!("HTTP {status}: {}", text.trim()))
}

/// A TLS failure with the key that mends it: a receiver that refused (or
/// wanted) a client certificate, or one whose certificate no trusted CA
/// signed.
fn tls_hint(e: String) -> String {
    const REFUSED: [&str; 5] = [
        "BadCertificate",
        "CertificateRequired",
        "UnknownCA",
        "AccessDenied",
        "CertificateUnknown",
    ];
    if REFUSED.iter().any(|a| e.contains(a)) {
        format!(
            "{e} (the receiver refused the client certificate, or wants one: alerting.tls.cert_file and key_file)"
        )
    } else if e.contains("UnknownIssuer") {
        format!("{e} (no CA trusted here signed the receiver's certificate: alerting.tls.ca_file)")
    } else {
        e
    }
}
