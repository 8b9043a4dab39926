//! Stampedes at a shared limit: many legitimate workers growing together.
//! Just enough of them wait, frozen and queued; they resume as memory
//! frees; waiting is not failing; only a tree that grows alone to the line
//! is a runaway.

use super::{
    shared::{capped_with, host, host_with},
    *,
};
use crate::{decision::DecisionKind, policy::Level};

/// How a stampede ended: pids that ran to their end, pids killed, when the
/// last one ended, and the most the group held.
#[derive(Debug)]
pub(super) struct Ending {
    pub finished: Vec<u32>,
    pub killed: Vec<u32>,
    pub wall: f64,
    pub peak: u64,
}

/// Runs `w` until none of `pids` is left (or `until`), watching the group.
pub(super) fn run_out(w: &mut World, pids: &[u32], until: f64) -> Ending {
    let mut peak = 0;
    while w.now() < until && pids.iter().any(|p| w.host().procs.contains_key(p)) {
        w.run_for(0.01);
        let held: u64 = w.host().procs.values().map(|p| p.mem.charged()).sum();
        peak = peak.max(held);
    }
    let killed: Vec<u32> = w
        .host()
        .signals
        .iter()
        .filter(|(_, s)| matches!(s, Signal::Kill | Signal::Terminate))
        .map(|(p, _)| *p)
        .collect();
    Ending {
        finished: pids
            .iter()
            .copied()
            .filter(|p| !killed.contains(p) && !w.host().procs.contains_key(p))
            .collect(),
        killed,
        wall: w.now(),
        peak,
    }
}

/// Decisions of `kind` about `pid`.
fn of_kind(w: &World, pid: u32, kind: DecisionKind) -> Vec<Decision> {
    about(w, pid)
        .into_iter()
        .map(|r| r.decision.clone())
        .filter(|d| d.kind == kind)
        .collect()
}

/// Eight workers growing to 1.5 GiB at 300 MB/s, holding 3 s and exiting,
/// all started at once in a cgroup capped at 6 GiB.
pub(super) fn eight_workers(w: &mut World) -> Vec<u32> {
    let pids: Vec<u32> = (100..108).collect();
    for &pid in &pids {
        w.spawn(pid, proc("worker"), hog(0, 300e6, 1536 * MIB, 3.0));
    }
    pids
}

pub(super) fn stampede(action: &str) -> World {
    let mut w = world(&format!(
        "[[cgroup]]\nname = \"jobs\"\nmatch = \"^{CG}$\"\naction = \"{action}\"\n"
    ));
    w.host_mut().cgroup_limits.insert(CG.into(), 6 * GIB);
    w
}

#[test]
fn eight_workers_in_six_gib_all_finish_under_a_freeze_rule() {
    let mut w = stampede("freeze");
    let pids = eight_workers(&mut w);
    let end = run_out(&mut w, &pids, 120.0);
    assert_eq!(end.finished, pids, "{end:?}\n{:#?}", journal(&w));
    assert!(end.killed.is_empty());
    assert!(end.peak < 6 * GIB, "peak {} MiB", end.peak / MIB);
    // Some waited their turn; nobody was taken for a runaway.
    let queued: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|&p| !of_kind(&w, p, DecisionKind::Queue).is_empty())
        .collect();
    assert!(!queued.is_empty(), "{:#?}", journal(&w));
    assert!(
        w.host()
            .decisions()
            .all(|d| d.kind != DecisionKind::Preempt || d.action == DecisionAction::Alert),
        "{:#?}",
        journal(&w)
    );
    // Everyone queued was resumed, and every wait ended in a resume.
    for p in &queued {
        assert!(!of_kind(&w, *p, DecisionKind::Resume).is_empty(), "pid {p}");
    }
    eprintln!(
        "freeze rule: wall {:.1} s, peak {} MiB",
        end.wall,
        end.peak / MIB
    );
}

