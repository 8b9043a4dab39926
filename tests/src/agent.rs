//! A real agent on a private socket, driven as an operator drives it.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sentinel_api::{client, pb::sentinel_client::SentinelClient};
use tonic::transport::Channel;

use crate::{pb, sentinel_bin, tempdir};

/// A running agent on a private socket, stopped on drop.
pub struct Agent {
    pub child: Child,
    pub socket: String,
    pub dir: tempdir::Dir,
    pub log: PathBuf,
    cmd: Command,
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
        let host = test_host_for(config);
        let full = format!(
            "[agent]\nsocket = \"{socket}\"\njournal = \"{journal}\"\n{config}\n{metrics}{host}"
        );
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

    /// `inner` (the agent's command, as `start_with` hands it over) run by
    /// `program` with `args` before it: `unshare --cgroup`, a seccomp
    /// launcher. The environment goes along; stdout is discarded.
    pub fn run_by(
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&std::ffi::OsStr],
        inner: &Command,
    ) -> Command {
        let mut c = Command::new(program);
        c.args(args).arg(inner.get_program()).args(inner.get_args());
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c.stdout(Stdio::null());
        c
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

    /// SIGTERM, as `systemctl stop` would, waiting until the agent exits.
    pub fn stop(&mut self) {
        // SAFETY: our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the agent did not stop on SIGTERM:\n{}", self.log_text());
    }

    /// SIGTERM, as `systemctl stop` or a package upgrade would, then the
    /// same agent started again, waiting until it answers.
    pub fn stop_and_restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// The same agent (config, journal, socket) started again after
    /// `stop`, waiting until it answers.
    pub fn start_again(&mut self) {
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

    /// The agent's status once `ready` holds, asked every 50 ms; the last
    /// one asked when `within` ran out (the caller's asserts say what was
    /// missing).
    pub async fn status_when(
        &self,
        within: std::time::Duration,
        ready: impl Fn(&pb::Status) -> bool,
    ) -> pb::Status {
        let deadline = std::time::Instant::now() + within;
        loop {
            let s = self.status().await;
            if ready(&s) || std::time::Instant::now() >= deadline {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Runs the CLI against this agent; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        self.run_cli(args, |c| c)
    }

    /// `cli` as `uid` (group nogroup, no supplementary groups): an
    /// unprivileged client. The caller must be root.
    pub fn cli_as(&self, uid: u32, args: &[&str]) -> (bool, String, String) {
        self.run_cli(args, |c| crate::as_user(c, uid))
    }

    fn run_cli(
        &self,
        args: &[&str],
        how: impl FnOnce(&mut Command) -> &mut Command,
    ) -> (bool, String, String) {
        let mut cmd = Command::new(sentinel_bin());
        cmd.args(args).arg("--socket").arg(&self.socket);
        let out = how(&mut cmd).output().expect("run sentinel CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Replaces the config (the socket line is kept) and sends SIGHUP.
    /// An empty `config` stands for an emptied file (which the agent
    /// refuses); any other gets the tests' host section unless it has one.
    pub fn reload(&self, config: &str) {
        let host = if config.is_empty() {
            ""
        } else {
            test_host_for(config)
        };
        let full = format!(
            "[agent]\nsocket = \"{}\"\njournal = \"{}\"\n{config}\n[metrics]\nlisten = \"127.0.0.1:0\"\n{host}",
            self.socket,
            self.dir.0.join("journal.redb").display()
        );
        std::fs::write(self.dir.0.join("sentinel.toml"), full).unwrap();
        // SAFETY: our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
    }
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

/// The host section a test's `config` runs with: its own when it writes
/// one, else [`crate::TEST_HOST`]. The built-in host policy freezes and
/// kills: only the tests' own cgroups may be chosen, never the machine's
/// other processes.
fn test_host_for(config: &str) -> &'static str {
    if config.contains("[host]") {
        ""
    } else {
        crate::TEST_HOST
    }
}
