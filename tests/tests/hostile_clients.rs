//! What unprivileged clients can do to the agent through its socket, and
//! what they cannot: take the descriptors or the time it needs to protect
//! the host (issue 15).

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use sentinel_tests::{Agent, Hog, MIB, MemCgroup, privileged, rule_for, serial_async};

/// Holds raw connections to the agent's socket as `uid`, sending nothing,
/// as the adversarial tester did; reports how many the agent has closed.
struct Flood {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

const FLOOD: &str = r#"
import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    socks.append(s)
print(len(socks), flush=True)
def closed(s):
    # What the server sent (its HTTP/2 settings) is read first; an end of
    # stream after it means the agent closed the connection.
    s.settimeout(0.02)
    try:
        while s.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True
while sys.stdin.readline():
    print(sum(closed(s) for s in socks), flush=True)
"#;

impl Flood {
    fn open(agent: &Agent, uid: u32, n: usize) -> Self {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", FLOOD, &agent.socket, &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        sentinel_tests::as_user(&mut cmd, uid);
        let mut child = cmd.spawn().expect("python3 for the flood");
        let to = child.stdin.take().unwrap();
        let mut from = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        from.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), n.to_string(), "uid {uid} opened {line:?}");
        Self { child, to, from }
    }

    /// How many of its connections the agent has closed.
    fn closed(&mut self) -> usize {
        self.to.write_all(b"check\n").unwrap();
        let mut line = String::new();
        self.from.read_line(&mut line).unwrap();
        line.trim().parse().unwrap()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The measured failure: idle connections from a read-only user held the
/// agent's descriptors, root's calls hung and a leaker ran 100 MiB past its
/// rule. Now each uid holds at most its share, all of them together at
/// most the total, root keeps its own, the rest are told why (and logged
/// once, not once per connection), idle ones are closed, and the leaker is
/// frozen in the usual time while all of that goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_from_unprivileged_users_leaves_the_host_protected() {
    if !privileged("a_connection_flood_from_unprivileged_users") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("flood", 512 * MIB);
    let cfg = format!(
        "socket_group = \"nogroup\"\n{}\n[api]\nmax_connections = 48\nmax_connections_per_uid = 16\nidle_timeout = \"10s\"\n",
        rule_for(&cg, "leaky", "256MiB", "freeze")
    );
    let agent = Agent::start("flood", &cfg, &[]);
    let dir = std::ffi::CString::new(agent.dir.0.display().to_string()).unwrap();
    // SAFETY: chmod of the test's own temp dir, so other uids reach the socket.
    unsafe { libc::chmod(dir.as_ptr(), 0o711) };

    // Three users, 40 connections each: 16 each are served, which is all
    // of the total; the other 24 each are refused.
    let uids = [65534, 65533, 65532];
    let mut floods: Vec<Flood> = uids.iter().map(|&u| Flood::open(&agent, u, 40)).collect();
    let flooded = Instant::now();

    let hog = Hog::spawn(
        &cg,
        &["--target", "400MiB", "--rate", "200MB/s", "--hold", "30"],
    );
    let started = Instant::now();
    agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;
    let took = started.elapsed();
    assert!(hog.frozen(), "the leaker is frozen");
    let s = agent.status().await;
    assert!(s.uptime_seconds > 0.0, "root is answered");

    // Refused connections are served for two seconds, then closed.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(flooded.elapsed())).await;
    let (ok, _, err) = agent.cli_as(65534, &["status"]);
    assert!(
        !ok && err.contains("ResourceExhausted")
            && err.contains("uid 65534 has 16 connections open")
            && err.contains("api.max_connections_per_uid"),
        "{err}"
    );
    let (ok, _, err) = agent.cli_as(65531, &["status"]);
    assert!(
        !ok && err.contains("ResourceExhausted")
            && err.contains("48 connections are open")
            && err.contains("api.max_connections"),
        "{err}"
    );
    for f in &mut floods {
        assert_eq!(f.closed(), 24, "the refused are closed, the served held");
    }
    let log = agent.log_text();
    assert_eq!(
        log.matches("connections refused").count(),
        4,
        "one line per refused uid, not per connection:\n{log}"
    );

    // Idle connections are closed, and their places given back.
    tokio::time::sleep(Duration::from_secs(11).saturating_sub(flooded.elapsed())).await;
    for f in &mut floods {
        assert_eq!(f.closed(), 40, "idle connections are closed");
    }
    let (ok, _, err) = agent.cli_as(65534, &["status"]);
    assert!(ok, "{err}");
    eprintln!("leaker frozen {took:?} after start, under a flood of 120 connections");
}

