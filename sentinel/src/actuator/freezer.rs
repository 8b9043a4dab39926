//! The kernel's cgroup v1 freezer, for freezes that job control cannot
//! undo: a frozen process ignores SIGCONT (a shell's `fg`, the kernel's
//! SIGCONT to an orphaned process group).
//!
//! Each frozen process gets a freezer cgroup of its own, nested in the
//! freezer cgroup it was in (`<its>/sentinel-<pid>-<start time>`), so that
//! thawing puts it back where it was (a container's freezer cgroup, say),
//! and the name tells the agent, after a restart, which processes it froze.
//! The v1 freezer hierarchy is apart from the memory one, so the process's
//! memory cgroup, charges and limits do not change. Under cgroup v2,
//! freezing means moving the process into another cgroup of the one
//! hierarchy, which would move its memory accounting too: there the agent
//! keeps SIGSTOP.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use crate::collector::procfs;

/// Where the v1 freezer hierarchy is mounted on the machines we run on.
pub const V1_ROOT: &str = "/sys/fs/cgroup/freezer";

#[derive(Debug, Clone)]
pub struct Freezer {
    root: PathBuf,
}

impl Freezer {
    /// The v1 freezer, when it is mounted on its own. Co-mounted with
    /// another controller (memory, say), moving a process would move it in
    /// that hierarchy too.
    pub fn detect() -> Option<Self> {
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let mounted = Path::new(V1_ROOT).join("cgroup.procs").exists();
        (mounted && parse_freezer_path(&own).is_some()).then(|| Self::at(V1_ROOT))
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The process's freezer cgroup, relative to the hierarchy's root.
    fn current(pid: u32) -> io::Result<String> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        parse_freezer_path(&text)
            .map(str::to_string)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no freezer cgroup"))
    }

    fn dir(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// The process's own freezer cgroup, if the agent froze it.
    fn own(&self, pid: u32, start_time: u64) -> Option<PathBuf> {
        let cur = Self::current(pid).ok()?;
        cur.ends_with(&format!("/{}", own_name(pid, start_time)))
            .then(|| self.dir(&cur))
    }

    /// Moves the process that started at `start_time` into a freezer
    /// cgroup of its own and freezes it. Returns at once: the kernel
    /// finishes FREEZING as each task reaches a point where it can stop
    /// (`settled` says when), and waiting here would hold the engine.
    pub fn freeze(&self, pid: u32, start_time: u64) -> io::Result<()> {
        let dir = match self.own(pid, start_time) {
            Some(d) => d,
            None => self.move_in(pid, start_time)?,
        };
        fs::write(dir.join("freezer.state"), "FROZEN")
    }

    /// Creates the process's own freezer cgroup and moves it in. The move
    /// names a pid, so the start time is checked after it: a process that
    /// reused the pid is put back where it was, and nothing is frozen.
    fn move_in(&self, pid: u32, start_time: u64) -> io::Result<PathBuf> {
        let from = self.dir(&Self::current(pid)?);
        let dir = from.join(own_name(pid, start_time));
        match fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        let same = procfs::read_stat(pid).is_ok_and(|s| s.start_time == start_time);
        if !same {
            let _ = fs::write(from.join("cgroup.procs"), pid.to_string());
            let _ = fs::remove_dir(&dir);
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("pid {pid} was reused by another process"),
            ));
        }
        Ok(dir)
    }

    /// Whether the kernel has finished freezing the process (FROZEN, not
    /// FREEZING).
    pub fn settled(&self, pid: u32, start_time: u64) -> bool {
        self.own(pid, start_time)
            .and_then(|d| state(&d).ok())
            .is_some_and(|s| s == "FROZEN")
    }

    /// Every process in one of the agent's freezer cgroups: (pid, the start
    /// time its cgroup is named for), whether or not a journal names it.
    pub fn members(&self) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        self.walk(&mut |name, path| {
            let Some((pid, start)) = parse_own_name(name) else {
                return false;
            };
            let procs = fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
            if procs.lines().any(|l| l.trim() == pid.to_string()) {
                out.push((pid, start));
            }
            true
        });
        out
    }

    /// Thaws a process the agent froze and puts it back in the freezer
    /// cgroup it came from. `false` when it was not in one of the agent's.
    pub fn thaw(&self, pid: u32, start_time: u64) -> io::Result<bool> {
        let Some(dir) = self.own(pid, start_time) else {
            return Ok(false);
        };
        fs::write(dir.join("freezer.state"), "THAWED")?;
        if let Some(parent) = dir.parent() {
            // A process that died meanwhile cannot move; its cgroup is
            // removed once empty (`sweep`).
            let _ = fs::write(parent.join("cgroup.procs"), pid.to_string());
        }
        let _ = fs::remove_dir(&dir);
        Ok(true)
    }

    /// `Some(frozen)` for a process in one of the agent's freezer cgroups;
    /// `None` for any other (its freeze, if any, is a SIGSTOP).
    pub fn frozen(&self, pid: u32, start_time: u64) -> Option<bool> {
        let dir = self.own(pid, start_time)?;
        Some(matches!(state(&dir).ok()?.as_str(), "FROZEN" | "FREEZING"))
    }

    /// Removes the agent's freezer cgroups that no process is in any more
    /// (their process was killed while frozen); returns how many.
    pub fn sweep(&self) -> usize {
        let mut removed = 0;
        self.walk(&mut |name, path| {
            if parse_own_name(name).is_none() {
                return false;
            }
            let empty =
                fs::read_to_string(path.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty());
            if empty {
                let _ = fs::write(path.join("freezer.state"), "THAWED");
                removed += usize::from(fs::remove_dir(path).is_ok());
            }
            true
        });
        removed
    }

    /// Visits every cgroup of the hierarchy; `visit` says whether it took
    /// the cgroup (then its children are not visited).
    fn walk(&self, visit: &mut dyn FnMut(&str, &Path) -> bool) {
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                let path = e.path();
                if !visit(&e.file_name().to_string_lossy(), &path) {
                    stack.push(path);
                }
            }
        }
    }
}

fn own_name(pid: u32, start_time: u64) -> String {
    format!("sentinel-{pid}-{start_time}")
}

fn parse_own_name(name: &str) -> Option<(u32, u64)> {
    let (pid, start) = name.strip_prefix("sentinel-")?.split_once('-')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

fn state(dir: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(dir.join("freezer.state"))?
        .trim()
        .to_string())
}

/// The freezer line of /proc/PID/cgroup (`6:freezer:/path`), when the
/// freezer is mounted on its own.
fn parse_freezer_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        (controllers == "freezer").then_some(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_freezer_line_is_found_among_the_others() {
        let text = "9:name=systemd:/\n6:freezer:/docker/abc\n4:memory:/x\n0::/\n";
        assert_eq!(parse_freezer_path(text), Some("/docker/abc"));
        assert_eq!(parse_freezer_path("4:memory:/x\n0::/\n"), None);
        // Co-mounted: moving it would move it in that hierarchy too.
        assert_eq!(parse_freezer_path("3:memory,freezer:/\n"), None);
    }

    #[test]
    fn a_processes_own_cgroup_is_named_by_pid_and_start_time() {
        assert_eq!(own_name(42, 7), "sentinel-42-7");
        assert_eq!(parse_own_name("sentinel-42-7"), Some((42, 7)));
        assert_eq!(parse_own_name("sentinel-test-x"), None);
    }
}
