//! A process is its pid and its start time, and it is governed by the
//! cgroup it is in now: what the agent knew of a pid's previous process, or
//! of a process's previous cgroup, must not decide (issue 15, item 6).
//! Each test runs with the eBPF probes and again polling /proc.

use std::time::{Duration, Instant};

use sentinel_tests::{Agent, Hog, MIB, MemCgroup, privileged, rule_for, serial_async};

const MODES: [(&str, &[&str]); 2] = [("ebpf", &[]), ("polling", &["--no-ebpf"])];

/// Process state letter of `pid`.
fn state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Starts a memhog in `cg` whose pid is `pid`, by setting the kernel's
/// last pid just under it (other forks on the machine may take it first:
/// tried again until it is ours).
fn hog_with_pid(pid: u32, cg: &MemCgroup, args: &[&str]) -> Hog {
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("write ns_last_pid (root, initial pid namespace)");
        let hog = Hog::spawn(cg, args);
        if hog.pid == pid {
            return hog;
        }
    }
    panic!("pid {pid} was taken by other processes 50 times");
}

/// The measured failure: a zombie was discovered by a rescan, then reaped,
/// and its pid reused by a leaker, which kept the zombie's identity (its
/// cgroup, no rule) and ran 100 MiB past its limit with no decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_pid_is_a_new_process_and_its_rule_applies() {
    if !privileged("a_reused_pid_is_a_new_process") {
        return;
    }
    let _serial = serial_async().await;
    let elsewhere = MemCgroup::new("reuse-old", 256 * MIB);
    let cg = MemCgroup::new("reuse", 512 * MIB);
    let cfg = format!(
        "rescan_interval = \"500ms\"\npoll_interval = \"100ms\"\n{}",
        rule_for(&cg, "leaky", "256MiB", "freeze")
    );
    for (mode, flags) in MODES {
        let agent = Agent::start(&format!("reuse-{mode}"), &cfg, flags);
        // An ungoverned process that grows a little, exits, and is left a
        // zombie (not waited for) through several rescans.
        let mut old = Hog::spawn(
            &elsewhere,
            &["--target", "64MiB", "--rate", "200MB/s", "--hold", "0.5"],
        );
        let pid = old.pid;
        let deadline = Instant::now() + Duration::from_secs(10);
        while state(pid) != Some('Z') {
            assert!(Instant::now() < deadline, "{mode}: pid {pid} is no zombie");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        old.child.wait().unwrap();
        drop(old);
        // A leaker under the governed cgroup's rule gets the pid.
        let hog = hog_with_pid(
            pid,
            &cg,
            &["--target", "400MiB", "--rate", "100MB/s", "--hold", "30"],
        );
        let d = agent
            .expect_action(pid, "freeze", Duration::from_secs(10))
            .await;
        assert_eq!(d.rule, "leaky", "{mode}: {d:?}");
        assert!(hog.frozen(), "{mode}");
        drop(hog);
    }
}

/// The measured failure: a process that moved itself from an ungoverned
/// cgroup into a governed one, without exec, kept its old cgroup in the
/// agent and was never acted on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_moves_into_a_governed_cgroup_comes_under_its_rule() {
    if !privileged("a_process_that_moves_into_a_governed_cgroup") {
        return;
    }
    let _serial = serial_async().await;
    let from = MemCgroup::new("move-from", 512 * MIB);
    let to = MemCgroup::new("move-to", 512 * MIB);
    let cfg = format!(
        "rescan_interval = \"500ms\"\npoll_interval = \"100ms\"\n{}",
        rule_for(&to, "leaky", "256MiB", "freeze")
    );
    for (mode, flags) in MODES {
        let agent = Agent::start(&format!("move-{mode}"), &cfg, flags);
        let hog = Hog::spawn(
            &from,
            &["--target", "400MiB", "--rate", "40MB/s", "--hold", "30"],
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        to.adopt(hog.pid);
        let d = agent
            .expect_action(hog.pid, "freeze", Duration::from_secs(15))
            .await;
        assert_eq!(
            (d.rule.as_str(), d.cgroup.as_str()),
            ("leaky", to.path.as_str()),
            "{mode}"
        );
        drop(hog);
    }
}
