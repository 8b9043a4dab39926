//! Admission control: the queue of memory reservations (the pure model in
//! `policy::admission`), the callers waiting on it, and the grant pass the
//! agent's tick (and every request and release) runs against what each
//! pool can give now. Events are journalled through the engine and told to
//! watchers; the gRPC layer only converts.

use std::{
    collections::HashMap,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
};

use sentinel_core::{
    decision::DecisionAction,
    engine::pool_name,
    policy::admission::{Admission, Ended, Pool, Priority, Refusal, Request, Reservation},
    units::human_bytes,
};
use tokio::sync::{broadcast, oneshot};

use super::{Sentinel, throttle::Throttle};
use crate::host::mono_now;

/// Requests waiting at most; past it the queue is full.
pub const MAX_QUEUE: usize = 1024;
/// Requests of one user waiting at most, so that no one user fills the
/// queue for everyone.
pub const MAX_QUEUED_PER_UID: usize = 64;
/// A reservation without a time to live lives this long.
const DEFAULT_TTL_SECS: f64 = 86_400.0;

/// Why a request was not granted, or a release not done.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdmissionError {
    #[error("{0}")]
    NoPool(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{why}")]
    QueueFull { why: String, retry_after_secs: f64 },
    #[error("{0}")]
    TooManyWaiting(String),
    #[error("{0}")]
    Displaced(String),
    #[error("{0}")]
    TimedOut(String),
    #[error("no reservation {0}")]
    NotFound(u64),
}

/// A request or reservation as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: u64,
    pub bytes: u64,
    pub pool: Pool,
    pub priority: Priority,
    pub holder: String,
    pub pid: u32,
    pub granted: bool,
    pub used_bytes: u64,
    pub seconds_left: f64,
}

impl Entry {
    pub fn granted(r: &Reservation, now: f64) -> Self {
        Self {
            id: r.id,
            bytes: r.bytes,
            pool: r.pool.clone(),
            priority: r.priority,
            holder: r.holder.clone(),
            pid: r.pid,
            granted: true,
            used_bytes: r.used,
            seconds_left: (r.expires_at - now).max(0.0),
        }
    }

    pub fn queued(r: &Request, now: f64) -> Self {
        Self {
            id: r.id,
            bytes: r.bytes,
            pool: r.pool.clone(),
            priority: r.priority,
            holder: r.holder.clone(),
            pid: r.pid,
            granted: false,
            used_bytes: 0,
            seconds_left: (r.deadline - now).max(0.0),
        }
    }
}

/// What happened to a request or reservation, for watchers.
#[derive(Debug, Clone)]
pub struct Event {
    pub action: DecisionAction,
    pub entry: Entry,
    pub reason: String,
}

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct Ask {
    pub pid: u32,
    pub bytes: u64,
    /// From the pid's memory cgroup rather than the host.
    pub cgroup: bool,
    pub priority: Priority,
    pub holder: String,
    /// 0: the default.
    pub ttl_secs: f64,
    pub wait_secs: f64,
    /// Who asked (a uid), so that only they or an admin may release it.
    pub owner: Option<u32>,
}

type Waiter = oneshot::Sender<Result<Reservation, AdmissionError>>;

/// A caller's place in the queue, to wait on.
pub type Grant = oneshot::Receiver<Result<Reservation, AdmissionError>>;

