//! The unit's `SystemCallFilter=`, held to the standard earlyoom's outage
//! set (issue 19): its allow list, resolved as systemd would, is installed
//! as a seccomp filter that kills on any other call (stricter than the
//! unit, which answers EPERM), and the agent does its real work under it:
//! loads and attaches its probes, says ready to systemd, samples a GPU
//! through an NVML library it loads (the test's fake one), freezes, kills
//! and releases a victim's memory, delivers alerts, serves the API and
//! metrics, reloads, resumes, and stops cleanly.

use std::{
    os::unix::{net::UnixDatagram, process::ExitStatusExt},
    process::Command,
    time::Duration,
};

use sentinel_tests::{
    Agent, Hog, MIB, MemCgroup,
    gpu::{Scenario, fake_nvml},
    observability::{WebhookSink, http_get, wait_for},
    privileged, rule_for, serial_async, syscalls, tempdir,
};

fn unit() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sentinel.service");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whether `test` can run a filter here: as root (see `privileged`), and
/// on x86-64, whose numbers the filter is resolved with.
fn filter_runs_here(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    if !cfg!(target_arch = "x86_64") {
        eprintln!("SKIP: the filter is resolved with the kernel's x86-64 numbers");
        return false;
    }
    true
}

/// `inner` (the agent's command) run by seccomp-run under `allowed`: any
/// other call kills it, or with `errno` fails with EPERM (the unit's mode).
fn under_filter(inner: Command, allowed: &std::path::Path, errno: bool) -> Command {
    let launcher = sentinel_tests::bin_dir().join("seccomp-run");
    let mode: &[&std::ffi::OsStr] = if errno { &["--errno".as_ref()] } else { &[] };
    let args = [mode, &[allowed.as_os_str(), "--".as_ref()]].concat();
    Agent::run_by(launcher, &args, &inner)
}

