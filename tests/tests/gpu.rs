//! GPU memory through the real sampling and policy path, against a fake
//! NVML library driven by a scenario file (no GPU needed): the process
//! whose GPU memory grows is stopped before the device is full, a steady
//! large one is not, and a driver error mid-run is reported and survived.

use std::time::{Duration, Instant};

use sentinel_tests::{
    Agent, MIB, MemCgroup,
    gpu::{Scenario, fake_nvml},
    observability::{WebhookSink, http_get, metric, wait_for},
    pb, privileged, serial, serial_async, tempdir,
};

const GIB: u64 = 1 << 30;

/// A process that only sleeps: the fake driver says how much GPU memory
/// it holds.
fn sleeper(cg: &MemCgroup) -> std::process::Child {
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("120");
    cg.contain(&mut cmd);
    cmd.spawn().unwrap()
}

fn state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].chars().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gpu_grower_is_frozen_before_the_device_fills_and_the_steady_one_is_not() {
    if !privileged("the_gpu_grower_is_frozen") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("gpu", 64 * MIB);
    let mut steady = sleeper(&cg);
    let mut grower = sleeper(&cg);
    let (steady_pid, grower_pid) = (steady.id(), grower.id());
    let dir = tempdir::Dir::new("gpu-scn");
    let scn = Scenario::new(&dir.0);
    let total = 16 * GIB;
    let at = |grown: u64| {
        format!(
            "device 0 total {total} base {} name Fake A100\nproc 0 {steady_pid} {}\nproc 0 {grower_pid} {grown} compute\n",
            256 * MIB,
            8 * GIB
        )
    };
    scn.write(&at(512 * MIB));
    let lib = fake_nvml();
    let sink = WebhookSink::start();
    let mut agent = Agent::start_env(
        "gpu",
        &format!(
            "[gpu]\nlibrary = \"{}\"\ninterval = \"50ms\"\naction = \"freeze\"\n[alerting]\nwebhooks = [\"{}\"]\nmin_firing = \"1s\"\n",
            lib.display(),
            sink.url
        ),
        &["--no-ebpf"],
        &[("FAKE_NVML_SCENARIO", scn.path.to_str().unwrap())],
    );
    let s = agent.status().await;
    assert_eq!(s.gpu_unavailable, "", "{s:?}\n{}", agent.log_text());
    assert_eq!(s.gpu_driver, "550.54.14");

    // The fake driver's grower takes 100 MiB every 50 ms (2 GiB/s) while it
    // runs; once it is stopped it allocates no more.
    let mut grown = 512 * MIB;
    let mut peak_used = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sentinel_tests::frozen(grower_pid) {
        assert!(
            Instant::now() < deadline,
            "the grower was never stopped:\n{}",
            agent.log_text()
        );
        grown += 100 * MIB;
        peak_used = peak_used.max(256 * MIB + 8 * GIB + grown);
        assert!(
            peak_used < total,
            "the device filled before the grower was stopped"
        );
        scn.write(&at(grown));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = agent
        .expect_action(grower_pid, "freeze", Duration::from_secs(2))
        .await;
    assert_eq!(d.rule, "gpu:0");
    assert_eq!(d.level, "preempt");
    assert!(d.reason.contains("GPU 0"), "{d:?}");
    assert!(
        d.charged_bytes > 512 * MIB,
        "the decision carries its GPU memory: {d:?}"
    );
    eprintln!(
        "grower stopped at {:.2} GiB of GPU memory; device peak {:.2} of {:.0} GiB",
        grown as f64 / GIB as f64,
        peak_used as f64 / GIB as f64,
        total as f64 / GIB as f64
    );
    // The 8 GiB steady process, the largest on the device, was left alone.
    assert!(
        agent.decisions_for(steady_pid).await.is_empty(),
        "{:?}",
        agent.decisions_for(steady_pid).await
    );
    assert_eq!(state(steady_pid), Some('S'));

    // The decision is alerted like any other, as a GPU scope.
    let grower_label = grower_pid.to_string();
    let alert = wait_for(
        "the GPU alert at the webhook",
        Duration::from_secs(10),
        || {
            sink.all()
                .iter()
                .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
                .find(|a| {
                    a["labels"]["alertname"] == "SentinelPreempted"
                        && a["labels"]["pid"] == grower_label.as_str()
                })
        },
    );
    assert_eq!(alert["labels"]["rule"], "gpu:0", "{alert}");
    assert_eq!(alert["labels"]["scope"], "gpu", "{alert}");

    // Status, processes and metrics show the device and the grower.
    let s = agent.status().await;
    assert_eq!(s.gpus.len(), 1, "{s:?}");
    assert_eq!(s.gpus[0].name, "Fake A100");
    assert_eq!(s.gpus[0].level, "preempt");
    let p = agent
        .client()
        .await
        .get_process(pb::ProcessRef { pid: grower_pid })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.process.unwrap().gpu_bytes, grown);
    let text = http_get(&agent.metrics_url()).unwrap().1;
    assert_eq!(
        metric(&text, "sentinel_gpu_memory_total_bytes"),
        Some(total as f64),
        "{text}"
    );
    assert_eq!(metric(&text, "sentinel_gpu_level"), Some(2.0), "{text}");

    // A driver error mid-run: reported, survived, and cleared when the
    // device answers again.
    scn.write(&format!("{}error 0 memory 15\n", at(grown)));
    let mut reported = None;
    for _ in 0..50 {
        let s = agent.status().await;
        if !s.gpus[0].error.is_empty() {
            reported = Some(s.gpus[0].error.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let why = reported.expect("the failed read is reported in status");
    let text = http_get(&agent.metrics_url()).unwrap().1;
    assert_eq!(
        metric(&text, "sentinel_gpu_readable"),
        Some(0.0),
        "{why}\n{text}"
    );
    scn.write(&at(grown));
    let mut back = false;
    for _ in 0..50 {
        if agent.status().await.gpus[0].error.is_empty() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the device is readable again");
    let log = agent.log_text();
    assert_eq!(
        log.matches("GPU read failed").count(),
        1,
        "reported once, not per pass:\n{log}"
    );
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent survived"
    );

    for c in [&mut steady, &mut grower] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn without_an_nvidia_driver_the_agent_runs_and_says_why_once() {
    let _serial = serial();
    let agent = Agent::start(
        "nogpu",
        "[gpu]\nlibrary = \"/nonexistent/libnvidia-ml.so.1\"\n",
        &["--no-ebpf"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let (ok, out, err) = agent.cli(&["status", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let why = v["gpu_unavailable"].as_str().unwrap();
    assert!(
        why.starts_with("no NVIDIA driver library (/nonexistent/libnvidia-ml.so.1"),
        "{why}"
    );
    assert_eq!(v["gpus"].as_array().unwrap().len(), 0);
    let (_, text, _) = agent.cli(&["status"]);
    assert!(
        text.contains("GPU: unavailable: no NVIDIA driver library"),
        "{text}"
    );
    let log = agent.log_text();
    assert_eq!(
        log.matches("GPU monitoring unavailable").count(),
        1,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_gpu_limit_stops_its_grower_long_before_the_device_is_full() {
    if !privileged("a_rules_gpu_limit") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("gpurule", 64 * MIB);
    let mut steady = sleeper(&cg);
    let mut grower = sleeper(&cg);
    let (steady_pid, grower_pid) = (steady.id(), grower.id());
    let dir = tempdir::Dir::new("gpurule-scn");
    let scn = Scenario::new(&dir.0);
    let at = |grown: u64| {
        format!(
            "device 0 total {} name Fake L4\nproc 0 {steady_pid} {}\nproc 0 {grower_pid} {grown}\n",
            24 * GIB,
            GIB
        )
    };
    scn.write(&at(256 * MIB));
    let lib = fake_nvml();
    // Each process of the rule may hold 2 GiB on a device; the device
    // (24 GiB) is nowhere near its own levels.
    let rule = sentinel_tests::rule_for(&cg, "trainers", "1GiB", "freeze").replace(
        "action = \"freeze\"\n",
        "action = \"freeze\"\ngpu_limit = \"2GiB\"\n",
    );
    let agent = Agent::start_env(
        "gpurule",
        &format!(
            "{rule}\n[gpu]\nlibrary = \"{}\"\ninterval = \"50ms\"\n",
            lib.display()
        ),
        &["--no-ebpf"],
        &[("FAKE_NVML_SCENARIO", scn.path.to_str().unwrap())],
    );
    let mut grown = 256 * MIB;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sentinel_tests::frozen(grower_pid) {
        assert!(
            Instant::now() < deadline,
            "never stopped:\n{}",
            agent.log_text()
        );
        grown += 50 * MIB;
        assert!(
            grown < 2 * GIB,
            "the grower reached its GPU limit before it was stopped"
        );
        scn.write(&at(grown));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = agent
        .expect_action(grower_pid, "freeze", Duration::from_secs(2))
        .await;
    assert_eq!(d.rule, "trainers");
    assert_eq!(d.limit_bytes, 2 * GIB);
    assert!(d.reason.contains("on GPU 0"), "{d:?}");
    eprintln!(
        "stopped at {:.2} GiB of its 2 GiB GPU limit",
        grown as f64 / GIB as f64
    );
    assert!(agent.decisions_for(steady_pid).await.is_empty());
    for c in [&mut steady, &mut grower] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvml_pids_are_mapped_to_what_the_agent_sees() {
    if !privileged("nvml_pids_are_mapped") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("gpuns", 64 * MIB);
    // A GPU process in a container's PID namespace: sleep as pid 1 of a
    // new one. NVML names it by its host pid.
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--pid", "--fork", "sleep", "120"]);
    cg.contain(&mut cmd);
    let mut outer = cmd.spawn().unwrap();
    let children = format!("/proc/{0}/task/{0}/children", outer.id());
    let inner: u32 = wait_for("the namespaced sleep", Duration::from_secs(5), || {
        std::fs::read_to_string(&children)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    let ghost = 4_000_000; // above pid_max: a pid no namespace here has
    let dir = tempdir::Dir::new("gpuns-scn");
    let scn = Scenario::new(&dir.0);
    scn.write(&format!(
        "device 0 total {} name Fake T4\nproc 0 {inner} {GIB}\nproc 0 {ghost} {GIB}\n",
        16 * GIB
    ));
    let agent = Agent::start_env(
        "gpuns",
        &format!(
            "[gpu]\nlibrary = \"{}\"\ninterval = \"50ms\"\n",
            fake_nvml().display()
        ),
        &["--no-ebpf"],
        &[("FAKE_NVML_SCENARIO", scn.path.to_str().unwrap())],
    );
    let s = agent
        .status_when(Duration::from_secs(2), |s| !s.gpus.is_empty())
        .await;
    assert_eq!(s.gpu_unmapped_pids, vec![ghost], "{s:?}");
    let p = agent
        .client()
        .await
        .get_process(pb::ProcessRef { pid: inner })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap();
    assert_eq!(p.gpu_bytes, GIB);
    assert_eq!(p.ns_pid, 1, "pid 1 inside its own namespace");
    let (ok, text, err) = agent.cli(&["top", "--sort", "pid", "-n", "1000"]);
    assert!(ok, "{err}");
    assert!(text.lines().next().unwrap().contains(" GPU "), "{text}");
    let (_, text, _) = agent.cli(&["status"]);
    assert!(
        text.contains(&format!(
            "not visible here (run in the host's PID namespace): [{ghost}]"
        )),
        "{text}"
    );
    // SAFETY: the test's own processes.
    unsafe { libc::kill(inner as i32, libc::SIGKILL) };
    let _ = outer.kill();
    let _ = outer.wait();
}

/// The GPU sampler's thread holds the engine: a stop must end it, or the
/// journal is never closed and the next start finds it to repair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_gpus_watched_a_stop_closes_the_journal_cleanly() {
    if !privileged("with_gpus_watched_a_stop_closes_the_journal") {
        return;
    }
    let _serial = serial_async().await;
    let dir = tempdir::Dir::new("gpustop-scn");
    let scn = Scenario::new(&dir.0);
    scn.write(&format!("device 0 total {} name Fake T4\n", 16 * GIB));
    let mut agent = Agent::start_env(
        "gpustop",
        &format!(
            "[gpu]\nlibrary = \"{}\"\ninterval = \"50ms\"\n",
            fake_nvml().display()
        ),
        &["--no-ebpf"],
        &[("FAKE_NVML_SCENARIO", scn.path.to_str().unwrap())],
    );
    let s = agent.status().await;
    assert_eq!(s.gpu_unavailable, "", "{s:?}");
    agent.stop();
    agent.start_again();
    let log = agent.log_text();
    assert!(
        !log.contains("was not closed cleanly"),
        "the journal was left open at the stop:\n{log}"
    );
}
