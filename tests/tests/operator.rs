//! Privileged end-to-end tests of what operators and clients meet: the
//! journal across crashes, who may change policy or signal, bad policies,
//! a third-party Python client. The real agent, the real eBPF object, real
//! processes in capped memory cgroups. Rules only ever select the test's own
//! cgroup.

use std::time::Duration;

use sentinel_tests::{Agent, Hog, MIB, MemCgroup, pb, privileged, rule_for, serial_async};
use tokio_stream::StreamExt;

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
    let (ok, out, err) = agent.cli_as(65534, &["status"]);
    assert!(ok && out.contains("mode ebpf"), "{out}{err}");
    // ...but may not resume, protect or change the policy.
    for args in [
        vec!["resume", pid.as_str()],
        vec!["protect", pid.as_str()],
        vec!["policy", "apply", "/dev/null"],
    ] {
        let (ok, _, err) = agent.cli_as(65534, &args);
        assert!(!ok, "{args:?} was allowed");
        assert!(
            err.contains("PermissionDenied")
                && err.contains("needs uid 0")
                && err.contains("uid 65534"),
            "{args:?}: {err}"
        );
    }
    assert!(hog.frozen(), "still frozen");
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
    std::fs::write(
        &good_file,
        format!(
            "{}{}",
            good.replace("256MiB", "300MiB"),
            sentinel_tests::TEST_HOST
        ),
    )
    .unwrap();
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

/// A config emptied or deleted by mistake must not thaw a runaway: SIGHUP
/// and ApplyPolicy refuse it, and the frozen leaker stays frozen until
/// the operator says the empty policy is meant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_or_deleted_config_is_refused_and_the_frozen_stay_frozen() {
    if !privileged("an_emptied_or_deleted_config_is_refused") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("emptypolicy", 512 * MIB);
    let agent = Agent::start(
        "emptypolicy",
        &rule_for(&cg, "leaky", "256MiB", "freeze"),
        &[],
    );
    let hog = Hog::spawn(
        &cg,
        &["--target", "400MiB", "--rate", "200MB/s", "--hold", "30"],
    );
    agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;
    assert!(hog.frozen());
    let config = agent.dir.0.join("sentinel.toml");
    let refusals = |n: usize| {
        let log = agent.log_text();
        assert_eq!(log.matches("config reload refused").count(), n, "{log}");
        log
    };

    // SIGHUP with the rules cut away (the socket and journal kept).
    agent.reload("");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = refusals(1);
    assert!(
        log.contains("drop every rule and resume the 1 frozen")
            && log.contains("allow_empty_policy = true"),
        "{log}"
    );
    // SIGHUP with the file gone: not the empty built-in defaults.
    std::fs::remove_file(&config).unwrap();
    // SAFETY: our own child.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = refusals(2);
    assert!(log.contains("cannot read"), "{log}");
    // ApplyPolicy: refused with FAILED_PRECONDITION.
    let empty = agent.dir.0.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let (ok, _, err) = agent.cli(&["policy", "apply", &empty.display().to_string()]);
    assert!(!ok);
    assert!(
        err.contains("FailedPrecondition") && err.contains("drop every rule"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hog.frozen(), "still frozen");
    let (_, out, _) = agent.cli(&["decisions", "--kind", "policy", "--json"]);
    assert_eq!(out.lines().count(), 0, "nothing was applied: {out}");

    // Said on purpose, it is applied, and the leaker is no longer governed.
    // (The host only alerts in it, so no host-wide policy runs here.)
    std::fs::write(
        &empty,
        "[agent]\nallow_empty_policy = true\n[host]\naction = \"alert\"\n",
    )
    .unwrap();
    let (ok, _, err) = agent.cli(&["policy", "apply", &empty.display().to_string()]);
    assert!(ok, "{err}");
    agent
        .expect_action(hog.pid, "resume", Duration::from_secs(5))
        .await;
    assert!(!hog.frozen());
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
    let proto = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sentinel/api/proto");
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

/// A damaged journal degrades the agent, never stops it: the file is moved
/// aside, a new one started, the host still protected, and sequence
/// numbers go on above the old ones (a watcher resuming from one it saw
/// misses nothing and repeats nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_is_moved_aside_and_protection_goes_on() {
    if !privileged("a_damaged_journal_is_moved_aside") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("damaged", 512 * MIB);
    let mut agent = Agent::start("damaged", &rule_for(&cg, "leaky", "256MiB", "freeze"), &[]);
    let grow = ["--target", "400MiB", "--rate", "200MB/s", "--hold", "30"];
    let before = {
        let hog = Hog::spawn(&cg, &grow);
        agent
            .expect_action(hog.pid, "freeze", Duration::from_secs(10))
            .await
            .seq
    };
    let journal = agent.dir.0.join("journal.redb");
    for (damage, why) in [
        (Damage::ZeroedMiddle, "damaged"),
        (Damage::Emptied, "held no decisions"),
    ] {
        agent.stop();
        damage.apply(&journal);
        agent.start_again();
        let s = agent.status().await;
        assert!(
            s.degraded_reason.contains(why)
                && s.degraded_reason
                    .contains("a new one numbers decisions from"),
            "{:?}\n{}",
            s.degraded_reason,
            agent.log_text()
        );
        if damage == Damage::ZeroedMiddle {
            assert!(
                s.degraded_reason.contains("moved aside to"),
                "{}",
                s.degraded_reason
            );
            let aside = std::fs::read_dir(&agent.dir.0).unwrap().flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("journal.redb.damaged-")
            });
            assert!(aside, "the damaged file is kept for a look");
        }
        // Still protecting, and numbering on from above the old journal.
        let hog = Hog::spawn(&cg, &grow);
        let d = agent
            .expect_action(hog.pid, "freeze", Duration::from_secs(10))
            .await;
        assert!(d.seq > before, "seq {} after {before}", d.seq);
        drop(hog);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Damage {
    /// 16 KiB of zeros in the middle of the file.
    ZeroedMiddle,
    /// Truncated to nothing.
    Emptied,
}

impl Damage {
    fn apply(self, file: &std::path::Path) {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        match self {
            Self::ZeroedMiddle => {
                let len = f.metadata().unwrap().len();
                f.seek(SeekFrom::Start(len / 2 / 4096 * 4096)).unwrap();
                f.write_all(&[0u8; 16 << 10]).unwrap();
            }
            Self::Emptied => f.set_len(0).unwrap(),
        }
        f.sync_all().unwrap();
    }
}