pub struct Queue {
    state: Mutex<(Admission, HashMap<u64, Waiter>)>,
    /// Who asked for each request or reservation (uid).
    owners: Mutex<HashMap<u64, u32>>,
    /// The engine was last handed a non-empty set of reservations, so an
    /// idle pass must still tell it they are gone.
    engine_told: AtomicBool,
    events: broadcast::Sender<Event>,
    /// Refusals journalled at a bounded rate per user (`throttle`).
    refusals: Mutex<Throttle<Event>>,
    /// Refusals counted into a summary rather than journalled one by one.
    unjournalled: AtomicU64,
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            state: Mutex::new((Admission::new(MAX_QUEUE), HashMap::new())),
            owners: Mutex::default(),
            engine_told: AtomicBool::default(),
            events: broadcast::channel(1024).0,
            refusals: Mutex::new(Throttle::new(60.0)),
            unjournalled: AtomicU64::default(),
        }
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, (Admission, HashMap<u64, Waiter>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn owners(&self) -> MutexGuard<'_, HashMap<u64, u32>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The uid that asked for request or reservation `id`, if known.
    pub fn owner_of(&self, id: u64) -> Option<u32> {
        self.owners().get(&id).copied()
    }

    /// Journals an event (through the engine) and tells watchers; a
    /// refusal of `owner`'s only within its rate, the rest in a summary.
    fn record(
        &self,
        s: &Sentinel,
        action: DecisionAction,
        entry: Entry,
        reason: String,
        owner: Option<u32>,
    ) {
        let event = Event {
            action,
            entry,
            reason,
        };
        let _ = self.events.send(event.clone());
        let refusal = matches!(
            action,
            DecisionAction::Denied | DecisionAction::TimedOut | DecisionAction::Displaced
        );
        let event = if refusal {
            let held = self
                .refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pass(owner, mono_now(), event);
            match held {
                Some(e) => e,
                None => {
                    self.unjournalled.fetch_add(1, Relaxed);
                    return;
                }
            }
        } else {
            event
        };
        Self::journal(s, &event, event.reason.clone());
    }

    fn journal(s: &Sentinel, e: &Event, reason: String) {
        s.engine().record_admission(
            e.action,
            e.entry.pid,
            &e.entry.pool,
            (e.entry.bytes, e.entry.used_bytes),
            reason,
        );
    }

    /// Journals the summaries of refusals held back in windows now ended.
    fn summarise(&self, s: &Sentinel, now: f64) {
        let due = {
            let mut t = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
            if t.is_idle() {
                return;
            }
            t.due(now)
        };
        for summary in due {
            Self::journal(s, &summary.last, summary.reason(&summary.last.reason));
        }
    }

    /// How long a client's window of journalled refusals lasts.
    pub fn set_refusal_window(&self, window: std::time::Duration) {
        *self.refusals.lock().unwrap_or_else(|e| e.into_inner()) =
            Throttle::new(window.as_secs_f64());
    }

    /// Refusals counted into a summary since start, not journalled alone.
    pub fn unjournalled(&self) -> u64 {
        self.unjournalled.load(Relaxed)
    }

    /// Queues `ask`; the grant (or why there is none) arrives on the
    /// returned receiver. Refused at once when no pool fits it at all.
    pub fn enqueue(&self, s: &Sentinel, ask: Ask) -> Result<(u64, Grant), AdmissionError> {
        let (pool, capacity) = {
            let e = s.engine();
            let pool = e
                .pool_of(ask.pid, ask.cgroup)
                .map_err(AdmissionError::NoPool)?;
            let cap = e.pool_capacity(&pool).unwrap_or(0);
            (pool, cap)
        };
        let now = mono_now();
        let req = Request {
            id: 0,
            bytes: ask.bytes,
            pool,
            priority: ask.priority,
            holder: ask.holder,
            pid: ask.pid,
            ttl_secs: if ask.ttl_secs == 0.0 {
                DEFAULT_TTL_SECS
            } else {
                ask.ttl_secs
            },
            queued_at: now,
            deadline: now + ask.wait_secs,
        };
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        if let Some(uid) = ask.owner {
            let owners = self.owners();
            let waiting =
                st.0.requests()
                    .filter(|q| owners.get(&q.id) == Some(&uid))
                    .count();
            if waiting >= MAX_QUEUED_PER_UID {
                drop((owners, st));
                let err = AdmissionError::TooManyWaiting(format!(
                    "uid {uid} has {waiting} requests waiting, the most one user may; wait for one or withdraw it"
                ));
                self.record(
                    s,
                    DecisionAction::Denied,
                    Entry::queued(&req, now),
                    err.to_string(),
                    ask.owner,
                );
                return Err(err);
            }
        }
        match st.0.enqueue(req.clone(), capacity) {
            Ok((id, displaced)) => {
                st.1.insert(id, tx);
                if let Some(uid) = ask.owner {
                    self.owners().insert(id, uid);
                }
                if let Some(Ended::Displaced(q)) = displaced
                    && let Some(w) = st.1.remove(&q.id)
                {
                    let _ = w.send(Err(AdmissionError::Displaced(
                        "a critical request took this one's place in the full queue".into(),
                    )));
                }
                let queued =
                    st.0.requests()
                        .find(|q| q.id == id)
                        .map(|q| Entry::queued(q, now));
                drop(st);
                if let Some(entry) = queued {
                    let _ = self.events.send(Event {
                        action: DecisionAction::Queued,
                        entry,
                        reason: String::new(),
                    });
                }
                Ok((id, rx))
            }
            Err(refusal) => {
                drop(st);
                let err = match refusal {
                    Refusal::TooLarge { bytes, capacity } => AdmissionError::TooLarge(format!(
                        "{} is more than the pool could ever give ({})",
                        size(bytes),
                        size(capacity)
                    )),
                    Refusal::QueueFull {
                        depth,
                        retry_after_secs,
                    } => AdmissionError::QueueFull {
                        why: format!(
                            "the admission queue is full ({depth} waiting); retry after {retry_after_secs:.0} s"
                        ),
                        retry_after_secs,
                    },
                };
                let entry = Entry::queued(&req, now);
                self.record(s, DecisionAction::Denied, entry, err.to_string(), ask.owner);
                Err(err)
            }
        }
    }

    /// Gives up a request that was never granted (its caller stopped
    /// waiting).
    pub fn cancel(&self, id: u64) {
        self.lock().0.cancel(id);
        self.owners().remove(&id);
    }

    /// Releases reservation `id` and grants what now fits.
    pub fn release(&self, s: &Sentinel, id: u64) -> Result<Reservation, AdmissionError> {
        let released = self.lock().0.release(id);
        let owner = self.owners().remove(&id);
        let r = released.ok_or(AdmissionError::NotFound(id))?;
        let reason = format!("{} back to {}", size(r.bytes), pool_name(&r.pool));
        self.record(
            s,
            DecisionAction::Released,
            Entry::granted(&r, mono_now()),
            reason,
            owner,
        );
        self.pass(s);
        Ok(r)
    }

    /// Granted reservations and queued requests.
    pub fn list(&self) -> (Vec<Entry>, Vec<Entry>) {
        let now = mono_now();
        let st = self.lock();
        (
            st.0.reservations()
                .map(|r| Entry::granted(r, now))
                .collect(),
            st.0.requests().map(|q| Entry::queued(q, now)).collect(),
        )
    }

    /// Reservations granted, the bytes they still hold back, and requests
    /// queued at each priority (background first).
    pub fn summary(&self) -> (usize, u64, [usize; 5]) {
        let st = self.lock();
        let held = st.0.reservations().map(Reservation::outstanding).sum();
        (
            st.0.reservations().count(),
            held,
            Priority::ALL.map(|p| st.0.queued_at(p)),
        )
    }

    /// Ends what is due, refreshes what each tree uses, and grants what
    /// fits now. Lock order: the queue, then the engine.
    pub fn pass(&self, s: &Sentinel) {
        let now = mono_now();
        self.summarise(s, now);
        let mut st = self.lock();
        let (model, waiters) = &mut *st;
        // Nothing waiting, nothing held, nothing to take back: the tick
        // need not take the engine's lock.
        if model.queued() == 0
            && model.reservations().next().is_none()
            && !self.engine_told.load(Relaxed)
        {
            return;
        }
        let pass = s.engine().admission_pass(model, now);
        self.engine_told
            .store(model.reservations().next().is_some(), Relaxed);
        for end in pass.ended {
            let (action, entry, why, err) = ended(end, now);
            let owner = self.owners().remove(&entry.id);
            if let (Some(err), Some(w)) = (err, waiters.remove(&entry.id)) {
                let _ = w.send(Err(err));
            }
            self.record(s, action, entry, why, owner);
        }
        for r in pass.granted {
            let reason = format!(
                "{} from {} for {} (pid {}, {})",
                size(r.bytes),
                pool_name(&r.pool),
                r.holder,
                r.pid,
                r.priority.as_str()
            );
            if let Some(w) = waiters.remove(&r.id)
                && w.send(Ok(r.clone())).is_err()
            {
                // The caller left before the grant: give it back.
                model.release(r.id);
                continue;
            }
            let owner = self.owner_of(r.id);
            self.record(
                s,
                DecisionAction::Granted,
                Entry::granted(&r, now),
                reason,
                owner,
            );
        }
    }
}

