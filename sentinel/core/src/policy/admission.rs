//! Admission control: work asks for memory before it starts. Pure: the
//! queue of requests, the reservations granted, and the budget they draw
//! on; the agent supplies available memory and the time.
//!
//! A scope's budget is its available memory less its floor less what
//! reservations still hold back. A reservation holds back only what its
//! process tree has not yet used of it: as the tree's real usage grows
//! into it (and so lowers available memory), the reservation shrinks by as
//! much, so nothing is counted twice.
//!
//! Requests wait in five priority levels, first in first out within one.
//! Within a scope nothing overtakes a request that does not fit yet, so a
//! critical request is granted before earlier low ones, and a large one is
//! not starved by a stream of small ones.

use std::collections::{BTreeMap, VecDeque};

/// Five levels; higher is served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Background = 0,
    Low = 1,
    Normal = 2,
    High = 3,
    Critical = 4,
}

impl Priority {
    pub const ALL: [Priority; 5] = [
        Priority::Background,
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Background => "background",
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("`{s}` is not a priority (background, low, normal, high, critical)")
            })
    }
}

/// Where the memory is reserved: the host, or a memory cgroup (its path).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pool {
    Host,
    Cgroup(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: u64,
    pub bytes: u64,
    pub pool: Pool,
    pub priority: Priority,
    /// Who asked, for operators (a command line, a job name).
    pub holder: String,
    /// The process whose tree will use the memory.
    pub pid: u32,
    /// How long the reservation may live once granted.
    pub ttl_secs: f64,
    pub queued_at: f64,
    /// Given up when not granted by then.
    pub deadline: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub id: u64,
    pub bytes: u64,
    pub pool: Pool,
    pub priority: Priority,
    pub holder: String,
    pub pid: u32,
    pub granted_at: f64,
    pub expires_at: f64,
    /// What its process tree uses now (reported by the agent).
    pub used: u64,
}

impl Reservation {
    /// What it still holds back from the budget.
    pub fn outstanding(&self) -> u64 {
        self.bytes.saturating_sub(self.used)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// More than the pool could ever give.
    TooLarge { bytes: u64, capacity: u64 },
    /// The queue is full; try again after about this long.
    QueueFull { depth: usize, retry_after_secs: f64 },
}

/// Why a request or reservation ended without a release.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Waited past its deadline.
    TimedOut(Request),
    /// A critical request took its place in a full queue.
    Displaced(Request),
    /// Its time to live lapsed.
    Expired(Reservation),
    /// Its process tree exited without releasing it.
    Orphaned(Reservation),
}

#[derive(Debug, Default)]
pub struct Admission {
    max_depth: usize,
    next_id: u64,
    queues: [VecDeque<Request>; 5],
    granted: BTreeMap<u64, Reservation>,
}

impl Admission {
    pub fn new(max_depth: usize) -> Self {
        Self {
            max_depth: max_depth.max(1),
            ..Self::default()
        }
    }

    pub fn queued(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    pub fn queued_at(&self, p: Priority) -> usize {
        self.queues[p as usize].len()
    }

    pub fn requests(&self) -> impl Iterator<Item = &Request> {
        self.queues.iter().rev().flatten()
    }

    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.granted.values()
    }

    /// What reservations in `pool` still hold back.
    pub fn outstanding(&self, pool: &Pool) -> u64 {
        self.granted
            .values()
            .filter(|r| &r.pool == pool)
            .map(Reservation::outstanding)
            .sum()
    }

    /// Queues a request (its id is assigned here). `capacity` is all the
    /// pool could ever give (its limit less its floor). A critical request
    /// finding the queue full takes the place of the newest request of the
    /// lowest priority queued, which ends `Displaced`.
    pub fn enqueue(
        &mut self,
        mut req: Request,
        capacity: u64,
    ) -> Result<(u64, Option<Ended>), Refusal> {
        if req.bytes > capacity {
            return Err(Refusal::TooLarge {
                bytes: req.bytes,
                capacity,
            });
        }
        let mut displaced = None;
        if self.queued() >= self.max_depth {
            let lowest = Priority::ALL
                .into_iter()
                .find(|p| !self.queues[*p as usize].is_empty())
                .expect("a full queue has a request");
            if req.priority == Priority::Critical && lowest < Priority::Critical {
                displaced = self.queues[lowest as usize]
                    .pop_back()
                    .map(Ended::Displaced);
            } else {
                // The oldest wait ends at its deadline at the latest.
                let retry_after_secs = self
                    .requests()
                    .map(|r| r.deadline - req.queued_at)
                    .fold(f64::INFINITY, f64::min)
                    .max(1.0);
                return Err(Refusal::QueueFull {
                    depth: self.queued(),
                    retry_after_secs,
                });
            }
        }
        self.next_id += 1;
        req.id = self.next_id;
        let id = req.id;
        self.queues[req.priority as usize].push_back(req);
        Ok((id, displaced))
    }

