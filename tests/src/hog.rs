//! The memhog load generator, run inside a capped cgroup.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{MemCgroup, memhog_bin};

/// A memhog process started inside a cgroup.
pub struct Hog {
    pub child: Child,
    pub pid: u32,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Hog {
    pub fn spawn(cg: &MemCgroup, args: &[&str]) -> Self {
        Self::spawn_exe(memhog_bin(), cg, args)
    }

    /// `spawn`, from a copy of memhog at `exe` (another name, another
    /// owner).
    pub fn spawn_exe(exe: impl AsRef<std::ffi::OsStr>, cg: &MemCgroup, args: &[&str]) -> Self {
        let mut cmd = Command::new(exe);
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

    /// Whether Sentinel holds it stopped (SIGSTOP or the freezer).
    pub fn frozen(&self) -> bool {
        crate::frozen(self.pid)
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
        // One in the freezer dies only once thawed; the agent that froze
        // it may be gone already.
        crate::thaw_if_frozen_by_sentinel(self.pid);
        let _ = self.child.wait();
    }
}
