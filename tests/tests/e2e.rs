//! Privileged end-to-end tests: the real agent, the real eBPF object, real
//! processes in capped memory cgroups. Rules only ever select the test's
//! own cgroup.

use std::time::Duration;

use sentinel_tests::{
    Agent, Hog, MIB, MemCgroup, pb, privileged, read_charged, rule_for, serial_async,
};
use tokio_stream::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaker_is_frozen_before_its_limit_and_the_decision_is_served() {
    if !privileged("leaker_is_frozen_before_its_limit") {
        return;
    }
    let _serial = serial_async().await;
    // Cap above the rule's limit: if Sentinel failed, the kernel would stop
    // the leaker at 512 MiB, never the host.
    let cg = MemCgroup::new("leak", 512 * MIB);
    let agent = Agent::start("leak", &rule_for(&cg, "leaky", "256MiB", "freeze"), &[]);

    let mut status = agent.client().await;
    let s = status
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        s.mode,
        "ebpf",
        "the real probes must load: {s:?}\n{}",
        agent.log_text()
    );

    let mut watch = agent.watch(None).await;

    let hog = Hog::spawn(
        &cg,
        &["--target", "400MiB", "--rate", "200MB/s", "--hold", "30"],
    );
    let d = agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;

    // The levels were climbed in order: a warning at 70% of the limit,
    // then the freeze at 85%, before the limit.
    let all = agent.decisions_for(hog.pid).await;
    let warn = &all[0];
    assert_eq!(
        (warn.level.as_str(), warn.action.as_str()),
        ("warn", "alert"),
        "{all:?}"
    );
    assert!(warn.charged_bytes < d.charged_bytes, "{all:?}");
    assert_eq!(d.level, "preempt");
    assert!(
        d.charged_bytes <= 256 * MIB * 85 / 100 + 2 * MIB,
        "froze at the preempt line, not later: {d:?}"
    );

    // The leaker is stopped, and stayed under its limit.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hog.state(), Some('T'), "leaker should be stopped");
    let peak = hog.peak_rss().unwrap();
    let cg_peak = cg.peak_bytes();
    eprintln!(
        "leaker peak rss {:.1} MiB (file pages included), cgroup peak {:.1} MiB, decision: {d:?}",
        peak as f64 / MIB as f64,
        cg_peak as f64 / MIB as f64
    );
    // The limit is on charged memory (anon + shmem + swap); the resident set
    // adds the binary's file pages, which the cgroup peak does not count
    // here because the build, not the test, brought them into the cache.
    let charged = read_charged(hog.pid);
    assert!(
        charged < 256 * MIB,
        "charged {} MiB reached the limit",
        charged / MIB
    );
    assert!(
        cg_peak < 256 * MIB,
        "cgroup peak {} MiB reached the limit",
        cg_peak / MIB
    );
    assert_eq!(cg.oom_kills(), 0);

    // The decision carries its numbers.
    assert_eq!(d.kind, "preempt");
    assert_eq!(d.rule, "leaky");
    assert_eq!(d.action, "freeze");
    assert_eq!(d.outcome, "done");
    assert_eq!(d.comm, "memhog");
    assert_eq!(d.cgroup, cg.path);
    assert_eq!(d.limit_bytes, 256 * MIB);
    assert!(
        d.charged_bytes < 256 * MIB && d.charged_bytes > 150 * MIB,
        "{d:?}"
    );
    assert!(d.resident_bytes >= d.charged_bytes, "{d:?}");
    assert!(
        (100e6..400e6).contains(&d.slope_bytes_per_sec),
        "slope {} should be near 200 MB/s",
        d.slope_bytes_per_sec
    );
    let eta = d.predicted_seconds_to_limit.expect("a predicted crossing");
    assert!(eta > 0.0 && eta < 0.5, "eta {eta}");

    // The live stream delivered the same decisions, in order (host-wide
    // ones, such as a memory-pressure warning, may come between).
    for want in [warn, &d] {
        let streamed =
            sentinel_tests::next_decision(&mut watch, Duration::from_secs(5), |x| x.pid == hog.pid)
                .await
                .expect("stream delivered in time");
        assert_eq!(&streamed, want);
    }

    // And the CLI prints it as one JSON object per line with the same numbers.
    let (ok, out, err) = agent.cli(&["decisions", "--json"]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON"))
        .find(|v| v["pid"] == hog.pid && v["action"] == "freeze")
        .expect("decision in CLI output");
    assert_eq!(line["seq"], d.seq);
    assert_eq!(line["rule"], "leaky");
    assert_eq!(line["action"], "freeze");
    assert_eq!(line["limit_bytes"], d.limit_bytes);
    assert_eq!(line["charged_bytes"], d.charged_bytes);
    assert_eq!(line["resident_bytes"], d.resident_bytes);
    assert_eq!(line["level"], "preempt");
    assert_eq!(line["crash_loop"], false);
    let json_eta = line["predicted_seconds_to_limit"].as_f64().unwrap();
    assert!((json_eta - eta).abs() < 1e-9, "{json_eta} vs {eta}");
    for key in [
        "time_unix_ms",
        "comm",
        "cgroup",
        "reason",
        "slope_bytes_per_sec",
    ] {
        assert!(!line[key].is_null(), "missing {key}");
    }

    // Status and top show it too.
    let (ok, out, _) = agent.cli(&["top", "--matched"]);
    assert!(ok);
    assert!(
        out.contains(&hog.pid.to_string()) && out.contains("frozen"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_process_under_its_limit_is_never_touched() {
    if !privileged("steady_process_under_its_limit_is_never_touched") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("steady", 1024 * MIB);
    let agent = Agent::start("steady", &rule_for(&cg, "steady", "512MiB", "kill"), &[]);
    // A fast jump to 300 MiB, then flat: a burst that plateaus below the line.
    let mut hog = Hog::spawn(&cg, &["--target", "300MiB", "--rate", "max", "--hold", "4"]);
    assert!(hog.expect_line("done", Duration::from_secs(10)).is_some());
    std::thread::sleep(Duration::from_millis(500));

    // It is governed by the rule (so this test would see a wrong decision).
    let mut c = agent.client().await;
    let procs = c
        .list_processes(pb::ListProcessesRequest {
            limit: 100,
            matched_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .processes;
    let p = procs.iter().find(|p| p.pid == hog.pid).unwrap_or_else(|| {
        panic!(
            "steady process not tracked: {procs:?}\n{}",
            agent.log_text()
        )
    });
    assert_eq!(p.rule, "steady");
    assert_eq!(p.limit_bytes, 512 * MIB);
    assert!(p.charged_bytes > 280 * MIB, "{p:?}");
    assert_eq!(p.state, "running");

    let st = hog
        .wait_exit(Duration::from_secs(15))
        .expect("steady process finishes");
    assert!(st.success(), "steady process was disturbed: {st}");
    let none = agent
        .wait_decision(Duration::from_millis(200), |d| d.pid == hog.pid)
        .await;
    assert!(none.is_none(), "unexpected decision {none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_oom_kill_in_a_small_cgroup_is_reported() {
    if !privileged("kernel_oom_kill_in_a_small_cgroup_is_reported") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("oom", 64 * MIB);
    // No rule selects this cgroup: the kernel acts, Sentinel reports it.
    let agent = Agent::start("oom", "", &[]);
    let mut hog = Hog::spawn(&cg, &["--target", "256MiB", "--rate", "max", "--hold", "5"]);
    let st = hog
        .wait_exit(Duration::from_secs(10))
        .expect("kernel kills the hog");
    assert!(!st.success());
    let d = agent
        .wait_decision(Duration::from_secs(5), |d| {
            d.kind == "kernel_oom_kill" && d.pid == hog.pid
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "OOM kill of {} ({st}) not reported; cgroup oom_kill {}\n{}",
                hog.pid,
                cg.oom_kills(),
                agent.log_text()
            )
        });
    assert_eq!(d.action, "none");
    assert_eq!(d.cgroup, cg.path);
    assert!(cg.oom_kills() >= 1);
    let s = agent
        .client()
        .await
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.kernel_oom_kills >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_fallback_still_stops_a_leaker_before_its_limit() {
    if !privileged("polling_fallback_still_stops_a_leaker") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("poll", 512 * MIB);
    let agent = Agent::start(
        "poll",
        &format!(
            "poll_interval = \"50ms\"\nrescan_interval = \"300ms\"\n{}",
            rule_for(&cg, "leaky", "256MiB", "freeze")
        ),
        &["--no-ebpf"],
    );
    let s = agent
        .client()
        .await
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.mode, "procfs-polling");
    assert!(s.degraded_reason.contains("--no-ebpf"), "{s:?}");
    let hog = Hog::spawn(
        &cg,
        &["--target", "400MiB", "--rate", "100MB/s", "--hold", "30"],
    );
    // Discovery in polling mode waits for the next /proc rescan.
    let d = agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(15))
        .await;
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hog.state(), Some('T'));
    // As in the eBPF leaker test: the limit is on charged memory, and the
    // cgroup peak is what the process really took; VmHWM adds the binary's
    // file pages (about 2 MiB), which no limit counts.
    let charged = read_charged(hog.pid);
    assert!(charged < 256 * MIB, "charged {} MiB: {d:?}", charged / MIB);
    assert!(
        cg.peak_bytes() < 256 * MIB,
        "cgroup peak {} MiB",
        cg.peak_bytes() / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tripwire_stops_a_full_speed_allocator_while_the_agent_is_stalled() {
    if !privileged("tripwire_stops_a_full_speed_allocator") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("trip", 1024 * MIB);
    let agent = Agent::start("trip", &rule_for(&cg, "fast", "256MiB", "freeze"), &[]);
    // Prefault enough to be discovered (and armed), then wait.
    let hog = Hog::spawn(
        &cg,
        &[
            "--target",
            "900MiB",
            "--rate",
            "max",
            "--prefault",
            "16MiB",
            "--delay",
            "1.5",
            "--hold",
            "30",
        ],
    );
    let mut c = agent.client().await;
    let mut armed = false;
    for _ in 0..40 {
        let procs = c
            .list_processes(pb::ListProcessesRequest {
                limit: 100,
                matched_only: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .processes;
        if procs.iter().any(|p| p.pid == hog.pid && p.rule == "fast") {
            armed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        armed,
        "hog not discovered before it grows\n{}",
        agent.log_text()
    );

    // Userspace is now as late as it can be: stopped. Only the kernel acts.
    let agent_pid = agent.child.id() as i32;
    // SAFETY: our own child.
    unsafe { libc::kill(agent_pid, libc::SIGSTOP) };
    let grew = hog.expect_line("done", Duration::from_secs(4));
    let state = hog.state();
    let peak = hog.peak_rss().unwrap_or(0);
    // SAFETY: our own child.
    unsafe { libc::kill(agent_pid, libc::SIGCONT) };

    assert!(
        grew.is_none(),
        "the hog reached its target: the tripwire did not fire"
    );
    assert_eq!(state, Some('T'), "the kernel should have stopped the hog");
    // Armed at the preempt line: 85% of the limit.
    let ceiling = 256 * MIB * 85 / 100;
    let charged = read_charged(hog.pid);
    eprintln!(
        "tripwire: charged {:.2} MiB, peak rss {:.2} MiB, ceiling {:.2} MiB",
        charged as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        ceiling as f64 / MIB as f64
    );
    assert!(
        charged >= ceiling && charged <= ceiling + MIB,
        "charged {charged} not within 1 MiB of {ceiling}"
    );
    // The cgroup's peak also holds the page cache the hog mapped (its
    // binary and libraries, charged here on a fresh checkout), which the
    // tripwire rightly does not count: compare what is left.
    let (cg_peak, file) = (cg.peak_bytes(), cg.file_bytes());
    assert!(
        cg_peak.saturating_sub(file) < ceiling + 4 * MIB,
        "cgroup peak {cg_peak} less page cache {file}"
    );

    let d = agent
        .expect_decision_for(hog.pid, Duration::from_secs(5))
        .await;
    assert_eq!(d.action, "freeze");
    assert_eq!(d.level, "preempt");
    assert_eq!(d.outcome, "done");
    assert!(d.reason.contains("tripwire"), "{d:?}");
    let s = c
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.tripwire_fires >= 1, "{s:?}");
}

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
async fn cgroup_scope_stops_the_grower_not_the_biggest() {
    if !privileged("cgroup_scope_stops_the_grower_not_the_biggest") {
        return;
    }
    let _serial = serial_async().await;
    // The kernel OOM killer, earlyoom and friends would kill the 600 MiB
    // process here: it is the biggest. Sentinel must stop the leaker.
    let cg = MemCgroup::new("cgscope", 1024 * MIB);
    let rule = format!(
        "[[cgroup]]\nname = \"capped\"\nmatch = \"^{}$\"\naction = \"freeze\"\n",
        cg.path
    );
    let agent = Agent::start("cgscope", &rule, &[]);
    let mut steady = Hog::spawn(&cg, &["--target", "600MiB", "--rate", "max", "--hold", "4"]);
    assert!(
        steady
            .expect_line("done", Duration::from_secs(10))
            .is_some()
    );
    std::thread::sleep(Duration::from_millis(500));
    let leaker = Hog::spawn(
        &cg,
        &["--target", "1000MiB", "--rate", "200MB/s", "--hold", "30"],
    );
    let d = agent
        .expect_action(leaker.pid, "freeze", Duration::from_secs(10))
        .await;
    std::thread::sleep(Duration::from_millis(300));
    eprintln!(
        "cgroup decision: {d:?}; cgroup peak {} MiB",
        cg.peak_bytes() / MIB
    );
    assert_eq!(leaker.state(), Some('T'), "the leaker is frozen");
    assert_eq!(d.rule, "capped");
    assert_eq!(d.action, "freeze");
    assert!(d.reason.contains("of its recent growth"), "{}", d.reason);
    // The cgroup's limit, acted on at its preempt level (85%).
    assert_eq!(d.limit_bytes, 1024 * MIB);
    assert_eq!(d.level, "preempt");
    assert_ne!(
        steady.state(),
        Some('T'),
        "the big steady process is untouched"
    );
    assert_eq!(cg.oom_kills(), 0, "no kernel OOM kill in the cgroup");
    assert!(cg.peak_bytes() < 1024 * MIB);
    let none = agent
        .wait_decision(Duration::from_millis(300), |d| d.pid == steady.pid)
        .await;
    assert!(none.is_none(), "steady process got a decision: {none:?}");
    let st = steady
        .wait_exit(Duration::from_secs(15))
        .expect("steady finishes its work");
    assert!(st.success(), "{st}");

    // With the steady process gone the cgroup is below its clear level
    // (75%): the frozen leaker is resumed, keeps growing, and is stopped
    // again before the line. Reversible: its work was not lost.
    let resumed = agent
        .wait_decision(Duration::from_secs(10), |r| {
            r.pid == leaker.pid && r.kind == "resume"
        })
        .await
        .unwrap_or_else(|| panic!("no resume\n{}", agent.log_text()));
    assert_eq!(resumed.outcome, "done");
    let again = agent
        .wait_decision(Duration::from_secs(15), |r| {
            r.pid == leaker.pid && r.action == "freeze" && r.seq > resumed.seq
        })
        .await
        .unwrap_or_else(|| panic!("not stopped again\n{}", agent.log_text()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(again.rule, "capped");
    assert_eq!(leaker.state(), Some('T'));
    assert_eq!(cg.oom_kills(), 0);
    assert!(
        read_charged(leaker.pid) > 600 * MIB,
        "it grew after the resume"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descendant_rule_governs_a_process_tree() {
    if !privileged("descendant_rule_governs_a_process_tree") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("tree", 512 * MIB);
    // A shell in the capped cgroup starts the leaker as its child (no exec:
    // a new pid); the rule names only the shell's pid.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "sleep 1; {} --target 400MiB --rate 200MB/s --hold 30; true",
            sentinel_tests::memhog_bin().display()
        ))
        .stdout(std::process::Stdio::null());
    cg.contain(&mut cmd);
    let mut shell = cmd.spawn().unwrap();
    let rule = format!(
        "[[rule]]\nname = \"tree\"\nlimit = \"256MiB\"\naction = \"freeze\"\nmatch = {{ descendant_of = {} }}\n",
        shell.id()
    );
    let agent = Agent::start("tree", &rule, &[]);
    let d = agent
        .wait_decision(Duration::from_secs(10), |d| d.rule == "tree")
        .await
        .unwrap_or_else(|| panic!("no decision for the tree\n{}", agent.log_text()));
    assert_eq!(d.comm, "memhog");
    assert_ne!(d.pid, shell.id(), "the child, not the shell itself");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", d.pid)).unwrap();
    let ppid: u32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, shell.id());
    assert!(read_charged(d.pid) < 256 * MIB);
    drop(cg); // kills the tree (and un-stops the frozen child)
    let _ = shell.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_leaker_is_only_alerted_never_signalled() {
    if !privileged("a_protected_leaker_is_only_alerted_never_signalled") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("protected", 512 * MIB);
    let cfg = format!(
        "protected = [\"memhog\"]\n{}",
        rule_for(&cg, "leaky", "128MiB", "kill")
    );
    let agent = Agent::start("protected", &cfg, &[]);
    let mut hog = Hog::spawn(
        &cg,
        &["--target", "200MiB", "--rate", "200MB/s", "--hold", "1"],
    );
    let d = agent
        .expect_decision_for(hog.pid, Duration::from_secs(10))
        .await;
    assert_eq!(d.action, "alert", "{d:?}");
    assert_eq!(d.outcome, "recorded");
    assert!(d.reason.contains("protected"), "{}", d.reason);
    // Neither the agent nor the kernel tripwire stopped it: it runs to its
    // target, past the limit, and exits cleanly.
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
    assert_eq!(s.tripwire_fires, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_to_70_percent_that_holds_is_never_acted_on() {
    if !privileged("a_jump_to_70_percent_that_holds_is_never_acted_on") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("jump", 1536 * MIB);
    let agent = Agent::start("jump", &rule_for(&cg, "jumpy", "1GiB", "kill"), &[]);
    // As fast as the machine allows (about 2.5 GB/s) to 71% of the limit,
    // then flat. (With a much smaller limit the 15 points to the preempt
    // line are less than the reaction horizon's worth of such growth, and
    // the jump is rightly frozen: it cannot be told from a runaway.)
    let mut hog = Hog::spawn(&cg, &["--target", "727MiB", "--rate", "max", "--hold", "3"]);
    assert!(hog.expect_line("done", Duration::from_secs(10)).is_some());
    let st = hog
        .wait_exit(Duration::from_secs(10))
        .expect("it finishes its work");
    assert!(st.success(), "the jump was acted on: {st}");
    // At most a warning: nothing was signalled.
    let all = agent.decisions_for(hog.pid).await;
    assert!(
        all.iter().all(|d| d.action == "alert" && d.level == "warn"),
        "{all:?}"
    );
    assert!(!all.is_empty(), "crossing the warn level is reported");
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
    assert_eq!(hog.state(), Some('T'));
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

/// Bytes the host has in use as the agent counts them (RAM + swap less
/// MemAvailable + SwapFree), and its capacity.
fn host_used() -> (u64, u64) {
    let m = sentinel::collector::host::read_meminfo().unwrap();
    (m.used(), m.capacity())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_scope_stops_the_grower_not_the_biggest() {
    if !privileged("host_scope_stops_the_grower_not_the_biggest") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("host", 1024 * MIB);
    let mut steady = Hog::spawn(&cg, &["--target", "400MiB", "--rate", "max", "--hold", "6"]);
    assert!(
        steady
            .expect_line("done", Duration::from_secs(10))
            .is_some()
    );
    std::thread::sleep(Duration::from_millis(300));
    // A host floor that puts the host's preempt line (85%) about 250 MiB
    // above what is in use now, and victims only from this test's cgroup:
    // the host policy can touch nothing else on this machine.
    let (used, capacity) = host_used();
    let limit = ((used + 250 * MIB) as f64 / 0.85) as u64;
    let cfg = format!(
        "[host]\naction = \"freeze\"\nmin_available = \"{}\"\ncandidates = \"^{}$\"\n",
        capacity - limit,
        cg.path
    );
    let agent = Agent::start("host", &cfg, &[]);
    let leaker = Hog::spawn(
        &cg,
        &["--target", "600MiB", "--rate", "200MB/s", "--hold", "30"],
    );
    let d = agent
        .expect_action(leaker.pid, "freeze", Duration::from_secs(10))
        .await;
    std::thread::sleep(Duration::from_millis(300));
    eprintln!("host decision: {d:?}");
    assert_eq!(leaker.state(), Some('T'), "the leaker is frozen");
    assert_eq!(d.rule, "host");
    assert_eq!(d.level, "preempt");
    assert!(d.reason.contains("of its recent growth"), "{}", d.reason);
    assert_ne!(
        steady.state(),
        Some('T'),
        "the bigger steady one is untouched"
    );
    let none = agent
        .wait_decision(Duration::from_millis(200), |x| {
            x.pid == steady.pid && x.action != "alert"
        })
        .await;
    assert!(none.is_none(), "{none:?}");
    let st = steady.wait_exit(Duration::from_secs(15)).expect("finishes");
    assert!(st.success(), "{st}");

    let s = agent
        .client()
        .await
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.host_limit_bytes > 0 && s.host_used_bytes > 0, "{s:?}");
    if std::path::Path::new("/proc/pressure/memory").exists() {
        assert!(s.psi_trigger, "the PSI trigger is armed: {s:?}");
        assert!(s.psi_some_avg10.is_some());
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_host_scope_a_cgroup_that_splits_its_growth_is_one_grower() {
    if !privileged("at_host_scope_a_cgroup_that_splits_its_growth_is_one_grower") {
        return;
    }
    let _serial = serial_async().await;
    // Three workers of one service at 70 MB/s each, beside a lone process
    // at 150 MB/s in another: process by process the lone one grows
    // fastest, but the service grows faster.
    let service = MemCgroup::new("hostsplit-svc", 1024 * MIB);
    let lone = MemCgroup::new("hostsplit-lone", 1024 * MIB);
    let (used, capacity) = host_used();
    let limit = ((used + 300 * MIB) as f64 / 0.85) as u64;
    let cfg = format!(
        "[host]\naction = \"freeze\"\nmin_available = \"{}\"\ncandidates = \"^/sentinel-test-hostsplit-.*-{}$\"\n",
        capacity - limit,
        std::process::id()
    );
    let agent = Agent::start("hostsplit", &cfg, &[]);
    let args = ["--target", "300MiB", "--rate", "70MB/s", "--hold", "30"];
    let workers: Vec<Hog> = (0..3).map(|_| Hog::spawn(&service, &args)).collect();
    let other = Hog::spawn(
        &lone,
        &["--target", "300MiB", "--rate", "150MB/s", "--hold", "30"],
    );
    agent
        .wait_decision(Duration::from_secs(15), |d| d.action == "freeze")
        .await
        .unwrap_or_else(|| panic!("no freeze\n{}", agent.log_text()));
    std::thread::sleep(Duration::from_millis(300));
    for w in &workers {
        assert_eq!(w.state(), Some('T'), "every growing worker is frozen");
    }
    // The service went first, all of it at once. (The lone process, still
    // growing above the preempt line, may be stopped after it.)
    let freezes: Vec<pb::Decision> = agent
        .client()
        .await
        .list_decisions(pb::ListDecisionsRequest {
            after_seq: 0,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .decisions
        .into_iter()
        .filter(|d| d.action == "freeze")
        .collect();
    let first: Vec<u32> = freezes.iter().take(3).map(|d| d.pid).collect();
    let mut want: Vec<u32> = workers.iter().map(|w| w.pid).collect();
    let mut got = first.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "{freezes:?}");
    assert!(
        freezes[0].reason.contains("its cgroup"),
        "{}",
        freezes[0].reason
    );
    assert_eq!(freezes[0].cgroup, service.path);
    assert!(!first.contains(&other.pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_survive_twenty_crashes_with_no_gap_and_no_loss() {
    if !privileged("decisions_survive_twenty_crashes") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("crash", 256 * MIB);
    // Dry-run: decisions without signals. Each short-lived hog crosses the
    // warn and preempt levels of its rule: two decisions.
    let mut agent = Agent::start(
        "crash",
        &rule_for(&cg, "storm", "64MiB", "kill"),
        &["--dry-run"],
    );
    let storm = sentinel_tests::Storm::start(&cg, 2);

    // What the watcher was told, across every crash and reconnect.
    let mut acked: Vec<pb::Decision> = Vec::new();
    for round in 0..20 {
        let after = acked.last().map(|d| d.seq);
        let mut stream = agent.watch(after).await;
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(d)) = stream.next().await {
                sink.lock().unwrap().push(d);
            }
        });
        tokio::time::sleep(Duration::from_millis(400 + 37 * (round % 5))).await;
        // A crash in the middle of the storm.
        agent.crash_and_restart();
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        let got = std::mem::take(&mut *got.lock().unwrap());
        for d in got {
            let want = acked.last().map(|l| l.seq + 1).unwrap_or(1);
            assert_eq!(d.seq, want, "gap or duplicate after round {round}: {d:?}");
            acked.push(d);
        }
    }
    storm.stop();
    assert!(
        acked.len() >= 40,
        "the storm produced too few decisions to mean anything: {}\n{}",
        acked.len(),
        agent.log_text()
    );

    // Everything acknowledged is in the journal, as it was sent, and the
    // journal has no gaps.
    let all = agent
        .client()
        .await
        .list_decisions(pb::ListDecisionsRequest {
            after_seq: 0,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .decisions;
    for (i, d) in all.iter().enumerate() {
        assert_eq!(d.seq, i as u64 + 1, "journal gap at {i}");
    }
    for a in &acked {
        assert_eq!(all.get(a.seq as usize - 1), Some(a), "lost or changed");
    }
    eprintln!(
        "{} decisions acknowledged across 20 crashes; journal holds {}",
        acked.len(),
        all.len()
    );
}

/// Runs the CLI as uid/gid 65534 (nobody/nogroup); returns (success,
/// stdout, stderr).
fn cli_as_nobody(agent: &Agent, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(sentinel_tests::sentinel_bin());
    cmd.args(args).arg("--socket").arg(&agent.socket);
    sentinel_tests::as_nobody(&mut cmd);
    let out = cmd.output().expect("run the CLI as nobody");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_change_policy_or_processes_and_are_named_in_the_journal() {
    if !privileged("only_admins_change_policy_or_processes") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("access", 512 * MIB);
    let cfg = format!(
        "socket_group = \"nogroup\"\n{}",
        rule_for(&cg, "leaky", "256MiB", "freeze")
    );
    let agent = Agent::start("access", &cfg, &[]);
    // The temp dir must be passable for nobody to reach the socket.
    let dir = std::ffi::CString::new(agent.dir.0.display().to_string()).unwrap();
    // SAFETY: chmod of the test's own temp dir.
    unsafe { libc::chmod(dir.as_ptr(), 0o711) };
    let mut hog = Hog::spawn(
        &cg,
        &["--target", "300MiB", "--rate", "200MB/s", "--hold", "1"],
    );
    agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;
    let pid = hog.pid.to_string();

    // A member of the socket's group reads...
    let (ok, out, err) = cli_as_nobody(&agent, &["status"]);
    assert!(ok && out.contains("mode ebpf"), "{out}{err}");
    // ...but may not resume, protect or change the policy.
    for args in [
        vec!["resume", pid.as_str()],
        vec!["protect", pid.as_str()],
        vec!["policy", "apply", "/dev/null"],
    ] {
        let (ok, _, err) = cli_as_nobody(&agent, &args);
        assert!(!ok, "{args:?} was allowed");
        assert!(
            err.contains("PermissionDenied")
                && err.contains("needs uid 0")
                && err.contains("uid 65534"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(hog.state(), Some('T'), "still frozen");
    assert!(agent.log_text().contains("refused: not an admin"));

    // Root resumes it; the journal says who, and it finishes its work.
    let (ok, out, err) = agent.cli(&["resume", &pid]);
    assert!(ok, "{err}");
    assert!(out.contains("resumed by uid 0"), "{out}");
    assert!(hog.expect_line("done", Duration::from_secs(10)).is_some());
    let st = hog.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(st.success(), "{st}");
    let r = agent
        .expect_action(hog.pid, "resume", Duration::from_secs(1))
        .await;
    assert!(r.reason.contains("resumed by uid 0"), "{r:?}");
    let (ok, _, err) = agent.cli(&["resume", &pid]);
    assert!(!ok && err.contains("NotFound"), "{err}");

    // Root protects a process before it grows: it is only alerted, and
    // runs past its limit to the end of its work.
    let mut hog = Hog::spawn(
        &cg,
        &[
            "--target",
            "300MiB",
            "--rate",
            "200MB/s",
            "--prefault",
            "8MiB",
            "--delay",
            "1",
            "--hold",
            "0.5",
        ],
    );
    let pid = hog.pid.to_string();
    let (ok, out, err) = agent.cli(&["protect", &pid]);
    assert!(ok && out.contains("protected by uid 0"), "{out}{err}");
    assert!(hog.expect_line("done", Duration::from_secs(10)).is_some());
    assert!(
        hog.wait_exit(Duration::from_secs(10))
            .expect("exits")
            .success()
    );
    let all = agent.decisions_for(hog.pid).await;
    assert!(
        all.iter()
            .all(|d| d.action == "protect" || d.action == "alert"),
        "{all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_policy_is_refused_both_ways_and_the_old_one_keeps_acting() {
    if !privileged("a_bad_policy_is_refused_both_ways") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("badpolicy", 512 * MIB);
    let good = rule_for(&cg, "leaky", "256MiB", "freeze");
    let agent = Agent::start("badpolicy", &good, &[]);
    let bad =
        format!("{good}[[rule]]\nname = \"b\"\nlimit = \"lots\"\nmatch = {{ comm = \"x\" }}\n");
    // Through the API: refused, naming line and key.
    let bad_file = agent.dir.0.join("bad.toml");
    std::fs::write(&bad_file, &bad).unwrap();
    let (ok, _, err) = agent.cli(&["policy", "apply", &bad_file.display().to_string()]);
    assert!(!ok);
    assert!(
        err.contains("InvalidArgument") && err.contains("rule[1].limit") && err.contains("lots"),
        "{err}"
    );
    // Through SIGHUP: the file now holds the bad policy; refused too.
    agent.reload(&bad);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        agent.log_text().contains("config reload refused"),
        "{}",
        agent.log_text()
    );
    // The old policy still acts.
    let (ok, out, _) = agent.cli(&["policy", "show"]);
    assert!(
        ok && out.contains("name = \"leaky\"") && !out.contains("lots"),
        "{out}"
    );
    let hog = Hog::spawn(
        &cg,
        &["--target", "400MiB", "--rate", "200MB/s", "--hold", "30"],
    );
    let d = agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;
    assert_eq!(d.rule, "leaky");
    // A good policy through the API is applied and journalled with who.
    let good_file = agent.dir.0.join("good.toml");
    std::fs::write(&good_file, good.replace("256MiB", "300MiB")).unwrap();
    let (ok, out, err) = agent.cli(&["policy", "apply", &good_file.display().to_string()]);
    assert!(ok, "{err}");
    assert!(out.contains("policy") && out.contains("by uid 0"), "{out}");
    let (_, out, _) = agent.cli(&["policy", "show"]);
    assert!(
        out.contains("300MiB") && out.contains("ApplyPolicy by uid 0"),
        "{out}"
    );
    // The journal, filtered: one policy change (the refused ones are not
    // changes), and the leaker's freezes by pid and action (the raised
    // limit resumed it, and it was frozen again at the new line).
    let (ok, out, _) = agent.cli(&["decisions", "--kind", "policy", "--json"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 1, "{out}");
    let pid = hog.pid.to_string();
    let (_, out, _) = agent.cli(&["decisions", "--pid", &pid, "--action", "freeze", "--json"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty(), "{out}");
    assert_eq!(lines[0]["seq"], d.seq);
    assert!(
        lines
            .iter()
            .all(|l| l["pid"] == hog.pid && l["action"] == "freeze"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpc_client_reads_and_is_refused_a_policy_change() {
    if !privileged("a_python_grpc_client") {
        return;
    }
    let _serial = serial_async().await;
    // grpcio for /usr/bin/python3 is put here by `cargo xtask test`.
    let deps = "/opt/sentinel-test/python";
    let cg = MemCgroup::new("python", 512 * MIB);
    let cfg = format!(
        "socket_group = \"nogroup\"\n{}",
        rule_for(&cg, "leaky", "128MiB", "freeze")
    );
    let agent = Agent::start("python", &cfg, &[]);
    let _hog = Hog::spawn(
        &cg,
        &["--target", "200MiB", "--rate", "200MB/s", "--hold", "30"],
    );
    let d = agent
        .wait_decision(Duration::from_secs(10), |d| d.action == "freeze")
        .await
        .unwrap_or_else(|| panic!("no freeze\n{}", agent.log_text()));

    // The client's code is generated from the repository's proto, here.
    let generated = agent.dir.0.join("py");
    std::fs::create_dir_all(&generated).unwrap();
    let proto = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sentinel/proto");
    let gen_out = std::process::Command::new("/usr/bin/python3")
        .env("PYTHONPATH", deps)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", generated.display()))
        .arg(format!("--grpc_python_out={}", generated.display()))
        .arg("sentinel/v1/sentinel.proto")
        .output()
        .expect("run grpc_tools.protoc (cargo xtask test installs it)");
    assert!(
        gen_out.status.success(),
        "{}",
        String::from_utf8_lossy(&gen_out.stderr)
    );
    let script = generated.join("client.py");
    std::fs::write(
        &script,
        r#"
import sys
import grpc
from sentinel.v1 import sentinel_pb2 as pb, sentinel_pb2_grpc as rpc

# The HTTP/2 layer under tonic wants an RFC authority; grpc-core would send
# the socket path. (README: "Querying it".)
channel = grpc.insecure_channel(
    "unix:" + sys.argv[1], options=[("grpc.default_authority", "localhost")]
)
stub = rpc.SentinelStub(channel)
procs = stub.ListProcesses(pb.ListProcessesRequest(limit=10, matched_only=True))
print("processes", " ".join(str(p.pid) for p in procs.processes))
for d in stub.WatchDecisions(pb.WatchDecisionsRequest(after_seq=0)):
    print("decision", d.seq, d.pid, d.action)
    break
try:
    stub.ApplyPolicy(pb.PolicyText(toml=""))
    print("applied")
except grpc.RpcError as e:
    print("refused", e.code().name)
adm = rpc.AdmissionStub(channel)
try:
    adm.Reserve(pb.ReserveRequest(bytes=1 << 20, pid=1))
    print("reserved for pid 1")
except grpc.RpcError as e:
    print("reserve for another user", e.code().name)
r = adm.Reserve(pb.ReserveRequest(bytes=1 << 20, holder="python"))
print("reserve for itself", r.state)
adm.Release(pb.ReleaseRequest(id=r.id))
print("released")
"#,
    )
    .unwrap();
    for p in [&agent.dir.0, &generated] {
        let c = std::ffi::CString::new(p.display().to_string()).unwrap();
        // SAFETY: chmod of the test's own temp dirs, so nobody can reach them.
        unsafe { libc::chmod(c.as_ptr(), 0o755) };
    }
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.env("PYTHONPATH", format!("{}:{deps}", generated.display()))
        .arg(&script)
        .arg(&agent.socket);
    sentinel_tests::as_nobody(&mut cmd);
    let out = cmd.output().expect("run the Python client as nobody");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("processes") && lines[0].contains(&d.pid.to_string()),
        "{text}"
    );
    assert!(lines[1].starts_with("decision 1 "), "{text}");
    assert_eq!(lines[2], "refused PERMISSION_DENIED", "{text}");
    // Admission: its own processes yes, another user's no.
    assert_eq!(
        lines[3], "reserve for another user PERMISSION_DENIED",
        "{text}"
    );
    assert_eq!(lines[4], "reserve for itself granted", "{text}");
    assert_eq!(lines[5], "released", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_in_a_cgroup_namespace_of_its_own_joins_the_hosts_or_says_it_cannot() {
    if !privileged("an_agent_started_in_a_cgroup_namespace") {
        return;
    }
    let _serial = serial_async().await;
    // As in a container: the agent lives in a cgroup of its own and starts
    // in a cgroup namespace rooted there, where other processes' cgroups
    // read `/../...`. The rule is written with the host's path.
    let home = MemCgroup::new("agentns", 1024 * MIB);
    let cg = MemCgroup::new("nsleak", 512 * MIB);
    let agent = Agent::start_with(
        "nsleak",
        &rule_for(&cg, "leaky", "256MiB", "freeze"),
        &[],
        &[],
        |inner| {
            let mut c = std::process::Command::new("unshare");
            c.arg("--cgroup")
                .arg(inner.get_program())
                .args(inner.get_args());
            for (k, v) in inner.get_envs() {
                if let Some(v) = v {
                    c.env(k, v);
                }
            }
            c.stdout(std::process::Stdio::null());
            home.contain(&mut c);
            c
        },
    );
    let log = agent.log_text();
    if !log.contains("joined the host's cgroup namespace") {
        // Where pid 1's namespace cannot be opened (this sandbox's pid 1 is
        // not ptrace-readable, even by root), the agent says so, in status
        // as well as the log, rather than silently matching nothing.
        let s = agent
            .client()
            .await
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(
            s.degraded_reason.contains("cgroup namespace of its own"),
            "{s:?}\n{log}"
        );
        eprintln!("pid 1's cgroup namespace is closed here: checked the degraded report only");
        return;
    }
    let hog = Hog::spawn(
        &cg,
        &["--target", "400MiB", "--rate", "200MB/s", "--hold", "30"],
    );
    let d = agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;
    assert_eq!(
        d.cgroup, cg.path,
        "the host's path, not one relative to the agent's namespace"
    );
}
