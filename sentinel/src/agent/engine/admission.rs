//! What admission control asks of the engine: how much a pool could give
//! now, and what a reservation's process tree uses.

use std::collections::HashMap;

use super::Engine;
use crate::{collector::procfs, policy::admission::Pool};

impl Engine {
    /// The reservations in force, by the root of the tree that holds each:
    /// (bytes reserved, bytes its tree uses). Set by admission control on
    /// each pass, so the engine never waits on its lock.
    pub fn set_reservations(&mut self, held: HashMap<u32, (u64, u64)>) {
        self.reserved = held;
    }

    /// Whether `p` grows inside a reservation its tree holds: expected
    /// growth, so never a runaway to stop at a shared limit.
    pub(super) fn within_reservation(&self, p: &super::Proc) -> bool {
        if self.reserved.is_empty() {
            return false;
        }
        std::iter::once(&p.pid).chain(p.ancestors.iter()).any(|a| {
            self.reserved
                .get(a)
                .is_some_and(|&(bytes, used)| used <= bytes)
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
                let limit = self.cgfs.own_limit(path)?;
                Some(limit.saturating_sub(self.cgfs.usage(path).unwrap_or(0)))
            }
        }
    }

    /// All a pool could ever give: the host's 100% line, a cgroup's limit.
    pub fn pool_capacity(&self, pool: &Pool) -> Option<u64> {
        match pool {
            Pool::Host => Some(self.host_view().limit),
            Pool::Cgroup(path) => self.cgfs.own_limit(path),
        }
    }

    /// The pool `pid` would reserve from: the host, or the nearest limited
    /// memory cgroup at or above its own.
    pub fn pool_of(&self, pid: u32, cgroup: bool) -> Result<Pool, String> {
        if !cgroup {
            return Ok(Pool::Host);
        }
        let path = procfs::read_cgroup(pid).map_err(|e| format!("pid {pid}: {e}"))?;
        self.cgfs
            .effective_limit(&path)
            .map(|(p, _)| Pool::Cgroup(p))
            .ok_or_else(|| format!("pid {pid}'s cgroup {path} has no memory limit to reserve from"))
    }

    /// Charged memory of `root` and every tracked descendant.
    pub fn tree_usage(&self, root: u32) -> u64 {
        self.procs
            .values()
            .filter(|p| p.pid == root || p.ancestors.contains(&root))
            .map(|p| p.mem.charged())
            .sum()
    }
}
