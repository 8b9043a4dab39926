//! Privileged end-to-end test of an agent started in a cgroup namespace of
//! its own. The real agent, the real eBPF object, real processes in capped
//! memory cgroups. Rules only ever select the test's own cgroup.

use std::time::Duration;

use sentinel_tests::{Agent, Hog, MIB, MemCgroup, pb, privileged, rule_for, serial_async};

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
            let mut c = Agent::run_by("unshare", &["--cgroup".as_ref()], &inner);
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
