//! The memory PSI trigger: a warning only for the stall it was armed for,
//! saying what was armed and what was seen.

use std::time::Duration;

use super::*;
use crate::{decision::DecisionKind, engine::PsiArmed, model::Psi};

const ARMED: PsiArmed = PsiArmed {
    stall: Duration::from_millis(300),
    window: Duration::from_secs(2),
};

/// A world whose PSI total stands at `total_us`, with the trigger armed.
fn armed() -> World {
    let mut w = world("");
    w.host_mut().psi = Some(Psi {
        avg10: 0.0,
        total_us: 5_000_000,
    });
    w.engine.set_psi_trigger(Some(ARMED));
    w.run_for(3.0);
    w
}

fn stall(w: &mut World, ms: u64) {
    let p = w.host_mut().psi.as_mut().expect("psi");
    p.total_us += ms * 1000;
}

fn pressure(w: &World) -> Vec<Decision> {
    w.host()
        .decisions()
        .filter(|d| d.kind == DecisionKind::Pressure)
        .cloned()
        .collect()
}

#[test]
fn a_wake_up_without_the_stall_it_was_armed_for_is_no_decision() {
    let mut w = armed();
    // What the kernel did: 50 ms of stall, and the 300 ms trigger fired.
    stall(&mut w, 50);
    w.run_for(0.5);
    let now = w.now();
    w.engine.on_pressure(now);
    assert!(pressure(&w).is_empty(), "{:#?}", journal(&w));
    // Just under the threshold is not it either.
    stall(&mut w, 240);
    w.run_for(0.2);
    let now = w.now();
    w.engine.on_pressure(now);
    assert!(pressure(&w).is_empty(), "{:#?}", journal(&w));
}

#[test]
fn a_real_stall_is_warned_once_a_minute_saying_what_was_armed_and_seen() {
    let mut w = armed();
    w.host_mut().ram = Some(16 * GIB);
    // 400 ms of stall within the last second.
    for _ in 0..4 {
        stall(&mut w, 100);
        w.run_for(0.25);
    }
    let now = w.now();
    w.engine.on_pressure(now);
    let d = pressure(&w);
    assert_eq!(d.len(), 1, "{:#?}", journal(&w));
    let r = &d[0].reason;
    assert!(
        r.starts_with("memory pressure: tasks stalled on memory for 400 ms in the last 2."),
        "{r}"
    );
    assert!(r.contains("(trigger: 300 ms within 2 s;"), "{r}");
    // Sizes as an operator reads them, not byte counts (90% of 16 GiB).
    assert!(r.ends_with("); host at 0 B of 14.4 GiB"), "{r}");
    // Again within the minute: said once.
    stall(&mut w, 400);
    w.run_for(0.5);
    let now = w.now();
    w.engine.on_pressure(now);
    assert_eq!(pressure(&w).len(), 1);
    // Stall that is older than the window does not count.
    w.run_for(61.0);
    let now = w.now();
    w.engine.on_pressure(now);
    assert_eq!(pressure(&w).len(), 1, "{:#?}", journal(&w));
}