/// A reservation's size as operators read it ("2.0 GiB"); the exact
/// bytes are in the decision's limit_bytes.
fn size(bytes: u64) -> String {
    human_bytes(bytes as f64)
}

/// How an end is journalled, and what its waiter (if any) is told.
fn ended(end: Ended, now: f64) -> (DecisionAction, Entry, String, Option<AdmissionError>) {
    match end {
        Ended::TimedOut(q) => {
            let why = format!(
                "not granted within its wait ({} in {})",
                size(q.bytes),
                pool_name(&q.pool)
            );
            let err = AdmissionError::TimedOut(why.clone());
            (
                DecisionAction::TimedOut,
                Entry::queued(&q, now),
                why,
                Some(err),
            )
        }
        Ended::Displaced(q) => {
            let why = "a critical request took its place in the full queue".to_string();
            let err = AdmissionError::Displaced(why.clone());
            (
                DecisionAction::Displaced,
                Entry::queued(&q, now),
                why,
                Some(err),
            )
        }
        Ended::Expired(r) => (
            DecisionAction::Expired,
            Entry::granted(&r, now),
            "its time to live lapsed".into(),
            None,
        ),
        Ended::Orphaned(r) => (
            DecisionAction::Orphaned,
            Entry::granted(&r, now),
            format!("pid {} exited without releasing it", r.pid),
            None,
        ),
    }
}
