//! The decision log: every decision gets the next sequence number, is
//! written durably to the journal file, then kept (bounded) in memory for
//! queries and broadcast to live watchers. A watcher therefore never sees a
//! decision that a crash could lose, and one that resumes from a sequence
//! number reads the gap back from the file.

mod store;

use std::{
    collections::{BTreeMap, VecDeque},
    path::Path,
    sync::Mutex,
};

use sentinel_core::{
    decision::{DecisionAction, ScopeKind},
    engine::{Held, held_by_journal},
};
use tokio::sync::broadcast;

pub use sentinel_core::decision::{Decision, DecisionKind};
pub use store::{OpenReport, Retention, StoreError};

/// A journal started afresh where one was: where the damaged one went, why,
/// and the number the new one counts on from.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub moved_to: Option<std::path::PathBuf>,
    pub why: String,
    pub floor: u64,
}

/// Opens the store, turning a panic inside the database (a damaged file)
/// into an error.
fn open_store(
    path: &Path,
    retention: Retention,
    capacity: usize,
) -> Result<(store::Store, Vec<Decision>, OpenReport), StoreError> {
    let open = || store::Store::open(path, retention, capacity.max(1));
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(StoreError::Db {
            path: path.display().to_string(),
            message: format!("the database failed reading it ({what}): the file is damaged"),
        })
    })
}

/// A sequence number no earlier journal on this host can have reached:
/// microseconds since the Unix epoch. It holds as long as the agent has
/// made fewer than a million decisions a second on average, while every
/// one is written to disk and synced (a few thousand a second at most).
fn seq_floor() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch: a decision's wall-clock time.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What decisions are counted by.
/// Kind, action, scope and outcome class (`Outcome::class`).
pub type CountKey = (
    DecisionKind,
    DecisionAction,
    Option<ScopeKind>,
    &'static str,
);

pub struct Journal {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Decision>,
}

struct Inner {
    next_seq: u64,
    kept: VecDeque<Decision>,
    capacity: usize,
    store: Option<store::Store>,
    write_failures: u64,
    last_error: Option<String>,
    /// Decisions appended since start, by kind, action and scope, for
    /// metrics.
    counts: BTreeMap<CountKey, u64>,
}

/// What status shows of the journal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalHealth {
    /// Empty when decisions are kept in memory only.
    pub path: String,
    pub write_failures: u64,
    pub last_error: Option<String>,
}

impl Journal {
    /// A journal in memory only (replay, tests, or no usable file).
    pub fn new(capacity: usize) -> Self {
        Self::with_store(capacity, None, Vec::new(), 0)
    }

    /// Opens the journal file at `path`, resuming its sequence numbers and
    /// loading its most recent `capacity` decisions.
    pub fn open(
        path: &Path,
        capacity: usize,
        retention: Retention,
    ) -> Result<(Self, OpenReport), StoreError> {
        let (st, recent, report) = open_store(path, retention, capacity)?;
        let last = report.last_seq;
        Ok((Self::with_store(capacity, Some(st), recent, last), report))
    }

    /// `open`, for the agent: a journal that cannot be opened or read (a
    /// damaged file; its database may even panic) is moved aside and a new
    /// one started, so the agent keeps protecting the host with a journal.
    /// Sequence numbers never go back: a journal started afresh where one
    /// was (damaged, truncated to nothing) numbers from a floor above any
    /// the old one reached.
    pub fn open_or_recover(
        path: &Path,
        capacity: usize,
        retention: Retention,
    ) -> Result<(Self, OpenReport, Option<Recovered>), StoreError> {
        let existed = path.exists();
        let (st, recent, report, recovered) = match open_store(path, retention, capacity) {
            Ok((st, recent, report)) => {
                // An existing file that holds nothing was emptied (or
                // truncated): its old numbers are unknown.
                let emptied = existed && report.last_seq == 0;
                let recovered = emptied.then(|| Recovered {
                    moved_to: None,
                    why: "the journal file held no decisions".into(),
                    floor: seq_floor(),
                });
                (st, recent, report, recovered)
            }
            Err(e) => {
                let moved_to = path.with_extension(format!("redb.damaged-{}", unix_ms()));
                std::fs::rename(path, &moved_to).map_err(|io| StoreError::Db {
                    path: path.display().to_string(),
                    message: format!("{e}; moving it aside to {}: {io}", moved_to.display()),
                })?;
                let (st, recent, report) = open_store(path, retention, capacity)?;
                let recovered = Recovered {
                    moved_to: Some(moved_to),
                    why: e.to_string(),
                    floor: seq_floor(),
                };
                (st, recent, report, Some(recovered))
            }
        };
        let last = report
            .last_seq
            .max(recovered.as_ref().map_or(0, |r| r.floor));
        let journal = Self::with_store(capacity, Some(st), recent, last);
        Ok((journal, report, recovered))
    }

