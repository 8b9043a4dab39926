//! A journal written before decisions were typed (by the agent at commit
//! ebc2d76) opens and reads back identically: `fixtures/journal-v0.redb`
//! holds one decision of every kind, action and outcome that agent wrote,
//! and `fixtures/journal-v0.jsonl` the same decisions as it serialized them.

use super::*;
use sentinel_core::{decision::Outcome, policy::Level};

fn open_copy(name: &str) -> (Journal, OpenReport, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("sentinel-compat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("journal.redb");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/journal/fixtures/journal-v0.redb"
    );
    std::fs::copy(fixture, &path).unwrap();
    let keep = Retention {
        max_entries: u64::MAX,
        max_age_ms: u64::MAX,
    };
    let (j, report) = Journal::open(&path, 1000, keep).unwrap();
    (j, report, dir)
}

#[test]
fn a_journal_written_before_typed_decisions_reads_back_identically() {
    let (j, report, dir) = open_copy("read");
    let want: Vec<serde_json::Value> = include_str!("fixtures/journal-v0.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        (report.entries, report.last_seq),
        (want.len() as u64, want.len() as u64)
    );
    assert!(report.damaged.is_empty(), "{report:?}");
    let got = j.since(0, 1000);
    assert_eq!(got.len(), want.len());
    for (d, old) in got.iter().zip(&want) {
        // Every field the old agent wrote comes back with its old value.
        let mut v = serde_json::to_value(d).unwrap();
        let scope = v.as_object_mut().unwrap().remove("scope").unwrap();
        assert_eq!(&v, old, "seq {}", d.seq);
        // The scope, which it did not write, is what its rule's name says
        // where that is certain, and unknown where it is not.
        let expected = match (d.kind, d.rule.as_str()) {
            (DecisionKind::Policy, _) => None,
            (DecisionKind::Admission, _) => Some("admission"),
            (DecisionKind::Pressure, _) | (_, "host") => Some("host"),
            (_, "gpu:0") => Some("gpu"),
            (DecisionKind::KernelOomKill | DecisionKind::Protect, _) => Some("process"),
            _ => None,
        };
        assert_eq!(scope.as_str(), expected, "seq {}: {scope}", d.seq);
    }
    // The strings became types.
    assert_eq!(got[0].level, Some(Level::Preempt));
    assert_eq!(got[0].action, DecisionAction::Freeze);
    assert_eq!(got[0].outcome, Outcome::Done);
    assert!(matches!(&got[3].outcome, Outcome::Failed(why) if why.starts_with("signalling pid")));
    assert_eq!(got[4].outcome, Outcome::DryRun);
    assert_eq!(got[9].outcome, Outcome::KilledByKernel);
    assert_eq!((got[9].level, got[9].action), (None, DecisionAction::None));
    assert_eq!(got[23].action, DecisionAction::Denied);
    drop(j);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_old_journal_goes_on_where_it_stopped() {
    let (j, _, dir) = open_copy("append");
    let d = j.append(Decision {
        kind: DecisionKind::Policy,
        action: DecisionAction::Apply,
        ..Default::default()
    });
    assert_eq!(d.seq, 25);
    let back = j.since(24, 10);
    assert_eq!(back, vec![d]);
    drop(j);
    let _ = std::fs::remove_dir_all(&dir);
}
