//! The seed's pytest-xdist suite: eight tests, each building a 1.5 GiB
//! object and holding it 2 s, under `-n 8` in a cgroup of 6 GiB, guarded
//! by the Python client's plugin, by a file lock in `conftest.py` (what the
//! seed's team did), or by nothing.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::{MIB, MemCgroup, tempdir};

/// Where `cargo xtask test` puts grpcio, pytest and pytest-xdist for
/// /usr/bin/python3.
pub const PYTHON_DEPS: &str = "/opt/sentinel-test/python";

/// How the workers are kept from taking all the memory at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Guard {
    /// `@pytest.mark.sentinel_reserve("1536MiB", scope="cgroup")`, through
    /// the agent at this socket.
    Plugin,
    /// An exclusive `fcntl` lock around each test: one at a time.
    FileLock,
    None,
}

#[derive(Debug)]
pub struct SuiteRun {
    pub wall: Duration,
    pub passed: usize,
    pub most_at_once: usize,
    pub oom_kills: u64,
    pub output: String,
}

/// The wheel `cargo xtask test` (or `cargo xtask wheel`) built.
pub fn wheel() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wheels");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask wheel`", dir.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .unwrap_or_else(|| panic!("no wheel in {}: run `cargo xtask wheel`", dir.display()))
}

const TESTS: &str = r#"
import os, time
import pytest

N = 1536 << 20
MARK = pytest.mark.sentinel_reserve("1536MiB", scope="cgroup") if os.environ.get("GUARD") == "plugin" else (lambda f: f)

@pytest.mark.parametrize("i", range(8))
@MARK
def test_builds_a_big_object(i, times):
    start = time.time()
    buf = bytearray(N)
    memoryview(buf)[::4096] = b"\x01" * (N // 4096)
    time.sleep(2)
    with open(os.path.join(times, str(i)), "w") as f:
        f.write(f"{start} {time.time()}")
"#;

const CONFTEST: &str = r#"
import fcntl, os
import pytest

@pytest.fixture
def times():
    return os.environ["TIMES"]

@pytest.fixture(autouse=True)
def one_at_a_time():
    if os.environ.get("GUARD") != "lock":
        yield
        return
    with open(os.environ["LOCK"], "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
"#;

/// Runs the suite once under `guard` (`socket`: the agent's, for the
/// plugin) and reports.
pub fn run(guard: Guard, socket: Option<&str>) -> SuiteRun {
    let dir = tempdir::Dir::new("pysuite");
    let site = dir.0.join("site");
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-deps", "--target"])
        .arg(&site)
        .arg(wheel())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let suite = dir.0.join("suite");
    let times = dir.0.join("times");
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::create_dir_all(&times).unwrap();
    std::fs::write(suite.join("test_big.py"), TESTS).unwrap();
    std::fs::write(suite.join("conftest.py"), CONFTEST).unwrap();
    let cg = MemCgroup::new("pysuite", 6 * 1024 * MIB);
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.env("PYTHONPATH", format!("{}:{PYTHON_DEPS}", site.display()))
        .env("TIMES", &times)
        .env("LOCK", dir.0.join("lock"))
        .env(
            "GUARD",
            match guard {
                Guard::Plugin => "plugin",
                Guard::FileLock => "lock",
                Guard::None => "none",
            },
        )
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "8"])
        .arg(&suite)
        .current_dir(&suite);
    if let Some(s) = socket {
        cmd.args([
            "--sentinel-socket",
            s,
            "--sentinel-wait",
            "300",
            "--sentinel-required",
        ]);
    }
    cg.contain(&mut cmd);
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let wall = started.elapsed();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let spans: Vec<(f64, f64)> = std::fs::read_dir(&times)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let s = std::fs::read_to_string(e.path()).ok()?;
            let mut it = s.split_whitespace().map(|x| x.parse::<f64>().ok());
            Some((it.next()??, it.next()??))
        })
        .collect();
    let most_at_once = spans
        .iter()
        .map(|&(a, _)| spans.iter().filter(|&&(s, e)| s <= a && a < e).count())
        .max()
        .unwrap_or(0);
    SuiteRun {
        wall,
        passed: spans.len(),
        most_at_once,
        oom_kills: cg.oom_kills(),
        output,
    }
}
