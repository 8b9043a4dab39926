//! Privileged end-to-end tests at process scope: a rule's limit on one
//! process or tree, found by eBPF or by polling, and the in-kernel tripwire.
//! The real agent, the real eBPF object, real processes in capped memory
//! cgroups. Rules only ever select the test's own cgroup.

use std::time::Duration;

use sentinel_tests::{
    Agent, Hog, MIB, MemCgroup, pb, privileged, read_charged, rule_for, serial_async,
};

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
    assert!(hog.frozen(), "leaker should be stopped");
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
    assert!(hog.frozen());
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

/// The kernel's tripwire entry belongs to the process it was armed for:
/// one the agent armed as its process exited, found on a later process
/// with the same pid, stops no one (and is dropped); armed for the
/// process itself, it stops it at the ceiling.
#[test]
fn a_tripwire_armed_for_another_process_with_the_pid_stops_no_one() {
    if !privileged("a_tripwire_armed_for_another_process_with_the_pid") {
        return;
    }
    let _serial = sentinel_tests::serial();
    use sentinel::{
        collector::procfs,
        probes::{LoadOptions, Probes},
    };
    use sentinel_core::engine::Tripwire;
    let mut probes = Probes::load(&LoadOptions {
        step_bytes: MIB,
        large_mmap_bytes: 64 * MIB,
        disabled: Vec::new(),
        dispatch_only: false,
    })
    .expect("the eBPF object loads");
    let cg = MemCgroup::new("tripowner", 512 * MIB);
    let grow = ["--target", "160MiB", "--rate", "100MB/s", "--hold", "1"];
    let ceiling = Tripwire::Ceiling(64 * MIB);

    // Armed for the pid's earlier owner: a start time not this process's.
    let stranger = Hog::spawn(&cg, &grow);
    let start = procfs::read_stat(stranger.pid).unwrap().start_time;
    probes
        .set_tripwire(stranger.pid, start.saturating_sub(1), ceiling)
        .unwrap();
    assert!(
        stranger
            .expect_line("done", Duration::from_secs(10))
            .is_some(),
        "stopped by an entry that was not its own: state {:?}",
        stranger.state()
    );

    // Armed for this process: stopped at the ceiling.
    let owner = Hog::spawn(&cg, &grow);
    let start = procfs::read_stat(owner.pid).unwrap().start_time;
    probes.set_tripwire(owner.pid, start, ceiling).unwrap();
    let stopped = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        owner.frozen()
    });
    assert!(stopped, "its own entry did not stop it");
    let charged = read_charged(owner.pid);
    assert!(
        charged <= 65 * MIB,
        "stopped at {} MiB, past the 64 MiB ceiling",
        charged / MIB
    );
}
