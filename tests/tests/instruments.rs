//! Privileged end-to-end tests of the two instruments: with nothing near a
//! line the per-fault probe is detached (the wide watch runs), and it is
//! attached again, with its tripwires, before a process that grows at full
//! speed from far below its line can reach it. Real agent, real eBPF
//! object, processes in capped memory cgroups, rules only on those.

use std::time::{Duration, Instant};

use sentinel_tests::{Agent, Hog, MIB, MemCgroup, pb, privileged, rule_for, serial_async};

const GIB: u64 = 1024 * MIB;

async fn wait_for_instrument(agent: &Agent, which: &str, within: Duration) -> pb::Status {
    let until = Instant::now() + within;
    loop {
        let s = agent.status().await;
        if s.instrument == which {
            return s;
        }
        assert!(
            Instant::now() < until,
            "still {} after {within:?} ({}):\n{}",
            s.instrument,
            s.instrument_reason,
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_precise_probe_rests_far_from_lines_and_is_back_before_a_leaker_reaches_one() {
    if !privileged("the_precise_probe_rests_far_from_lines") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("reach", 4 * GIB);
    let small = MemCgroup::new("reach-small", 512 * MIB);
    let policy = format!(
        "{}{}",
        rule_for(&cg, "big", "3GiB", "freeze"),
        rule_for(&small, "small", "256MiB", "freeze")
    );
    let agent = Agent::start("reach", &policy, &[]);

    // Nothing governed yet, the host far from its line: detached within
    // the hysteresis (10 s) and a tick.
    let s = wait_for_instrument(&agent, "wide", Duration::from_secs(15)).await;
    assert_eq!(s.precise_attachments, 0, "{s:?}");
    assert!(s.instrument_reason.contains("host"), "{s:?}");
    let rss = s.probes.iter().find(|p| p.name == "rss_stat").unwrap();
    assert!(!rss.attached && rss.detail.contains("detached"), "{rss:?}");

    // Up to 1 GB/s from nothing under a 3 GiB rule: out of reach (1.2 GiB) at
    // first, then the probe attaches and the tripwire stops it at its
    // preempt line (85%).
    let hog = Hog::spawn(
        &cg,
        &["--target", "3500MiB", "--rate", "1GB/s", "--hold", "60"],
    );
    // Generous: a loaded CI machine slows the leaker, not the agent.
    let d = agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(40))
        .await;
    let preempt_line = 3 * GIB * 85 / 100;
    assert!(
        d.charged_bytes <= preempt_line + 2 * MIB,
        "frozen at the preempt line, not after: {d:?}"
    );
    let s = agent.status().await;
    assert_eq!(s.instrument, "precise", "{s:?}");
    assert_eq!(s.precise_attachments, 1, "{s:?}");
    assert!(
        agent.log_text().contains("instrument=\"precise\""),
        "{}",
        agent.log_text()
    );
    drop(hog);

    // Out of reach again (nothing held, nothing governed near a line).
    wait_for_instrument(&agent, "wide", Duration::from_secs(15)).await;

    // A process that execs under a 256 MiB rule while the probe rests is
    // read from its exec event, and its tripwire holds at full speed.
    let hog = Hog::spawn(
        &small,
        &["--target", "400MiB", "--rate", "max", "--hold", "30"],
    );
    let d = agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;
    assert!(d.charged_bytes < 256 * MIB, "{d:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(hog.frozen());
    let charged = sentinel_tests::read_charged(hog.pid);
    assert!(charged < 256 * MIB, "charged {} MiB", charged / MIB);
    assert_eq!(agent.status().await.precise_attachments, 2);
    drop(hog);

    // A process moved into a governed cgroup while the probe rests, long
    // after its last sample: the kernel's report of the move brings it
    // under the rule (a rescan's identity checks look back only 10 s).
    wait_for_instrument(&agent, "wide", Duration::from_secs(15)).await;
    let elsewhere = MemCgroup::new("reach-elsewhere", 512 * MIB);
    let hog = Hog::spawn(
        &elsewhere,
        &["--target", "400MiB", "--rate", "10MB/s", "--hold", "60"],
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(agent.status().await.instrument, "wide");
    small.adopt(hog.pid);
    let d = agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(20))
        .await;
    assert_eq!(
        (d.rule.as_str(), d.cgroup.as_str()),
        ("small", small.path.as_str())
    );
    assert!(d.charged_bytes < 256 * MIB, "{d:?}");
}
