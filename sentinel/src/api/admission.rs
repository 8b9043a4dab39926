//! `sentinel.v1.Admission`: the queue of memory reservations (the pure
//! model in policy/admission.rs) served over gRPC. Waiting callers park on
//! a oneshot; the agent's tick (and every new request) runs a grant pass
//! against what each pool can give now.

use std::{collections::HashMap, pin::Pin, sync::Arc, time::Duration};

use tokio::sync::{broadcast, oneshot};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::pb;
use crate::{
    agent::{Shared, mono_now},
    journal::{Decision, DecisionKind, unix_ms},
    policy::admission::{Admission, Ended, Pool, Priority, Refusal, Request as Ask, Reservation},
};

/// Requests waiting at most; past it RESOURCE_EXHAUSTED.
pub const MAX_QUEUE: usize = 1024;
/// A reservation without a time to live lives this long.
const DEFAULT_TTL_SECS: f64 = 86_400.0;

type Waiter = oneshot::Sender<Result<Reservation, Status>>;

pub struct Hub {
    state: std::sync::Mutex<(Admission, HashMap<u64, Waiter>)>,
    /// Who asked for each request or reservation (uid), so that only they
    /// or an admin may release it.
    owners: std::sync::Mutex<HashMap<u64, u32>>,
    /// The engine was last handed a non-empty set of reservations, so an
    /// idle pass must still tell it they are gone.
    engine_told: std::sync::atomic::AtomicBool,
    events: broadcast::Sender<pb::ReservationEvent>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            state: std::sync::Mutex::new((Admission::new(MAX_QUEUE), HashMap::new())),
            owners: Default::default(),
            engine_told: Default::default(),
            events: broadcast::channel(1024).0,
        }
    }
}

fn pool_name(p: &Pool) -> String {
    match p {
        Pool::Host => "host".into(),
        Pool::Cgroup(path) => path.clone(),
    }
}

/// The fields a queued request and a granted reservation share.
fn entry(
    (id, bytes, pool, priority, holder, pid): (u64, u64, &Pool, Priority, &str, u32),
    state: &str,
    used_bytes: u64,
    seconds_left: f64,
) -> pb::Reservation {
    pb::Reservation {
        id,
        bytes,
        pool: pool_name(pool),
        priority: priority.as_str().into(),
        holder: holder.to_string(),
        pid,
        state: state.into(),
        used_bytes,
        seconds_left: seconds_left.max(0.0),
    }
}

fn granted_pb(r: &Reservation, now: f64) -> pb::Reservation {
    let key = (r.id, r.bytes, &r.pool, r.priority, r.holder.as_str(), r.pid);
    entry(key, "granted", r.used, r.expires_at - now)
}

