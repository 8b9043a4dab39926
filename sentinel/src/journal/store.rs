//! The journal on disk: decisions keyed by sequence number in an embedded
//! redb database. Every append is a committed, fsynced transaction, so a
//! decision is durable before anyone is told about it.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::Decision;

/// What redb may keep of the journal's pages in the agent's memory (its
/// default is 1 GiB: the agent's resident set grew with the journal, some
/// 14 MiB for 20,000 decisions). The kernel's page cache holds the file
/// anyway; reads of old decisions are rare (an operator's query).
const JOURNAL_CACHE: usize = 2 << 20;

const DECISIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("decisions");
/// The last sequence number ever given, so that numbers never go back even
/// when retention has removed every entry.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LAST_SEQ: &str = "last_seq";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("journal {path}: {message}")]
    Db { path: String, message: String },
}

/// How much to keep: by count and by age.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    pub max_entries: u64,
    pub max_age_ms: u64,
}

impl Retention {
    /// What the config keeps: the agent's and `thaw-all`'s journal alike.
    pub fn of(cfg: &sentinel_core::config::Config) -> Self {
        Self {
            max_entries: cfg.agent.journal_max_entries,
            max_age_ms: cfg.agent.journal_max_age.as_millis() as u64,
        }
    }
}

/// What opening the journal found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenReport {
    pub entries: u64,
    pub last_seq: u64,
    /// Entries that could not be read back: kept in the file, reported.
    pub damaged: Vec<u64>,
    /// The file was not closed cleanly and redb repaired it.
    pub repaired: bool,
}

pub struct Store {
    db: Database,
    path: PathBuf,
    retention: Retention,
    appended: u64,
}

impl Store {
    /// Opens (or creates) the journal at `path`, checks every entry, and
    /// returns the most recent `recent` decisions with the report.
    pub fn open(
        path: &Path,
        retention: Retention,
        recent: usize,
    ) -> Result<(Self, Vec<Decision>, OpenReport), StoreError> {
        let err = |message: String| StoreError::Db {
            path: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let repaired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = repaired.clone();
        let db = Database::builder()
            .set_cache_size(JOURNAL_CACHE)
            .set_repair_callback(move |_| flag.store(true, std::sync::atomic::Ordering::Relaxed))
            .create(path)
            .map_err(|e| err(e.to_string()))?;
        let mut store = Self {
            db,
            path: path.to_path_buf(),
            retention,
            appended: 0,
        };
        // Create the table, so that reads of an empty journal work.
        let w = store.db.begin_write().map_err(|e| err(e.to_string()))?;
        w.open_table(DECISIONS).map_err(|e| err(e.to_string()))?;
        w.open_table(META).map_err(|e| err(e.to_string()))?;
        w.commit().map_err(|e| err(e.to_string()))?;

        let mut report = OpenReport {
            repaired: repaired.load(std::sync::atomic::Ordering::Relaxed),
            ..OpenReport::default()
        };
        let mut tail = std::collections::VecDeque::new();
        {
            let r = store.db.begin_read().map_err(|e| err(e.to_string()))?;
            let meta = r.open_table(META).map_err(|e| err(e.to_string()))?;
            let given = meta
                .get(LAST_SEQ)
                .map_err(|e| err(e.to_string()))?
                .map(|v| v.value())
                .unwrap_or(0);
            let t = r.open_table(DECISIONS).map_err(|e| err(e.to_string()))?;
            for entry in t.iter().map_err(|e| err(e.to_string()))? {
                let (k, v) = entry.map_err(|e| err(e.to_string()))?;
                let seq = k.value();
                report.entries += 1;
                report.last_seq = seq;
                match serde_json::from_slice::<Decision>(v.value()) {
                    Ok(d) if d.seq == seq => {
                        tail.push_back(d);
                        if tail.len() > recent {
                            tail.pop_front();
                        }
                    }
                    _ => report.damaged.push(seq),
                }
            }
            report.last_seq = report.last_seq.max(given);
        }
        store.prune()?;
        Ok((store, tail.into(), report))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, message: String) -> StoreError {
        StoreError::Db {
            path: self.path.display().to_string(),
            message,
        }
    }

    /// Writes `d` durably (committed and synced) under its sequence number.
    pub fn append(&mut self, d: &Decision) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(d).map_err(|e| self.err(e.to_string()))?;
        let w = self.db.begin_write().map_err(|e| self.err(e.to_string()))?;
        {
            let mut t = w
                .open_table(DECISIONS)
                .map_err(|e| self.err(e.to_string()))?;
            t.insert(d.seq, bytes.as_slice())
                .map_err(|e| self.err(e.to_string()))?;
            let mut meta = w.open_table(META).map_err(|e| self.err(e.to_string()))?;
            meta.insert(LAST_SEQ, d.seq)
                .map_err(|e| self.err(e.to_string()))?;
        }
        w.commit().map_err(|e| self.err(e.to_string()))?;
        self.appended += 1;
        if self.appended.is_multiple_of(1000) {
            self.prune()?;
        }
        Ok(())
    }