#[test]
fn eight_workers_in_six_gib_all_finish_with_the_kernels_freezer() {
    // Frozen tasks show as `D` there, not `T`: a stop is confirmed all the
    // same, so the next waiter is chosen at once, not a settle timeout later.
    let mut w = stampede("freeze");
    w.host_mut().freezer = true;
    let pids = eight_workers(&mut w);
    let end = run_out(&mut w, &pids, 120.0);
    assert_eq!(end.finished, pids, "{end:?}\n{:#?}", journal(&w));
    assert!(end.peak < 6 * GIB, "peak {} MiB", end.peak / MIB);
    let queued_at_once = w
        .host()
        .journal
        .iter()
        .filter(|r| r.decision.kind == DecisionKind::Queue && r.t < 0.5)
        .count();
    assert!(queued_at_once >= 4, "{:#?}", journal(&w));
}

#[test]
fn eight_workers_in_six_gib_all_finish_under_a_kill_rule_and_waiting_is_not_failing() {
    // A freeze timeout far shorter than the waits: a queued worker is not
    // a runaway, so no timeout or kill applies to it.
    let mut w = stampede("kill");
    let raised = Config::parse(
        &format!(
            "[agent]\nfreeze_timeout = \"1s\"\n[[cgroup]]\nname = \"jobs\"\nmatch = \"^{CG}$\"\naction = \"kill\"\n"
        ),
        "t",
    )
    .unwrap();
    w.engine.apply_config(raised);
    let pids = eight_workers(&mut w);
    let end = run_out(&mut w, &pids, 120.0);
    assert_eq!(end.finished, pids, "{end:?}\n{:#?}", journal(&w));
    assert!(end.killed.is_empty(), "{end:?}");
    // Each wait, from its queueing to its own resume.
    let journal = &w.host().journal;
    let longest = journal
        .iter()
        .enumerate()
        .filter(|(_, q)| q.decision.kind == DecisionKind::Queue)
        .filter_map(|(i, q)| {
            let resumed = journal[i..].iter().find(|r| {
                r.decision.pid == q.decision.pid && r.decision.kind == DecisionKind::Resume
            })?;
            Some(resumed.t - q.t)
        })
        .fold(0.0, f64::max);
    assert!(
        longest > 1.0,
        "some worker waited past freeze_timeout: {longest}"
    );
}

#[test]
fn a_runaway_among_the_stampede_alone_meets_the_ladder_and_the_rest_finish() {
    let mut w = stampede("kill");
    let mut pids = eight_workers(&mut w);
    pids.pop();
    // The eighth never stops growing.
    w.host_mut().procs.remove(&107);
    w.spawn(107, proc("leaker"), hog(0, 300e6, 64 * GIB, 60.0));
    let end = run_out(&mut w, &pids, 120.0);
    assert_eq!(end.finished, pids, "{end:?}\n{:#?}", journal(&w));
    // Then it grows alone to the line: the runaway, frozen, then killed
    // when its freeze does not clear.
    let end = run_out(&mut w, &[107], 200.0);
    assert_eq!(end.killed, [107], "{end:?}\n{:#?}", journal(&w));
    let stop = of_kind(&w, 107, DecisionKind::Preempt);
    assert!(
        stop.iter().any(|d| d.action >= DecisionAction::Freeze),
        "{:#?}",
        journal(&w)
    );
}

#[test]
fn the_third_of_three_big_loads_waits_while_two_that_fit_run() {
    // Seed 003: three models load two seconds apart on a 32 GB board;
    // only two fit. Each loads 12 GB at 2 GB/s, serves for 10 s, exits.
    let mut w = world(&format!(
        "[[cgroup]]\nname = \"board\"\nmatch = \"^{CG}$\"\naction = \"freeze\"\n"
    ));
    w.host_mut().cgroup_limits.insert(CG.into(), 32 * GIB);
    let load = || hog(0, 2e9, 12 * GIB, 10.0);
    w.spawn(1, proc("model-a"), load());
    w.run_for(2.0);
    w.spawn(2, proc("model-b"), load());
    w.run_for(2.0);
    w.spawn(3, proc("model-c"), load());
    w.run_for(3.0);
    // The first two were never stopped; the third waits.
    assert!(
        signals(&w, 1).is_empty() && signals(&w, 2).is_empty(),
        "{:#?}",
        journal(&w)
    );
    assert_eq!(state(&w, 3), Some('T'));
    let waits = of_kind(&w, 3, DecisionKind::Queue);
    assert_eq!(waits.len(), 1, "{:#?}", journal(&w));
    assert!(
        waits[0].reason.starts_with("waiting for memory"),
        "{}",
        waits[0].reason
    );
    let q = w.engine.queue_views();
    assert_eq!((q.len(), q[0].pid, q[0].position), (1, 3, 1));
    // While neither of the first two exits, it stays queued.
    w.run_for(5.0);
    assert_eq!(state(&w, 3), Some('T'));
    // Model a exits at about 16 s: the third runs then, and finishes.
    let end = run_out(&mut w, &[1, 2, 3], 120.0);
    assert_eq!(end.finished, [1, 2, 3], "{end:?}\n{:#?}", journal(&w));
    assert!(end.peak < 32 * GIB);
}

