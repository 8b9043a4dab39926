//! The agent without a network of its own (a network namespace, as the
//! unit's PrivateNetwork= gives it) reaches it only through `sentinel
//! relay`, and outlives the relay: when the relay goes away the agent says
//! so once, keeps running, and takes the relay's connections again when it
//! is back, with no restart of its own.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sentinel_tests::{
    Agent,
    observability::{free_port, http_get, wait_for},
    privileged, sentinel_bin, serial,
};

fn relay(config: &Path, socket: &Path, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(sentinel_bin())
        .arg("relay")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(socket)
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("spawn the relay")
}

#[test]
fn the_agent_takes_its_relay_back_after_the_relay_restarts() {
    if !privileged("the_agent_takes_its_relay_back_after_the_relay_restarts") {
        return;
    }
    let _serial = serial();
    let port = free_port();
    let cfg = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let socket = std::env::temp_dir().join(format!("sentinel-relay-{}.sock", std::process::id()));
    let mut agent = Agent::start_with(
        "relayed",
        &cfg,
        &["--no-ebpf", "--relay", socket.to_str().unwrap()],
        &[],
        |inner| Agent::run_by("unshare", &["--net".as_ref(), "--".as_ref()], &inner),
    );
    let url = format!("http://127.0.0.1:{port}/metrics");
    assert!(http_get(&url).is_none(), "no relay yet: nothing listens");

    let config = agent.dir.0.join("sentinel.toml");
    let log = agent.dir.0.join("relay.log");
    let mut first = relay(&config, &socket, &log);
    let scraped = |what: &str| {
        wait_for(what, Duration::from_secs(10), || {
            http_get(&url)
                .filter(|(code, body)| *code == 200 && body.contains("sentinel_build_info"))
        })
    };
    scraped("metrics through the relay");
    const GONE: &str = "the relay is not serving the agent";
    // Once, when it started before the relay.
    let before = agent.log_text().matches(GONE).count();

    first.kill().unwrap();
    first.wait().unwrap();
    wait_for(
        "the agent to say the relay is gone",
        Duration::from_secs(10),
        || (agent.log_text().matches(GONE).count() > before).then_some(()),
    );
    let mut second = relay(&config, &socket, &log);
    scraped("metrics through the restarted relay");
    let log = agent.log_text();
    assert_eq!(
        log.matches(GONE).count(),
        before + 1,
        "said once, not once a second:\n{log}"
    );
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent kept running:\n{log}"
    );
    second.kill().unwrap();
    second.wait().unwrap();
    let _ = std::fs::remove_file(&socket);
}

/// What `uid` gets asking the relay at `socket` to connect somewhere.
fn ask_as(uid: u32, socket: &Path) -> String {
    let script = "import socket, sys\n\
                  s = socket.socket(socket.AF_UNIX)\n\
                  try:\n\
                  \x20   s.connect(sys.argv[1])\n\
                  except OSError as e:\n\
                  \x20   print('connect refused', e.errno); sys.exit(0)\n\
                  try:\n\
                  \x20   s.sendall(b'connect 127.0.0.1 9\\n')\n\
                  except BrokenPipeError:\n\
                  \x20   pass\n\
                  print(s.recv(1).decode(), s.recv(200).decode())\n";
    let out = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        // The system python: a user-local one (pyenv) is not nobody's to run.
        .args(["--clear-groups", "--", "/usr/bin/python3", "-c", script])
        .arg(socket)
        .output()
        .expect("setpriv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The relay serves the agent (uid 0) only: its socket is 0600, and a
/// user let in by a wider mode is still refused.
#[test]
fn the_relay_serves_only_the_agent() {
    if !privileged("the_relay_serves_only_the_agent") {
        return;
    }
    let dir = sentinel_tests::tempdir::Dir::new("relayuid");
    let config = dir.0.join("sentinel.toml");
    std::fs::write(&config, "[metrics]\nenabled = false\n").unwrap();
    let socket = dir.0.join("relay.sock");
    let log = dir.0.join("relay.log");
    let mut relay = relay(&config, &socket, &log);
    wait_for("the relay's socket", Duration::from_secs(10), || {
        socket.exists().then_some(())
    });
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        ask_as(65534, &socket),
        format!("connect refused {}", libc::EACCES)
    );
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        ask_as(65534, &socket),
        "- the relay serves only the agent (uid 0)"
    );
    // Root is the agent: refused only because port 9 is no receiver.
    assert!(ask_as(0, &socket).contains("is not an alert receiver"));
    relay.kill().unwrap();
    relay.wait().unwrap();
}
