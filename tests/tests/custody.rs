//! Privileged end-to-end tests of freezes across the agent's restarts and
//! of thaws it did not make: SIGKILL and SIGTERM of the agent, a SIGCONT
//! from another process. The real agent, the real eBPF object, real
//! processes in capped memory cgroups. Rules only ever select the test's
//! own cgroup.

use std::time::Duration;

use sentinel_tests::{
    Agent, Hog, MIB, MemCgroup,
    observability::{http_get, metric},
    pb, privileged, rule_for, serial_async,
};

/// A leaker frozen at its rule's preempt line, holding.
async fn frozen_leaker(agent: &Agent, cg: &MemCgroup) -> Hog {
    let hog = Hog::spawn(
        cg,
        &["--target", "400MiB", "--rate", "200MB/s", "--hold", "60"],
    );
    agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;
    assert!(hog.frozen());
    hog
}

/// What the agent says of `pid`: its state in the process table.
async fn state_of(agent: &Agent, pid: u32) -> String {
    agent
        .client()
        .await
        .get_process(pb::ProcessRef { pid })
        .await
        .map(|r| r.into_inner().process.map(|p| p.state).unwrap_or_default())
        .unwrap_or_else(|e| format!("{e}"))
}

fn frozen_metric(agent: &Agent) -> Option<f64> {
    let (_, body) = http_get(&agent.metrics_url()).expect("the agent serves metrics");
    metric(&body, "sentinel_frozen_processes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_survives_a_sigkill_of_the_agent_and_resumes_by_api() {
    if !privileged("a_freeze_survives_a_sigkill_of_the_agent") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("custkill", 512 * MIB);
    let mut agent = Agent::start("custkill", &rule_for(&cg, "leaky", "256MiB", "freeze"), &[]);
    let hog = frozen_leaker(&agent, &cg).await;

    agent.crash_and_restart();
    let adopted = agent
        .expect_action(hog.pid, "adopted", Duration::from_secs(5))
        .await;
    assert_eq!(adopted.kind, "custody");
    assert_eq!(adopted.rule, "leaky");
    assert!(adopted.start_time > 0);
    assert_eq!(state_of(&agent, hog.pid).await, "frozen");
    assert_eq!(frozen_metric(&agent), Some(1.0));
    assert!(hog.frozen(), "still stopped");

    let (ok, out, err) = agent.cli(&["resume", &hog.pid.to_string()]);
    assert!(ok, "{out}{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!hog.frozen(), "resumed by the API after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_survives_a_sigterm_of_the_agent_and_resumes_when_the_limit_is_raised() {
    if !privileged("a_freeze_survives_a_sigterm_of_the_agent") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("custterm", 512 * MIB);
    let policy = rule_for(&cg, "leaky", "256MiB", "freeze");
    let mut agent = Agent::start("custterm", &policy, &[]);
    let hog = frozen_leaker(&agent, &cg).await;

    agent.stop_and_restart();
    // The stop said what it left frozen, in the log and the journal.
    assert!(
        agent
            .log_text()
            .contains("stopping with processes left frozen"),
        "{}",
        agent.log_text()
    );
    let left = agent
        .expect_action(hog.pid, "left_frozen", Duration::from_secs(1))
        .await;
    assert!(
        left.reason.contains("its next start takes it back"),
        "{}",
        left.reason
    );
    agent
        .expect_action(hog.pid, "adopted", Duration::from_secs(5))
        .await;
    assert!(hog.frozen());

    // Raising the limit clears the pressure: resumed on its own.
    agent.reload(&policy.replace("256MiB", "1GiB"));
    let r = agent
        .wait_decision(Duration::from_secs(5), |d| {
            d.pid == hog.pid && d.kind == "resume"
        })
        .await
        .unwrap_or_else(|| panic!("not resumed\n{}", agent.log_text()));
    assert_eq!(r.outcome, "done");
    assert!(hog.expect_line("done", Duration::from_secs(10)).is_some());
}

/// Where freezes are SIGSTOP (no v1 freezer, cgroup v2, or
/// `agent.freezer = false`), a SIGCONT undoes one: it is noticed, and the
/// rule decides again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigcont_from_another_process_is_noticed_and_the_rule_freezes_again() {
    if !privileged("a_sigcont_from_another_process_is_noticed") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("custcont", 512 * MIB);
    let agent = Agent::start_env(
        "custcont",
        &rule_for(&cg, "leaky", "256MiB", "freeze"),
        &[],
        &[("SENTINEL_FREEZER", "false")],
    );
    let hog = frozen_leaker(&agent, &cg).await;
    // Someone's `kill -CONT`, a shell's `fg`.
    let st = std::process::Command::new("kill")
        .args(["-CONT", &hog.pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let thaw = agent
        .wait_decision(Duration::from_secs(5), |d| {
            d.pid == hog.pid && d.kind == "resume"
        })
        .await
        .unwrap_or_else(|| panic!("the thaw went unnoticed\n{}", agent.log_text()));
    assert_eq!(thaw.outcome, "recorded", "Sentinel did not resume it");
    assert!(
        thaw.reason.contains("thawed by someone else"),
        "{}",
        thaw.reason
    );
    // Still past its preempt line: frozen again by its rule.
    let again = agent
        .wait_decision(Duration::from_secs(5), |d| {
            d.pid == hog.pid && d.action == "freeze" && d.seq > thaw.seq
        })
        .await
        .unwrap_or_else(|| panic!("not frozen again\n{}", agent.log_text()));
    assert_eq!(again.outcome, "done");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(hog.frozen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thaw_all_resumes_what_an_agent_stopped_for_good_left_frozen() {
    if !privileged("thaw_all_resumes_what_an_agent_stopped_for_good_left_frozen") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("custthaw", 512 * MIB);
    let mut agent = Agent::start("custthaw", &rule_for(&cg, "leaky", "256MiB", "freeze"), &[]);
    let hog = frozen_leaker(&agent, &cg).await;
    let config = agent.dir.0.join("sentinel.toml").display().to_string();
    let thaw_all = || {
        let out = std::process::Command::new(sentinel_tests::sentinel_bin())
            .args(["thaw-all", "--config", &config, "--why", "test"])
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // With the agent running, it is the agent's to resume: refused.
    let (ok, out) = thaw_all();
    assert!(!ok && out.contains("stop it first"), "{out}");
    assert!(hog.frozen());

    agent.stop();
    assert!(hog.frozen(), "a stop leaves it frozen");
    let (ok, out) = thaw_all();
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("thawed pid {} (memhog)", hog.pid)),
        "{out}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!hog.frozen());
    // Journalled: nothing is left to thaw, and a later start adopts nothing.
    let (ok, out) = thaw_all();
    assert!(ok && out.contains("nothing frozen by Sentinel"), "{out}");
}

/// The process's freezer cgroup (the `freezer` line of /proc/PID/cgroup).
fn freezer_path(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.split_once(":freezer:").map(|(_, p)| p.to_string()))
        .unwrap_or_default()
}

/// With the kernel's freezer (cgroup v1, as on these machines), a freeze
/// is one that job control cannot undo, across the agent's restarts, and
/// it leaves the process's memory cgroup as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freezer_freeze_ignores_sigcont_and_keeps_the_memory_cgroup() {
    if !privileged("a_freezer_freeze_ignores_sigcont") {
        return;
    }
    if !sentinel_tests::v1_freezer_mounted() {
        assert!(
            std::env::var_os("CI").is_none(),
            "these machines have the cgroup v1 freezer"
        );
        eprintln!("SKIP: no cgroup v1 freezer here");
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("custfreezer", 512 * MIB);
    // No tripwire: its SIGSTOP could come first, and this is about the
    // freezer's freeze.
    let mut agent = Agent::start_env(
        "custfreezer",
        &rule_for(&cg, "leaky", "256MiB", "freeze"),
        &[],
        &[("SENTINEL_TRIPWIRE", "false")],
    );
    assert!(
        agent
            .log_text()
            .contains("freezes use the kernel's cgroup v1 freezer"),
        "{}",
        agent.log_text()
    );
    let before = freezer_path(std::process::id());
    let hog = frozen_leaker(&agent, &cg).await;
    let start = sentinel::collector::procfs::read_stat(hog.pid)
        .unwrap()
        .start_time;
    let own = freezer_path(hog.pid);
    assert!(
        own.ends_with(&format!("/sentinel-{}-{start}", hog.pid)),
        "{own}"
    );
    assert_ne!(hog.state(), Some('T'), "not a SIGSTOP");
    // Its memory cgroup, charges and limit are what they were.
    let memcg = std::fs::read_to_string(format!("/proc/{}/cgroup", hog.pid)).unwrap();
    assert!(memcg.contains(&format!(":memory:{}\n", cg.path)), "{memcg}");
    let charged = cg.usage_bytes();

    let cont = || {
        let st = std::process::Command::new("kill")
            .args(["-CONT", &hog.pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    cont();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hog.frozen(), "a SIGCONT does not thaw it");
    assert!(cg.usage_bytes() <= charged + MIB, "it did not run on");
    let resumes = |ds: &[pb::Decision]| ds.iter().filter(|d| d.kind == "resume").count();
    assert_eq!(resumes(&agent.decisions_for(hog.pid).await), 0);

    // Nor with the agent down; the next start takes it back.
    agent.stop_and_restart();
    cont();
    agent
        .expect_action(hog.pid, "adopted", Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hog.frozen());
    assert_eq!(resumes(&agent.decisions_for(hog.pid).await), 0);

    // Resumed: thawed, and back in the freezer cgroup it came from.
    let (ok, out, err) = agent.cli(&["resume", &hog.pid.to_string()]);
    assert!(ok, "{out}{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!hog.frozen());
    assert_eq!(freezer_path(hog.pid), before);
    let dir = format!("/sys/fs/cgroup/freezer{own}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is removed");
}

/// `kill -9` of a frozen process works as it would on a stopped one: the
/// kernel's freezer would hold it until thawed, so the agent lets it die.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_from_someone_else_ends_a_frozen_process() {
    if !privileged("a_kill_from_someone_else_ends_a_frozen_process") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("custkill9", 512 * MIB);
    let agent = Agent::start(
        "custkill9",
        &rule_for(&cg, "leaky", "256MiB", "freeze"),
        &[],
    );
    let mut hog = frozen_leaker(&agent, &cg).await;
    // SAFETY: our own child.
    unsafe { libc::kill(hog.pid as i32, libc::SIGKILL) };
    let t = std::time::Instant::now();
    let st = hog.wait_exit(Duration::from_secs(3));
    assert!(
        st.is_some(),
        "still alive 3 s after SIGKILL\n{}",
        agent.log_text()
    );
    eprintln!("died {:?} after SIGKILL", t.elapsed());
    let d = agent
        .wait_decision(Duration::from_secs(2), |d| {
            d.pid == hog.pid && d.kind == "resume"
        })
        .await;
    if sentinel_tests::v1_freezer_mounted() {
        let d = d.unwrap_or_else(|| panic!("{}", agent.log_text()));
        assert!(
            d.reason.starts_with("killed by someone else (SIGKILL)"),
            "{}",
            d.reason
        );
    }
}
