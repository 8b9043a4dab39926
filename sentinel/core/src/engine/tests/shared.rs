//! Shared limits: a cgroup's, the host's, a GPU's. The grower is stopped,
//! never the biggest.

use super::*;
use crate::{
    decision::{DecisionKind, Outcome, ScopeKind},
    fake::FakeHost,
    model::{DeviceSample, GpuSample},
    policy::Level,
};

pub fn capped(limit: u64) -> World {
    capped_with(limit, "")
}

/// A cgroup rule over the test cgroup, after these `[agent]` settings.
pub fn capped_with(limit: u64, agent: &str) -> World {
    let policy = format!(
        "[agent]\n{agent}\n[[cgroup]]\nname = \"capped\"\nmatch = \"^{CG}$\"\naction = \"freeze\"\n"
    );
    let mut w = world(&policy);
    w.host_mut().cgroup_limits.insert(CG.into(), limit);
    w
}

#[test]
fn cgroup_scope_stops_the_grower_not_the_biggest_and_resumes_it_when_room_returns() {
    // The kernel OOM killer, earlyoom and friends would kill the 600 MiB
    // process here: it is the biggest. Sentinel must stop the leaker.
    let mut w = capped(GIB);
    w.spawn(10, proc("steady"), steady(600 * MIB, 4.0));
    w.run_for(0.5);
    w.spawn(11, proc("leaker"), hog(0, 200e6, 1000 * MIB, 30.0));
    w.run_for(3.0);
    let d = expect(&w, 11, DecisionAction::Freeze);
    assert_eq!(
        (d.rule.as_str(), d.scope),
        ("capped", Some(ScopeKind::Cgroup))
    );
    assert!(d.reason.contains("of its recent growth"), "{}", d.reason);
    assert_eq!((d.limit_bytes, d.level), (GIB, Some(Level::Preempt)));
    assert_eq!(state(&w, 11), Some('T'));
    assert!(about(&w, 10).is_empty(), "{:#?}", journal(&w));
    let usage: u64 = w.host().procs.values().map(|p| p.mem.charged()).sum();
    assert!(usage < GIB);

    // With the steady process gone the cgroup is below its clear level
    // (75%): the frozen leaker is resumed, keeps growing, and is stopped
    // again before the line. Reversible: its work was not lost.
    w.run_for(5.0);
    assert_eq!(state(&w, 10), None, "the steady one finished its work");
    let resumed = expect(&w, 11, DecisionAction::Resume);
    assert_eq!(
        (resumed.kind, resumed.outcome),
        (DecisionKind::Resume, Outcome::Done)
    );
    let again = about(&w, 11)
        .into_iter()
        .map(|r| &r.decision)
        .find(|d| d.action == DecisionAction::Freeze && d.seq > resumed.seq)
        .unwrap_or_else(|| panic!("not stopped again: {:#?}", journal(&w)));
    assert_eq!(again.rule, "capped");
    assert_eq!(state(&w, 11), Some('T'));
    assert!(
        w.host().procs[&11].mem.charged() > 600 * MIB,
        "it grew after the resume"
    );
}

#[test]
fn a_tree_that_forks_its_growth_is_one_grower() {
    // A service (10) runs a leaker (20) that splits its growth over ten
    // children at 20 MB/s each, beside a single process (40) at 60 MB/s:
    // child by child the single one grows fastest, but the tree grows
    // faster, and all of it is stopped first. (With the scheduler off: it
    // would otherwise only make the tree wait; see stampede.rs.)
    let mut w = capped_with(GIB, "schedule_horizon = \"0s\"");
    w.spawn(10, proc("service"), steady(MIB, 60.0));
    w.spawn(20, FakeProc::new(10, "leaker", CG), steady(MIB, 60.0));
    for pid in 21..31 {
        w.spawn(
            pid,
            FakeProc::new(20, "child", CG),
            hog(10 * MIB, 20e6, GIB, 60.0),
        );
    }
    w.spawn(
        30,
        FakeProc::new(10, "single", CG),
        hog(10 * MIB, 60e6, GIB, 60.0),
    );
    w.run_for(6.0);
    let stops: Vec<&Decision> = w
        .host()
        .decisions()
        .filter(|d| d.action == DecisionAction::Freeze)
        .collect();
    let first: Vec<u32> = stops.iter().take(10).map(|d| d.pid).collect();
    assert_eq!(first, (21..31).collect::<Vec<u32>>(), "{:#?}", journal(&w));
    assert!(stops[0].reason.contains("tree 20"), "{}", stops[0].reason);
    assert!(about(&w, 10).is_empty(), "the service itself is untouched");
}

/// A host of 16 GiB with `used` in use by others, whose preempt line
/// (85% of its limit) lies `room` above that, and whose victims may come
/// only from `candidates`.
pub fn host(used: u64, room: u64, candidates: &str) -> World {
    host_with(used, room, candidates, "")
}

/// `host`, after these `[agent]` settings.
pub fn host_with(used: u64, room: u64, candidates: &str, agent: &str) -> World {
    let ram = 16 * GIB;
    let limit = ((used + room) as f64 / 0.85) as u64;
    let policy = format!(
        "[agent]\n{agent}\n[host]\naction = \"freeze\"\nlevels = {{ warn = 0.70, preempt = 0.85, kill = 0.95, clear = 0.10 }}\nmin_available = \"{}\"\ncandidates = \"{candidates}\"\n",
        ram - limit
    );
    let cfg = Config::parse(&policy, "t").unwrap_or_else(|e| panic!("{e}"));
    let mut h = FakeHost::default();
    (h.ram, h.baseline_used) = (Some(ram), used);
    World::new(cfg, h)
}

