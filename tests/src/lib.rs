//! Harness for Sentinel's privileged end-to-end tests and benchmarks:
//! capped memory cgroups, a running agent on a private socket, and the
//! memhog load generator.
//!
//! Safety: every memory-hungry process is started inside a memory cgroup
//! created here with a hard cap, and every agent started here only has rules
//! that select that cgroup.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

pub mod gpu;
pub mod observability;

pub use sentinel::api::pb;
use sentinel::api::{client, pb::sentinel_client::SentinelClient};
use tonic::transport::Channel;

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

/// A memory cgroup with a hard cap, removed (with its processes killed) on drop.
pub struct MemCgroup {
    /// Path inside the hierarchy, as /proc/PID/cgroup shows it.
    pub path: String,
    dir: PathBuf,
    v2: bool,
}

impl MemCgroup {
    pub fn new(name: &str, cap_bytes: u64) -> Self {
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let unique = format!("sentinel-test-{name}-{}", std::process::id());
        let (dir, v2) = if v1.join("memory.limit_in_bytes").exists() {
            (v1.join(&unique), false)
        } else {
            (Path::new("/sys/fs/cgroup").join(&unique), true)
        };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let cg = Self {
            path: format!("/{unique}"),
            dir,
            v2,
        };
        if v2 {
            cg.write("memory.max", &cap_bytes.to_string());
            cg.write("memory.swap.max", "0");
        } else {
            cg.write("memory.limit_in_bytes", &cap_bytes.to_string());
            // No swap on these hosts; set it where the kernel allows, so the cap is hard.
            let _ = std::fs::write(
                cg.dir.join("memory.memsw.limit_in_bytes"),
                cap_bytes.to_string(),
            );
        }
        cg
    }

