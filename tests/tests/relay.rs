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
