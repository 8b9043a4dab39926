//! Freezes across the agent's restarts, and thaws it did not make: the
//! shape of the end-to-end tests in tests/tests/custody.rs.

use super::{stampede::run_out, *};
use crate::{
    decision::{DecisionKind, Outcome, ScopeKind},
    engine::{Held, held_by_journal},
    fake::BOOT_UNIX_MS,
};

fn cfg(policy: &str) -> Config {
    Config::parse(policy, "test.toml").unwrap()
}

/// A leaker frozen under its own rule (`action`), 300 MiB of a 256 MiB
/// limit's preempt line, holding.
fn frozen_leaker(policy: &str) -> World {
    let w = frozen_leaker_on(policy, false);
    assert_eq!(state(&w, 10), Some('T'));
    w
}

/// The same, on a host whose freezes go through the kernel's freezer.
fn frozen_leaker_on(policy: &str, freezer: bool) -> World {
    let mut w = world(policy);
    w.host_mut().freezer = freezer;
    w.spawn(10, proc("memhog"), hog(0, 200e6, 300 * MIB, 600.0));
    w.run_for(2.0);
    expect(&w, 10, DecisionAction::Freeze);
    w
}

/// The first resume journalled about `pid` (Sentinel's, or a thaw it
/// recorded); the test fails, showing the journal, when there is none.
fn first_resume(w: &World, pid: u32) -> Decision {
    about(w, pid)
        .into_iter()
        .map(|r| r.decision.clone())
        .find(|d| d.kind == DecisionKind::Resume)
        .unwrap_or_else(|| panic!("no resume of pid {pid}: {:#?}", journal(w)))
}

fn custody(w: &World, pid: u32) -> Vec<Decision> {
    about(w, pid)
        .into_iter()
        .map(|r| r.decision.clone())
        .filter(|d| d.kind == DecisionKind::Custody)
        .collect()
}

#[test]
fn a_freeze_survives_a_crash_and_the_operator_can_resume_it() {
    let policy = rule("leaky", "256MiB", "freeze");
    let mut w = frozen_leaker(&policy);
    // SIGKILL: nothing said at the stop.
    w.restart_agent(cfg(&policy), false);
    let adopted = custody(&w, 10);
    assert_eq!(adopted.len(), 1, "{:#?}", journal(&w));
    assert_eq!(adopted[0].action, DecisionAction::Adopted);
    assert_eq!(adopted[0].rule, "leaky");
    assert_eq!(adopted[0].scope, Some(ScopeKind::Process));
    assert!(
        adopted[0]
            .reason
            .starts_with("taken back after the agent restarted: frozen since decision"),
        "{}",
        adopted[0].reason
    );
    let (_, frozen, _) = w.engine.level_counts();
    assert_eq!(frozen, 1, "status and metrics count it");
    w.run_for(1.0);
    assert_eq!(state(&w, 10), Some('T'), "still frozen, not re-signalled");
    assert_eq!(signals(&w, 10), [Signal::Freeze]);
    let d = w
        .engine
        .operator_resume(10, "uid 0 (root)")
        .expect("resumable");
    assert_eq!(d.outcome, Outcome::Done);
    assert_eq!(state(&w, 10), Some('R'));
}

#[test]
fn after_a_graceful_stop_a_raised_limit_resumes_the_adopted_freeze() {
    let policy = rule("leaky", "256MiB", "freeze");
    let mut w = frozen_leaker(&policy);
    // SIGTERM: each process left frozen is said.
    w.restart_agent(cfg(&policy), true);
    let said = custody(&w, 10);
    assert_eq!(
        said.iter().map(|d| d.action).collect::<Vec<_>>(),
        [DecisionAction::LeftFrozen, DecisionAction::Adopted]
    );
    assert!(
        said[0].reason.contains("its next start takes it back"),
        "{}",
        said[0].reason
    );
    w.engine.apply_config(cfg(&rule("leaky", "1GiB", "freeze")));
    let r = first_resume(&w, 10);
    assert_eq!(r.outcome, Outcome::Done);
    assert_eq!(signals(&w, 10), [Signal::Freeze, Signal::Resume]);
}

#[test]
fn an_adopted_freeze_keeps_its_age_and_times_out_where_the_rule_allows() {
    let policy = format!(
        "[agent]\nfreeze_timeout = \"3s\"\n{}",
        rule("leaky", "256MiB", "kill")
    );
    let mut w = frozen_leaker(&policy);
    let frozen_at = first(&w, 10, DecisionAction::Freeze).expect("frozen").t;
    w.run_for(1.5);
    w.restart_agent(cfg(&policy), false);
    w.run_for(3.0);
    let kill = first(&w, 10, DecisionAction::Kill).unwrap_or_else(|| panic!("{:#?}", journal(&w)));
    let waited = kill.t - frozen_at;
    assert!(
        (2.9..3.6).contains(&waited),
        "killed {waited:.2} s after the freeze, across the restart"
    );
}