fn queued_pb(r: &Ask, now: f64) -> pb::Reservation {
    let key = (r.id, r.bytes, &r.pool, r.priority, r.holder.as_str(), r.pid);
    entry(key, "queued", 0, r.deadline - now)
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Admission, HashMap<u64, Waiter>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Journals an admission event and tells watchers.
    fn record(&self, shared: &Shared, event: &str, r: pb::Reservation, reason: String) {
        shared.journal.append(Decision {
            time_unix_ms: unix_ms(),
            kind: DecisionKind::Admission,
            pid: r.pid,
            cgroup: if r.pool == "host" {
                String::new()
            } else {
                r.pool.clone()
            },
            rule: "admission".into(),
            action: event.into(),
            outcome: "recorded".into(),
            reason: reason.clone(),
            limit_bytes: r.bytes,
            charged_bytes: r.used_bytes,
            ..Decision::default()
        });
        let _ = self.events.send(pb::ReservationEvent {
            event: event.into(),
            reservation: Some(r),
            reason,
        });
    }

    /// Ends what is due, refreshes what each tree uses, and grants what
    /// fits now. Run by the agent's tick and after every new request.
    pub fn pass(&self, shared: &Shared) {
        let now = mono_now();
        let mut st = self.lock();
        let (model, waiters) = &mut *st;
        use std::sync::atomic::Ordering::Relaxed;
        // Nothing waiting, nothing held, nothing to take back: the tick
        // need not take the engine's lock.
        if model.queued() == 0
            && model.reservations().next().is_none()
            && !self.engine_told.load(Relaxed)
        {
            return;
        }
        let (ended, granted) = {
            let mut e = shared.engine();
            let ended = model.expire(now, |pid| {
                std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
            let usage: Vec<(u64, u64)> = model
                .reservations()
                .map(|r| (r.id, e.tree_usage(r.pid)))
                .collect();
            for (id, used) in usage {
                model.set_used(id, used);
            }
            e.set_reservations(
                model
                    .reservations()
                    .map(|r| (r.pid, (r.bytes, r.used)))
                    .collect(),
            );
            self.engine_told
                .store(model.reservations().next().is_some(), Relaxed);
            let granted = model.grant(|pool| e.pool_free(pool).unwrap_or(0), now);
            let mut ended = ended;
            ended.extend(model.time_out(now));
            (ended, granted)
        };
        for end in ended {
            let (event, r, why, code) = match end {
                Ended::TimedOut(q) => (
                    "timed_out",
                    queued_pb(&q, now),
                    format!(
                        "not granted within its wait ({} B in {})",
                        q.bytes,
                        pool_name(&q.pool)
                    ),
                    Some(tonic::Code::DeadlineExceeded),
                ),
                Ended::Displaced(q) => (
                    "displaced",
                    queued_pb(&q, now),
                    "a critical request took its place in the full queue".into(),
                    Some(tonic::Code::ResourceExhausted),
                ),
                Ended::Expired(r) => (
                    "expired",
                    granted_pb(&r, now),
                    "its time to live lapsed".into(),
                    None,
                ),
                Ended::Orphaned(r) => (
                    "orphaned",
                    granted_pb(&r, now),
                    format!("pid {} exited without releasing it", r.pid),
                    None,
                ),
            };
            self.owners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&r.id);
            if let (Some(code), Some(w)) = (code, waiters.remove(&r.id)) {
                let _ = w.send(Err(Status::new(code, why.clone())));
            }
            self.record(shared, event, r, why);
        }
        for r in granted {
            let reason = format!(
                "{} B from {} for {} (pid {}, {})",
                r.bytes,
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
            self.record(shared, "granted", granted_pb(&r, now), reason);
        }
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
}

pub struct Service {
    pub shared: Arc<Shared>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ReservationEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::admission_server::Admission for Service {
    async fn reserve(
        &self,
        req: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let peer = super::access::AccessPolicy::peer(&req);
        let caller = peer.as_ref().and_then(|p| p.pid);
        // Anyone who can connect may reserve for their own processes; for
        // another user's, it takes an admin (it would hold their memory
        // back from everyone else's work).
        if req.get_ref().pid != 0 {
            let owner = super::access::uid_of(req.get_ref().pid).ok_or_else(|| {
                Status::not_found(format!("pid {}: no such process", req.get_ref().pid))
            })?;
            if peer.as_ref().map(|p| p.uid) != Some(owner) {
                self.shared
                    .access
                    .require_admin(&req, "Reserve for another user's process")?;
            }
        }
        let r = req.into_inner();
        if r.bytes == 0 {
            return Err(Status::invalid_argument("bytes must be above 0"));
        }
        let priority: Priority = if r.priority.is_empty() {
            Priority::Normal
        } else {
            r.priority
                .parse()
                .map_err(|e: String| Status::invalid_argument(format!("priority: {e}")))?
        };
        let cgroup = match r.scope.as_str() {
            "" | "host" => false,
            "cgroup" => true,
            other => {
                return Err(Status::invalid_argument(format!(
                    "scope `{other}`: host or cgroup"
                )));
            }
        };
        let seconds = |v: f64| v.is_finite() && v >= 0.0;
        if !seconds(r.wait_seconds) || !seconds(r.ttl_seconds) {
            return Err(Status::invalid_argument(
                "wait_seconds and ttl_seconds must be finite and not negative",
            ));
        }
        let pid = match r.pid {
            0 => caller.and_then(|p| u32::try_from(p).ok()).ok_or_else(|| {
                Status::invalid_argument("pid is 0 and the caller's pid is unknown (TCP): give pid")
            })?,
            p => p,
        };
        let hub = &self.shared.admission;
        let (pool, capacity) = {
            let e = self.shared.engine();
            let pool = e
                .pool_of(pid, cgroup)
                .map_err(Status::failed_precondition)?;
            let cap = e.pool_capacity(&pool).unwrap_or(0);
            (pool, cap)
        };
        let now = mono_now();
        let ask = Ask {
            id: 0,
            bytes: r.bytes,
            pool,
            priority,
            holder: if r.holder.is_empty() {
                format!("pid {pid}")
            } else {
                r.holder
            },
            pid,
            ttl_secs: if r.ttl_seconds == 0.0 {
                DEFAULT_TTL_SECS
            } else {
                r.ttl_seconds
            },
            queued_at: now,
            deadline: now + r.wait_seconds,
        };
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = hub.lock();
            match st.0.enqueue(ask.clone(), capacity) {
                Ok((id, displaced)) => {
                    st.1.insert(id, tx);
                    if let Some(p) = &peer {
                        self.shared
                            .admission
                            .owners
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(id, p.uid);
                    }
                    if let Some(Ended::Displaced(q)) = displaced
                        && let Some(w) = st.1.remove(&q.id)
                    {
                        let _ = w.send(Err(Status::resource_exhausted(
                            "a critical request took this one's place in the full queue",
                        )));
                    }
                    id
                }
                Err(Refusal::TooLarge { bytes, capacity }) => {
                    drop(st);
                    let why =
                        format!("{bytes} B is more than the pool could ever give ({capacity} B)");
                    hub.record(&self.shared, "denied", queued_pb(&ask, now), why.clone());
                    return Err(Status::failed_precondition(why));
                }
                Err(Refusal::QueueFull {
                    depth,
                    retry_after_secs,
                }) => {
                    drop(st);
                    let why = format!(
                        "the admission queue is full ({depth} waiting); retry after {retry_after_secs:.0} s"
                    );
                    hub.record(&self.shared, "denied", queued_pb(&ask, now), why.clone());
                    let mut s = Status::resource_exhausted(why);
                    if let Ok(v) = format!("{}", retry_after_secs.ceil() as u64).parse() {
                        s.metadata_mut().insert("retry-after", v);
                    }
                    return Err(s);
                }
            }
        };
        let queued = hub
            .lock()
            .0
            .requests()
            .find(|q| q.id == id)
            .map(|q| queued_pb(q, now));
        if let Some(q) = queued {
            let _ = hub.events.send(pb::ReservationEvent {
                event: "queued".into(),
                reservation: Some(q),
                reason: String::new(),
            });
        }
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.admission.pass(&shared))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        // The pass ends a wait at its deadline; this bound only guards
        // against a tick that never comes.
        let wait = Duration::from_secs_f64(r.wait_seconds + 5.0);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Ok(granted))) => Ok(Response::new(granted_pb(&granted, mono_now()))),
            Ok(Ok(Err(status))) => Err(status),
            _ => {
                hub.lock().0.cancel(id);
                Err(Status::deadline_exceeded("not granted in time"))
            }
        }
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let id = req.get_ref().id;
        let hub = &self.shared.admission;
        let owner = hub
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied();
        let caller = super::access::AccessPolicy::peer(&req).map(|p| p.uid);
        if owner.is_some() && caller != owner {
            self.shared
                .access
                .require_admin(&req, "Release of another user's reservation")?;
        }
        let released = hub.lock().0.release(id);
        hub.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let Some(r) = released else {
            return Err(Status::not_found(format!("no reservation {id}")));
        };
        hub.record(
            &self.shared,
            "released",
            granted_pb(&r, mono_now()),
            format!("{} B back to {}", r.bytes, pool_name(&r.pool)),
        );
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.admission.pass(&shared)).await;
        Ok(Response::new(pb::ReleaseResponse {}))
    }

    async fn list_reservations(
        &self,
        _: Request<pb::ListReservationsRequest>,
    ) -> Result<Response<pb::ListReservationsResponse>, Status> {
        let now = mono_now();
        let st = self.shared.admission.lock();
        Ok(Response::new(pb::ListReservationsResponse {
            granted: st.0.reservations().map(|r| granted_pb(r, now)).collect(),
            queued: st.0.requests().map(|q| queued_pb(q, now)).collect(),
        }))
    }

    type WatchReservationsStream = EventStream;

    async fn watch_reservations(
        &self,
        _: Request<pb::WatchReservationsRequest>,
    ) -> Result<Response<Self::WatchReservationsStream>, Status> {
        let rx = self.shared.admission.events.subscribe();
        let stream =
            tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(|e| e.ok().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }
}
