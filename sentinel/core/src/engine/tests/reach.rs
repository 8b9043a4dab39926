//! The two instruments: wide while no line is within reach, the precise
//! probe (and its tripwire) attached before anything can get there.

use super::*;
use crate::{
    decision::{DecisionKind, Outcome},
    engine::{DISARM_AFTER_SECS, Instrument},
};

/// Growth the wide watch covers between two looks on the default config:
/// 8 GiB/s over a 250 ms look and 50 ms to attach.
const REACH: u64 = 2_576_980_377;

fn switches(w: &World) -> Vec<(f64, bool)> {
    w.host().precise_switches.clone()
}

#[test]
fn reach_is_the_fastest_growth_over_one_look_and_an_attach() {
    let w = world("");
    assert_eq!(w.engine.instrument().reach_bytes, REACH);
}

#[test]
fn a_machine_with_more_cpus_is_assumed_to_grow_faster() {
    let reach = |cpus: u32, text: &str| {
        let opts = crate::engine::Options {
            mode: crate::engine::Mode::Ebpf,
            self_pid: 1,
            page_size: 4096,
            cpus,
            moves_reported: true,
        };
        let cfg = Config::parse(text, "t").unwrap();
        crate::engine::Engine::new(cfg, opts, crate::fake::FakeHost::default())
            .instrument()
            .reach_bytes
    };
    // 4 GiB/s for each of 16 CPUs over 250 ms and 50 ms to attach.
    assert_eq!(reach(16, ""), (64.0 * (1u64 << 30) as f64 * 0.3) as u64);
    assert_eq!(reach(2, ""), REACH);
    // A rate the operator set holds whatever the CPUs.
    assert_eq!(reach(16, "[agent]\nfastest_growth = \"8GiB\"\n"), REACH);
}

#[test]
fn the_instrument_has_been_on_since_the_agent_started() {
    let mut w = world("");
    w.run_for(3.0);
    let cfg = w.engine.config().clone();
    w.restart_agent(cfg, true);
    let started = w.now();
    assert!(started > 0.0);
    assert_eq!(w.engine.instrument().since, started);
    w.run_for(1.0);
    assert_eq!(w.engine.instrument().instrument, Instrument::Precise);
    assert_eq!(w.engine.instrument().since, started, "not switched yet");
}

#[test]
fn an_idle_host_goes_wide_and_a_leaker_far_below_its_line_is_stopped_by_the_tripwire() {
    let mut w = world(&rule("big", "6GiB", "freeze"));
    w.host_mut().ram = Some(64 * GIB);
    w.run_for(DISARM_AFTER_SECS + 1.0);
    assert_eq!(w.engine.instrument().instrument, Instrument::Wide);
    let detached = switches(&w);
    assert_eq!(detached.len(), 1, "{detached:?}");
    assert!(!detached[0].1);
    assert!(
        (DISARM_AFTER_SECS..DISARM_AFTER_SECS + 0.2).contains(&detached[0].0),
        "{detached:?}"
    );

    // 2 GB/s from nothing: out of reach at first.
    let start = w.now();
    w.spawn(10, proc("memhog"), hog(0, 2e9, 8 * GIB, 30.0));
    w.run_for(5.0);
    let attach = switches(&w)[1];
    assert!(attach.1, "{:?}", switches(&w));
    let at_attach = (2e9 * (attach.0 - start)) as u64;
    let preempt_line = 6 * GIB * 85 / 100;
    assert!(
        at_attach + REACH / 2 <= preempt_line,
        "attached at {} MiB, under half a reach from the preempt line",
        at_attach / MIB
    );
    assert!(attach.0 - start > 0.5, "it was out of reach at first");
    let d = expect(&w, 10, DecisionAction::Freeze);
    assert_eq!(d.kind, DecisionKind::Preempt);
    assert_eq!(d.outcome, Outcome::Done);
    let held = w.host().procs[&10].mem.charged();
    assert!(
        held <= preempt_line,
        "the tripwire stops it at its line: {} MiB",
        held / MIB
    );
    assert_eq!(w.engine.instrument().armed, 1);
    assert_eq!(w.engine.instrument().instrument, Instrument::Precise);
}