    fn with_store(
        capacity: usize,
        store: Option<store::Store>,
        recent: Vec<Decision>,
        last_seq: u64,
    ) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            inner: Mutex::new(Inner {
                next_seq: last_seq + 1,
                kept: recent.into(),
                capacity: capacity.max(1),
                store,
                write_failures: 0,
                last_error: None,
                counts: BTreeMap::new(),
            }),
            tx,
        }
    }

    pub fn health(&self) -> JournalHealth {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        JournalHealth {
            path: inner
                .store
                .as_ref()
                .map(|s| s.path().display().to_string())
                .unwrap_or_default(),
            write_failures: inner.write_failures,
            last_error: inner.last_error.clone(),
        }
    }

    /// Assigns the next sequence number, writes the decision durably, then
    /// keeps and broadcasts it. A decision that cannot be written is still
    /// kept and broadcast (what was done to a process must be seen), and the
    /// failure is counted and reported in status.
    pub fn append(&self, mut d: Decision) -> Decision {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        d.seq = inner.next_seq;
        inner.next_seq += 1;
        if let Some(st) = inner.store.as_mut()
            && let Err(e) = st.append(&d)
        {
            tracing::error!(seq = d.seq, "decision not written to the journal: {e}");
            inner.write_failures += 1;
            inner.last_error = Some(e.to_string());
        }
        *inner
            .counts
            .entry((d.kind, d.action, d.scope, d.outcome.class()))
            .or_default() += 1;
        inner.kept.push_back(d.clone());
        while inner.kept.len() > inner.capacity {
            inner.kept.pop_front();
        }
        // Sent under the lock so that broadcast order is sequence order.
        let _ = self.tx.send(d.clone());
        d
    }

    /// Decisions appended since the agent started, by kind, action, scope
    /// and outcome.
    pub fn counts(&self) -> Vec<(CountKey, u64)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.counts.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Decisions with `seq > after`, oldest first, at most `limit`: from
    /// memory when it holds them, else from the journal file.
    pub fn since(&self, after: u64, limit: usize) -> Vec<Decision> {
        self.since_where(after, limit, &|_| true)
    }

    /// `since`, counting only the decisions `keep` accepts.
    pub fn since_where(
        &self,
        after: u64,
        limit: usize,
        keep: &dyn Fn(&Decision) -> bool,
    ) -> Vec<Decision> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let oldest_kept = inner.kept.front().map(|d| d.seq).unwrap_or(inner.next_seq);
        if after + 1 < oldest_kept
            && let Some(st) = &inner.store
        {
            match st.since_where(after, limit, keep) {
                Ok(v) => return v,
                Err(e) => tracing::error!("reading the journal: {e}"),
            }
        }
        inner
            .kept
            .iter()
            .filter(|d| d.seq > after && keep(d))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The processes Sentinel left stopped (frozen or queued) by the
    /// journal, from decisions made at or after `boot_unix_ms`.
    pub fn held_since(&self, boot_unix_ms: u64) -> Vec<Held> {
        use DecisionKind as K;
        let about_custody = |d: &Decision| {
            d.start_time != 0
                && d.time_unix_ms >= boot_unix_ms
                && matches!(
                    d.kind,
                    K::Preempt | K::Queue | K::Resume | K::Custody | K::KernelOomKill
                )
        };
        let decisions = self.since_where(0, usize::MAX, &about_custody);
        held_by_journal(&decisions, boot_unix_ms)
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
mod compat;

#[cfg(test)]
mod tests {
    use super::*;

    fn d(pid: u32) -> Decision {
        Decision {
            seq: 0,
            time_unix_ms: 0,
            kind: DecisionKind::Preempt,
            pid,
            start_time: 77,
            comm: "x".into(),
            cgroup: "/".into(),
            rule: "r".into(),
            level: Some(sentinel_core::policy::Level::Preempt),
            action: DecisionAction::Freeze,
            outcome: sentinel_core::decision::Outcome::Done,
            reason: String::new(),
            resident_bytes: 0,
            charged_bytes: 0,
            slope_bytes_per_sec: 0.0,
            limit_bytes: 0,
            predicted_seconds_to_limit: None,
            crash_loop: false,
            scope: Some(ScopeKind::Process),
        }
    }

    fn retention() -> Retention {
        Retention {
            max_entries: 1_000_000,
            max_age_ms: u64::MAX,
        }
    }

    #[test]
    fn a_reopened_journal_resumes_its_sequence_and_serves_old_decisions() {
        let dir = std::env::temp_dir().join(format!("sentinel-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("j.redb");
        {
            let (j, report) = Journal::open(&path, 2, retention()).unwrap();
            assert_eq!(report, OpenReport::default());
            for pid in 1..=5 {
                j.append(d(pid));
            }
            assert_eq!(j.health().write_failures, 0);
        }
        let (j, report) = Journal::open(&path, 2, retention()).unwrap();
        assert_eq!((report.entries, report.last_seq), (5, 5));
        assert!(report.damaged.is_empty());
        // The next decision continues the sequence.
        assert_eq!(j.append(d(6)).seq, 6);
        // Older than memory holds: read back from the file, whole.
        let all = j.since(0, 100);
        assert_eq!(
            all.iter().map(|d| d.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6]
        );
        assert_eq!(all[2], Decision { seq: 3, ..d(3) });
        // Filtered reads count matches, from the file as from memory.
        let odd = j.since_where(0, 2, &|d| d.pid % 2 == 1);
        assert_eq!(odd.iter().map(|d| d.pid).collect::<Vec<_>>(), vec![1, 3]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn retention_drops_the_oldest_past_the_count_and_the_too_old() {
        let dir = std::env::temp_dir().join(format!("sentinel-journal-r-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("j.redb");
        {
            let (j, _) = Journal::open(&path, 10, retention()).unwrap();
            for pid in 1..=5 {
                j.append(d(pid)); // time_unix_ms 0: 1970
            }
        }
        let keep3 = Retention {
            max_entries: 3,
            max_age_ms: u64::MAX,
        };
        let (j, _) = Journal::open(&path, 1, keep3).unwrap();
        assert_eq!(
            j.since(0, 100).iter().map(|d| d.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        drop(j);
        let a_day = Retention {
            max_entries: 100,
            max_age_ms: 86_400_000,
        };
        let (j, _) = Journal::open(&path, 1, a_day).unwrap();
        assert!(j.since(0, 100).is_empty());
        // Sequence numbers never go back, even with everything pruned.
        assert_eq!(j.append(d(9)).seq, 6);
        drop(j);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_journal_that_will_not_open_is_moved_aside_and_numbering_goes_on_above_it() {
        let dir = std::env::temp_dir().join(format!("sentinel-journal-d-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.redb");
        {
            let (j, _, recovered) = Journal::open_or_recover(&path, 10, retention()).unwrap();
            assert_eq!(recovered, None, "a new journal is no recovery");
            for pid in 1..=3 {
                j.append(d(pid));
            }
        }
        // Garbage where the database was.
        std::fs::write(&path, vec![0xa5; 64 << 10]).unwrap();
        let (j, _, recovered) = Journal::open_or_recover(&path, 10, retention()).unwrap();
        let r = recovered.expect("recovered");
        let aside = r.moved_to.expect("moved aside");
        assert!(aside.exists() && aside.to_string_lossy().contains("j.redb.damaged-"));
        assert!(r.floor > 3);
        let next = j.append(d(4)).seq;
        assert_eq!(next, r.floor + 1);
        drop(j);
        // Reopened as it is, the new journal goes on from where it was.
        let (j, _, recovered) = Journal::open_or_recover(&path, 10, retention()).unwrap();
        assert_eq!(recovered, None);
        assert_eq!(j.append(d(5)).seq, next + 1);
        drop(j);
        // Emptied: nothing to move aside, and still no going back.
        std::fs::write(&path, b"").unwrap();
        let (j, _, recovered) = Journal::open_or_recover(&path, 10, retention()).unwrap();
        let r = recovered.expect("an emptied file is a recovery");
        assert!(r.moved_to.is_none() && r.floor > next);
        assert!(j.append(d(6)).seq > next + 1);
        drop(j);
        let _ = std::fs::remove_dir_all(&dir);
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
