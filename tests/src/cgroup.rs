//! Capped memory cgroups for the tests' processes, and rules that select
//! only them.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

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

    /// What the kernel charges the cgroup now.
    pub fn usage_bytes(&self) -> u64 {
        let f = if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        self.read(f).trim().parse().unwrap_or(0)
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

    /// Moves a running process into this cgroup, as a process can do to
    /// itself (no exec, no fork).
    pub fn adopt(&self, pid: u32) {
        self.write("cgroup.procs", &pid.to_string());
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
                // Held by the freezer, it dies only once thawed.
                crate::thaw_if_frozen_by_sentinel(pid);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir(&self.dir);
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