#[test]
fn a_pid_reused_by_another_process_is_not_taken_back() {
    let policy = rule("leaky", "256MiB", "freeze");
    let mut w = frozen_leaker(&policy);
    // While the agent is down the leaker ends and another process, stopped
    // by its own shell, gets its pid.
    w.host_mut().procs.remove(&10);
    let mut other = proc("vim");
    other.state = 'T';
    w.host_mut().spawn(10, other);
    w.restart_agent(cfg(&policy), false);
    w.run_for(1.0);
    assert!(custody(&w, 10).is_empty(), "{:#?}", journal(&w));
    let (_, frozen, queued) = w.engine.level_counts();
    assert_eq!((frozen, queued), (0, 0));
    assert_eq!(
        signals(&w, 10),
        [Signal::Freeze],
        "the new process is never signalled"
    );
}

#[test]
fn a_freeze_thawed_while_the_agent_was_down_is_noticed_and_the_rule_decides_again() {
    let policy = rule("leaky", "256MiB", "freeze");
    let mut w = frozen_leaker(&policy);
    w.host_mut().procs.get_mut(&10).expect("alive").state = 'R';
    w.restart_agent(cfg(&policy), false);
    let thaw = first_resume(&w, 10);
    assert_eq!(thaw.outcome, Outcome::Recorded, "Sentinel did not do it");
    assert!(
        thaw.reason
            .starts_with("thawed by someone else while the agent was not running"),
        "{}",
        thaw.reason
    );
    // Still past its preempt line: its rule freezes it again.
    w.run_for(2.5);
    assert_eq!(signals(&w, 10), [Signal::Freeze, Signal::Freeze]);
    assert_eq!(state(&w, 10), Some('T'));
}

#[test]
fn a_sigcont_from_someone_else_is_noticed_while_the_agent_runs() {
    let policy = rule("leaky", "256MiB", "freeze");
    let mut w = frozen_leaker(&policy);
    // A shell's `fg`, or the kernel's SIGCONT to an orphaned group.
    w.host_mut().procs.get_mut(&10).expect("alive").state = 'R';
    w.run_for(0.5);
    let thaw = first_resume(&w, 10);
    assert_eq!(thaw.outcome, Outcome::Recorded);
    assert!(
        thaw.reason.contains("thawed by someone else (SIGCONT"),
        "{}",
        thaw.reason
    );
    w.run_for(2.5);
    assert_eq!(signals(&w, 10), [Signal::Freeze, Signal::Freeze]);
}

#[test]
fn a_sigkill_from_someone_else_is_let_through_a_freeze() {
    let policy = rule("leaky", "256MiB", "freeze");
    let mut w = frozen_leaker_on(&policy, true);
    assert_eq!(state(&w, 10), Some('D'), "in the freezer");
    // `kill -9`: with the kernel's freezer holding it, it cannot die.
    w.host_mut().procs.get_mut(&10).expect("alive").kill_pending = true;
    w.run_for(0.5);
    let d = first_resume(&w, 10);
    assert!(
        d.reason
            .starts_with("killed by someone else (SIGKILL) while frozen"),
        "{}",
        d.reason
    );
    assert_eq!(state(&w, 10), None, "it died");
    assert_eq!(signals(&w, 10), [Signal::Freeze, Signal::Resume]);
}

#[test]
fn a_stampede_interrupted_by_a_restart_still_finishes() {
    let policy = format!("[[cgroup]]\nname = \"jobs\"\nmatch = \"^{CG}$\"\naction = \"freeze\"\n");
    let mut w = world(&policy);
    w.host_mut().cgroup_limits.insert(CG.into(), 6 * GIB);
    let pids: Vec<u32> = (100..108).collect();
    for &pid in &pids {
        w.spawn(pid, proc("worker"), hog(0, 300e6, 1536 * MIB, 3.0));
    }
    w.run_for(4.0);
    let (_, _, queued) = w.engine.level_counts();
    assert!(queued > 0, "some wait: {:#?}", journal(&w));
    w.restart_agent(cfg(&policy), true);
    let adopted = w
        .host()
        .decisions()
        .filter(|d| d.action == DecisionAction::Adopted)
        .count();
    assert_eq!(
        adopted as u64,
        queued,
        "the queue is taken back whole: {:#?}",
        journal(&w)
    );
    w.run_for(0.5);
    for pid in 100..103 {
        assert_eq!(
            state(&w, pid),
            Some('R'),
            "what ran runs on: {:#?}",
            journal(&w)
        );
    }
    let run = w.now();
    let end = run_out(&mut w, &pids, run + 60.0);
    assert!(end.killed.is_empty(), "{end:?}");
    assert_eq!(end.finished, pids, "{end:?}\n{:#?}", journal(&w));
    // No worse than the uninterrupted stampede's ~20 s, plus what the
    // restart's warm-up costs.
    assert!(end.wall < 30.0, "{end:?}\n{:#?}", journal(&w));
}