#[test]
fn a_lower_priority_class_waits_first() {
    let mut w = world(&format!(
        "[[priority]]\nname = \"batch\"\npriority = -10\nmatch = {{ comm = \"^batch$\" }}\n[[cgroup]]\nname = \"jobs\"\nmatch = \"^{CG}$\"\naction = \"freeze\"\n"
    ));
    w.host_mut().cgroup_limits.insert(CG.into(), 4 * GIB);
    w.spawn(10, proc("batch"), hog(0, 300e6, 1536 * MIB, 3.0));
    w.run_for(0.5);
    w.spawn(11, proc("web"), hog(0, 300e6, 1536 * MIB, 3.0));
    w.spawn(12, proc("web"), hog(0, 300e6, 1536 * MIB, 3.0));
    w.run_for(1.0);
    let first = w
        .host()
        .decisions()
        .find(|d| d.kind == DecisionKind::Queue)
        .map(|d| d.pid);
    assert_eq!(
        first,
        Some(10),
        "the oldest, but of the lowest class: {:#?}",
        journal(&w)
    );
}

#[test]
fn a_host_scope_stampede_is_scheduled_too() {
    // As the host-scope end-to-end tests do it: the workers in one cgroup,
    // `candidates` only that cgroup, the host's floor such that the
    // stampede reaches its preempt line.
    let mut w = host(4 * GIB, 3 * GIB, &format!("^{CG}$"));
    let pids: Vec<u32> = (100..106).collect();
    for &pid in &pids {
        w.spawn(pid, proc("worker"), hog(0, 300e6, 1024 * MIB, 2.0));
    }
    let end = run_out(&mut w, &pids, 120.0);
    assert_eq!(end.finished, pids, "{end:?}\n{:#?}", journal(&w));
    assert!(w.host().decisions().any(|d| d.kind == DecisionKind::Queue));
    assert!(
        w.host()
            .decisions()
            .filter(|d| d.kind == DecisionKind::Queue)
            .all(|d| d.rule == "host" && d.level == Some(Level::Preempt))
    );
}

#[test]
fn a_group_never_sits_all_frozen_with_room_to_run_one() {
    // Two queued, the worker that ran exits: one of them resumes at once,
    // though its growth over the horizon would not fit.
    let mut w = capped_with(2 * GIB, "");
    w.spawn(10, proc("worker"), hog(0, 400e6, 1400 * MIB, 0.5));
    w.spawn(11, proc("worker"), hog(0, 400e6, 1400 * MIB, 0.5));
    w.spawn(12, proc("worker"), hog(0, 400e6, 1400 * MIB, 0.5));
    let end = run_out(&mut w, &[10, 11, 12], 120.0);
    assert_eq!(end.finished, [10, 11, 12], "{end:?}\n{:#?}", journal(&w));
}

#[test]
fn with_the_scheduler_off_a_stampede_freezes_whole() {
    // The behaviour this replaces, kept behind `schedule_horizon = "0s"`:
    // every worker frozen at the line, holding memory, nobody finishing.
    let mut w = capped_with(6 * GIB, "schedule_horizon = \"0s\"");
    let pids = eight_workers(&mut w);
    w.run_for(30.0);
    let frozen = pids.iter().filter(|&&p| state(&w, p) == Some('T')).count();
    assert_eq!(frozen, 8, "{:#?}", journal(&w));
}

