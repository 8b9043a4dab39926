//! Admission control end to end: `sentinel exec --reserve` against a real
//! agent, with workers in capped cgroups.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sentinel_tests::{
    Agent, MIB, MemCgroup, memhog_bin, pb, privileged, sentinel_bin, serial_async,
};

const GIB: u64 = 1 << 30;

/// A worker that grows to 1.5 GiB at 1 GB/s and holds it for a second.
const WORKER: [&str; 6] = ["--target", "1536MiB", "--rate", "1GB/s", "--hold", "1"];

fn memhogs_in(cg: &MemCgroup) -> usize {
    cg.pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "memhog")
        })
        .count()
}

fn exec(agent: &Agent, cg: &MemCgroup, args: &[&str], cmd: &[&str]) -> Child {
    let mut c = Command::new(sentinel_bin());
    c.arg("exec")
        .args(["--socket", &agent.socket])
        .args(args)
        .arg("--")
        .args(cmd)
        .stdout(Stdio::null());
    cg.contain(&mut c);
    c.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_through_exec_finishes_without_oom_kills_three_at_a_time() {
    if !privileged("a_stampede_through_exec") {
        return;
    }
    let _serial = serial_async().await;
    let memhog = memhog_bin().display().to_string();

    // Bare: eight workers of 1.5 GiB at once in 6 GiB. The kernel kills.
    let bare = MemCgroup::new("stampede-bare", 6 * GIB);
    let mut kids: Vec<Child> = (0..8)
        .map(|_| {
            let mut c = Command::new(&memhog);
            c.args(WORKER).stdout(Stdio::null());
            bare.contain(&mut c);
            c.spawn().unwrap()
        })
        .collect();
    for k in &mut kids {
        let _ = k.wait();
    }
    assert!(
        bare.oom_kills() > 0,
        "launched bare, the stampede must OOM-kill"
    );
    eprintln!("bare: {} kernel OOM kills", bare.oom_kills());

    // Through `sentinel exec --reserve 1600M`, from the same 6 GiB.
    let cg = MemCgroup::new("stampede", 6 * GIB);
    let agent = Agent::start("stampede", "", &[]);
    let mut cmd = vec![memhog.as_str()];
    cmd.extend(WORKER);
    let mut workers: Vec<Child> = (0..8)
        .map(|_| {
            exec(
                &agent,
                &cg,
                &["--reserve", "1600M", "--scope", "cgroup", "--wait", "5m"],
                &cmd,
            )
        })
        .collect();
    let mut most = 0;
    let mut codes = vec![None; workers.len()];
    let deadline = Instant::now() + Duration::from_secs(120);
    while codes.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "the stampede did not finish:\n{}",
            agent.log_text()
        );
        most = most.max(memhogs_in(&cg));
        for (w, code) in workers.iter_mut().zip(codes.iter_mut()) {
            if code.is_none()
                && let Ok(Some(st)) = w.try_wait()
            {
                *code = Some(st.code());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "through exec: at most {most} workers at once, {} OOM kills",
        cg.oom_kills()
    );
    assert!(
        codes.iter().all(|c| *c == Some(Some(0))),
        "every worker finished: {codes:?}"
    );
    assert_eq!(cg.oom_kills(), 0, "no OOM kill through admission");
    assert!(most <= 3, "at most 3 at a time, saw {most}");
    assert!(most >= 2, "they did run side by side ({most})");
    assert_eq!(agent.decisions_of("admission", "granted").await.len(), 8);
    assert_eq!(agent.decisions_of("admission", "released").await.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_budget_full_a_critical_request_goes_before_earlier_low_ones() {
    if !privileged("a_critical_request_goes_first") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("prio", 2 * GIB);
    let agent = Agent::start("prio", "", &[]);
    let args = |p: &'static str, holder: &'static str, size: &'static str| {
        vec![
            "--reserve",
            size,
            "--scope",
            "cgroup",
            "--wait",
            "1m",
            "--priority",
            p,
            "--holder",
            holder,
        ]
    };
    // Takes most of the 2 GiB for two seconds.
    let mut first = exec(
        &agent,
        &cg,
        &args("normal", "first", "1536M"),
        &["sleep", "2"],
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut low_a = exec(&agent, &cg, &args("low", "low-a", "1G"), &["sleep", "1"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut low_b = exec(&agent, &cg, &args("low", "low-b", "1G"), &["sleep", "1"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut critical = exec(
        &agent,
        &cg,
        &args("critical", "critical", "1G"),
        &["sleep", "1"],
    );
    for c in [&mut first, &mut low_a, &mut low_b, &mut critical] {
        assert_eq!(c.wait().unwrap().code(), Some(0));
    }
    let order: Vec<String> = agent
        .decisions_of("admission", "granted")
        .await
        .into_iter()
        .map(|d| d.reason)
        .collect();
    let at = |h: &str| {
        order
            .iter()
            .position(|r| r.contains(&format!("for {h} ")))
            .unwrap_or_else(|| panic!("{h} never granted: {order:?}"))
    };
    assert!(at("first") < at("critical"), "{order:?}");
    // Sizes as operators read them, not raw byte counts.
    assert!(
        order[at("first")].starts_with("1.5 GiB from ")
            && order[at("low-a")].starts_with("1.0 GiB from "),
        "{order:?}"
    );
    assert!(
        at("critical") < at("low-a"),
        "critical before the earlier low ones: {order:?}"
    );
    assert!(
        at("low-a") < at("low-b"),
        "first come first served within a level: {order:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_exits_without_releasing_frees_its_reservation() {
    if !privileged("a_holder_that_exits") {
        return;
    }
    let _serial = serial_async().await;
    let agent = Agent::start("orphan", "", &[]);
    let mut holder = Command::new("sleep").arg("30").spawn().unwrap();
    let channel = sentinel_api::client::channel(&agent.socket).await.unwrap();
    let mut adm = pb::admission_client::AdmissionClient::new(channel);
    let r = adm
        .reserve(pb::ReserveRequest {
            bytes: 64 * MIB,
            pid: holder.id(),
            holder: "a job that crashes".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, "granted");
    let listed = adm
        .list_reservations(pb::ListReservationsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.granted.len(), 1);
    let _ = holder.kill();
    let _ = holder.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed = adm
            .list_reservations(pb::ListReservationsRequest {})
            .await
            .unwrap()
            .into_inner();
        if listed.granted.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still held: {listed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let orphaned = agent.decisions_of("admission", "orphaned").await;
    assert_eq!(orphaned.len(), 1, "{orphaned:?}");
    assert!(
        orphaned[0].reason.contains("exited without releasing"),
        "{orphaned:?}"
    );
    // Bad input is refused with the field named.
    let e = adm
        .reserve(pb::ReserveRequest {
            bytes: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("bytes"), "{e:?}");
    let e = adm
        .reserve(pb::ReserveRequest {
            bytes: 1,
            priority: "urgent".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("priority"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exits_75_when_not_admitted_in_time_and_status_shows_the_queue() {
    if !privileged("exec_exits_75") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("late", GIB);
    let agent = Agent::start("late", "", &[]);
    let cgroup = ["--scope", "cgroup", "--reserve", "900M"];
    let mut holder = exec(&agent, &cg, &cgroup, &["sleep", "3"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while agent.status().await.reservations == 0 {
        assert!(Instant::now() < deadline, "the holder was never granted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut late = exec(
        &agent,
        &cg,
        &[&cgroup[..], &["--wait", "1500ms", "--priority", "high"]].concat(),
        &["true"],
    );
    // While it waits: status and metrics show it queued at its priority.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = agent.status().await;
    assert_eq!(s.admission_queued, vec![0, 0, 0, 1, 0], "{s:?}");
    assert!(s.reserved_bytes > 0);
    let text = sentinel_tests::observability::http_get(&agent.metrics_url())
        .unwrap()
        .1;
    assert_eq!(
        sentinel_tests::observability::metric(
            &text,
            "sentinel_admission_queued{priority=\"high\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        late.wait().unwrap().code(),
        Some(75),
        "not admitted in time"
    );
    assert_eq!(holder.wait().unwrap().code(), Some(0));
    let timed_out = agent.decisions_of("admission", "timed_out").await;
    assert_eq!(timed_out.len(), 1, "{timed_out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growth_inside_a_reservation_is_expected_and_beyond_it_is_a_runaway() {
    if !privileged("growth_inside_a_reservation") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("reserved", 2 * GIB);
    let agent = Agent::start(
        "reserved",
        &format!(
            "[[cgroup]]\nname = \"jobs\"\nmatch = \"^{}$\"\naction = \"freeze\"\n",
            cg.path.replace('.', "\\\\.")
        ),
        &[],
    );
    let memhog = memhog_bin().display().to_string();
    let grow = |hold: &'static str| {
        vec![
            memhog.clone(),
            "--target".into(),
            "1800MiB".into(),
            "--rate".into(),
            "400MB/s".into(),
            "--hold".into(),
            hold.to_string(),
        ]
    };
    // Past the 85% line of the 2 GiB cgroup, inside its 1900M reservation:
    // expected, so it runs to the end.
    let cmd = grow("1");
    let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let mut inside = exec(
        &agent,
        &cg,
        &["--reserve", "1900M", "--scope", "cgroup"],
        &argv,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(st) = inside.try_wait().unwrap() {
            break st.code();
        }
        assert!(
            Instant::now() < deadline,
            "the reserved worker never finished (frozen?)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, Some(0));
    let frozen: Vec<_> = agent
        .client()
        .await
        .list_decisions(pb::ListDecisionsRequest {
            action: "freeze".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .decisions;
    assert!(
        frozen.is_empty(),
        "growth inside the reservation was stopped: {frozen:?}"
    );

    // The same growth on a 512M reservation goes past it: a runaway.
    let cmd = grow("30");
    let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let mut beyond = exec(
        &agent,
        &cg,
        &["--reserve", "512M", "--scope", "cgroup"],
        &argv,
    );
    let pid = loop {
        if let Some(p) = cg.pids().into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "memhog")
        }) {
            break p;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "no worker started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let d = agent
        .expect_action(pid, "freeze", Duration::from_secs(15))
        .await;
    assert_eq!(d.rule, "jobs");
    // SAFETY: the test's own process tree.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let _ = beyond.wait();
}

/// A request cannot hold its place for ever: an absurd wait is refused,
/// naming the field, and a client that goes away takes its request with it,
/// so later ones are not kept waiting behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_waits_are_refused_and_a_vanished_client_leaves_no_request() {
    if !privileged("absurd_waits_are_refused") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("vanish", GIB);
    let agent = Agent::start("vanish", "", &[]);
    let channel = sentinel_api::client::channel(&agent.socket).await.unwrap();
    let mut adm = pb::admission_client::AdmissionClient::new(channel);
    for (wait, ttl, field) in [(1e300, 0.0, "wait_seconds"), (0.0, f64::NAN, "ttl_seconds")] {
        let e = adm
            .reserve(pb::ReserveRequest {
                bytes: 10 * MIB,
                wait_seconds: wait,
                ttl_seconds: ttl,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.message().starts_with(field), "{e}");
    }

    // The cgroup's budget held; a request waits behind it, and its client
    // is killed while it waits.
    let cgroup = ["--scope", "cgroup", "--reserve", "900M"];
    let mut holder = exec(&agent, &cg, &cgroup, &["sleep", "20"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while agent.status().await.reservations == 0 {
        assert!(Instant::now() < deadline, "the holder was never granted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // For a process that lives on: only the call goes away (a client
    // that timed out, crashed, or lost its connection).
    let mut job = Command::new("sleep");
    job.arg("30");
    cg.contain(&mut job);
    let mut job = job.spawn().unwrap();
    let request = pb::ReserveRequest {
        bytes: 200 * MIB,
        scope: "cgroup".into(),
        pid: job.id(),
        wait_seconds: 60.0,
        ..Default::default()
    };
    let mut client = adm.clone();
    let call = tokio::spawn(async move { client.reserve(request).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while agent.status().await.admission_queued.iter().sum::<u32>() == 0 {
        assert!(Instant::now() < deadline, "the request never queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    call.abort();
    // Well before the holder ends (and its memory would grant it).
    let deadline = Instant::now() + Duration::from_secs(2);
    while agent.status().await.admission_queued.iter().sum::<u32>() != 0 {
        assert!(
            Instant::now() < deadline,
            "the vanished client's request is still queued: {:?}",
            agent.status().await.admission_queued
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = holder.kill();
    let _ = holder.wait();
    let _ = job.kill();
    let _ = job.wait();
}
