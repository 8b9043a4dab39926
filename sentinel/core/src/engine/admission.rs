//! What admission control asks of the engine: how much a pool could give
//! now, what a reservation's process tree uses, a grant pass over the
//! queue, and the journal entries of its events.

use std::collections::HashMap;

use super::{Engine, Host, table::Proc};
use crate::{
    decision::{Decision, DecisionAction, DecisionKind, Outcome, ScopeKind},
    policy::admission::{Admission, Ended, Pool, Reservation},
};

/// What one grant pass did.
#[derive(Debug, Default)]
pub struct AdmissionPass {
    /// Requests and reservations that ended: timed out, displaced,
    /// expired, or orphaned by their tree's exit.
    pub ended: Vec<Ended>,
    /// Requests granted now, in service order.
    pub granted: Vec<Reservation>,
}

/// A pool as decisions and the API name it.
pub fn pool_name(p: &Pool) -> String {
    match p {
        Pool::Host => "host".into(),
        Pool::Cgroup(path) => path.clone(),
    }
}

impl<H: Host> Engine<H> {
    /// The reservations in force, by the root of the tree that holds each:
    /// (bytes reserved, bytes its tree uses).
    pub fn set_reservations(&mut self, held: HashMap<u32, (u64, u64)>) {
        self.reserved = held;
    }

    /// Whether `p` grows inside a reservation its tree holds: expected
    /// growth, so never a runaway to stop at a shared limit.
    pub(super) fn within_reservation(&self, p: &Proc<H::Pidfd>) -> bool {
        if self.reserved.is_empty() {
            return false;
        }
        std::iter::once(&p.pid).chain(p.ancestors.iter()).any(|a| {
            self.reserved
                .get(a)
                .is_some_and(|&(bytes, used)| used <= bytes)
        })
    }

    /// Ends what is due in `queue`, refreshes what each reservation's tree
    /// uses (and tells the shared limits), and grants what fits now.
    pub fn admission_pass(&mut self, queue: &mut Admission, now: f64) -> AdmissionPass {
        let mut ended = queue.expire(now, |pid| self.host.stat(pid).is_some());
        let usage: Vec<(u64, u64)> = queue
            .reservations()
            .map(|r| (r.id, self.tree_usage(r.pid)))
            .collect();
        for (id, used) in usage {
            queue.set_used(id, used);
        }
        let granted = queue.grant(|pool| self.pool_free(pool).unwrap_or(0), now);
        ended.extend(queue.time_out(now));
        // Told with the grants of this pass: the work a grant lets start is
        // expected growth from its first page, not only from the next pass.
        self.set_reservations(
            queue
                .reservations()
                .map(|r| (r.pid, (r.bytes, r.used)))
                .collect(),
        );
        AdmissionPass { ended, granted }
    }

    /// Journals an admission event about `pid`'s reservation (or request)
    /// of `bytes` from `pool`.
    pub fn record_admission(
        &mut self,
        action: DecisionAction,
        pid: u32,
        pool: &Pool,
        (bytes, used): (u64, u64),
        reason: String,
    ) -> Decision {
        self.record(Decision {
            time_unix_ms: self.host.wall_ms(),
            kind: DecisionKind::Admission,
            pid,
            cgroup: match pool {
                Pool::Host => String::new(),
                Pool::Cgroup(path) => path.clone(),
            },
            rule: "admission".into(),
            scope: Some(ScopeKind::Admission),
            action,
            outcome: Outcome::Recorded,
            reason,
            limit_bytes: bytes,
            charged_bytes: used,
            ..Decision::default()
        })
    }

    /// A pool's available memory less its floor: the host's headroom to
    /// its 100% line, or a cgroup's limit less what the kernel charges it.
    /// None for a cgroup without a limit.
    pub fn pool_free(&self, pool: &Pool) -> Option<u64> {
        match pool {
            Pool::Host => {
                let h = self.host_view();
                Some(h.limit.saturating_sub(h.used))
            }
            Pool::Cgroup(path) => {
                let limit = self.host.cgroup_limit(path)?;
                Some(limit.saturating_sub(self.host.cgroup_usage(path).unwrap_or(0)))
            }
        }
    }

    /// All a pool could ever give: the host's 100% line, a cgroup's limit.
    pub fn pool_capacity(&self, pool: &Pool) -> Option<u64> {
        match pool {
            Pool::Host => Some(self.host_view().limit),
            Pool::Cgroup(path) => self.host.cgroup_limit(path),
        }
    }

    /// The pool `pid` would reserve from: the host, or the nearest limited
    /// memory cgroup at or above its own.
    pub fn pool_of(&self, pid: u32, cgroup: bool) -> Result<Pool, String> {
        if !cgroup {
            return Ok(Pool::Host);
        }
        let path = self
            .host
            .cgroup(pid)
            .ok_or_else(|| format!("pid {pid}: its cgroup cannot be read (no such process?)"))?;
        self.effective_limit(&path)
            .map(|(p, _)| Pool::Cgroup(p))
            .ok_or_else(|| format!("pid {pid}'s cgroup {path} has no memory limit to reserve from"))
    }

    /// Charged memory of `root` and every tracked descendant.
    pub fn tree_usage(&self, root: u32) -> u64 {
        self.procs
            .values()
            .filter(|p| p.pid == root || p.ancestors.contains(&root))
            .map(|p| p.mem.charged())
            .fold(0, u64::saturating_add)
    }
}