#[test]
fn a_gpu_stampede_is_scheduled_on_its_device() {
    // Four loaders of 6 GiB at 1 GB/s on a 16 GiB device (its preempt line
    // holds two); each serves 2 s once loaded, then exits.
    let mut w = world("[gpu]\naction = \"freeze\"\n");
    let pids = [10, 11, 12, 13];
    for pid in pids {
        w.spawn(pid, proc("loader"), steady(MIB, 600.0));
    }
    let total = 16 * GIB;
    let (mut bytes, mut served) = ([0u64; 4], [0.0f64; 4]);
    let mut most_loaded = 0;
    let mut t = 0.0;
    while t < 120.0 && pids.iter().any(|p| w.host().procs.contains_key(p)) {
        t += 0.1;
        w.run_until(t);
        let mut sample = crate::model::GpuSample::default();
        for (i, pid) in pids.iter().enumerate() {
            match state(&w, *pid) {
                Some('R') if bytes[i] < 6 * GIB => bytes[i] = (bytes[i] + GIB / 10).min(6 * GIB),
                Some('R') if served[i] < 2.0 => served[i] += 0.1,
                Some('R') => {
                    // Done: it frees the device and exits.
                    w.host_mut().procs.get_mut(pid).expect("running").state = 'Z';
                    bytes[i] = 0;
                    continue;
                }
                Some(_) => {}
                None => continue,
            }
            sample.processes.insert((0, *pid), bytes[i]);
        }
        let used: u64 = sample.processes.values().sum();
        let loaded = sample.processes.values().filter(|&&b| b >= 5 * GIB).count();
        most_loaded = most_loaded.max(loaded);
        assert!(
            used < total,
            "the device filled at t={t:.1}: {:#?}",
            journal(&w)
        );
        sample.devices.push(crate::model::DeviceSample {
            index: 0,
            uuid: "GPU-0".into(),
            name: "Fake".into(),
            total,
            used,
        });
        w.engine.observe_gpu(sample, t);
    }
    assert!(
        pids.iter().all(|p| !w.host().procs.contains_key(p)),
        "{:#?}",
        journal(&w)
    );
    assert!(most_loaded <= 2, "{most_loaded} loaders at 5+ GiB at once");
    assert!(
        w.host()
            .decisions()
            .all(|d| d.kind != DecisionKind::Preempt || d.action == DecisionAction::Alert),
        "nobody is a runaway: {:#?}",
        journal(&w)
    );
    let waits: Vec<&Decision> = w
        .host()
        .decisions()
        .filter(|d| d.kind == DecisionKind::Queue)
        .collect();
    assert!(!waits.is_empty(), "{:#?}", journal(&w));
    assert!(waits.iter().all(|d| d.rule == "gpu:0"));
}

#[test]
fn in_dry_run_a_stampede_says_once_who_would_wait_and_stops_nobody() {
    let mut w = world(&format!(
        "[agent]\ndry_run = true\n[[cgroup]]\nname = \"jobs\"\nmatch = \"^{CG}$\"\naction = \"kill\"\n"
    ));
    w.host_mut().cgroup_limits.insert(CG.into(), 6 * GIB);
    let pids = eight_workers(&mut w);
    w.run_for(3.0);
    assert!(w.host().signals.is_empty());
    assert!(pids.iter().all(|&p| state(&w, p) == Some('R')));
    // Who would wait, said once each, at the start: a dry run shows the
    // schedule, not a decision on every sample. (Nobody really waits, so
    // the group goes on to its lines, and the ladder's dry-run decisions
    // follow.)
    let first: Vec<u32> = w
        .host()
        .journal
        .iter()
        .filter(|r| r.decision.kind == DecisionKind::Queue && r.t < 0.1)
        .map(|r| r.decision.pid)
        .collect();
    assert_eq!(first, [103, 104, 105, 106, 107], "{:#?}", journal(&w));
    for p in &pids {
        let waits = of_kind(&w, *p, DecisionKind::Queue);
        assert!(waits.len() <= 1, "pid {p}: {waits:#?}");
        assert!(
            waits
                .iter()
                .all(|d| d.outcome == crate::decision::Outcome::DryRun)
        );
    }
}

#[test]
fn children_of_a_steady_parent_in_the_group_all_run_in_turn() {
    // `make -j4` (the parent, steady, in the cgroup) waits for its four
    // children; each needs 1.4 GiB at 400 MB/s of a 2 GiB cgroup. Only one
    // fits at a time, and each one's growth over the horizon is more than
    // the whole room: waiting for room would wait forever.
    let mut w = capped_with(2 * GIB, "");
    w.spawn(10, proc("make"), steady(20 * MIB, 600.0));
    let kids = [11, 12, 13, 14];
    for pid in kids {
        w.spawn(
            pid,
            FakeProc::new(10, "cc", CG),
            hog(0, 400e6, 1400 * MIB, 0.5),
        );
    }
    let end = run_out(&mut w, &kids, 120.0);
    assert_eq!(end.finished, kids, "{end:?}\n{:#?}", journal(&w));
    assert!(end.killed.is_empty());
}