#[test]
fn host_scope_stops_the_grower_not_the_biggest() {
    let mut w = host(4 * GIB, 650 * MIB, &format!("^{CG}$"));
    w.spawn(10, proc("steady"), steady(400 * MIB, 6.0));
    w.run_for(0.5);
    w.spawn(11, proc("leaker"), hog(0, 200e6, 600 * MIB, 30.0));
    w.run_for(3.0);
    let d = expect(&w, 11, DecisionAction::Freeze);
    assert_eq!((d.rule.as_str(), d.scope), ("host", Some(ScopeKind::Host)));
    assert_eq!(d.level, Some(Level::Preempt));
    assert!(d.reason.contains("of its recent growth"), "{}", d.reason);
    assert_eq!(state(&w, 11), Some('T'));
    assert!(
        about(&w, 10)
            .iter()
            .all(|r| r.decision.action == DecisionAction::Alert),
        "{:#?}",
        journal(&w)
    );
    assert!(signals(&w, 10).is_empty());
    w.run_for(4.0);
    assert_eq!(state(&w, 10), None, "the steady one finished");
    let v = w.engine.host_view();
    assert!(v.limit > 0 && v.used > 0, "{v:?}");
}

#[test]
fn at_host_scope_a_cgroup_that_splits_its_growth_is_one_grower() {
    // Three workers of one service at 70 MB/s each, beside a lone process
    // at 150 MB/s in another: process by process the lone one grows
    // fastest, but the service grows faster. (With the scheduler off: it
    // would otherwise make them wait their turns; see stampede.rs.)
    let mut w = host_with(
        4 * GIB,
        300 * MIB,
        "^/sentinel-test/hostsplit-.*$",
        "schedule_horizon = \"0s\"",
    );
    let (svc, lone) = (
        "/sentinel-test/hostsplit-svc",
        "/sentinel-test/hostsplit-lone",
    );
    for pid in [10, 11, 12] {
        w.spawn(
            pid,
            FakeProc::new(1, "worker", svc),
            hog(0, 70e6, 300 * MIB, 30.0),
        );
    }
    w.spawn(
        20,
        FakeProc::new(1, "lone", lone),
        hog(0, 150e6, 300 * MIB, 30.0),
    );
    w.run_for(4.0);
    let freezes: Vec<&Decision> = w
        .host()
        .decisions()
        .filter(|d| d.action == DecisionAction::Freeze)
        .collect();
    let mut first: Vec<u32> = freezes.iter().take(3).map(|d| d.pid).collect();
    first.sort();
    assert_eq!(first, [10, 11, 12], "{:#?}", journal(&w));
    assert!(
        freezes[0].reason.contains("its cgroup"),
        "{}",
        freezes[0].reason
    );
    assert_eq!(freezes[0].cgroup, svc);
    for pid in [10, 11, 12] {
        assert_eq!(state(&w, pid), Some('T'), "every growing worker is frozen");
    }
}

#[test]
fn a_gpu_is_a_shared_limit_and_its_grower_is_frozen() {
    let policy = "[gpu]\naction = \"freeze\"\n";
    let mut w = world(policy);
    w.spawn(10, proc("steady"), steady(MIB, 60.0));
    w.spawn(11, proc("grower"), steady(MIB, 60.0));
    w.run_for(0.5);
    let total = 16 * GIB;
    // NVML passes at 10 Hz: the steady process holds 8 GiB of the device,
    // the other grows 2 GiB/s from nothing.
    for i in 0..40 {
        let now = 0.5 + 0.1 * f64::from(i);
        w.run_until(now);
        let grower = (2.0 * GIB as f64 * 0.1 * f64::from(i)) as u64;
        if w.host().procs.get(&11).is_some_and(|p| p.state == 'T') {
            break; // a frozen process allocates no more
        }
        let sample = GpuSample {
            devices: vec![DeviceSample {
                index: 0,
                uuid: "GPU-0".into(),
                name: "Fake".into(),
                total,
                used: 8 * GIB + grower,
            }],
            processes: [((0, 10), 8 * GIB), ((0, 11), grower)]
                .into_iter()
                .collect(),
            errors: Vec::new(),
        };
        w.engine.observe_gpu(sample, now);
    }
    let d = expect(&w, 11, DecisionAction::Freeze);
    assert_eq!((d.rule.as_str(), d.scope), ("gpu:0", Some(ScopeKind::Gpu)));
    assert_eq!(d.level, Some(Level::Preempt));
    assert!(d.charged_bytes + 8 * GIB < total, "{d:?}");
    assert!(about(&w, 10).is_empty(), "{:#?}", journal(&w));
    let gpu = &w.engine.gpu_views()[0];
    assert_eq!(gpu.level, Level::Preempt);
}

/// /proc is not listed to sweep the dead while the kernel reports exits:
/// a GPU process scope (its level under a rule's gpu_limit) goes with its
/// process, so a later process under the same pid starts clean.
#[test]
fn a_gpu_process_scope_goes_when_its_process_exits() {
    let mut w = world("");
    w.spawn(11, proc("trainer"), steady(MIB, 60.0));
    w.run_for(0.5);
    let scope = crate::engine::Scope::GpuProcess { device: 0, pid: 11 };
    w.engine
        .scopes
        .insert(scope.clone(), crate::engine::shared::ScopeState::default());
    w.host_mut().procs.get_mut(&11).unwrap().state = 'Z';
    w.run_for(0.1);
    assert!(!w.engine.scopes.contains_key(&scope));
}
