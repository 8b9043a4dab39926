//! Protection by what the kernel vouches for, on the built-in host policy
//! (issue 16): a leaker named like a protected daemon is stopped before the
//! floor, the steady process beside it untouched; the daemon's real
//! executable growing is named, and nobody is stopped for it.

use super::*;
use crate::{decision::ScopeKind, engine::Host, fake::FakeHost};

/// The built-in policy (nothing written) on an 8 GiB host: a floor of
/// 10% and the host ladder near it.
fn default_host() -> World {
    on_8_gib(Config::parse("", "t.toml").unwrap())
}

fn on_8_gib(cfg: Config) -> World {
    let mut host = FakeHost::default();
    host.ram = Some(8 * GIB);
    World::new(cfg, host)
}

/// An `sshd` that is a copy a user made: its own file, in a place anyone
/// can write.
fn impostor() -> FakeProc {
    let mut p = proc("sshd");
    p.exe = "/tmp/x/sshd".into();
    p.exe_trusted = false;
    p
}

#[test]
fn a_leaker_named_sshd_is_stopped_before_the_floor_and_the_steady_one_is_not() {
    let mut w = default_host();
    w.spawn(10, proc("postgres"), steady(5 * GIB, 60.0));
    w.run_for(0.5);
    w.spawn(11, impostor(), hog(0, 500e6, 4 * GIB, 30.0));
    w.run_for(10.0);
    let d = expect(&w, 11, DecisionAction::Freeze);
    assert_eq!((d.rule.as_str(), d.scope), ("host", Some(ScopeKind::Host)));
    assert!(signals(&w, 10).is_empty(), "{:#?}", journal(&w));
    // Stopped above the floor: 10% of 8 GiB stayed available.
    let floor = 8 * GIB / 10;
    let available = w.host().meminfo().unwrap().available;
    assert!(available > floor, "{} MiB available", available / MIB);
}

#[test]
fn the_real_daemon_growing_is_named_and_nobody_is_stopped_for_it() {
    let mut w = default_host();
    w.spawn(10, proc("postgres"), steady(5 * GIB, 60.0));
    w.run_for(0.5);
    let mut sshd = proc("sshd");
    sshd.exe = "/usr/sbin/sshd".into();
    sshd.uid = 0;
    w.spawn(11, sshd, hog(0, 500e6, 2560 * MIB, 30.0));
    w.run_for(8.0);
    assert!(w.host().signals.is_empty(), "{:#?}", journal(&w));
    let named = about(&w, 11)
        .into_iter()
        .map(|r| &r.decision)
        .find(|d| d.rule == "host")
        .unwrap_or_else(|| panic!("no host decision names it: {:#?}", journal(&w)));
    assert_eq!(named.action, DecisionAction::Alert);
    assert!(
        named
            .reason
            .contains("driven by pid 11 (sshd), which may not be signalled (protected as `sshd`)"),
        "{}",
        named.reason
    );
    assert!(!named.reason.contains("nothing is growing"));
}

#[test]
fn a_name_only_protection_still_works_and_is_warned_about() {
    let cfg = Config::parse("[agent]\nprotected = [\"sshd\"]\n", "t.toml").unwrap();
    let w = cfg.warnings();
    assert!(
        w.len() == 1
            && w[0].contains("agent.protected `sshd`")
            && w[0].contains("anyone can claim"),
        "{w:?}"
    );
    assert!(
        Config::default().warnings().is_empty(),
        "the built-in set is not by name"
    );
    let mut w = on_8_gib(cfg);
    w.spawn(10, proc("postgres"), steady(5 * GIB, 60.0));
    w.run_for(0.5);
    w.spawn(11, impostor(), hog(0, 500e6, 2560 * MIB, 30.0));
    w.run_for(8.0);
    assert!(w.host().signals.is_empty(), "the name protects, as it says");
}
