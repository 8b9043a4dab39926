//! Harness for Sentinel's privileged end-to-end tests and benchmarks:
//! capped memory cgroups, a running agent on a private socket, and the
//! memhog load generator.
//!
//! Safety: every memory-hungry process is started inside a memory cgroup
//! created here with a hard cap, and every agent started here only has rules
//! that select that cgroup.

use std::{
    path::PathBuf,
    process::Command,
    sync::{Mutex, MutexGuard},
};

mod agent;
pub mod certs;
mod cgroup;
pub mod cli;
mod decisions;
pub mod gpu;
mod hog;
pub mod observability;
pub mod pysuite;
pub mod sandbox;
pub mod stampede;
mod storm;
pub mod syscalls;
pub mod tempdir;

pub use agent::Agent;
pub use cgroup::{MemCgroup, rule_for};
pub use decisions::{next_decision, unix_ms};
pub use hog::Hog;
pub use sentinel_api::pb;
pub use storm::Storm;

/// Privileged tests run one at a time: they share the kernel and time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

static SERIAL_ASYNC: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `serial` for async tests (test binaries themselves run one after another).
pub async fn serial_async() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL_ASYNC.lock().await
}

/// True when the test may run. Without root it skips with a message, but
/// under CI (`CI` set) a missing privilege is a failure, not a skip.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root, and CI is set, so this is a failure rather than a skip");
    }
    eprintln!("SKIP {test}: needs root (eBPF, cgroups, signals)");
    false
}

/// target/<profile>/ of the running test binary.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let dir = if deps.ends_with("deps") {
        deps.parent().unwrap()
    } else {
        deps
    };
    dir.to_path_buf()
}

pub fn sentinel_bin() -> PathBuf {
    let p = bin_dir().join("sentinel");
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo xtask test` does)",
        p.display()
    );
    p
}

pub fn memhog_bin() -> PathBuf {
    let p = bin_dir().join("memhog");
    assert!(
        p.exists(),
        "{} is missing: build the sentinel-tests bins first",
        p.display()
    );
    p
}

/// anon + shmem + swap of a process (what limits apply to), from /proc.
/// The process's cgroup v1 freezer cgroup when it is one of Sentinel's own
/// (`sentinel-<pid>-<start>`), as a directory.
fn sentinel_freezer_dir(pid: u32) -> Option<String> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cgroups.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
        ctl.split(',')
            .any(|c| c == "freezer")
            .then(|| path.to_string())
    })?;
    path.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("sentinel-"))
        .then(|| format!("/sys/fs/cgroup/freezer{path}"))
}

/// Whether Sentinel holds `pid` stopped: by SIGSTOP (state `T`, also the
/// kernel's tripwire), or in one of its cgroup v1 freezer cgroups, where a
/// frozen task shows as `D`.
pub fn frozen(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().chars().next());
    if matches!(state, Some('T' | 't')) {
        return true;
    }
    sentinel_freezer_dir(pid)
        .and_then(|dir| std::fs::read_to_string(format!("{dir}/freezer.state")).ok())
        .is_some_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING"))
}

/// Whether the kernel's cgroup v1 freezer is mounted where the agent
/// looks for it (it then freezes with it).
pub fn v1_freezer_mounted() -> bool {
    std::path::Path::new(sentinel::actuator::freezer::V1_ROOT)
        .join("cgroup.procs")
        .exists()
}

/// Thaws `pid` if Sentinel's freezer holds it: a test's cleanup, so that a
/// kill takes effect even with the agent gone.
pub fn thaw_if_frozen_by_sentinel(pid: u32) {
    if let Some(dir) = sentinel_freezer_dir(pid) {
        let _ = std::fs::write(format!("{dir}/freezer.state"), "THAWED");
    }
}

pub fn read_charged(pid: u32) -> u64 {
    sentinel::collector::procfs::read_mem(pid)
        .map(|m| m.charged())
        .unwrap_or(0)
}

pub const MIB: u64 = 1 << 20;

/// Restricts this process (and what it starts later) to `cpus`, so a
/// benchmark's load and the agent it measures do not share a CPU.
pub fn pin_to_cpus(cpus: impl IntoIterator<Item = usize>) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; the syscall only reads it.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Bytes the host has in use as the agent counts them (RAM + swap less
/// MemAvailable + SwapFree), and its capacity, once that holds still: a
/// test before may still be handing its memory back, and a line drawn from
/// that reading would sit too high for the growth here to reach. Still
/// means within 16 MiB over a whole second (six readings), not between two
/// readings: a release can pause for a moment and go on (seen once, after
/// the Python suite, as a host-scope test's line never reached).
pub fn settled_host_used() -> (u64, u64) {
    let used = || {
        let m = sentinel::collector::host::read_meminfo().unwrap();
        (m.used(), m.capacity())
    };
    let mut window = std::collections::VecDeque::from([used()]);
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        window.push_back(used());
        if window.len() > 6 {
            window.pop_front();
        }
        let (lo, hi) = window
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), r| (lo.min(r.0), hi.max(r.0)));
        if window.len() == 6 && hi - lo < 16 * MIB {
            break;
        }
    }
    *window.back().expect("at least one reading")
}

/// `min_available` (and the host limit it makes) that puts the host's
/// preempt line, at share `preempt` of the limit, `room` bytes above what
/// is in use now (once settled): a host-scope test grows just past it.
pub fn host_floor(room: u64, preempt: f64) -> (u64, u64) {
    let (used, capacity) = settled_host_used();
    let limit = ((used + room) as f64 / preempt) as u64;
    (capacity - limit, limit)
}

/// The host section every test agent runs with unless it writes its own:
/// the built-in host policy (freeze, then kill, near the floor) with only
/// the tests' capped cgroups as candidates, so nothing else on the machine
/// can ever be chosen.
pub const TEST_HOST: &str = "[host]\ncandidates = \"^/sentinel-test-\"\n";

/// Runs `cmd` to its end and returns what it wrote to standard output; a
/// command that cannot start, or fails, fails the test with its standard
/// error.
pub fn stdout_of(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Makes `cmd` run as uid and gid 65534 (nobody, nogroup), with no
/// supplementary groups: an unprivileged client. The caller must be root.
pub fn as_nobody(cmd: &mut Command) -> &mut Command {
    as_user(cmd, 65534)
}

/// Makes `cmd` run as `uid`, group 65534 (nogroup), with no supplementary
/// groups: one of several unprivileged clients. The caller must be root.
pub fn as_user(cmd: &mut Command, uid: u32) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}
