//! A stampede of memhog workers in a capped cgroup, run to its end: how
//! many finished, were killed (by Sentinel's signals or the kernel's OOM
//! killer), the cgroup's peak and the wall time. Used by the stampede
//! end-to-end test and benchmark alike.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{MemCgroup, memhog_bin, sentinel_bin};

/// One worker: when it starts (after the stampede begins), and what it
/// runs.
#[derive(Debug, Clone)]
pub struct Worker {
    pub after: Duration,
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Worker {
    /// `memhog --target SIZE --rate RATE --hold HOLD`, from the start.
    pub fn new(size: &str, rate: &str, hold: f64) -> Self {
        Self {
            after: Duration::ZERO,
            program: memhog_bin(),
            args: [
                "--target",
                size,
                "--rate",
                rate,
                "--hold",
                &hold.to_string(),
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    pub fn after(mut self, secs: f64) -> Self {
        self.after = Duration::from_secs_f64(secs);
        self
    }

    /// The same worker run through `sentinel exec --reserve SIZE` against
    /// the agent at `socket`, from the worker's cgroup's pool.
    pub fn reserved(self, socket: &str, size: &str) -> Self {
        let mut args: Vec<String> = [
            "exec",
            "--socket",
            socket,
            "--reserve",
            size,
            "--scope",
            "cgroup",
            "--wait",
            "10m",
            "--",
        ]
        .map(String::from)
        .to_vec();
        args.push(self.program.display().to_string());
        args.extend(self.args);
        Self {
            after: self.after,
            program: sentinel_bin(),
            args,
        }
    }
}

/// How a stampede ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Workers that exited 0.
    pub finished: usize,
    /// Workers that ended by a signal (Sentinel's or the kernel's).
    pub killed: usize,
    /// Of those, the kernel OOM killer's.
    pub oom_kills: u64,
    /// Workers still running at the deadline.
    pub left: usize,
    /// The cgroup's highest charge.
    pub peak: u64,
    /// From the first start to the last exit (or the deadline).
    pub wall: Duration,
    /// The most workers running (not stopped) at once, from a second after
    /// the first start (before that they have all just started).
    pub most_running: usize,
    /// Each worker's pid, in start order.
    pub pids: Vec<u32>,
}

/// Whether `pid` is stopped: frozen or queued.
fn stopped(pid: u32) -> bool {
    crate::frozen(pid)
}

/// Starts each worker in `cg` at its time and waits until all have ended
/// or `deadline` has passed (the rest are then killed).
pub fn run(cg: &MemCgroup, workers: &[Worker], deadline: Duration) -> Outcome {
    let t0 = Instant::now();
    let mut children: Vec<Option<Child>> = Vec::new();
    let mut codes: Vec<Option<std::process::ExitStatus>> = vec![None; workers.len()];
    let mut out = Outcome::default();
    while t0.elapsed() < deadline {
        while children.len() < workers.len() && t0.elapsed() >= workers[children.len()].after {
            let w = &workers[children.len()];
            let mut c = Command::new(&w.program);
            c.args(&w.args).stdout(Stdio::null()).stderr(Stdio::null());
            cg.contain(&mut c);
            let child = c.spawn().expect("spawn memhog");
            out.pids.push(child.id());
            children.push(Some(child));
        }
        let mut running = 0;
        for (i, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            match child.try_wait() {
                Ok(Some(st)) => {
                    codes[i] = Some(st);
                    *slot = None;
                }
                _ => running += usize::from(!stopped(child.id())),
            }
        }
        if t0.elapsed() > Duration::from_secs(1) {
            out.most_running = out.most_running.max(running);
        }
        if children.len() == workers.len() && codes.iter().all(Option::is_some) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    out.wall = t0.elapsed();
    for mut child in children.into_iter().flatten() {
        out.left += 1;
        let _ = child.kill();
        // SAFETY: our own child; SIGCONT so a stopped one can die.
        unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        let _ = child.wait();
    }
    out.finished = codes.iter().flatten().filter(|s| s.success()).count();
    out.killed = codes.iter().flatten().filter(|s| !s.success()).count();
    out.oom_kills = cg.oom_kills();
    out.peak = cg.peak_bytes();
    out
}