#[test]
fn the_precise_probe_stays_until_every_line_has_been_far_for_a_while() {
    let mut w = world(&rule("big", "6GiB", "freeze"));
    w.host_mut().ram = Some(64 * GIB);
    w.run_for(DISARM_AFTER_SECS + 1.0);
    // Into reach of the warn line (4.2 GiB) and out: a load that finished.
    let exits = w.now() + (4 * GIB) as f64 / 2e9 + 2.0;
    w.spawn(10, proc("loader"), hog(0, 2e9, 4 * GIB, 2.0));
    w.run_for(5.0);
    let sw = switches(&w);
    assert_eq!(sw.len(), 2, "{sw:?}");
    assert!(sw[1].1);
    assert_eq!(state(&w, 10), None, "it exited");
    w.run_for(DISARM_AFTER_SECS - 1.0);
    assert_eq!(switches(&w).len(), 2, "not detached at once");
    w.run_for(2.0);
    let sw = switches(&w);
    assert_eq!(sw.len(), 3, "{sw:?}");
    assert!(!sw[2].1 && sw[2].0 >= exits + DISARM_AFTER_SECS, "{sw:?}");
    assert!(about(&w, 10).is_empty(), "{:#?}", journal(&w));
}

#[test]
fn a_process_forked_while_wide_under_a_small_limit_attaches_the_probe_at_once() {
    let mut w = world(&rule("small", "256MiB", "freeze"));
    w.run_for(DISARM_AFTER_SECS + 1.0);
    assert_eq!(w.engine.instrument().instrument, Instrument::Wide);
    let start = w.now();
    w.spawn(10, proc("memhog"), hog(0, 1e9, GIB, 10.0));
    w.run_for(2.0);
    let sw = switches(&w);
    assert!(sw.len() >= 2 && sw[1].1, "{sw:?}");
    assert!(sw[1].0 - start < 0.01, "read from its fork event: {sw:?}");
    let d = expect(&w, 10, DecisionAction::Freeze);
    assert!(d.charged_bytes < 256 * MIB, "{d:?}");
    assert!(w.host().procs[&10].mem.charged() < 256 * MIB);
}

#[test]
fn a_probe_that_cannot_attach_leaves_the_wide_watch_acting_and_says_why() {
    let mut w = world(&rule("big", "6GiB", "freeze"));
    w.host_mut().ram = Some(64 * GIB);
    w.run_for(DISARM_AFTER_SECS + 1.0);
    w.host_mut().precise_error = Some("EPERM".into());
    w.spawn(10, proc("memhog"), hog(0, 1e9, 8 * GIB, 30.0));
    w.run_for(8.0);
    let view = w.engine.instrument();
    assert_eq!(view.instrument, Instrument::Wide);
    assert_eq!(view.error.as_deref(), Some("EPERM"));
    // Sampled every tick instead: stopped, later than the tripwire would.
    let d = expect(&w, 10, DecisionAction::Freeze);
    assert!(d.charged_bytes < 6 * GIB, "{d:?}");
}

#[test]
fn always_keeps_the_precise_probe_and_a_reload_to_always_attaches_it() {
    let mut w = world("[agent]\nprecise_probe = \"always\"\n");
    w.run_for(DISARM_AFTER_SECS * 2.0);
    assert!(switches(&w).is_empty());
    assert_eq!(w.engine.instrument().instrument, Instrument::Precise);

    let mut w = world("");
    w.run_for(DISARM_AFTER_SECS + 1.0);
    assert_eq!(w.engine.instrument().instrument, Instrument::Wide);
    let cfg = Config::parse("[agent]\nprecise_probe = \"always\"\n", "t.toml").unwrap();
    w.engine.apply_config(cfg);
    assert_eq!(w.engine.instrument().instrument, Instrument::Precise);
    assert_eq!(switches(&w).last().map(|s| s.1), Some(true));
}

#[test]
fn a_process_moved_into_a_governed_cgroup_while_wide_comes_under_its_rule() {
    let mut w = world(&rule("leaky", "256MiB", "freeze"));
    w.run_for(DISARM_AFTER_SECS + 1.0);
    w.spawn(
        10,
        FakeProc::new(1, "memhog", "/elsewhere"),
        hog(0, 10e6, 400 * MIB, 60.0),
    );
    // Longer than a rescan's identity checks look back (10 s of quiet):
    // only the kernel's report of the move can tell.
    w.run_for(12.0);
    assert_eq!(w.engine.instrument().instrument, Instrument::Wide);
    w.move_to(10, CG);
    w.run_for(15.0);
    let d = expect(&w, 10, DecisionAction::Freeze);
    assert_eq!((d.rule.as_str(), d.cgroup.as_str()), ("leaky", CG));
    assert!(d.charged_bytes < 256 * MIB, "{d:?}");
}
