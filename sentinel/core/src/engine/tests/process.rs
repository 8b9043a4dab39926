//! A process under its own rule.

use super::*;
use crate::{
    decision::{DecisionKind, Outcome, ScopeKind},
    engine::{Mode, Tripwire},
    policy::Level,
};

#[test]
fn a_leaker_is_frozen_before_its_limit_and_the_steady_one_beside_it_is_not() {
    let mut w = world(&rule("leakers", "256MiB", "freeze"));
    w.spawn(10, proc("memhog"), hog(0, 200e6, 300 * MIB, 30.0));
    w.spawn(11, proc("steady"), steady(100 * MIB, 30.0));
    w.run_for(3.0);

    let d = expect(&w, 10, DecisionAction::Freeze);
    assert_eq!(d.kind, DecisionKind::Preempt);
    assert_eq!(d.level, Some(Level::Preempt));
    assert_eq!(d.outcome, Outcome::Done);
    assert_eq!(d.scope, Some(ScopeKind::Process));
    assert_eq!((d.rule.as_str(), d.limit_bytes), ("leakers", 256 * MIB));
    assert!(d.charged_bytes < 256 * MIB, "{d:?}");
    assert_eq!(state(&w, 10), Some('T'));
    let held = w.host().procs[&10].mem.charged();
    assert!(held < 256 * MIB, "stopped at {} MiB", held / MIB);
    assert_eq!(signals(&w, 10), [Signal::Freeze]);
    // The kernel's ceiling was armed at the preempt line, then taken off.
    assert!(!w.host().tripwires.contains_key(&10));
    assert!(about(&w, 11).is_empty(), "{:#?}", journal(&w));
    assert!(signals(&w, 11).is_empty());
}

#[test]
fn a_process_under_its_limit_is_never_touched() {
    let mut w = world(&rule("roomy", "512MiB", "kill"));
    w.spawn(10, proc("steady"), hog(0, 400e6, 200 * MIB, 3.0));
    w.run_for(5.0);
    assert!(w.host().journal.is_empty(), "{:#?}", journal(&w));
    assert!(w.host().signals.is_empty());
    assert_eq!(state(&w, 10), None, "it finished and exited by itself");
}

#[test]
fn a_jump_to_70_percent_that_holds_is_warned_about_once_and_never_stopped() {
    let mut w = world(&rule("jumpy", "1GiB", "kill"));
    // As fast as the machine allows (about 2.5 GB/s) to 71% of the limit,
    // then flat: a model loading.
    w.spawn(10, proc("loader"), hog(0, 2.5e9, 727 * MIB, 3.0));
    w.run_for(4.0);
    let d: Vec<&Decision> = about(&w, 10).iter().map(|r| &r.decision).collect();
    assert_eq!(d.len(), 1, "{:#?}", journal(&w));
    assert_eq!(
        (d[0].level, d[0].action),
        (Some(Level::Warn), DecisionAction::Alert)
    );
    assert!(w.host().signals.is_empty());
    assert_eq!(state(&w, 10), None, "it finished its work");
}

#[test]
fn the_tripwire_stops_a_full_speed_allocator_while_the_agent_is_stalled() {
    let mut w = world(&rule("fast", "256MiB", "freeze"));
    w.spawn(10, proc("memhog"), hog(0, 2.5e9, 900 * MIB, 30.0));
    // Discovered (and armed) at its first step, then the agent stalls.
    w.run_for(0.001);
    let ceiling = crate::engine::tripwire_ceiling(256 * MIB, 256 * MIB * 85 / 100, MIB);
    assert_eq!(
        w.host().tripwires.get(&10),
        Some(&Tripwire::Ceiling(ceiling))
    );
    w.stall_agent();
    w.run_for(1.0);
    assert_eq!(state(&w, 10), Some('T'), "the kernel stopped it");
    assert_eq!(w.host().procs[&10].mem.charged(), ceiling);
    // Woken, the agent finishes the decision the kernel began.
    w.wake_agent();
    let d = expect(&w, 10, DecisionAction::Freeze);
    assert!(d.reason.contains("in-kernel tripwire"), "{d:?}");
    assert_eq!(d.outcome, Outcome::Done);
}

#[test]
fn dry_run_records_the_decision_and_signals_nothing() {
    let policy = format!(
        "[agent]\ndry_run = true\n{}",
        rule("leakers", "256MiB", "kill")
    );
    let mut w = world(&policy);
    w.spawn(10, proc("memhog"), hog(0, 200e6, 300 * MIB, 30.0));
    w.run_for(3.0);
    let d = expect(&w, 10, DecisionAction::Freeze);
    assert_eq!(d.outcome, Outcome::DryRun);
    assert!(w.host().signals.is_empty(), "{:?}", w.host().signals);
    assert_eq!(state(&w, 10), Some('R'), "still running");
    // Nothing armed that could stop it in the kernel either.
    assert_eq!(w.host().tripwires.get(&10), Some(&Tripwire::WatchOnly));
}

