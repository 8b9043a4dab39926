//! Privileged end-to-end tests of shared limits: a cgroup's and the host's,
//! where the grower is stopped, not the biggest. The real agent, the real
//! eBPF object, real processes in capped memory cgroups. Rules only ever
//! select the test's own cgroup.

use std::time::Duration;

use sentinel_tests::{Agent, Hog, MIB, MemCgroup, pb, privileged, read_charged, serial_async};

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
    // A second after the steady one's climb: it has finished growing, and
    // its pace then gives the leaker no one to wait for.
    std::thread::sleep(Duration::from_secs(1));
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
    assert!(leaker.frozen(), "the leaker is frozen");
    assert_eq!(d.rule, "capped");
    assert_eq!(d.action, "freeze");
    assert!(d.reason.contains("of its recent growth"), "{}", d.reason);
    // The cgroup's limit, acted on at its preempt level (85%).
    assert_eq!(d.limit_bytes, 1024 * MIB);
    assert_eq!(d.level, "preempt");
    assert!(!steady.frozen(), "the big steady process is untouched");
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
    assert!(leaker.frozen());
    assert_eq!(cg.oom_kills(), 0);
    assert!(
        read_charged(leaker.pid) > 600 * MIB,
        "it grew after the resume"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_scope_stops_the_grower_not_the_biggest() {
    if !privileged("host_scope_stops_the_grower_not_the_biggest") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("host", 1024 * MIB);
    // It holds long enough to outlast the host's settling (up to 10 s
    // while a test before hands memory back) and the agent's start: an
    // exit before the leaker crosses the line would free 400 MiB under it
    // and keep the host below its line (seen once in CI).
    let mut steady = Hog::spawn(
        &cg,
        &["--target", "400MiB", "--rate", "max", "--hold", "25"],
    );
    assert!(
        steady
            .expect_line("done", Duration::from_secs(10))
            .is_some()
    );
    std::thread::sleep(Duration::from_millis(300));
    // A host floor that puts the host's preempt line (85%) about 250 MiB
    // above what is in use now, and victims only from this test's cgroup:
    // the host policy can touch nothing else on this machine.
    let (min_available, _) = sentinel_tests::host_floor(250 * MIB, 0.85);
    let cfg = format!(
        "[host]\naction = \"freeze\"\nlevels = {{ warn = 0.70, preempt = 0.85, kill = 0.95, clear = 0.10 }}\nmin_available = \"{min_available}\"\ncandidates = \"^{}$\"\n",
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
    assert!(leaker.frozen(), "the leaker is frozen");
    assert_eq!(d.rule, "host");
    assert_eq!(d.level, "preempt");
    assert!(d.reason.contains("of its recent growth"), "{}", d.reason);
    assert!(!steady.frozen(), "the bigger steady one is untouched");
    let none = agent
        .wait_decision(Duration::from_millis(200), |x| {
            x.pid == steady.pid && x.action != "alert"
        })
        .await;
    assert!(none.is_none(), "{none:?}");
    let st = steady.wait_exit(Duration::from_secs(35)).expect("finishes");
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
async fn at_host_scope_a_cgroup_that_splits_its_growth_is_one_grower() {
    if !privileged("at_host_scope_a_cgroup_that_splits_its_growth_is_one_grower") {
        return;
    }
    let _serial = serial_async().await;
    // Three workers of one service at 70 MB/s each, beside a lone process
    // at 150 MB/s in another: process by process the lone one grows
    // fastest, but the service grows faster. The stampede scheduler is off
    // here: with it on they would wait their turns instead (its own tests
    // show that); this is the runaway's choice of victim.
    let service = MemCgroup::new("hostsplit-svc", 1024 * MIB);
    let lone = MemCgroup::new("hostsplit-lone", 1024 * MIB);
    let (min_available, limit) = sentinel_tests::host_floor(300 * MIB, 0.85);
    let cfg = format!(
        "schedule_horizon = \"0s\"\n[host]\naction = \"freeze\"\nlevels = {{ warn = 0.70, preempt = 0.85, kill = 0.95, clear = 0.10 }}\nmin_available = \"{min_available}\"\ncandidates = \"^/sentinel-test-hostsplit-.*-{}$\"\n",
        std::process::id()
    );
    let agent = Agent::start("hostsplit", &cfg, &[]);
    let args = ["--target", "300MiB", "--rate", "70MB/s", "--hold", "30"];
    let workers: Vec<Hog> = (0..3).map(|_| Hog::spawn(&service, &args)).collect();
    let other = Hog::spawn(
        &lone,
        &["--target", "300MiB", "--rate", "150MB/s", "--hold", "30"],
    );
    if agent
        .wait_decision(Duration::from_secs(15), |d| d.action == "freeze")
        .await
        .is_none()
    {
        let status = agent.status().await;
        panic!(
            "no freeze; host at {} of {} B now\n{status:?}\n{}",
            sentinel::collector::host::read_meminfo().unwrap().used(),
            limit,
            agent.log_text()
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    for w in &workers {
        assert!(w.frozen(), "every growing worker is frozen");
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