/// The measured failure: an unprivileged user wrote 2,000 journalled
/// denials in 1.5 s (and a 1.9 MB holder). Now a user's refusals are
/// journalled up to a burst a window, the rest counted into one summary at
/// the window's end (and in a metric); text fields are bounded; and one
/// user cannot fill the admission queue for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_storm_is_journalled_in_summary_and_one_user_cannot_fill_the_queue() {
    use sentinel_api::pb;
    if !privileged("a_denial_storm_is_journalled_in_summary") {
        return;
    }
    let _serial = serial_async().await;
    let agent = Agent::start(
        "denials",
        "socket_group = \"nogroup\"\n[api]\nrefusal_window = \"4s\"\n",
        &[],
    );
    let dir = std::ffi::CString::new(agent.dir.0.display().to_string()).unwrap();
    // SAFETY: chmod of the test's own temp dir, so other uids reach the socket.
    unsafe { libc::chmod(dir.as_ptr(), 0o711) };

    // 200 reservations no pool could ever give, as fast as one user can ask.
    let storm = format!(
        "for i in $(seq 200); do {} exec --socket {} --reserve 1000T -- true 2>/dev/null; done; exit 0",
        sentinel_tests::sentinel_bin().display(),
        agent.socket
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &storm]);
    sentinel_tests::as_user(&mut cmd, 65534);
    let started = Instant::now();
    assert!(cmd.status().unwrap().success());
    let took = started.elapsed();
    // Every window the storm spanned has ended and been summarised.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let denied = agent.decisions_of("admission", "denied").await;
    let (summaries, alone): (Vec<_>, Vec<_>) = denied
        .iter()
        .partition(|d| d.reason.contains("more refusals"));
    let held: u64 = summaries
        .iter()
        .map(|d| {
            let n = d
                .reason
                .strip_prefix("uid 65534: ")
                .unwrap_or_else(|| panic!("{}", d.reason));
            n.split_whitespace().next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(alone.len() as u64 + held, 200, "every refusal counted once");
    let windows = (took.as_secs_f64() / 4.0).ceil() as usize + 1;
    assert!(
        !summaries.is_empty() && alone.len() <= 10 * windows && summaries.len() <= windows,
        "{} alone and {} summaries over {took:?}",
        alone.len(),
        summaries.len()
    );
    assert!(
        summaries[0].reason.contains("a window are); the last: ")
            && summaries[0]
                .reason
                .contains("is more than the pool could ever give"),
        "{}",
        summaries[0].reason
    );
    let metrics = sentinel_tests::observability::http_get(&agent.metrics_url())
        .expect("metrics")
        .1;
    assert!(
        metrics.contains(&format!(
            "sentinel_admission_refusals_unjournalled_total {held}"
        )),
        "{metrics}"
    );

    // Text a client sends is bounded, and named when it is too long.
    let channel = sentinel_api::client::channel(&agent.socket).await.unwrap();
    let mut adm = pb::admission_client::AdmissionClient::new(channel);
    let e = adm
        .reserve(pb::ReserveRequest {
            bytes: MIB,
            holder: "x".repeat(1_900_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(
        e.message()
            .starts_with("holder: 1900000 bytes, at most 4096"),
        "{e}"
    );
    let e = agent
        .client()
        .await
        .list_processes(pb::ListProcessesRequest {
            comm: "y".repeat(100_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().starts_with("comm: 100000 bytes"), "{e}");

    // One user's waiting requests are capped: a pool with room for one
    // more 100 MiB request at most, each waits behind a held 200 MiB.
    let cg = MemCgroup::new("queue-cap", 256 * MIB);
    let mut sleeper = Command::new("sleep");
    sleeper.arg("60");
    cg.contain(&mut sleeper);
    let mut sleeper = sleeper.spawn().unwrap();
    let ask = |bytes, wait_seconds| pb::ReserveRequest {
        bytes,
        pid: sleeper.id(),
        scope: "cgroup".into(),
        wait_seconds,
        ..Default::default()
    };
    adm.reserve(ask(200 * MIB, 0.0)).await.unwrap();
    let cap = sentinel::service::admission::MAX_QUEUED_PER_UID;
    let mut waiting = Vec::new();
    // 16 calls on each connection: calls per connection are capped too.
    for _ in 0..cap.div_ceil(16) {
        let channel = sentinel_api::client::channel(&agent.socket).await.unwrap();
        for _ in 0..16.min(cap - waiting.len()) {
            let mut a = pb::admission_client::AdmissionClient::new(channel.clone());
            let r = ask(100 * MIB, 30.0);
            waiting.push(tokio::spawn(async move { a.reserve(r).await }));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while adm
        .list_reservations(pb::ListReservationsRequest {})
        .await
        .unwrap()
        .into_inner()
        .queued
        .len()
        < cap
    {
        assert!(Instant::now() < deadline, "the requests did not all queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = adm.reserve(ask(100 * MIB, 30.0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    assert!(
        e.message()
            .contains(&format!("uid 0 has {cap} requests waiting")),
        "{e}"
    );
    for w in waiting {
        w.abort();
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}
