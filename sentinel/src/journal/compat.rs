//! A journal written before decisions were typed (by the agent at commit
//! ebc2d76) opens and reads back identically: `fixtures/journal-v0.redb`
//! holds one decision of every kind, action and outcome that agent wrote,
//! and `fixtures/journal-v0.jsonl` the same decisions as it serialized them.

use super::*;
use sentinel_core::{decision::Outcome, policy::Level};

/// The scope each fixture entry reads back with: what its kind or rule's
/// name implies where the old agent itself named scopes by them ("host",
/// "gpu:N", "admission"; a kernel OOM kill and a protection are about a
/// process), unknown for rules it cannot tell apart (a process rule's name
/// from a cgroup rule's), none for a policy change.
const SCOPES: [Option<&str>; 24] = [
    None,            // preempt freeze, rule leakers
    Some("host"),    // a host warning
    None,            // terminate, leakers
    None,            // kill failed, leakers
    None,            // dry-run, leakers
    None,            // no pidfd, leakers
    Some("gpu"),     // gpu:0
    None,            // workers-cg (a cgroup rule, not told apart)
    Some("host"),    // host kill
    Some("process"), // kernel OOM kill
    None,            // resume, leakers
    None,            // operator resume, leakers
    None,            // resume failed, leakers
    Some("host"),    // pressure
    None,            // policy
    Some("process"), // protect
    Some("process"), // unprotect
    Some("admission"),
    Some("admission"),
    Some("admission"),
    Some("admission"),
    Some("admission"),
    Some("admission"),
    Some("admission"),
];

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
        // Fields added since: what an old entry lacks reads as "unknown".
        let start_time = v.as_object_mut().unwrap().remove("start_time").unwrap();
        assert_eq!(start_time, 0, "seq {}: no process is named safely", d.seq);
        assert_eq!(&v, old, "seq {}", d.seq);
        assert_eq!(
            scope.as_str(),
            SCOPES[d.seq as usize - 1],
            "seq {}: {scope}",
            d.seq
        );
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
