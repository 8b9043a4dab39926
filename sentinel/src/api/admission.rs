//! `sentinel.v1.Admission` over the agent's admission queue: requests are
//! checked and their callers identified here; queueing, granting and
//! journalling are the queue's (`service::admission`).

use std::{pin::Pin, sync::Arc, time::Duration};

use sentinel_api::pb;
use sentinel_core::policy::admission::Priority;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::{
    access::{self, AccessPolicy},
    convert,
};
use crate::service::{
    Sentinel,
    admission::{Ask, Entry},
};

pub struct Service {
    pub sentinel: Arc<Sentinel>,
    pub access: Arc<AccessPolicy>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ReservationEvent, Status>> + Send>>;

/// The fields of a Reserve request as the queue takes them, or the first
/// one that is wrong; the pid (and the holder named after it) are filled
/// in once the caller is known.
///
/// A wait and a lifetime are bounded (a day, a week): beyond, a request
/// would hold its place in the queue, ahead of later ones, for as long as
/// it asked.
pub(super) fn ask(r: &pb::ReserveRequest, owner: Option<u32>) -> Result<Ask, Status> {
    super::bounded_text(&[
        ("scope", &r.scope),
        ("priority", &r.priority),
        ("holder", &r.holder),
    ])?;
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
    for (field, v, most) in [
        ("wait_seconds", r.wait_seconds, MAX_WAIT_SECS),
        ("ttl_seconds", r.ttl_seconds, MAX_TTL_SECS),
    ] {
        if !(v.is_finite() && (0.0..=most).contains(&v)) {
            return Err(Status::invalid_argument(format!(
                "{field} {v}: from 0 to {most} seconds"
            )));
        }
    }
    Ok(Ask {
        pid: r.pid,
        bytes: r.bytes,
        cgroup,
        priority,
        holder: r.holder.clone(),
        ttl_secs: r.ttl_seconds,
        wait_secs: r.wait_seconds,
        owner,
    })
}

/// The longest wait in the queue a request may ask for: a day.
pub const MAX_WAIT_SECS: f64 = 86_400.0;
/// The longest life a reservation may ask for: a week.
pub const MAX_TTL_SECS: f64 = 7.0 * 86_400.0;

/// Withdraws a queued request when its handler ends without an answer:
/// the client went away (its call dropped), and nobody waits for the grant.
struct Withdraw<'a> {
    queue: &'a crate::service::admission::Queue,
    id: Option<u64>,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.queue.cancel(id);
        }
    }
}

#[tonic::async_trait]
impl pb::admission_server::Admission for Service {
    async fn reserve(
        &self,
        req: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let peer = AccessPolicy::peer(&req);
        let caller = peer.as_ref().and_then(|p| p.pid);
        // Anyone who can connect may reserve for their own processes; for
        // another user's, it takes an admin (it would hold their memory
        // back from everyone else's work).
        if req.get_ref().pid != 0 {
            let owner = access::uid_of(req.get_ref().pid).ok_or_else(|| {
                Status::not_found(format!("pid {}: no such process", req.get_ref().pid))
            })?;
            if peer.as_ref().map(|p| p.uid) != Some(owner) {
                self.access
                    .require_admin(&req, "Reserve for another user's process")?;
            }
        }
        let mut ask = ask(req.get_ref(), peer.map(|p| p.uid))?;
        if ask.pid == 0 {
            ask.pid = caller.and_then(|p| u32::try_from(p).ok()).ok_or_else(|| {
                Status::invalid_argument("pid is 0 and the caller's pid is unknown (TCP): give pid")
            })?;
        }
        if ask.holder.is_empty() {
            ask.holder = format!("pid {}", ask.pid);
        }
        let wait_secs = ask.wait_secs;
        let queue = &self.sentinel.admission;
        let (id, grant) = queue
            .enqueue(&self.sentinel, ask)
            .map_err(convert::admission_status)?;
        let mut withdraw = Withdraw {
            queue,
            id: Some(id),
        };
        let s = self.sentinel.clone();
        tokio::task::spawn_blocking(move || s.admission.pass(&s))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        // The pass ends a wait at its deadline; this bound only guards
        // against a tick that never comes.
        let wait = Duration::from_secs_f64(wait_secs + 5.0);
        match tokio::time::timeout(wait, grant).await {
            Ok(Ok(Ok(granted))) => {
                // Granted: the reservation is its process tree's now.
                withdraw.id = None;
                Ok(Response::new(convert::reservation(&Entry::granted(
                    &granted,
                    crate::host::mono_now(),
                ))))
            }
            Ok(Ok(Err(e))) => Err(convert::admission_status(e)),
            _ => Err(Status::deadline_exceeded("not granted in time")),
        }
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let id = req.get_ref().id;
        let owner = self.sentinel.admission.owner_of(id);
        let caller = AccessPolicy::peer(&req).map(|p| p.uid);
        if owner.is_some() && caller != owner {
            self.access
                .require_admin(&req, "Release of another user's reservation")?;
        }
        let s = self.sentinel.clone();
        tokio::task::spawn_blocking(move || s.admission.release(&s, id))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(convert::admission_status)?;
        Ok(Response::new(pb::ReleaseResponse {}))
    }

    async fn list_reservations(
        &self,
        _: Request<pb::ListReservationsRequest>,
    ) -> Result<Response<pb::ListReservationsResponse>, Status> {
        let (granted, queued) = self.sentinel.admission.list();
        Ok(Response::new(pb::ListReservationsResponse {
            granted: granted.iter().map(convert::reservation).collect(),
            queued: queued.iter().map(convert::reservation).collect(),
        }))
    }

    type WatchReservationsStream = EventStream;

    async fn watch_reservations(
        &self,
        _: Request<pb::WatchReservationsRequest>,
    ) -> Result<Response<Self::WatchReservationsStream>, Status> {
        let rx = self.sentinel.admission.subscribe();
        let stream = tokio_stream::wrappers::BroadcastStream::new(rx)
            .filter_map(|e| e.ok().map(|e| Ok(convert::reservation_event(&e))));
        Ok(Response::new(Box::pin(stream)))
    }
}
