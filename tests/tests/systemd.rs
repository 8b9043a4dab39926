//! Privileged end-to-end tests of what the agent tells systemd: the unit is
//! `Type=notify` with a watchdog, so the agent must say "ready" only once
//! its API answers, keep pinging while it runs, and say "stopping" on its
//! way out. The test plays the service manager's notify socket.

use std::{
    os::unix::net::UnixDatagram,
    time::{Duration, Instant},
};

use sentinel_tests::{Agent, privileged, serial_async};

/// Every datagram that arrives on `socket` within `within`.
fn received(socket: &UnixDatagram, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    got
}

fn notify_socket(tag: &str) -> (UnixDatagram, String) {
    let path = std::env::temp_dir().join(format!("sentinel-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    (
        UnixDatagram::bind(&path).unwrap(),
        path.display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_says_ready_pings_its_watchdog_and_says_stopping() {
    if !privileged("the_agent_says_ready_pings_its_watchdog") {
        return;
    }
    let _serial = serial_async().await;
    let (socket, path) = notify_socket("notify");
    let mut agent = Agent::start_env(
        "notify",
        "",
        &[],
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "400000")],
    );
    // Agent::start returns once the API answers; "ready" came before that
    // (it is said once the socket listens), and nothing else did.
    let first = received(&socket, Duration::from_millis(200));
    let ready: Vec<_> = first.iter().filter(|m| m.starts_with("READY=1")).collect();
    assert_eq!(ready.len(), 1, "{first:?}");
    assert!(ready[0].contains("STATUS="), "{first:?}");
    assert!(
        first[0].starts_with("READY=1"),
        "nothing before ready: {first:?}"
    );
    let _answers = agent.status().await;

    // Pinged at each host tick, at most twice per 400 ms.
    let three_secs = received(&socket, Duration::from_secs(3));
    let pings = three_secs.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(
        (3..=16).contains(&pings),
        "{pings} pings in 3 s: {three_secs:?}"
    );

    agent.stop();
    let last = received(&socket, Duration::from_millis(500));
    assert!(
        last.iter().any(|m| m == "STOPPING=1"),
        "no STOPPING=1 at SIGTERM: {last:?}"
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watchdog_meant_for_another_process_is_not_pinged() {
    if !privileged("a_watchdog_meant_for_another_process") {
        return;
    }
    let _serial = serial_async().await;
    let (socket, path) = notify_socket("notify-other");
    let _agent = Agent::start_env(
        "notify-other",
        "",
        &[],
        &[
            ("NOTIFY_SOCKET", &path),
            ("WATCHDOG_USEC", "400000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let got = received(&socket, Duration::from_secs(2));
    assert!(got.iter().any(|m| m.starts_with("READY=1")), "{got:?}");
    assert!(!got.iter().any(|m| m == "WATCHDOG=1"), "{got:?}");
    let _ = std::fs::remove_file(&path);
}

/// The units' exposure as `systemd-analyze security` rates it (lower is
/// tighter), so that a change that loosens either fails here. The agent's
/// unit: 6.4 before it was hardened, 5.3 before its system call filter,
/// 4.1 before its sandbox was tested (tests/tests/unit_sandbox.rs), 3.2
/// before its network moved to the relay; now systemd-oomd's own 2.0
/// (earlyoom's is 8.4, docs/OPERATIONS.md). The relay's, with no
/// capabilities and not root: 1.1. Offline: no running systemd is needed.
#[test]
fn the_units_are_notify_with_a_watchdog_and_as_tight_as_systemd_oomd() {
    let text = sentinel_tests::sandbox::unit();
    for line in ["Type=notify", "NotifyAccess=main", "WatchdogSec=30s"] {
        assert!(text.lines().any(|l| l == line), "the unit lacks {line}");
    }
    for (unit, threshold) in [
        (sentinel_tests::sandbox::UNIT, "20"),
        (sentinel_tests::sandbox::RELAY_UNIT, "11"),
    ] {
        let Ok(out) = std::process::Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(format!("--threshold={threshold}"))
            .arg(unit)
            .output()
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "systemd-analyze is missing, and CI is set"
            );
            eprintln!("SKIP: no systemd-analyze here");
            return;
        };
        let report = String::from_utf8_lossy(&out.stdout);
        let overall = report.lines().last().unwrap_or_default();
        assert!(out.status.success(), "{unit}: {overall}\n{report}");
    }
}

/// The agent's unit gives it no network, and its relay's unit listens
/// where the agent's looks: one path in both ExecStart= lines.
#[test]
fn the_agent_has_no_network_and_meets_its_relay_at_one_socket() {
    use sentinel_tests::sandbox::{relay_unit, setting, unit};
    let agent = unit();
    assert_eq!(setting(&agent, "PrivateNetwork").as_deref(), Some("yes"));
    assert_eq!(
        setting(&agent, "RestrictAddressFamilies").as_deref(),
        Some("AF_UNIX")
    );
    let after = |unit: &str, flag: &str| -> String {
        let exec = setting(unit, "ExecStart").expect("ExecStart=");
        let mut words = exec.split_whitespace().skip_while(|w| *w != flag);
        words
            .nth(1)
            .unwrap_or_else(|| panic!("no {flag} in {exec}"))
            .to_string()
    };
    let relay = relay_unit();
    assert_eq!(after(&agent, "--relay"), after(&relay, "--listen"));
    assert_eq!(setting(&relay, "DynamicUser").as_deref(), Some("yes"));
    assert!(agent.lines().any(|l| l == "Wants=sentinel-relay.service"));
    // Started with the agent only: enabled on its own, a relay would hold
    // the agent's ports after the agent was disabled.
    assert!(
        !relay.lines().any(|l| l.trim() == "[Install]"),
        "the relay has an [Install] section"
    );
    assert!(relay.lines().any(|l| l == "PartOf=sentinel.service"));
}
