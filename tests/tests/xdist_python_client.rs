//! The Python client and its pytest plugin (issue 18): its own unit tests,
//! its wheel in a fresh virtualenv, and a pytest-xdist suite of the seed's
//! shape reserving memory through the real agent.
//!
//! Named to run after shared_limits (test binaries run in name order):
//! right after this file, the host-scope test in shared_limits that draws
//! its line from the host's usage found no freeze in three runs out of
//! five, for a reason not yet found (its workers' growth did not show in
//! the host's usage); run apart, both pass.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use sentinel_tests::{
    Agent, privileged,
    pysuite::{self, Guard, PYTHON_DEPS as DEPS, wheel},
    serial_async, tempdir,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_clients_own_tests_pass() {
    let out = Command::new("/usr/bin/python3")
        .env(
            "PYTHONPATH",
            format!("{}:{DEPS}", repo().join("sentinel/python/src").display()),
        )
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(repo().join("sentinel/python/tests"))
        .output()
        .expect("run pytest (cargo xtask test installs it)");
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn the_wheel_installs_in_a_fresh_virtualenv_with_its_plugin() {
    let dir = tempdir::Dir::new("venv");
    let venv = dir.0.join("venv");
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(wheel())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import importlib.metadata as m, sentinel_client as s\n\
             print(s.parse_size('12GiB'))\n\
             print([e.value for e in m.entry_points(group='pytest11')])",
        ])
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("12884901888"), "{t}");
    assert!(t.contains("sentinel_client.pytest_plugin"), "{t}");
}

/// The seed's shape: eight xdist workers, each test building a 1.5 GiB
/// object, in a cgroup of 6 GiB. Through the plugin each test waits for
/// its memory: all pass, the kernel kills none, and more than one runs at
/// a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xdist_suite_reserves_through_the_plugin_and_runs_without_oom_kills() {
    if !privileged("an_xdist_suite_reserves_through_the_plugin") {
        return;
    }
    let _serial = serial_async().await;
    let agent = Agent::start("xdist", "", &[]);
    let r = tokio::task::block_in_place(|| pysuite::run(Guard::Plugin, Some(&agent.socket)));
    assert!(
        r.output.contains("8 passed"),
        "{}\n{}",
        r.output,
        agent.log_text()
    );
    assert_eq!(r.passed, 8, "{}", r.output);
    assert_eq!(r.oom_kills, 0, "{}", r.output);
    assert!(r.most_at_once > 1, "ran one at a time: {r:?}");
    let granted = agent.decisions_of("admission", "granted").await;
    assert_eq!(granted.len(), 8, "{granted:?}");
    eprintln!(
        "8 tests of 1.5 GiB in 6 GiB under xdist -n 8: {:.1?}, at most {} at once, 0 OOM kills",
        r.wall, r.most_at_once
    );
}
