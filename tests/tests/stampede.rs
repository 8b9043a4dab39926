//! A stampede against the real kernel: eight workers of 1.5 GiB started at
//! once in a cgroup capped at 6 GiB, under a cgroup rule with no
//! reservations. Before the scheduler, a freeze rule left all eight frozen
//! (the pressure never cleared) and a kill rule killed all eight.

use std::time::Duration;

use sentinel_tests::{
    Agent, MemCgroup, privileged, serial_async,
    stampede::{self, Worker},
};

const GIB: u64 = 1 << 30;

fn rule(cg: &MemCgroup, action: &str) -> String {
    format!(
        "[[cgroup]]\nname = \"jobs\"\nmatch = \"^{}$\"\naction = \"{action}\"\n",
        cg.path
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_under_a_kill_rule_finishes_whole_and_waits_are_shown() {
    if !privileged("a_stampede_under_a_kill_rule_finishes_whole") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("stampede-kill", 6 * GIB);
    // A freeze timeout far shorter than the waits: waiting is not failing.
    let agent = Agent::start(
        "stampede-kill",
        &format!("freeze_timeout = \"2s\"\n{}", rule(&cg, "kill")),
        &[],
    );
    let workers = vec![Worker::new("1536MiB", "300MB/s", 3.0); 8];
    let run = tokio::task::spawn_blocking(move || {
        let out = stampede::run(&cg, &workers, Duration::from_secs(150));
        (out, cg)
    });
    // While it runs, status shows who waits, in order.
    let mut seen_queue = Vec::new();
    for _ in 0..100 {
        let s = agent.status().await;
        if !s.queued.is_empty() {
            seen_queue = s.queued;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (out, _cg) = run.await.unwrap();
    eprintln!("stampede under a kill rule: {out:?}");
    assert_eq!(
        (out.finished, out.killed, out.oom_kills, out.left),
        (8, 0, 0, 0),
        "{out:?}\n{}",
        agent.log_text()
    );
    assert!(out.peak < 6 * GIB);
    // Side by side, but not all at once.
    assert!(
        (2..8).contains(&out.most_running),
        "{} ran at once",
        out.most_running
    );
    assert!(!seen_queue.is_empty(), "status never showed a queue");
    assert!(seen_queue.iter().all(|q| q.scope.starts_with("cgroup ")));
    let queued = agent.decisions_of("queue", "").await;
    assert!(!queued.is_empty());
    assert!(queued.iter().all(|d| d.action == "freeze"
        && d.reason.starts_with("waiting for memory")
        && out.pids.contains(&d.pid)));
    // Every wait ended in a resume, the first in line first; nobody was
    // taken for a runaway.
    let resumed = agent.decisions_of("resume", "").await;
    let first_in_line = seen_queue.iter().find(|q| q.position == 1).unwrap().pid;
    let first_resumed = resumed
        .iter()
        .find(|r| seen_queue.iter().any(|q| q.pid == r.pid))
        .unwrap()
        .pid;
    assert_eq!(first_resumed, first_in_line, "{seen_queue:?}\n{resumed:?}");
    for q in &queued {
        assert!(
            resumed.iter().any(|r| r.pid == q.pid && r.seq > q.seq),
            "pid {} never resumed",
            q.pid
        );
    }
    let preempted = agent.decisions_of("preempt", "").await;
    assert!(
        preempted.iter().all(|d| d.action == "alert"),
        "{preempted:?}"
    );
}
