use super::{scenarios::*, *};

fn cfg(limit: u64) -> SimConfig {
    SimConfig {
        limit,
        action: Action::Freeze,
        horizon_secs: 0.02,
        step_bytes: STEP,
    }
}

/// The scenario table: in every growth scenario the grower is chosen
/// (and only it), before the limit; in the plateau scenarios nothing is.
#[test]
fn scenario_table() {
    for sc in all() {
        let d = replay(&sc.samples, &cfg(sc.limit));
        if let Err(e) = sc.check(&d) {
            panic!("{}: {e}: {d:?}", sc.name);
        }
    }
}

#[test]
fn a_jump_to_the_warn_level_is_warned_once_and_never_stopped() {
    let sc = jump_to_70_percent_and_hold();
    let d = replay(&sc.samples, &cfg(sc.limit));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].level.as_str(), d[0].action.as_str()),
        ("warn", "alert")
    );
}

#[test]
fn the_kill_level_escalates_the_frozen_grower_first() {
    // A leaker frozen at the preempt level keeps its memory; then a
    // second process grows the group past the kill level. The frozen
    // leaker is killed (freeing its memory) under a kill-capped rule.
    let mut s = reported(2, "leaker", None, 6.0, |t| 300 * MIB + (400e6 * t) as u64);
    s.extend(reported(3, "late", None, 6.0, |t| {
        if t < 3.0 { MIB } else { 150 * MIB }
    }));
    let c = SimConfig {
        action: Action::Kill,
        ..cfg(1024 * MIB)
    };
    let d = replay(&s, &c);
    let acts: Vec<(u32, &str)> = stops(&d)
        .iter()
        .map(|d| (d.pid, d.action.as_str()))
        .collect();
    assert_eq!(acts[0], (2, "freeze"), "{d:?}");
    assert!(acts.contains(&(2, "kill")), "{d:?}");
    let kill = acts.iter().position(|a| *a == (2, "kill")).unwrap();
    assert!(
        !acts[..kill].contains(&(3, "kill")),
        "the new grower was killed before the frozen one {d:?}"
    );
}

#[test]
fn the_biggest_at_the_floor_kills_the_steady_process() {
    // The failure Sentinel exists to avoid: a 600 MiB steady process
    // and a leaker; the floor killer takes the steady one, late.
    let sc = linear_leak_beside_steady();
    let (t, pid, usage) = biggest_at_the_floor(&sc.samples, sc.limit, 0.9, 1.0).unwrap();
    assert_eq!(pid, 1);
    assert!(usage as f64 >= 0.9 * sc.limit as f64 && t > 1.0);
    // Plateaus under the floor are left alone by it too.
    assert_eq!(
        biggest_at_the_floor(&burst_then_plateau().samples, 1024 * MIB, 0.9, 1.0),
        None
    );
}

#[test]
fn replay_is_deterministic_and_order_independent() {
    let sc = linear_leak_beside_steady();
    let a = replay(&sc.samples, &cfg(sc.limit));
    let mut rev = sc.samples.clone();
    rev.reverse();
    let b = replay(&rev, &cfg(sc.limit));
    assert_eq!(a, b);
}

#[test]
fn traces_round_trip_through_json_lines() {
    let sc = sawtooth();
    let text: String = sc
        .samples
        .iter()
        .map(|s| serde_json::to_string(s).unwrap() + "\n")
        .collect();
    let back = parse_trace(&text, "t").unwrap();
    assert_eq!(back.len(), sc.samples.len());
    for (a, b) in back.iter().zip(&sc.samples) {
        assert!(
            (a.t - b.t).abs() < 1e-12 && a.pid == b.pid && a.bytes == b.bytes && a.comm == b.comm
        );
    }
    let e = parse_trace("{\"t\": 1}\n", "trace.jsonl").unwrap_err();
    assert!(e.starts_with("trace.jsonl:1:"), "{e}");
}
