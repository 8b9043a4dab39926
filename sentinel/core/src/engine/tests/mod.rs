//! The engine's decisions, offline: each test is the shape of one of the
//! end-to-end tests (tests/tests/*.rs), played on a fake host by the fake
//! kernel of [`World`], in milliseconds and without root. The end-to-end
//! tests stay: they prove the real host port does what the fake one does.

mod custody;
mod identity;
mod ladder;
mod operators;
mod pressure;
mod process;
mod protection;
mod reach;
mod reservations;
mod shared;
mod stampede;

use crate::{
    config::Config,
    decision::{Decision, DecisionAction},
    engine::Signal,
    fake::{FakeProc, Recorded, Script, World},
};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
/// The memory cgroup the tests' processes live in.
pub const CG: &str = "/sentinel-test/t";

/// What `memhog --target T --rate R --hold H` does: grows from `from` at
/// `rate` bytes per second to `target`, holds it for `hold` seconds, and
/// exits.
pub fn hog(from: u64, rate: f64, target: u64, hold: f64) -> Script {
    let climb = target.saturating_sub(from) as f64 / rate;
    Box::new(move |t| {
        if t < climb {
            Some(from + (rate * t) as u64)
        } else if t < climb + hold {
            Some(target)
        } else {
            None
        }
    })
}

/// Holds `bytes` for `secs`, then exits.
pub fn steady(bytes: u64, secs: f64) -> Script {
    Box::new(move |t| (t < secs).then_some(bytes))
}

/// A process named `comm` in the test cgroup, child of pid 1.
pub fn proc(comm: &str) -> FakeProc {
    FakeProc::new(1, comm, CG)
}

/// A world on this policy (TOML, as an operator writes it).
pub fn world(policy: &str) -> World {
    let cfg = Config::parse(policy, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    World::new(cfg, Default::default())
}

/// A process rule over the test cgroup.
pub fn rule(name: &str, limit: &str, action: &str) -> String {
    format!(
        "[[rule]]\nname = \"{name}\"\nlimit = \"{limit}\"\naction = \"{action}\"\n[rule.match]\ncgroup = \"^{CG}$\"\n"
    )
}

/// Everything journalled about `pid`.
pub fn about(w: &World, pid: u32) -> Vec<&Recorded> {
    w.host()
        .journal
        .iter()
        .filter(|r| r.decision.pid == pid)
        .collect()
}

/// The first decision about `pid` that took `action`.
pub fn first(w: &World, pid: u32, action: DecisionAction) -> Option<&Recorded> {
    about(w, pid)
        .into_iter()
        .find(|r| r.decision.action == action)
}

/// The first decision about `pid` that took `action`; the test fails,
/// showing the journal, when there is none.
pub fn expect(w: &World, pid: u32, action: DecisionAction) -> Decision {
    first(w, pid, action)
        .map(|r| r.decision.clone())
        .unwrap_or_else(|| panic!("no {action} for pid {pid}: {:#?}", journal(w)))
}

/// The journal, for failure messages.
pub fn journal(w: &World) -> Vec<String> {
    w.host()
        .journal
        .iter()
        .map(|r| {
            let d = &r.decision;
            format!(
                "t={:.3} pid {} {} {} {}: {}",
                r.t,
                d.pid,
                d.level.map(|l| l.as_str()).unwrap_or(""),
                d.action,
                d.outcome,
                d.reason
            )
        })
        .collect()
}

/// Signals the engine sent to `pid`, in order.
pub fn signals(w: &World, pid: u32) -> Vec<Signal> {
    w.host()
        .signals
        .iter()
        .filter(|(p, _)| *p == pid)
        .map(|(_, s)| *s)
        .collect()
}

/// The fake process's state letter; `None` once it is gone.
pub fn state(w: &World, pid: u32) -> Option<char> {
    w.host().procs.get(&pid).map(|p| p.state)
}
