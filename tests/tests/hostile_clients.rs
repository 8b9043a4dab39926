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

/// `sentinel status` as `uid`: (success, stderr).
fn status_as(agent: &Agent, uid: u32) -> (bool, String) {
    let mut cmd = Command::new(sentinel_tests::sentinel_bin());
    cmd.args(["status", "--socket", &agent.socket]);
    sentinel_tests::as_user(&mut cmd, uid);
    let out = cmd.output().expect("run the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
    let (ok, err) = status_as(&agent, 65534);
    assert!(
        !ok && err.contains("ResourceExhausted")
            && err.contains("uid 65534 has 16 connections open")
            && err.contains("api.max_connections_per_uid"),
        "{err}"
    );
    let (ok, err) = status_as(&agent, 65531);
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
    let (ok, err) = status_as(&agent, 65534);
    assert!(ok, "{err}");
    eprintln!("leaker frozen {took:?} after start, under a flood of 120 connections");
}