#[test]
fn a_restart_into_dry_run_thaws_what_the_last_run_froze() {
    let policy = rule("leaky", "256MiB", "freeze");
    let mut w = frozen_leaker(&policy);
    w.restart_agent(cfg(&format!("[agent]\ndry_run = true\n{policy}")), true);
    let r = first_resume(&w, 10);
    assert_eq!(
        r.outcome,
        Outcome::Done,
        "the freeze was real: so is the thaw"
    );
    assert_eq!(state(&w, 10), Some('R'));
}

#[test]
fn a_process_in_the_freezer_the_journal_does_not_name_is_thawed_at_start() {
    let policy = rule("leaky", "256MiB", "freeze");
    let mut w = frozen_leaker_on(&policy, true);
    // The journal lost (a crash before the write, a file that would not
    // open): only the freezer knows.
    w.host_mut().journal.clear();
    w.restart_agent(cfg(&policy), false);
    let r = first_resume(&w, 10);
    assert!(
        r.reason.starts_with("found frozen by an earlier run"),
        "{}",
        r.reason
    );
    assert_eq!(state(&w, 10), Some('R'));
}

#[test]
fn the_journal_says_who_is_held_since_this_boot() {
    let d = |seq, pid, start_time, kind, action, outcome, t_ms| Decision {
        seq,
        pid,
        start_time,
        kind,
        action,
        outcome,
        time_unix_ms: BOOT_UNIX_MS + t_ms,
        rule: "r".into(),
        scope: Some(ScopeKind::Process),
        ..Decision::default()
    };
    use DecisionAction as A;
    use DecisionKind as K;
    use Outcome as O;
    let journal = [
        // Before this boot: a pid and start time that may name anyone now.
        Decision {
            time_unix_ms: BOOT_UNIX_MS - 1,
            ..d(1, 5, 7, K::Preempt, A::Freeze, O::Done, 0)
        },
        // An older journal's entry, with no start time.
        d(2, 6, 0, K::Preempt, A::Freeze, O::Done, 1),
        // Frozen, then resumed.
        d(3, 7, 9, K::Preempt, A::Freeze, O::Done, 2),
        d(4, 7, 9, K::Resume, A::Resume, O::Done, 3),
        // Frozen in dry-run: nothing was stopped.
        d(5, 8, 9, K::Preempt, A::Freeze, O::DryRun, 4),
        // Queued, then left and adopted by an earlier restart.
        d(6, 9, 9, K::Queue, A::Freeze, O::Done, 5),
        d(7, 9, 9, K::Custody, A::LeftFrozen, O::Recorded, 6),
        d(8, 9, 9, K::Custody, A::Adopted, O::Done, 7),
        // Frozen, then killed at its freeze timeout.
        d(9, 10, 9, K::Preempt, A::Freeze, O::Done, 8),
        d(10, 10, 9, K::Preempt, A::Kill, O::Done, 9),
        // Frozen and still so.
        d(11, 11, 9, K::Preempt, A::Freeze, O::Done, 10),
        // A resume that failed leaves it stopped.
        d(12, 12, 9, K::Preempt, A::Freeze, O::Done, 11),
        d(
            13,
            12,
            9,
            K::Resume,
            A::Resume,
            O::Failed("EPERM".into()),
            12,
        ),
    ];
    let held = held_by_journal(&journal, BOOT_UNIX_MS);
    let got: Vec<(u32, bool, u64)> = held
        .iter()
        .map(|h: &Held| (h.pid, h.queued, h.seq))
        .collect();
    // Pid 9 keeps its first freeze (queued, seq 6): its age is not reset
    // by each restart.
    assert_eq!(got, [(9, true, 6), (11, false, 11), (12, false, 12)]);
    // Its first entry pruned, the adoption still holds it.
    let held = held_by_journal(&journal[6..], BOOT_UNIX_MS);
    assert!(held.iter().any(|h| h.pid == 9 && h.seq == 7), "{held:?}");
}
