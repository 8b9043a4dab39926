//! The action ladder: graces, freezes that run out, resumes, crash loops.

use super::*;
use crate::{
    decision::{DecisionKind, Outcome},
    policy::Level,
};

#[test]
fn the_kill_level_terminates_with_a_grace_then_kills() {
    // Preempt and kill at the same line: the rule goes straight to the top
    // of its ladder. The leaker ignores SIGTERM, so SIGKILL must follow.
    let policy = rule("ladder", "256MiB", "kill").replacen(
        "[rule.match]",
        "levels = { preempt = 0.9, kill = 0.9 }\n[rule.match]",
        1,
    );
    let mut w = world(&policy);
    let mut p = proc("memhog");
    p.ignores_term = true;
    w.spawn(10, p, hog(0, 30e6, 400 * MIB, 30.0));
    w.run_for(12.0);
    let term = first(&w, 10, DecisionAction::Terminate).expect("terminated");
    assert_eq!(term.decision.level, Some(Level::Kill));
    assert!(term.decision.reason.contains("SIGKILL in"), "{term:?}");
    let kill = first(&w, 10, DecisionAction::Kill).expect("killed");
    assert!(kill.decision.reason.contains("grace"), "{kill:?}");
    // At 30 MB/s, 10% of 256 MiB is about 0.9 s away.
    let grace = kill.t - term.t;
    assert!(
        (0.3..1.5).contains(&grace),
        "grace {grace} s should follow the forecast"
    );
    assert_eq!(signals(&w, 10), [Signal::Terminate, Signal::Kill]);
    assert_eq!(state(&w, 10), None, "gone");
    assert_eq!(w.host().graces_started, 1);
}

#[test]
fn a_process_that_exits_within_its_grace_is_not_killed() {
    let policy = rule("ladder", "256MiB", "kill").replacen(
        "[rule.match]",
        "levels = { preempt = 0.9, kill = 0.9 }\n[rule.match]",
        1,
    );
    let mut w = world(&policy);
    w.spawn(10, proc("memhog"), hog(0, 30e6, 400 * MIB, 30.0));
    w.run_for(12.0);
    expect(&w, 10, DecisionAction::Terminate);
    assert!(
        first(&w, 10, DecisionAction::Kill).is_none(),
        "{:#?}",
        journal(&w)
    );
    assert_eq!(signals(&w, 10), [Signal::Terminate]);
}

#[test]
fn a_freeze_that_does_not_clear_ends_in_a_kill_where_the_rule_allows() {
    let policy = format!(
        "[agent]\nfreeze_timeout = \"1s\"\n{}",
        rule("leaky", "256MiB", "kill")
    );
    let mut w = world(&policy);
    w.spawn(10, proc("memhog"), hog(0, 200e6, 400 * MIB, 30.0));
    w.run_for(5.0);
    let freeze = first(&w, 10, DecisionAction::Freeze).expect("frozen first");
    assert_eq!(freeze.decision.level, Some(Level::Preempt));
    let kill = first(&w, 10, DecisionAction::Kill).expect("then killed");
    assert!(kill.decision.reason.contains("frozen for"), "{kill:?}");
    let waited = kill.t - freeze.t;
    assert!(
        (0.9..2.5).contains(&waited),
        "killed {waited} s after the freeze"
    );
    assert_eq!(state(&w, 10), None);
}

#[test]
fn a_freeze_under_a_freeze_rule_stays_a_freeze() {
    let policy = format!(
        "[agent]\nfreeze_timeout = \"1s\"\n{}",
        rule("leaky", "256MiB", "freeze")
    );
    let mut w = world(&policy);
    w.spawn(10, proc("memhog"), hog(0, 200e6, 400 * MIB, 30.0));
    w.run_for(5.0);
    assert_eq!(signals(&w, 10), [Signal::Freeze]);
    assert_eq!(state(&w, 10), Some('T'));
}

#[test]
fn a_raised_limit_resumes_a_frozen_process() {
    let mut w = world(&rule("leaky", "256MiB", "freeze"));
    w.spawn(10, proc("memhog"), hog(0, 200e6, 300 * MIB, 1.0));
    w.run_for(2.0);
    expect(&w, 10, DecisionAction::Freeze);
    assert_eq!(state(&w, 10), Some('T'));
    // The operator raises the limit: the process is far below the new
    // clear level, so it is resumed and finishes its work.
    let raised = Config::parse(&rule("leaky", "1GiB", "freeze"), "t").unwrap();
    w.engine.apply_config(raised);
    let r = expect(&w, 10, DecisionAction::Resume);
    assert_eq!(r.kind, DecisionKind::Resume);
    assert_eq!(r.outcome, Outcome::Done);
    assert_eq!(r.limit_bytes, GIB);
    w.run_for(3.0);
    assert_eq!(state(&w, 10), None, "it finished and exited");
    assert_eq!(signals(&w, 10), [Signal::Freeze, Signal::Resume]);
}

#[test]
fn the_same_command_preempted_three_times_is_a_crash_loop() {
    let mut w = world(&rule("leaky", "128MiB", "freeze"));
    let mut flags = Vec::new();
    // A supervisor restarting the same leaker.
    for pid in [10, 11, 12] {
        let mut p = proc("memhog");
        p.cmdline = "memhog --target 200MiB --rate 300MB/s".into();
        w.spawn(pid, p, hog(0, 300e6, 200 * MIB, 30.0));
        w.run_for(1.0);
        flags.push(expect(&w, pid, DecisionAction::Freeze).crash_loop);
        // The supervisor kills it and starts another.
        w.host_mut().procs.get_mut(&pid).expect("frozen").state = 'Z';
    }
    assert_eq!(flags, [false, false, true]);
    let loops = w.engine.crash_loops();
    assert_eq!(loops.len(), 1, "{loops:?}");
    assert!(loops[0].cmdline.contains("memhog --target 200MiB"));
    assert_eq!(loops[0].count, 3);
}
