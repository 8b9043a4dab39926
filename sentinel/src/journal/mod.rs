//! The decision log: every decision gets the next sequence number, is kept
//! (bounded) for queries and resuming watchers, and is broadcast to live
//! watchers. In memory for now; the durable journal replaces the storage
//! behind the same interface.

use std::{collections::VecDeque, sync::Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Sentinel acted (or, in dry-run, would have) on a predicted crossing.
    Preempt,
    /// The kernel OOM killer killed a process: a miss worth seeing.
    KernelOomKill,
    /// A process Sentinel froze was resumed: the pressure cleared.
    Resume,
    /// Memory pressure (PSI) crossed its trigger: an early warning.
    Pressure,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preempt => "preempt",
            Self::KernelOomKill => "kernel_oom_kill",
            Self::Resume => "resume",
            Self::Pressure => "pressure",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub seq: u64,
    pub time_unix_ms: u64,
    pub kind: DecisionKind,
    pub pid: u32,
    pub comm: String,
    pub cgroup: String,
    pub rule: String,
    /// The level of the limit that called for the action: "warn",
    /// "preempt", "kill", or empty when no level applies.
    pub level: String,
    pub action: String,
    pub outcome: String,
    pub reason: String,
    /// anon + file + shmem.
    pub resident_bytes: u64,
    /// anon + shmem + swap: what the limit applies to.
    pub charged_bytes: u64,
    pub slope_bytes_per_sec: f64,
    pub limit_bytes: u64,
    /// Absent when no crossing was predicted (e.g. already crossed).
    pub predicted_seconds_to_limit: Option<f64>,
    /// The same command line was preempted often enough to be a crash loop.
    pub crash_loop: bool,
}

pub struct Journal {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Decision>,
}

struct Inner {
    next_seq: u64,
    kept: VecDeque<Decision>,
    capacity: usize,
}

impl Journal {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            inner: Mutex::new(Inner {
                next_seq: 1,
                kept: VecDeque::new(),
                capacity: capacity.max(1),
            }),
            tx,
        }
    }

    /// Assigns the next sequence number, keeps and broadcasts the decision.
    pub fn append(&self, mut d: Decision) -> Decision {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        d.seq = inner.next_seq;
        inner.next_seq += 1;
        inner.kept.push_back(d.clone());
        while inner.kept.len() > inner.capacity {
            inner.kept.pop_front();
        }
        // Sent under the lock so that broadcast order is sequence order.
        let _ = self.tx.send(d.clone());
        d
    }

    /// Kept decisions with `seq > after`, oldest first, at most `limit`.
    pub fn since(&self, after: u64, limit: usize) -> Vec<Decision> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .kept
            .iter()
            .filter(|d| d.seq > after)
            .take(limit)
            .cloned()
            .collect()
    }

    /// The newest `limit` kept decisions, oldest first.
    pub fn latest(&self, limit: usize) -> Vec<Decision> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let skip = inner.kept.len().saturating_sub(limit);
        inner.kept.iter().skip(skip).cloned().collect()
    }

    pub fn last_seq(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_seq
            - 1
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Decision> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(pid: u32) -> Decision {
        Decision {
            seq: 0,
            time_unix_ms: 0,
            kind: DecisionKind::Preempt,
            pid,
            comm: "x".into(),
            cgroup: "/".into(),
            rule: "r".into(),
            level: "preempt".into(),
            action: "freeze".into(),
            outcome: "done".into(),
            reason: String::new(),
            resident_bytes: 0,
            charged_bytes: 0,
            slope_bytes_per_sec: 0.0,
            limit_bytes: 0,
            predicted_seconds_to_limit: None,
            crash_loop: false,
        }
    }

    #[test]
    fn sequence_numbers_have_no_gaps_and_capacity_is_bounded() {
        let j = Journal::new(3);
        let mut rx = j.subscribe();
        for pid in 1..=5 {
            assert_eq!(j.append(d(pid)).seq, pid as u64);
        }
        let kept: Vec<u64> = j.since(0, 100).iter().map(|d| d.seq).collect();
        assert_eq!(kept, vec![3, 4, 5]);
        assert_eq!(j.since(4, 100).len(), 1);
        assert_eq!(
            j.latest(2).iter().map(|d| d.seq).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(j.last_seq(), 5);
        for want in 1..=5 {
            assert_eq!(rx.try_recv().unwrap().seq, want);
        }
    }
}