    fn write(&self, file: &str, value: &str) {
        std::fs::write(self.dir.join(file), value)
            .unwrap_or_else(|e| panic!("write {}/{file}: {e}", self.dir.display()));
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    /// Highest memory charge of the cgroup since it was created.
    /// Page cache charged to the cgroup now (the binaries and libraries
    /// its processes mapped), which limits on anon memory do not count.
    pub fn file_bytes(&self) -> u64 {
        let key = if self.v2 { "file " } else { "cache " };
        self.read("memory.stat")
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn peak_bytes(&self) -> u64 {
        let f = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        self.read(f).trim().parse().unwrap_or(0)
    }

    /// Kernel OOM kills inside the cgroup.
    pub fn oom_kills(&self) -> u64 {
        let f = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        self.read(f)
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Makes `cmd` join this cgroup before it execs, so it is never outside the cap.
    pub fn contain(&self, cmd: &mut Command) {
        let procs =
            std::ffi::CString::new(self.dir.join("cgroup.procs").display().to_string()).unwrap();
        // SAFETY: between fork and exec only async-signal-safe calls are
        // made (open, write, close); nothing allocates.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let r = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if r < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        self.read("cgroup.procs")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: plain syscalls on processes this cgroup holds, all started by the test.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                    libc::kill(pid as i32, libc::SIGCONT);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A memhog process started inside a cgroup.
pub struct Hog {
    pub child: Child,
    pub pid: u32,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Hog {
    pub fn spawn(cg: &MemCgroup, args: &[&str]) -> Self {
        let mut cmd = Command::new(memhog_bin());
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::null());
        cg.contain(&mut cmd);
        let mut child = cmd.spawn().expect("spawn memhog");
        let pid = child.id();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let hog = Self {
            child,
            pid,
            lines: rx,
        };
        hog.expect_line("ready", Duration::from_secs(10));
        hog
    }

    /// Waits for an output line starting with `prefix`.
    pub fn expect_line(&self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Some(l),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// Process state letter from /proc/PID/stat ('T' when stopped).
    pub fn state(&self) -> Option<char> {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        s.rsplit_once(')')?
            .1
            .split_whitespace()
            .next()?
            .chars()
            .next()
    }

    /// Peak resident set (VmHWM) in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        // SAFETY: our own child; SIGCONT so a stopped one can die.
        unsafe { libc::kill(self.pid as i32, libc::SIGCONT) };
        let _ = self.child.wait();
    }
}

/// A running agent on a private socket, stopped on drop.
pub struct Agent {
    pub child: Child,
    pub socket: String,
    pub dir: tempdir::Dir,
    pub log: PathBuf,
    cmd: Command,
}

pub mod tempdir {
    use std::path::PathBuf;

    /// A directory under the system temp dir, removed on drop.
    pub struct Dir(pub PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("sentinel-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Agent {
    /// Starts `sentinel run` with `config` (the socket line is added here)
    /// and waits until it answers.
    pub fn start(tag: &str, config: &str, extra: &[&str]) -> Self {
        Self::start_env(tag, config, extra, &[])
    }

    /// `start` with extra environment variables for the agent.
    pub fn start_env(tag: &str, config: &str, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::start_with(tag, config, extra, envs, |c| c)
    }

    /// `start_env`, with `wrap` turning `sentinel run ...` into the command
    /// actually started (e.g. under unshare, inside a cgroup).
    pub fn start_with(
        tag: &str,
        config: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
        wrap: impl FnOnce(Command) -> Command,
    ) -> Self {
        let dir = tempdir::Dir::new(tag);
        let socket = dir.0.join("sentinel.sock").display().to_string();
        let cfg_path = dir.0.join("sentinel.toml");
        let journal = dir.0.join("journal.redb").display().to_string();
        // Agents run side by side in tests: each takes a free metrics port
        // (see `metrics_url`) unless the test sets its own.
        let metrics = if config.contains("[metrics]") {
            ""
        } else {
            "[metrics]\nlisten = \"127.0.0.1:0\"\n"
        };
        let full =
            format!("[agent]\nsocket = \"{socket}\"\njournal = \"{journal}\"\n{config}\n{metrics}");
        std::fs::write(&cfg_path, full).unwrap();
        let log = dir.0.join("agent.log");
        let mut cmd = Command::new(sentinel_bin());
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg_path)
            .args(extra)
            .env("SENTINEL_LOG", "info,sentinel=debug")
            .envs(envs.iter().copied())
            .stdout(Stdio::null());
        let mut cmd = wrap(cmd);
        let child = Self::spawn(&mut cmd, &log);
        let mut agent = Self {
            child,
            socket,
            dir,
            log,
            cmd,
        };
        agent.wait_up();
        agent
    }

    fn spawn(cmd: &mut Command, log: &Path) -> Child {
        // Appended to, so a restarted agent's log follows the first one's.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        cmd.stderr(out).spawn().expect("spawn sentinel")
    }

    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("agent exited early ({st}):\n{}", self.log_text());
            }
            if Path::new(&self.socket).exists()
                && std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not come up:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash would, then the same agent (config, journal,
    /// socket) started again, waiting until it answers.
    pub fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(&mut self.cmd, &self.log);
        self.wait_up();
    }

    /// `http://ADDR/metrics` as the agent logged it when it bound.
    pub fn metrics_url(&self) -> String {
        let log = self.log_text();
        let at = log
            .rfind("metrics at http://")
            .unwrap_or_else(|| panic!("the agent logged no metrics address:\n{log}"));
        log[at + "metrics at ".len()..]
            .split_whitespace()
            .next()
            .expect("an address after `metrics at`")
            .to_string()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn client(&self) -> SentinelClient<Channel> {
        client::connect(&self.socket)
            .await
            .expect("connect to agent")
    }

    /// WatchDecisions from after `after_seq` (None: from the start).
    pub async fn watch(&self, after_seq: Option<u64>) -> tonic::Streaming<pb::Decision> {
        self.client()
            .await
            .watch_decisions(pb::WatchDecisionsRequest { after_seq })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn status(&self) -> pb::Status {
        self.client()
            .await
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// Runs the CLI against this agent; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(sentinel_bin())
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("run sentinel CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Polls ListDecisions until one matches `pred` or `within` passes.
    pub async fn wait_decision(
        &self,
        within: Duration,
        pred: impl Fn(&pb::Decision) -> bool,
    ) -> Option<pb::Decision> {
        let mut c = self.client().await;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let r = c
                .list_decisions(pb::ListDecisionsRequest {
                    after_seq: 0,
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .expect("ListDecisions")
                .into_inner();
            if let Some(d) = r.decisions.into_iter().find(|d| pred(d)) {
                return Some(d);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Agent {
    /// `wait_decision` that fails the test, with the agent's log, when no
    /// decision for `pid` comes within `within`.
    pub async fn expect_decision_for(&self, pid: u32, within: Duration) -> pb::Decision {
        match self.wait_decision(within, |d| d.pid == pid).await {
            Some(d) => d,
            None => panic!("no decision for pid {pid}\n{}", self.log_text()),
        }
    }

    /// The first decision taking `action` on `pid`, or a failed test.
    pub async fn expect_action(&self, pid: u32, action: &str, within: Duration) -> pb::Decision {
        match self
            .wait_decision(within, |d| d.pid == pid && d.action == action)
            .await
        {
            Some(d) => d,
            None => panic!("no `{action}` decision for pid {pid}\n{}", self.log_text()),
        }
    }

    /// Every kept decision about `pid`, oldest first.
    pub async fn decisions_for(&self, pid: u32) -> Vec<pb::Decision> {
        self.client()
            .await
            .list_decisions(pb::ListDecisionsRequest {
                after_seq: 0,
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("ListDecisions")
            .into_inner()
            .decisions
            .into_iter()
            .filter(|d| d.pid == pid)
            .collect()
    }

    /// Replaces the config (the socket line is kept) and sends SIGHUP.
    pub fn reload(&self, config: &str) {
        let full = format!(
            "[agent]\nsocket = \"{}\"\njournal = \"{}\"\n{config}\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            self.socket,
            self.dir.0.join("journal.redb").display()
        );
        std::fs::write(self.dir.0.join("sentinel.toml"), full).unwrap();
        // SAFETY: our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
    }
}

/// anon + shmem + swap of a process (what limits apply to), from /proc.
pub fn read_charged(pid: u32) -> u64 {
    sentinel::collector::procfs::read_mem(pid)
        .map(|m| m.charged())
        .unwrap_or(0)
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const MIB: u64 = 1 << 20;

/// Wall-clock milliseconds, as decisions carry them.
pub fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1e3
}

/// The next decision on a WatchDecisions stream that `want` accepts,
/// within `within`.
pub async fn next_decision(
    stream: &mut tonic::Streaming<pb::Decision>,
    within: Duration,
    want: impl Fn(&pb::Decision) -> bool,
) -> Option<pb::Decision> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match tokio::time::timeout(deadline - Instant::now(), stream.message()).await {
            Ok(Ok(Some(d))) if want(&d) => return Some(d),
            Ok(Ok(Some(_))) => continue,
            _ => return None,
        }
    }
    None
}

/// Short-lived leakers (60 MiB at full speed, held 50 ms) started back to
/// back in `cg` by `threads` threads until stopped or dropped: a storm of
/// decisions under a 64 MiB rule.
pub struct Storm {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Storm {
    pub fn start(cg: &MemCgroup, threads: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                let mut cmd = Command::new(memhog_bin());
                cmd.args(["--target", "60MiB", "--rate", "max", "--hold", "0.05"])
                    .stdout(Stdio::null());
                cg.contain(&mut cmd);
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Ok(mut c) = cmd.spawn() {
                            let _ = c.wait();
                        }
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }

    /// Stops starting leakers and waits for the last ones to end.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        self.halt();
    }
}

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

/// A rule that only selects processes in `cg`.
pub fn rule_for(cg: &MemCgroup, name: &str, limit: &str, action: &str) -> String {
    format!(
        "[[rule]]\nname = \"{name}\"\nlimit = \"{limit}\"\naction = \"{action}\"\n[rule.match]\ncgroup = \"^{}$\"\n",
        regex_escape(&cg.path)
    )
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Makes `cmd` run as uid and gid 65534 (nobody, nogroup), with no
/// supplementary groups: an unprivileged client. The caller must be root.
pub fn as_nobody(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}
