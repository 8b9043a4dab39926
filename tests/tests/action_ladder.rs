//! Privileged end-to-end tests of the action ladder: dry run, grace then
//! kill, a raised limit, crash loops, a freeze that does not clear. The real
//! agent, the real eBPF object, real processes in capped memory cgroups.
//! Rules only ever select the test's own cgroup.

use std::time::Duration;

use sentinel_tests::{Agent, Hog, MIB, MemCgroup, pb, privileged, rule_for, serial_async};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_records_the_decision_and_signals_nothing() {
    if !privileged("dry_run_records_the_decision_and_signals_nothing") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("dry", 512 * MIB);
    let agent = Agent::start(
        "dry",
        &rule_for(&cg, "leaky", "128MiB", "kill"),
        &["--dry-run"],
    );
    let mut hog = Hog::spawn(
        &cg,
        &["--target", "200MiB", "--rate", "200MB/s", "--hold", "1"],
    );
    // The whole ladder is recorded, and nothing is signalled.
    let freeze = agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;
    assert_eq!(freeze.outcome, "dry-run");
    let d = agent
        .wait_decision(Duration::from_secs(10), |d| {
            d.pid == hog.pid && (d.action == "kill" || d.action == "terminate")
        })
        .await
        .unwrap_or_else(|| panic!("no kill-level decision\n{}", agent.log_text()));
    assert_eq!(d.level, "kill");
    assert_eq!(d.outcome, "dry-run");
    // Nothing was signalled: the hog runs to its target and exits cleanly.
    assert!(hog.expect_line("done", Duration::from_secs(10)).is_some());
    let st = hog.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(st.success(), "{st}");
    let s = agent
        .client()
        .await
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.dry_run);
    assert_eq!(s.tripwire_fires, 0);
    // Each rung is recorded once, not on every sample.
    let all = agent.decisions_for(hog.pid).await;
    for action in ["alert", "freeze", "terminate", "kill"] {
        let n = all.iter().filter(|d| d.action == action).count();
        assert!(n <= 1, "{n} `{action}` decisions: {all:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_level_terminates_with_a_grace_then_kills() {
    if !privileged("the_kill_level_terminates_with_a_grace_then_kills") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("ladder", 512 * MIB);
    // Preempt and kill at the same line: the rule goes straight to the top
    // of its ladder. The leaker ignores SIGTERM, so SIGKILL must follow.
    let cfg = rule_for(&cg, "ladder", "256MiB", "kill").replacen(
        "[rule.match]",
        "levels = { preempt = 0.9, kill = 0.9 }\n[rule.match]",
        1,
    );
    let agent = Agent::start("ladder", &cfg, &[]);
    let mut hog = Hog::spawn(
        &cg,
        &[
            "--target",
            "400MiB",
            "--rate",
            "30MB/s",
            "--hold",
            "30",
            "--ignore-term",
        ],
    );
    let term = agent
        .expect_action(hog.pid, "terminate", Duration::from_secs(20))
        .await;
    assert_eq!(term.level, "kill");
    assert!(term.reason.contains("SIGKILL in"), "{term:?}");
    let kill = agent
        .expect_action(hog.pid, "kill", Duration::from_secs(5))
        .await;
    assert!(kill.reason.contains("grace"), "{kill:?}");
    let grace_ms = kill.time_unix_ms as f64 - term.time_unix_ms as f64;
    // At 30 MB/s, 10% of 256 MiB is about 0.9 s away.
    assert!(
        (300.0..1500.0).contains(&grace_ms),
        "grace {grace_ms} ms should follow the forecast"
    );
    let st = hog.wait_exit(Duration::from_secs(5)).expect("killed");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{st}");
    assert_eq!(cg.oom_kills(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_limit_resumes_a_frozen_process() {
    if !privileged("a_raised_limit_resumes_a_frozen_process") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("raise", 768 * MIB);
    let agent = Agent::start("raise", &rule_for(&cg, "leaky", "256MiB", "freeze"), &[]);
    let mut hog = Hog::spawn(
        &cg,
        &["--target", "300MiB", "--rate", "200MB/s", "--hold", "1"],
    );
    agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;
    std::thread::sleep(Duration::from_millis(200));
    assert!(hog.frozen());
    // The operator raises the limit: the process is far below the new
    // clear level, so it is resumed and finishes its work.
    agent.reload(&rule_for(&cg, "leaky", "1GiB", "freeze"));
    let r = agent
        .expect_action(hog.pid, "resume", Duration::from_secs(10))
        .await;
    assert_eq!(r.kind, "resume");
    assert_eq!(r.outcome, "done");
    assert_eq!(r.limit_bytes, 1 << 30);
    assert!(hog.expect_line("done", Duration::from_secs(10)).is_some());
    let st = hog.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(st.success(), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_command_preempted_three_times_is_a_crash_loop() {
    if !privileged("the_same_command_preempted_three_times_is_a_crash_loop") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("loop", 512 * MIB);
    let agent = Agent::start("loop", &rule_for(&cg, "leaky", "128MiB", "freeze"), &[]);
    let args = ["--target", "200MiB", "--rate", "300MB/s", "--hold", "30"];
    let mut flags = Vec::new();
    // A supervisor restarting the same leaker.
    for _ in 0..3 {
        let hog = Hog::spawn(&cg, &args);
        let d = agent
            .expect_action(hog.pid, "freeze", Duration::from_secs(10))
            .await;
        flags.push(d.crash_loop);
        drop(hog);
    }
    assert_eq!(flags, [false, false, true]);
    let s = agent
        .client()
        .await
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.crash_loops.len(), 1, "{s:?}");
    assert!(
        s.crash_loops[0].cmdline.contains("memhog --target 200MiB"),
        "{s:?}"
    );
    assert_eq!(s.crash_loops[0].count, 3);
    let (ok, out, _) = agent.cli(&["status"]);
    assert!(ok && out.contains("CRASH LOOP"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_that_does_not_clear_ends_in_a_kill_where_the_rule_allows() {
    if !privileged("a_freeze_that_does_not_clear_ends_in_a_kill") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("freezekill", 512 * MIB);
    let cfg = format!(
        "freeze_timeout = \"1s\"\n{}",
        rule_for(&cg, "leaky", "256MiB", "kill")
    );
    let agent = Agent::start("freezekill", &cfg, &[]);
    let mut hog = Hog::spawn(
        &cg,
        &["--target", "400MiB", "--rate", "200MB/s", "--hold", "30"],
    );
    // Reversible first: frozen at the preempt level...
    let freeze = agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;
    assert_eq!(freeze.level, "preempt");
    // ...and killed once the freeze has lasted freeze_timeout.
    let kill = agent
        .expect_action(hog.pid, "kill", Duration::from_secs(5))
        .await;
    assert!(kill.reason.contains("frozen for"), "{kill:?}");
    let waited = kill.time_unix_ms as f64 - freeze.time_unix_ms as f64;
    assert!(
        (900.0..2500.0).contains(&waited),
        "killed {waited} ms after the freeze"
    );
    let st = hog.wait_exit(Duration::from_secs(5)).expect("killed");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{st}");
}