#[test]
fn a_runaway_beside_a_trickling_daemon_is_the_runaway() {
    // A daemon growing 100 KB/s does not make a stampede: the leaker
    // beside it is stopped by the ladder, and the daemon is untouched.
    let mut w = stampede("kill");
    w.spawn(10, proc("daemon"), hog(100 * MIB, 100e3, GIB, 600.0));
    w.run_for(1.0);
    w.spawn(11, proc("leaker"), hog(0, 500e6, 64 * GIB, 600.0));
    w.run_for(60.0);
    let stops = of_kind(&w, 11, DecisionKind::Preempt);
    assert!(
        stops.iter().any(|d| d.action == DecisionAction::Freeze),
        "{:#?}",
        journal(&w)
    );
    assert!(
        of_kind(&w, 11, DecisionKind::Queue).is_empty(),
        "{:#?}",
        journal(&w)
    );
    assert_eq!(signals(&w, 10), []);
    assert_eq!(state(&w, 11), None, "killed after its freeze did not clear");
}

/// Eight workers under a freeze rule, run until some wait.
fn queued_stampede() -> (World, Vec<u32>) {
    let mut w = stampede("freeze");
    let pids = eight_workers(&mut w);
    w.run_for(0.5);
    let queued: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|&p| state(&w, p) == Some('T'))
        .collect();
    assert!(!queued.is_empty(), "{:#?}", journal(&w));
    (w, queued)
}

#[test]
fn an_operator_resume_lets_a_queued_worker_run_on() {
    let (mut w, queued) = queued_stampede();
    let pid = queued[0];
    let d = w
        .engine
        .operator_resume(pid, "uid 0 (root)")
        .expect("resumed");
    assert_eq!(d.kind, DecisionKind::Resume);
    assert_eq!(state(&w, pid), Some('R'));
    assert!(w.engine.queue_views().iter().all(|q| q.pid != pid));
    // Let run: not made to wait again as it fills the room.
    w.run_for(0.5);
    assert_eq!(state(&w, pid), Some('R'), "{:#?}", journal(&w));
}

#[test]
fn a_rule_that_no_longer_freezes_releases_its_queue() {
    let (mut w, queued) = queued_stampede();
    let alert = Config::parse(
        &format!("[[cgroup]]\nname = \"jobs\"\nmatch = \"^{CG}$\"\naction = \"alert\"\n"),
        "t",
    )
    .unwrap();
    w.engine.apply_config(alert);
    for pid in queued {
        assert_eq!(state(&w, pid), Some('R'), "pid {pid}: {:#?}", journal(&w));
        let r = of_kind(&w, pid, DecisionKind::Resume);
        assert!(r[0].reason.contains("no longer freezes"), "{}", r[0].reason);
    }
    assert!(w.engine.queue_views().is_empty());
}

#[test]
fn a_stampede_seen_by_polling_finishes_too() {
    // Without eBPF the agent reads /proc every 100 ms: a resumed worker's
    // growth shows late, and counts at its old rate meanwhile.
    let cfg = Config::parse(
        &format!("[[cgroup]]\nname = \"jobs\"\nmatch = \"^{CG}$\"\naction = \"freeze\"\n"),
        "t",
    )
    .unwrap();
    let mut w = World::with_mode(cfg, Default::default(), crate::engine::Mode::Polling);
    w.host_mut().cgroup_limits.insert(CG.into(), 6 * GIB);
    let pids = eight_workers(&mut w);
    let end = run_out(&mut w, &pids, 120.0);
    assert_eq!(end.finished, pids, "{end:?}\n{:#?}", journal(&w));
    assert!(end.peak < 6 * GIB);
}