    /// Grants what fits: `free(pool)` is the pool's available memory less
    /// its floor; reservations already granted are taken off it here.
    /// Highest priority first, first come first served within a level, and
    /// within a pool nothing passes a request that does not fit.
    pub fn grant(&mut self, free: impl Fn(&Pool) -> u64, now: f64) -> Vec<Reservation> {
        let mut budgets: BTreeMap<Pool, u64> = BTreeMap::new();
        let mut blocked: Vec<Pool> = Vec::new();
        let mut out = Vec::new();
        for p in Priority::ALL.into_iter().rev() {
            let queue = std::mem::take(&mut self.queues[p as usize]);
            let mut kept = VecDeque::new();
            for req in queue {
                if blocked.contains(&req.pool) {
                    kept.push_back(req);
                    continue;
                }
                let budget = *budgets
                    .entry(req.pool.clone())
                    .or_insert_with(|| free(&req.pool).saturating_sub(self.outstanding(&req.pool)));
                if req.bytes > budget {
                    blocked.push(req.pool.clone());
                    kept.push_back(req);
                    continue;
                }
                budgets.insert(req.pool.clone(), budget - req.bytes);
                let r = Reservation {
                    id: req.id,
                    bytes: req.bytes,
                    pool: req.pool,
                    priority: req.priority,
                    holder: req.holder,
                    pid: req.pid,
                    granted_at: now,
                    expires_at: now + req.ttl_secs,
                    used: 0,
                };
                self.granted.insert(r.id, r.clone());
                out.push(r);
            }
            self.queues[p as usize] = kept;
        }
        out
    }

    /// Ends a request still waiting (the client gave up).
    pub fn cancel(&mut self, id: u64) -> Option<Request> {
        for q in &mut self.queues {
            if let Some(i) = q.iter().position(|r| r.id == id) {
                return q.remove(i);
            }
        }
        None
    }

    pub fn release(&mut self, id: u64) -> Option<Reservation> {
        self.granted.remove(&id)
    }

    /// Records what a reservation's process tree uses now.
    pub fn set_used(&mut self, id: u64, bytes: u64) {
        if let Some(r) = self.granted.get_mut(&id) {
            r.used = bytes;
        }
    }

    /// Requests past their deadline. Run after a grant pass, so that a
    /// request that may not wait at all is still granted when it fits.
    pub fn time_out(&mut self, now: f64) -> Vec<Ended> {
        let mut out = Vec::new();
        for q in &mut self.queues {
            let (late, kept): (VecDeque<Request>, VecDeque<Request>) = std::mem::take(q)
                .into_iter()
                .partition(|r| now >= r.deadline);
            *q = kept;
            out.extend(late.into_iter().map(Ended::TimedOut));
        }
        out
    }