#[test]
fn a_protected_leaker_is_only_alerted_never_signalled() {
    let policy = format!(
        "[agent]\nprotected = [\"precious\"]\n{}",
        rule("leakers", "128MiB", "kill")
    );
    let mut w = world(&policy);
    w.spawn(10, proc("precious"), hog(0, 200e6, 200 * MIB, 2.0));
    w.run_for(4.0);
    let d: Vec<&Decision> = about(&w, 10).iter().map(|r| &r.decision).collect();
    assert!(!d.is_empty(), "it went past its limit: at least a warning");
    assert!(
        d.iter().all(|d| d.action == DecisionAction::Alert),
        "{:#?}",
        journal(&w)
    );
    assert!(d.iter().any(|d| d.reason.contains("protected")), "{d:#?}");
    assert!(w.host().signals.is_empty());
    assert_eq!(state(&w, 10), None, "it ran to the end");
}

#[test]
fn a_descendant_rule_governs_what_the_named_process_forks() {
    let policy = "[[rule]]\nname = \"tree\"\nlimit = \"128MiB\"\naction = \"freeze\"\n[rule.match]\ndescendant_of = 10\n";
    let mut w = world(policy);
    w.spawn(10, proc("sh"), steady(MIB, 30.0));
    w.spawn(
        11,
        FakeProc::new(10, "memhog", CG),
        hog(0, 200e6, 200 * MIB, 30.0),
    );
    w.run_for(2.0);
    assert_eq!(expect(&w, 11, DecisionAction::Freeze).rule, "tree");
    assert_eq!(state(&w, 11), Some('T'));
}

#[test]
fn polling_still_stops_a_leaker_before_its_limit() {
    let cfg = Config::parse(&rule("leakers", "256MiB", "freeze"), "t").unwrap();
    let mut w = World::with_mode(cfg, Default::default(), Mode::Polling);
    w.spawn(10, proc("memhog"), hog(0, 100e6, 400 * MIB, 30.0));
    w.run_for(5.0);
    let d = expect(&w, 10, DecisionAction::Freeze);
    assert!(d.charged_bytes < 256 * MIB, "{d:?}");
    assert!(w.host().procs[&10].mem.charged() < 256 * MIB);
    // No kernel to arm a ceiling in: the agent's own forecast stopped it.
    assert!(!d.reason.contains("tripwire"), "{d:?}");
}

#[test]
fn a_kernel_oom_kill_is_reported() {
    let mut w = world("");
    w.spawn(10, proc("victim"), steady(50 * MIB, 30.0));
    w.run_for(0.1);
    let e = sentinel_common::Event {
        kind: sentinel_common::EventKind::OomVictim as u32,
        tgid: 10,
        ts_ns: 100_000_000,
        ..Default::default()
    };
    w.engine.handle_batch(&[e]);
    let d = &w.host().journal[0].decision;
    assert_eq!(d.kind, DecisionKind::KernelOomKill);
    assert_eq!((d.pid, d.comm.as_str()), (10, "victim"));
    assert_eq!(d.outcome, Outcome::KilledByKernel);
    assert_eq!(w.engine.kernel_oom_kills(), 1);
}

#[test]
fn a_corrupt_record_with_absurd_page_counts_is_handled_not_a_panic() {
    // Found by the `events` fuzz target: pages times the page size
    // overflowed.
    let mut w = world(&rule("any", "1GiB", "kill"));
    w.spawn(10, proc("victim"), steady(MIB, 30.0));
    let mut e = sentinel_common::Event {
        kind: sentinel_common::EventKind::Rss as u32,
        tgid: 10,
        ts_ns: u64::MAX,
        pages: [u64::MAX; sentinel_common::counter::COUNT],
        aux: u64::MAX,
        aux2: 0,
    };
    w.engine.handle_batch(&[e]);
    e.kind = sentinel_common::EventKind::Tripwire as u32;
    w.engine.handle_batch(&[e]);
    assert!(w.engine.tracked() <= 1);
}

/// Found by fuzzing: corrupt ring-buffer records claiming absurd page
/// counts for several processes of one cgroup overflowed the sum of their
/// usage (a panic in debug builds, a wrapped figure in release ones).
#[test]
fn records_with_absurd_page_counts_neither_panic_nor_wrap() {
    use sentinel_common::{Event, EventKind, counter};
    let mut w = world(&format!(
        "[[cgroup]]\nname = \"jobs\"\nmatch = \"^{CG}$\"\naction = \"freeze\"\n"
    ));
    w.host_mut().cgroup_limits.insert(CG.into(), GIB);
    for pid in 10..18 {
        w.spawn(pid, proc("worker"), steady(10 * MIB, 60.0));
    }
    w.run_for(0.5);
    let batch: Vec<Event> = (10..18)
        .map(|tgid| Event {
            kind: EventKind::Rss as u32,
            tgid,
            ts_ns: 600_000_000,
            pages: [u64::MAX / 3; counter::COUNT],
            aux: 0,
            aux2: 0,
        })
        .collect();
    w.engine.handle_batch(&batch);
    w.run_for(1.0);
    let mem = w.engine.detail(10).expect("known").view.mem;
    assert!(mem.anon <= 1 << 50 && mem.swap <= 1 << 50, "{mem:?}");
}
