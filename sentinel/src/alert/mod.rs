//! Alerting: decisions become alerts pushed to Alertmanager (API v2) and
//! generic webhooks, resolved when their condition clears.
//!
//! The alert task follows the journal like any watcher, so the engine
//! never waits on it; when it falls behind it reads the journal file, and
//! each receiver has its own bounded queue, retries and circuit breaker.
//! `model`, `breaker`, `labels` and `wire` are pure; `deliver` and this
//! module do the I/O.

pub mod breaker;
pub mod deliver;
pub mod labels;
pub mod model;
pub mod tls;
pub mod wire;

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::broadcast::error::RecvError;

use sentinel_core::config::AlertingSettings;

use crate::{
    journal::{Decision, unix_ms},
    relay::dial::Network,
    service::{AlertCheck, Sentinel},
};
use deliver::{Kind, Outbox, ReceiverView};
use model::{Key, Tracker, Until};

/// How often alerts are checked for resolution and resent.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct Alerting {
    settings: AlertingSettings,
    host: String,
    outboxes: Vec<Arc<Outbox>>,
    firing: AtomicUsize,
}

impl Alerting {
    /// Fails only on the TLS files of `https://` receivers. Receivers are
    /// reached over `network`.
    pub fn new(settings: &AlertingSettings, network: &Network) -> Result<Self, tls::TlsError> {
        // The environment wins: a DaemonSet sets it from the node's name,
        // where the hostname would be the pod's.
        let from_env = std::env::var("SENTINEL_ALERTING_HOST")
            .ok()
            .filter(|h| !h.is_empty());
        let host = from_env
            .or_else(|| settings.host.clone())
            .unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_default()
            });
        let tls = settings
            .any_https()
            .then(|| tls::connector(&settings.tls))
            .transpose()?;
        let outboxes = settings
            .alertmanagers
            .iter()
            .map(|u| (Kind::Alertmanager, u))
            .chain(settings.webhooks.iter().map(|u| (Kind::Webhook, u)))
            .map(|(k, u)| Arc::new(Outbox::new(k, u, settings, tls.as_ref(), network.clone())))
            .collect();
        Ok(Self {
            settings: settings.clone(),
            host,
            outboxes,
            firing: AtomicUsize::new(0),
        })
    }

    pub fn receivers(&self) -> Vec<ReceiverView> {
        self.outboxes.iter().map(|o| o.view()).collect()
    }

    /// Alerts firing now.
    pub fn firing(&self) -> usize {
        self.firing.load(Ordering::Relaxed)
    }

    fn send(&self, alerts: &[model::Alert]) {
        for o in &self.outboxes {
            o.push(alerts);
        }
    }
}

/// Niceness of the alerting thread: under CPU contention the scheduler
/// serves the threads that make decisions first.
const NICE: i32 = 10;

/// Starts delivery to each receiver and the task that turns decisions into
/// alerts, on a thread of their own at a lower CPU priority, so that
/// formatting, connecting and retrying never compete on equal terms with
/// the engine. Runs until the agent stops.
pub fn spawn(alerting: Arc<Alerting>, sentinel: Arc<Sentinel>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("sentinel-alerts".into())
        .spawn(move || {
            // SAFETY: gettid and setpriority on this thread only.
            let r = unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE)
            };
            if r != 0 {
                tracing::debug!(
                    "alerting thread keeps normal priority: {}",
                    std::io::Error::last_os_error()
                );
            }
            rt.block_on(async move {
                let s = &alerting.settings;
                for o in &alerting.outboxes {
                    tokio::spawn(o.clone().run(s.timeout, s.backoff_max));
                }
                follow(alerting, sentinel).await;
            });
        })?;
    Ok(())
}

async fn follow(alerting: Arc<Alerting>, sentinel: Arc<Sentinel>) {
    let s = &alerting.settings;
    let mut tracker = Tracker::new(
        alerting.host.clone(),
        s.resend_interval.as_millis() as u64,
        s.min_firing.as_millis() as u64,
    );
    let journal = sentinel.journal();
    let mut rx = journal.subscribe();
    // Alerts start with what happens from now on: a restart does not
    // replay old decisions as new alerts.
    let mut last_seq = journal.last_seq();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            got = rx.recv() => {
                let batch: Vec<Decision> = match got {
                    Ok(d) => vec![d],
                    // Behind the broadcast: catch up from the journal.
                    Err(RecvError::Lagged(_)) => journal.since(last_seq, 100_000),
                    Err(RecvError::Closed) => return,
                };
                for d in &batch {
                    if d.seq <= last_seq {
                        continue;
                    }
                    last_seq = d.seq;
                    let out = tracker.on_decision(d, unix_ms());
                    alerting.send(&out);
                }
            }
            _ = sweep.tick() => {
                let cleared: Vec<Key> = tracker
                    .keys()
                    .filter(|(_, until)| *until == Until::Cleared)
                    .map(|(k, _)| k.clone())
                    .collect();
                let asked: Vec<AlertCheck> = cleared
                    .iter()
                    .map(|k| match k.alertname {
                        model::WAITING => AlertCheck::Waiting(k.pid),
                        _ => AlertCheck::Condition(k.pid, k.rule.clone(), k.scope),
                    })
                    .collect();
                let holding: HashSet<Key> = cleared
                    .into_iter()
                    .zip(sentinel.alerts_hold(&asked))
                    .filter(|(_, holds)| *holds)
                    .map(|(k, _)| k)
                    .collect();
                let out = tracker.sweep(unix_ms(), |k| holding.contains(k));
                alerting.send(&out);
            }
        }
        alerting.firing.store(tracker.firing(), Ordering::Relaxed);
    }
}