    /// Reservations past their time to live, and those whose process tree
    /// is gone (`alive`). Run before a grant pass, so what they held is
    /// free for it.
    pub fn expire(&mut self, now: f64, alive: impl Fn(u32) -> bool) -> Vec<Ended> {
        let mut out = Vec::new();
        let ended: Vec<u64> = self
            .granted
            .values()
            .filter(|r| now >= r.expires_at || !alive(r.pid))
            .map(|r| r.id)
            .collect();
        for id in ended {
            let r = self.granted.remove(&id).expect("listed just above");
            out.push(if alive(r.pid) {
                Ended::Expired(r)
            } else {
                Ended::Orphaned(r)
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 30;

    fn req(bytes: u64, p: Priority, pid: u32, at: f64) -> Request {
        Request {
            id: 0,
            bytes,
            pool: Pool::Cgroup("/jobs".into()),
            priority: p,
            holder: format!("worker {pid}"),
            pid,
            ttl_secs: 3600.0,
            queued_at: at,
            deadline: at + 60.0,
        }
    }

    #[test]
    fn a_stampede_runs_three_at_a_time_in_six_gib() {
        // Eight workers reserving 1600M (MiB, as systemd writes it) in a
        // 6 GiB pool: a fourth would need 6.25 GiB.
        let mut a = Admission::new(100);
        for pid in 1..=8 {
            a.enqueue(req(1600 << 20, Priority::Normal, pid, 0.0), 6 * GIB)
                .unwrap();
        }
        let free = 6 * GIB;
        let first = a.grant(|_| free, 0.0);
        assert_eq!(
            first.iter().map(|r| r.pid).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // They grow into their reservations: available falls, outstanding
        // falls by as much, and nobody else fits.
        for r in &first {
            a.set_used(r.id, 1_500_000_000);
        }
        let free_now = free - 3 * 1_500_000_000;
        assert!(a.grant(|_| free_now, 1.0).is_empty());
        // One finishes: its memory and its reservation come back.
        a.release(first[0].id);
        let next = a.grant(|_| free_now + 1_500_000_000, 2.0);
        assert_eq!(next.iter().map(|r| r.pid).collect::<Vec<_>>(), vec![4]);
        assert_eq!(a.queued(), 4);
    }

    #[test]
    fn critical_goes_first_and_nothing_passes_a_request_that_does_not_fit() {
        let mut a = Admission::new(100);
        a.enqueue(req(2 * GIB, Priority::Low, 1, 0.0), 8 * GIB)
            .unwrap();
        a.enqueue(req(2 * GIB, Priority::Low, 2, 1.0), 8 * GIB)
            .unwrap();
        a.enqueue(req(3 * GIB, Priority::Critical, 3, 2.0), 8 * GIB)
            .unwrap();
        // 4 GiB free: the critical one (3) first; then the first low one
        // does not fit in the 1 GiB left, and the second may not pass it.
        let g = a.grant(|_| 4 * GIB, 3.0);
        assert_eq!(g.iter().map(|r| r.pid).collect::<Vec<_>>(), vec![3]);
        // A small request in another pool is not held up.
        let mut other = req(GIB, Priority::Background, 9, 3.0);
        other.pool = Pool::Host;
        a.enqueue(other, 8 * GIB).unwrap();
        let g = a.grant(|p| if *p == Pool::Host { 2 * GIB } else { 4 * GIB }, 4.0);
        assert_eq!(g.iter().map(|r| r.pid).collect::<Vec<_>>(), vec![9]);
    }

    #[test]
    fn a_full_queue_refuses_with_a_hint_but_critical_displaces_the_lowest() {
        let mut a = Admission::new(2);
        a.enqueue(req(GIB, Priority::Low, 1, 0.0), 8 * GIB).unwrap();
        a.enqueue(req(GIB, Priority::Background, 2, 0.0), 8 * GIB)
            .unwrap();
        match a.enqueue(req(GIB, Priority::High, 3, 10.0), 8 * GIB) {
            Err(Refusal::QueueFull {
                depth,
                retry_after_secs,
            }) => {
                assert_eq!(depth, 2);
                assert_eq!(retry_after_secs, 50.0, "the first deadline, 60 s after 0");
            }
            other => panic!("{other:?}"),
        }
        let (_, displaced) = a
            .enqueue(req(GIB, Priority::Critical, 4, 10.0), 8 * GIB)
            .unwrap();
        match displaced {
            Some(Ended::Displaced(r)) => assert_eq!(r.pid, 2, "the background one"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            a.enqueue(req(9 * GIB, Priority::Critical, 5, 10.0), 8 * GIB),
            Err(Refusal::TooLarge { .. })
        ));
    }

    #[test]
    fn waits_time_out_and_reservations_end_with_their_ttl_or_their_tree() {
        let mut a = Admission::new(10);
        let mut short = req(GIB, Priority::Normal, 1, 0.0);
        short.ttl_secs = 5.0;
        a.enqueue(short, 8 * GIB).unwrap();
        a.enqueue(req(GIB, Priority::Normal, 2, 0.0), 8 * GIB)
            .unwrap();
        a.enqueue(req(100 * GIB / 10, Priority::Normal, 3, 0.0), 100 * GIB)
            .unwrap();
        a.grant(|_| 2 * GIB, 0.0);
        assert_eq!(a.reservations().count(), 2);
        let ended = a.expire(6.0, |pid| pid != 2);
        assert!(
            ended
                .iter()
                .any(|e| matches!(e, Ended::Expired(r) if r.pid == 1))
        );
        assert!(
            ended
                .iter()
                .any(|e| matches!(e, Ended::Orphaned(r) if r.pid == 2))
        );
        assert_eq!(a.reservations().count(), 0);
        assert!(a.expire(61.0, |_| true).is_empty());
        let ended = a.time_out(61.0);
        assert!(matches!(&ended[..], [Ended::TimedOut(r)] if r.pid == 3));
    }

    proptest! {
        /// Whatever arrives, grants never exceed what was free, and within
        /// a level they keep arrival order.
        #[test]
        fn grants_fit_the_budget_and_keep_order(
            sizes in proptest::collection::vec((1u64..4, 0usize..5), 1..30),
            free_gib in 1u64..16,
        ) {
            let mut a = Admission::new(1000);
            for (i, (gib, p)) in sizes.iter().enumerate() {
                a.enqueue(req(gib * GIB, Priority::ALL[*p], i as u32 + 1, i as f64), 64 * GIB).unwrap();
            }
            let g = a.grant(|_| free_gib * GIB, 100.0);
            let total: u64 = g.iter().map(|r| r.bytes).sum();
            prop_assert!(total <= free_gib * GIB);
            for w in g.windows(2) {
                prop_assert!(w[0].priority >= w[1].priority);
                if w[0].priority == w[1].priority {
                    prop_assert!(w[0].pid < w[1].pid);
                }
            }
            // One pool: grants are a prefix of the service order (priority,
            // then arrival), and the first request left did not fit.
            let order = |pr: Priority, pid: u32| (std::cmp::Reverse(pr), pid);
            for r in a.requests() {
                for x in &g {
                    prop_assert!(order(x.priority, x.pid) < order(r.priority, r.pid));
                }
            }
            let left = free_gib * GIB - total;
            if let Some(first) = a.requests().min_by_key(|r| order(r.priority, r.pid)) {
                prop_assert!(first.bytes > left);
            }
        }
    }
}
