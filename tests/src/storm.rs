//! A storm of short-lived leakers, for tests and benchmarks under load.

use std::process::{Command, Stdio};

use crate::{MemCgroup, memhog_bin};

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
