//! A process is its pid and its start time: a pid the table still holds
//! for an exited process, or a process that moved into a governed cgroup,
//! is read afresh, so its rule applies.

use super::*;
use crate::engine::Mode;

const ELSEWHERE: &str = "/elsewhere";

/// A leaker under the test cgroup's rule, where pid 10 was last known as
/// an ungoverned process elsewhere that vanished without an exit event (a
/// lost event, a zombie reaped meanwhile).
fn reused(mode: Mode) -> World {
    let cfg = Config::parse(&rule("leaky", "256MiB", "freeze"), "t").unwrap();
    let mut w = World::with_mode(cfg, Default::default(), mode);
    w.spawn(
        10,
        FakeProc::new(1, "idle", ELSEWHERE),
        steady(50 * MIB, 600.0),
    );
    w.run_for(3.0);
    w.host_mut().procs.remove(&10);
    w.spawn(10, proc("memhog"), hog(0, 200e6, 400 * MIB, 30.0));
    w
}

#[test]
fn a_reused_pid_is_a_new_process_with_events() {
    let mut w = reused(Mode::Ebpf);
    w.run_for(3.0);
    let d = expect(&w, 10, DecisionAction::Freeze);
    assert_eq!(d.rule, "leaky");
}

#[test]
fn a_reused_pid_is_a_new_process_when_polling() {
    let mut w = reused(Mode::Polling);
    // No fork or exit events: the next /proc pass finds the new start time.
    w.run_for(5.0);
    let d = expect(&w, 10, DecisionAction::Freeze);
    assert_eq!(d.rule, "leaky");
}

/// A process that writes itself into the test cgroup's cgroup.procs (no
/// exec): the kernel reports the move (`reported`, the cgroup probe) or,
/// without eBPF, the agent finds it reading the cgroups of the processes
/// that move memory.
fn moves_into_a_governed_cgroup(mode: Mode, reported: bool) {
    let cfg = Config::parse(&rule("leaky", "256MiB", "freeze"), "t").unwrap();
    let mut w = World::with_mode(cfg, Default::default(), mode);
    w.spawn(
        10,
        FakeProc::new(1, "memhog", ELSEWHERE),
        hog(0, 20e6, 400 * MIB, 60.0),
    );
    w.run_for(3.0);
    assert!(first(&w, 10, DecisionAction::Freeze).is_none());
    if reported {
        w.move_to(10, CG);
    } else {
        w.host_mut().procs.get_mut(&10).expect("alive").cgroup = CG.into();
    }
    w.run_for(15.0);
    let d = expect(&w, 10, DecisionAction::Freeze);
    assert_eq!(d.rule, "leaky");
    assert_eq!(d.cgroup, CG);
}

#[test]
fn a_process_that_moves_into_a_governed_cgroup_comes_under_its_rule() {
    moves_into_a_governed_cgroup(Mode::Ebpf, true);
}

#[test]
fn without_ebpf_a_move_into_a_governed_cgroup_is_found_by_reading_cgroups() {
    moves_into_a_governed_cgroup(Mode::Polling, false);
}

/// The fork probe wakes the agent lazily, so a rescan may find a child
/// (and the stampede scheduler queue it) before its fork event arrives.
/// That event must not make the agent forget the child: it would stay
/// frozen with nobody to resume it.
#[test]
fn a_fork_event_that_arrives_after_the_child_is_known_forgets_nothing() {
    use super::stampede::{eight_workers, run_out, stampede};
    let mut w = stampede("freeze");
    let pids = eight_workers(&mut w);
    w.run_for(3.0);
    let queued: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|&p| w.engine.is_queued(p))
        .collect();
    assert!(!queued.is_empty(), "{:#?}", journal(&w));
    for &p in &pids {
        w.report_fork(p, 1);
    }
    for &p in &queued {
        assert!(w.engine.is_queued(p), "pid {p} was forgotten");
    }
    let end = run_out(&mut w, &pids, 120.0);
    assert_eq!(end.finished, pids, "{end:?}\n{:#?}", journal(&w));
}

/// Protection is given to a process, not to a pid: the next process
/// under the pid is governed by its rule as any other.
#[test]
fn an_operators_protection_does_not_pass_to_a_new_process_under_the_pid() {
    let mut w = world(&rule("leaky", "256MiB", "freeze"));
    w.spawn(10, proc("memhog"), steady(50 * MIB, 600.0));
    w.run_for(0.5);
    w.engine
        .operator_protect(10, true, "uid 0 (root)")
        .expect("protected");
    w.run_for(0.5);
    // It exits; its exit event is lost; a leaker gets its pid.
    w.host_mut().procs.remove(&10);
    w.spawn(10, proc("memhog"), hog(0, 200e6, 400 * MIB, 30.0));
    w.run_for(3.0);
    let d = expect(&w, 10, DecisionAction::Freeze);
    assert_eq!(d.rule, "leaky");
}
