//! Admission control as the engine sees it: grants that fit, growth inside
//! a reservation that is not a runaway, and reservations that end.

use super::*;
use crate::{
    decision::DecisionKind,
    policy::admission::{Admission, Ended, Pool, Priority, Request},
};

/// A worker's request for `bytes` from the test cgroup, waiting 30 s.
fn ask(pid: u32, bytes: u64, now: f64) -> Request {
    Request {
        id: 0,
        bytes,
        pool: Pool::Cgroup(CG.into()),
        priority: Priority::Normal,
        holder: format!("pid {pid}"),
        pid,
        ttl_secs: 86_400.0,
        queued_at: now,
        deadline: now + 30.0,
    }
}

/// Runs the world for `secs`, with the agent's admission pass on each
/// 100 ms tick as the agent does.
fn run_with_admission(w: &mut World, queue: &mut Admission, secs: f64) {
    let until = w.now() + secs;
    while w.now() < until {
        w.run_for(0.1);
        let now = w.now();
        w.engine.admission_pass(queue, now);
    }
}

fn jobs() -> World {
    let policy = format!("[[cgroup]]\nname = \"jobs\"\nmatch = \"^{CG}$\"\naction = \"freeze\"\n");
    let mut w = world(&policy);
    w.host_mut().cgroup_limits.insert(CG.into(), 2 * GIB);
    w
}

#[test]
fn growth_inside_a_reservation_is_expected_and_beyond_it_is_a_runaway() {
    // Past the 85% line of the 2 GiB cgroup, inside its 1900M reservation:
    // expected, so it runs to the end.
    let mut w = jobs();
    let mut queue = Admission::new(16);
    // `sentinel exec --reserve` (10) runs the worker (11) and waits for it.
    w.spawn(10, proc("sentinel"), steady(MIB, 6.0));
    queue
        .enqueue(ask(10, 1900 * 1_000_000, 0.0), 2 * GIB)
        .unwrap();
    let pass = w.engine.admission_pass(&mut queue, 0.0);
    assert_eq!(pass.granted.len(), 1, "{pass:?}");
    w.spawn(
        11,
        FakeProc::new(10, "memhog", CG),
        hog(0, 400e6, 1800 * MIB, 1.0),
    );
    run_with_admission(&mut w, &mut queue, 8.0);
    assert!(
        w.host()
            .decisions()
            .all(|d| d.action != DecisionAction::Freeze),
        "growth inside the reservation was stopped: {:#?}",
        journal(&w)
    );
    assert_eq!(state(&w, 11), None, "it ran to the end");

    // The same growth on a 512M reservation goes past it: a runaway.
    w.spawn(20, proc("sentinel"), steady(MIB, 60.0));
    queue
        .enqueue(ask(20, 512 * 1_000_000, w.now()), 2 * GIB)
        .unwrap();
    let now = w.now();
    let pass = w.engine.admission_pass(&mut queue, now);
    assert!(
        matches!(pass.granted.as_slice(), [r] if r.pid == 20),
        "the first reservation ended with its tree: {pass:?}"
    );
    w.spawn(
        21,
        FakeProc::new(20, "memhog", CG),
        hog(0, 400e6, 1800 * MIB, 30.0),
    );
    run_with_admission(&mut w, &mut queue, 8.0);
    let d = expect(&w, 21, DecisionAction::Freeze);
    assert_eq!(d.rule, "jobs");
}

#[test]
fn a_reservation_whose_tree_exits_is_orphaned_and_its_memory_given_back() {
    let mut w = jobs();
    let mut queue = Admission::new(16);
    w.spawn(10, proc("worker"), steady(MIB, 0.3));
    queue.enqueue(ask(10, 1500 * MIB, 0.0), 2 * GIB).unwrap();
    assert_eq!(w.engine.admission_pass(&mut queue, 0.0).granted.len(), 1);
    // A second one does not fit beside it...
    queue.enqueue(ask(11, 1000 * MIB, 0.0), 2 * GIB).unwrap();
    assert!(w.engine.admission_pass(&mut queue, 0.0).granted.is_empty());
    // ...until the first worker exits without releasing its reservation.
    w.run_for(1.0);
    let now = w.now();
    let pass = w.engine.admission_pass(&mut queue, now);
    assert!(
        matches!(pass.ended.as_slice(), [Ended::Orphaned(r)] if r.pid == 10),
        "{pass:?}"
    );
    assert_eq!(pass.granted.len(), 1);
    assert_eq!(pass.granted[0].pid, 11);
    let d = w.engine.record_admission(
        DecisionAction::Orphaned,
        10,
        &Pool::Cgroup(CG.into()),
        (1500 * MIB, 0),
        "pid 10 exited without releasing it".into(),
    );
    assert_eq!(
        (d.kind, d.rule.as_str(), d.cgroup.as_str()),
        (DecisionKind::Admission, "admission", CG)
    );
}

#[test]
fn work_let_in_by_a_grant_is_not_made_to_wait_beside_others() {
    // `sentinel exec --reserve` (10, itself growing a little as it starts
    // its command) is granted, and runs its worker (11) at once: the
    // worker's first pages are expected growth, never a stampede to
    // schedule.
    let mut w = jobs();
    let mut queue = Admission::new(16);
    w.spawn(10, proc("sentinel"), hog(0, 100e6, 10 * MIB, 30.0));
    w.run_for(0.03);
    queue
        .enqueue(ask(10, 1900 * 1_000_000, w.now()), 2 * GIB)
        .unwrap();
    let now = w.now();
    assert_eq!(w.engine.admission_pass(&mut queue, now).granted.len(), 1);
    w.spawn(
        11,
        FakeProc::new(10, "memhog", CG),
        hog(0, 400e6, 1700 * MIB, 1.0),
    );
    run_with_admission(&mut w, &mut queue, 6.0);
    assert_eq!(state(&w, 11), None, "it ran to its end");
    assert!(
        w.host().signals.is_empty(),
        "growth inside the reservation was stopped: {:#?}",
        journal(&w)
    );
}