#[test]
fn a_worker_that_finished_growing_is_no_longer_a_grower_beside_the_next() {
    // The steady one climbs fast to 600 MiB of 1 GiB (let run alone) and
    // holds; 0.7 s later a leaker heads past the line. Only the
    // leaker grows: it meets the ladder, it does not wait for a turn that
    // the steady one's finished climb would never give back.
    let mut w = capped_with(GIB, "");
    w.spawn(10, proc("steady"), hog(0, 2e9, 600 * MIB, 6.0));
    w.run_for(1.0);
    w.spawn(11, proc("leaker"), hog(0, 200e6, 1000 * MIB, 30.0));
    w.run_for(3.0);
    assert!(
        of_kind(&w, 11, DecisionKind::Queue).is_empty(),
        "{:#?}",
        journal(&w)
    );
    let d = expect(&w, 11, DecisionAction::Freeze);
    assert!(d.reason.contains("of its recent growth"), "{}", d.reason);
    assert!(about(&w, 10).is_empty(), "{:#?}", journal(&w));
}

#[test]
fn the_last_of_a_stampede_at_the_line_finishes_in_the_headroom() {
    // Four workers of 1.5 GiB that start slow (150 MB/s for a second, so
    // all four are let run) and then speed up to 400 MB/s: together they
    // reach the preempt line with more than a gigabyte each. Three wait
    // there; the last one running is not a runaway for being left alone
    // at the line. It finishes in the headroom below the kill level, and
    // the rest in turn, under a kill rule with a short freeze timeout.
    let mut w = world(&format!(
        "[agent]\nfreeze_timeout = \"1s\"\n[[cgroup]]\nname = \"jobs\"\nmatch = \"^{CG}$\"\naction = \"kill\"\n"
    ));
    w.host_mut().cgroup_limits.insert(CG.into(), 6 * GIB);
    let target = 1536 * MIB;
    let pids: Vec<u32> = (100..104).collect();
    for &pid in &pids {
        let script: Script = Box::new(move |t| {
            let climbed = if t < 1.0 {
                150e6 * t
            } else {
                150e6 + 400e6 * (t - 1.0)
            };
            let climb = 1.0 + (target as f64 - 150e6) / 400e6;
            (t < climb + 2.0).then(|| (climbed as u64).min(target))
        });
        w.spawn(pid, proc("worker"), script);
    }
    let end = run_out(&mut w, &pids, 120.0);
    assert!(
        pids.iter().all(|p| of_kind(&w, *p, DecisionKind::Queue)
            .iter()
            .all(|d| d.reason.contains("at its preempt line"))),
        "all four were let run at first: {:#?}",
        journal(&w)
    );
    assert!(
        !pids
            .iter()
            .all(|p| of_kind(&w, *p, DecisionKind::Queue).is_empty()),
        "some waited at the line: {:#?}",
        journal(&w)
    );
    assert_eq!(end.finished, pids, "{end:?}\n{:#?}", journal(&w));
    assert!(end.killed.is_empty(), "{end:?}");
    assert!(end.peak < 6 * GIB * 95 / 100, "{end:?}");
}

#[test]
fn at_host_scope_the_queue_waits_for_the_holders_before_it_tries() {
    // Seen on the kernel: the host sees the stampede late, when eight
    // workers already hold 250 MiB each; one runs, seven wait. While the
    // one that ran holds its gigabyte, the next must not be tried just
    // because its pace over the horizon would not fit beside what the
    // others hold: the holder ends in seconds and frees the room.
    let mut w = host_with(4 * GIB, 3 * GIB, &format!("^{CG}$"), "");
    let pids: Vec<u32> = (100..108).collect();
    for &pid in &pids {
        w.spawn(pid, proc("worker"), hog(250 * MIB, 300e6, GIB, 3.0));
    }
    let end = run_out(&mut w, &pids, 200.0);
    assert_eq!(end.finished, pids, "{end:?}\n{:#?}", journal(&w));
    let queued: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| !of_kind(&w, *p, DecisionKind::Queue).is_empty())
        .collect();
    assert_eq!(queued.len(), 7, "{:#?}", journal(&w));
    // The one let run climbs for 2.6 s and holds for 3 s.
    let first_try = w
        .host()
        .journal
        .iter()
        .find(|r| r.decision.kind == DecisionKind::Resume)
        .map(|r| r.t)
        .expect("a resume");
    assert!(
        first_try > 5.5,
        "tried at {first_try:.1} s: {:#?}",
        journal(&w)
    );
}
