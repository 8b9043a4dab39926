//! What operators ask: resume, protect, a new policy.

use super::*;
use crate::{
    decision::{DecisionKind, Outcome},
    engine::{OpError, Tripwire},
};

#[test]
fn an_operator_resumes_a_frozen_process_and_it_is_not_frozen_again_at_once() {
    let mut w = world(&rule("leaky", "256MiB", "freeze"));
    w.spawn(10, proc("memhog"), hog(0, 200e6, 300 * MIB, 30.0));
    w.run_for(2.0);
    assert_eq!(state(&w, 10), Some('T'));
    let d = w
        .engine
        .operator_resume(10, "uid 0 (root)")
        .expect("resumed");
    assert_eq!(
        (d.kind, d.outcome.clone()),
        (DecisionKind::Resume, Outcome::Done)
    );
    assert_eq!(d.rule, "leaky");
    assert_eq!(d.reason, "resumed by uid 0 (root)");
    w.run_for(1.0);
    // Frozen once this episode: it may run past the preempt line now (the
    // operator's call); the kernel's ceiling is not re-armed either.
    assert_eq!(signals(&w, 10), [Signal::Freeze, Signal::Resume]);
    assert_eq!(w.host().tripwires.get(&10), Some(&Tripwire::WatchOnly));
    assert!(matches!(
        w.engine.operator_resume(10, "root"),
        Err(OpError::NotFrozen {
            pid: 10,
            state: "running"
        })
    ));
    assert!(matches!(
        w.engine.operator_resume(77, "root"),
        Err(OpError::NotFound(77))
    ));
}

#[test]
fn a_process_an_operator_protects_is_never_signalled_until_unprotected() {
    let mut w = world(&rule("leaky", "256MiB", "freeze"));
    w.spawn(10, proc("memhog"), hog(0, 100e6, 400 * MIB, 30.0));
    w.run_for(0.5);
    let d = w
        .engine
        .operator_protect(10, true, "uid 0 (root)")
        .expect("protected");
    assert_eq!(d.action, DecisionAction::Protect);
    assert_eq!(w.host().tripwires.get(&10), Some(&Tripwire::WatchOnly));
    w.run_for(2.5);
    assert!(signals(&w, 10).is_empty(), "{:#?}", journal(&w));
    assert!(
        about(&w, 10)
            .iter()
            .any(|r| r.decision.reason.contains("protected by uid 0 (root)"))
    );
    let d = w
        .engine
        .operator_protect(10, false, "uid 0 (root)")
        .expect("unprotected");
    assert_eq!(d.action, DecisionAction::Unprotect);
    assert_eq!(d.reason, "protection removed by uid 0 (root)");
}

#[test]
fn a_new_policy_is_journalled_with_who_applied_it() {
    let mut w = world("");
    let cfg = Config::parse(
        &format!(
            "{}[agent]\nsocket = \"/run/elsewhere.sock\"\n",
            rule("leaky", "256MiB", "freeze")
        ),
        "t",
    )
    .unwrap();
    let applied = w
        .engine
        .apply_policy(cfg, "uid 0 (root)", "ApplyPolicy by uid 0 (root)", "text")
        .expect("applied");
    let d = applied.decision;
    assert_eq!(
        (d.kind, d.action),
        (DecisionKind::Policy, DecisionAction::Apply)
    );
    assert!(d.reason.contains("1 rules"), "{}", d.reason);
    assert_eq!(w.engine.policy(), ("ApplyPolicy by uid 0 (root)", "text"));
    // The socket is read at start: kept, and said so.
    assert_eq!(applied.start_only, ["agent.socket"]);
    assert!(
        d.reason.ends_with(
            "read only at start, so still the running values until a restart: agent.socket"
        ),
        "{}",
        d.reason
    );
    assert_ne!(w.engine.config().agent.socket, "/run/elsewhere.sock");
    assert_eq!(w.engine.policy_not_in_use(), ["agent.socket"]);
    // The new rule governs from now on.
    w.spawn(10, proc("memhog"), hog(0, 200e6, 300 * MIB, 30.0));
    w.run_for(2.0);
    expect(&w, 10, DecisionAction::Freeze);
}

#[test]
fn an_empty_policy_is_refused_unless_it_says_so_and_the_frozen_stay_frozen() {
    let mut w = world(&rule("leaky", "256MiB", "freeze"));
    w.spawn(10, proc("memhog"), hog(0, 200e6, 300 * MIB, 30.0));
    w.run_for(2.0);
    assert_eq!(state(&w, 10), Some('T'));
    let journalled = w.host().journal.len();
    // An emptied file, or one whose rules were all cut away.
    for text in ["", "[host]\naction = \"alert\"\n"] {
        let err = w
            .engine
            .apply_policy(Config::parse(text, "t").unwrap(), "SIGHUP", "f", text)
            .expect_err("refused");
        let msg = err.to_string();
        assert!(msg.contains("running policy has 1 rules"), "{msg}");
        assert!(msg.contains("resume the 1 frozen"), "{msg}");
        assert!(msg.contains("allow_empty_policy = true"), "{msg}");
    }
    w.run_for(1.0);
    assert_eq!(state(&w, 10), Some('T'), "still frozen");
    assert_eq!(w.engine.config().rules.len(), 1, "the old policy runs");
    assert_eq!(w.host().journal.len(), journalled, "nothing applied");
    // Said on purpose: applied, and the process is no longer governed.
    let text = "[agent]\nallow_empty_policy = true\n";
    w.engine
        .apply_policy(Config::parse(text, "t").unwrap(), "SIGHUP", "f", text)
        .expect("applied on purpose");
    expect(&w, 10, DecisionAction::Resume);
    assert_eq!(w.engine.config().rules.len(), 0);
}