/// The unit's allow list as numbers in a file under `dir`, less `drop`.
fn allow_list(dir: &std::path::Path, drop: &[&str]) -> std::path::PathBuf {
    let mut names = syscalls::allowed_by_unit(&unit());
    for d in drop {
        names.remove(*d);
    }
    let path = dir.join("allowed");
    let text: String = syscalls::numbers(&names)
        .iter()
        .map(|n| format!("{n}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_allow_list_names_what_no_systemd_group_holds() {
    // process_mrelease is in no group at all (only @known): left out, it
    // is the call whose absence killed earlyoom.
    let names = syscalls::allowed_by_unit(&unit());
    for call in [
        "bpf",
        "perf_event_open",
        "process_mrelease",
        "pidfd_open",
        "pidfd_send_signal",
        "mlockall",
    ] {
        assert!(names.contains(call), "{call} is not allowed by the unit");
    }
    assert!(unit().contains("\nSystemCallErrorNumber=EPERM\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_does_its_real_work_under_the_units_system_call_filter() {
    if !filter_runs_here("the_agent_does_its_real_work_under_the_units_system_call_filter") {
        return;
    }
    let _serial = serial_async().await;
    let tmp = tempdir::Dir::new("scfilter");
    let allowed = allow_list(&tmp.0, &[]);
    let held = MemCgroup::new("scheld", 512 * MIB);
    let ended = MemCgroup::new("scended", 512 * MIB);
    let sink = WebhookSink::start();
    let gpu = Scenario::new(&tmp.0);
    gpu.write(&format!("device 0 total {} name Fake T4\n", 16u64 << 30));
    let cfg = format!(
        "{}{}\n[alerting]\nwebhooks = [\"{}\"]\nmin_firing = \"1s\"\n[gpu]\nlibrary = \"{}\"\ninterval = \"50ms\"\n",
        rule_for(&held, "held", "128MiB", "freeze"),
        // Straight to the top of its ladder: SIGTERM (ignored), then
        // SIGKILL and process_mrelease.
        rule_for(&ended, "ended", "128MiB", "kill").replacen(
            "[rule.match]",
            "levels = { preempt = 0.9, kill = 0.9 }\n[rule.match]",
            1
        ),
        sink.url,
        fake_nvml().display()
    );
    // As systemd runs it: it says ready and pings a watchdog.
    let notify_path = tmp.0.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let notify_env = notify_path.display().to_string();
    let mut agent = Agent::start_with(
        "scfilter",
        &cfg,
        &[],
        &[
            ("NOTIFY_SOCKET", &notify_env),
            ("WATCHDOG_USEC", "400000"),
            ("FAKE_NVML_SCENARIO", gpu.path.to_str().unwrap()),
        ],
        |inner| under_filter(inner, &allowed, false),
    );
    let mut buf = [0u8; 4096];
    let n = notify.recv(&mut buf).expect("READY=1 on the notify socket");
    assert!(buf[..n].starts_with(b"READY=1"));

    // Every probe loaded and attached, and the GPU sampled.
    let mut s = agent.status().await;
    for _ in 0..100 {
        if !s.gpus.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        s = agent.status().await;
    }
    assert_eq!(s.gpus.len(), 1, "{s:?}");
    assert_eq!(s.mode, "ebpf", "{s:?}");
    assert!(s.degraded_reason.is_empty(), "{s:?}");

    let grow = ["--target", "200MiB", "--rate", "200MB/s", "--hold", "60"];
    let frozen = Hog::spawn(&held, &grow);
    agent
        .expect_action(frozen.pid, "freeze", Duration::from_secs(10))
        .await;
    assert!(frozen.frozen());
    let mut killed = Hog::spawn(
        &ended,
        &[
            "--target",
            "200MiB",
            "--rate",
            "100MB/s",
            "--hold",
            "60",
            "--ignore-term",
        ],
    );
    agent
        .expect_action(killed.pid, "terminate", Duration::from_secs(10))
        .await;
    agent
        .expect_action(killed.pid, "kill", Duration::from_secs(10))
        .await;
    assert!(killed.wait_exit(Duration::from_secs(5)).is_some());

    wait_for("alerts at the webhook", Duration::from_secs(20), || {
        (sink.all().len() >= 2).then_some(())
    });
    let (code, text) = http_get(&agent.metrics_url()).expect("metrics answer");
    assert!(code == 200 && text.contains("sentinel_preemptions_total"));

    // SAFETY: our own child.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) };
    wait_for("the reload", Duration::from_secs(10), || {
        agent.log_text().contains("config reloaded").then_some(())
    });
    let (ok, out, err) = agent.cli(&["resume", &frozen.pid.to_string()]);
    assert!(ok, "{out}{err}");
    assert!(!frozen.frozen());

    agent.stop();
    let st = agent.child.wait().unwrap();
    let log = agent.log_text();
    assert_eq!(
        st.signal(),
        None,
        "killed by a signal (SIGSYS is 31):\n{log}"
    );
    assert!(st.success(), "{st}\n{log}");
    // Released, or already gone by itself (ESRCH); never refused.
    assert!(
        !log.contains("process_mrelease: Operation not permitted"),
        "{log}"
    );
}

/// earlyoom's outage, under the unit's own EPERM mode: a filter without
/// process_mrelease. The agent starts and says at once, in status, which
/// call is refused and what that costs, instead of finding out at its
/// first kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_refuses_process_mrelease_is_reported_at_start() {
    if !filter_runs_here("a_filter_that_refuses_process_mrelease_is_reported_at_start") {
        return;
    }
    let _serial = serial_async().await;
    let tmp = tempdir::Dir::new("scerrno");
    let allowed = allow_list(&tmp.0, &["process_mrelease"]);
    let agent = Agent::start_with("scerrno", "", &["--no-ebpf"], &[], |inner| {
        under_filter(inner, &allowed, true)
    });
    let s = agent.status().await;
    assert!(
        s.degraded_reason
            .contains("process_mrelease is refused (Operation not permitted"),
        "{s:?}"
    );
    assert!(!s.degraded_reason.contains("pidfd_open"), "{s:?}");
}