    /// Decisions with `seq > after` that `keep` accepts, oldest first, at
    /// most `limit`. Damaged entries are skipped here (they are reported at
    /// open).
    pub fn since_where(
        &self,
        after: u64,
        limit: usize,
        keep: &dyn Fn(&Decision) -> bool,
    ) -> Result<Vec<Decision>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e.to_string()))?;
        let t = r
            .open_table(DECISIONS)
            .map_err(|e| self.err(e.to_string()))?;
        let mut out = Vec::new();
        for entry in t
            .range(after.saturating_add(1)..)
            .map_err(|e| self.err(e.to_string()))?
        {
            if out.len() >= limit {
                break;
            }
            let (_, v) = entry.map_err(|e| self.err(e.to_string()))?;
            if let Ok(d) = serde_json::from_slice::<Decision>(v.value())
                && keep(&d)
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Applies the retention: drops the oldest entries past the count, and
    /// those older than the age.
    pub fn prune(&mut self) -> Result<(), StoreError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let w = self.db.begin_write().map_err(|e| self.err(e.to_string()))?;
        {
            let mut t = w
                .open_table(DECISIONS)
                .map_err(|e| self.err(e.to_string()))?;
            let len = t.len().map_err(|e| self.err(e.to_string()))?;
            let mut excess = len.saturating_sub(self.retention.max_entries);
            loop {
                let Some((k, v)) = t
                    .first()
                    .map_err(|e| self.err(e.to_string()))?
                    .map(|(k, v)| (k.value(), v.value().to_vec()))
                else {
                    break;
                };
                let old = serde_json::from_slice::<Decision>(&v).is_ok_and(|d| {
                    now_ms.saturating_sub(d.time_unix_ms) > self.retention.max_age_ms
                });
                if excess == 0 && !old {
                    break;
                }
                t.remove(k).map_err(|e| self.err(e.to_string()))?;
                excess = excess.saturating_sub(1);
            }
        }
        w.commit().map_err(|e| self.err(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_entry_is_reported_and_kept_not_dropped() {
        let dir = std::env::temp_dir().join(format!("sentinel-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("j.redb");
        let keep = Retention {
            max_entries: 100,
            max_age_ms: u64::MAX,
        };
        drop(Store::open(&path, keep, 10).unwrap());
        {
            // Damage from outside: bytes that are not a decision.
            let db = Database::create(&path).unwrap();
            let w = db.begin_write().unwrap();
            w.open_table(DECISIONS)
                .unwrap()
                .insert(7, b"\x00garbage".as_slice())
                .unwrap();
            w.commit().unwrap();
        }
        let (_, recent, report) = Store::open(&path, keep, 10).unwrap();
        assert_eq!(report.damaged, vec![7]);
        assert_eq!((report.entries, report.last_seq), (1, 7));
        assert!(recent.is_empty());
        // Still there on the next open: reported again, never dropped.
        let (_, _, again) = Store::open(&path, keep, 10).unwrap();
        assert_eq!(again.damaged, vec![7]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
