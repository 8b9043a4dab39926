//! Reading processes from /proc. The parsers are pure functions over the
//! file text so they are tested on fixed inputs.

use std::{fs, io, path::PathBuf};

pub use sentinel_core::{
    engine::CgroupPaths,
    model::{Mem, Stat},
};

const PF_KTHREAD: u64 = 0x0020_0000;

/// Parses /proc/PID/stat. The comm is in parentheses and may itself
/// contain spaces and parentheses, so fields are counted from the last ')'.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); ppid is field 4, flags 9, starttime 22.
    let ppid = rest.get(1)?.parse().ok()?;
    let flags: u64 = rest.get(6)?.parse().ok()?;
    let start_time = rest.get(19)?.parse().ok()?;
    let minflt: u64 = rest.get(7)?.parse().ok()?;
    let majflt: u64 = rest.get(9)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    let state = rest.first()?.chars().next()?;
    Some(Stat {
        state,
        comm,
        ppid,
        start_time,
        kernel_thread: flags & PF_KTHREAD != 0,
        faults: minflt + majflt,
        cpu_ticks: utime + stime,
    })
}

/// Clock ticks per second (`USER_HZ`), the unit of stat's times.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// A process's CPU seconds, resident bytes (statm, the kernel's own RSS)
/// and start time in seconds since the Unix epoch.
pub fn usage(pid: u32) -> io::Result<(f64, u64, f64)> {
    let stat = read_stat(pid)?;
    let statm = fs::read_to_string(proc_path(pid, "statm"))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let boot = boot_time().unwrap_or(0) as f64;
    let hz = clock_ticks() as f64;
    Ok((
        stat.cpu_ticks as f64 / hz,
        pages * page,
        boot + stat.start_time as f64 / hz,
    ))
}

/// When the host booted, in seconds since the Unix epoch (`btime` of
/// /proc/stat).
pub fn boot_time() -> io::Result<u64> {
    parse_btime(&fs::read_to_string("/proc/stat")?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat has no btime line"))
}

fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether SIGKILL is pending for the process (SigPnd or ShdPnd of
/// /proc/PID/status): sent, and not yet taken, as by a frozen task.
pub fn sigkill_pending(pid: u32) -> bool {
    fs::read_to_string(proc_path(pid, "status")).is_ok_and(|t| parse_sigkill_pending(&t))
}

fn parse_sigkill_pending(status: &str) -> bool {
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("SigPnd:")
                .or_else(|| l.strip_prefix("ShdPnd:"))
        })
        .filter_map(|v| u64::from_str_radix(v.trim(), 16).ok())
        .any(|mask| mask & SIGKILL_BIT != 0)
}

/// Parses the memory lines of /proc/PID/status (values in kB).
pub fn parse_status_mem(text: &str) -> Mem {
    let mut m = Mem::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let kb: u64 = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match key {
            "RssAnon" => m.anon = kb * 1024,
            "RssFile" => m.file = kb * 1024,
            "RssShmem" => m.shmem = kb * 1024,
            "VmSwap" => m.swap = kb * 1024,
            _ => {}
        }
    }
    m
}

/// The `NSpid:` line of /proc/PID/status: the pid in this /proc's PID
/// namespace first, then in each nested one down to the process's own.
pub fn parse_nspid(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The pid a process has inside its own PID namespace (a container's),
/// when that differs from the pid seen here.
pub fn read_ns_pid(pid: u32) -> Option<u32> {
    let pids = parse_nspid(&fs::read_to_string(proc_path(pid, "status")).ok()?);
    (pids.len() > 1).then(|| *pids.last().expect("more than one"))
}

/// The cgroup that governs the process's memory: the v1 memory controller's
/// path when one is mounted that way, else the unified (v2) path.
pub fn parse_cgroup(text: &str) -> String {
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        if controllers.split(',').any(|c| c == "memory") {
            return path.to_string();
        }
        if controllers.is_empty() {
            v2 = Some(path.to_string());
        }
    }
    v2.unwrap_or_else(|| "/".to_string())
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

pub fn read_stat(pid: u32) -> io::Result<Stat> {
    let text = fs::read_to_string(proc_path(pid, "stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable stat"))
}

pub fn read_mem(pid: u32) -> io::Result<Mem> {
    fs::read_to_string(proc_path(pid, "status")).map(|t| parse_status_mem(&t))
}

pub fn read_cgroup(pid: u32) -> io::Result<String> {
    fs::read_to_string(proc_path(pid, "cgroup")).map(|t| parse_cgroup(&t))
}

/// The command line with spaces between arguments; empty for kernel
/// threads and zombies.
pub fn read_cmdline(pid: u32) -> String {
    fs::read(proc_path(pid, "cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The resolved executable. A file replaced since the process started
/// (a package upgrade) reads `PATH (deleted)`: the path is still where it
/// was run from, so the suffix is dropped.
pub fn read_exe(pid: u32) -> String {
    fs::read_link(proc_path(pid, "exe"))
        .map(|p| {
            let p = p.to_string_lossy();
            p.strip_suffix(" (deleted)").unwrap_or(&p).to_string()
        })
        .unwrap_or_default()
}

/// Whether the executable of `pid` is a file only root could have put
/// where it is: the process runs in the host's root filesystem (not a
/// container's), and its file is root's, writable by no one else, and so
/// is every directory above it. The file is judged by the inode the process runs (through
/// its own `exe` link, whatever path or mount namespace it came by), the
/// directories as the process sees them (its own root).
pub fn exe_trusted(pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    // A container's (or a chroot's) files are its image's: anyone who may
    // start a container chose them, root-owned or not. Only a process whose
    // root is the host's (pid 1's; the agent's own where pid 1's cannot be
    // read, as in some sandboxes) can have its executable vouched for.
    let id = |p: PathBuf| fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let host_root = id(proc_path(1, "root")).or_else(|| id(PathBuf::from("/")));
    if host_root.is_none() || id(proc_path(pid, "root")) != host_root {
        return false;
    }
    let root_only = |m: &fs::Metadata| m.uid() == 0 && m.mode() & 0o022 == 0;
    if !fs::metadata(proc_path(pid, "exe")).is_ok_and(|m| m.is_file() && root_only(&m)) {
        return false;
    }
    let Ok(path) = fs::read_link(proc_path(pid, "exe")) else {
        return false;
    };
    let root = proc_path(pid, "root");
    path.ancestors().skip(1).all(|dir| {
        let inside = dir.strip_prefix("/").unwrap_or(dir);
        fs::metadata(root.join(inside)).is_ok_and(|m| root_only(&m))
    })
}

/// The path in systemd's hierarchy: cgroup v1's `name=systemd` line, else
/// the unified (`0::`) one.
pub fn parse_systemd_cgroup(text: &str) -> Option<String> {
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers == "name=systemd" {
            return Some(path.to_string());
        }
        if controllers.is_empty() {
            unified = Some(path.to_string());
        }
    }
    unified
}

/// Both cgroup paths of a process, from one reading of its cgroup file.
pub fn read_cgroup_paths(pid: u32) -> io::Result<CgroupPaths> {
    let text = fs::read_to_string(proc_path(pid, "cgroup"))?;
    Ok(CgroupPaths {
        memory: parse_cgroup(&text),
        systemd: parse_systemd_cgroup(&text),
    })
}

/// The real uid on the `Uid:` line of /proc/PID/status.
pub fn parse_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The real uid of a running process.
pub fn read_uid(pid: u32) -> Option<u32> {
    parse_uid(&fs::read_to_string(proc_path(pid, "status")).ok()?)
}

pub fn read_oom_score_adj(pid: u32) -> i32 {
    fs::read_to_string(proc_path(pid, "oom_score_adj"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Tgid of a task id (an OOM victim may be named by a thread).
pub fn read_tgid(pid: u32) -> Option<u32> {
    let text = fs::read_to_string(proc_path(pid, "status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Every process id in /proc.
pub fn list_pids() -> io::Result<Vec<u32>> {
    Ok(fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_sigkill_is_read_from_either_mask() {
        let with = |sig: &str, shd: &str| format!("Name:\tx\nSigPnd:\t{sig}\nShdPnd:\t{shd}\n");
        assert!(!parse_sigkill_pending(&with(
            "0000000000000000",
            "0000000000000000"
        )));
        assert!(parse_sigkill_pending(&with(
            "0000000000000100",
            "0000000000000000"
        )));
        assert!(parse_sigkill_pending(&with(
            "0000000000000000",
            "0000000000000100"
        )));
        // SIGTERM (bit 14) is not SIGKILL.
        assert!(!parse_sigkill_pending(&with(
            "0000000000004000",
            "0000000000000000"
        )));
    }

    #[test]
    fn stat_with_awkward_comm() {
        let text = "1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 98765 1000000 250 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.comm, "my (weird) proc");
        assert_eq!(s.ppid, 1);
        assert_eq!(s.start_time, 98765);
        assert_eq!(s.faults, 100);
        assert_eq!(s.state, 'S');
        assert_eq!(s.cpu_ticks, 8, "utime 5 + stime 3");
        assert!(!s.kernel_thread);
    }

    #[test]
    fn kernel_threads_are_recognised() {
        let text = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        assert!(parse_stat(text).unwrap().kernel_thread);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn nspid_lists_the_pid_in_each_namespace() {
        assert_eq!(
            parse_nspid("Name:\tsleep\nNSpid:\t4321\t7\t1\n"),
            vec![4321, 7, 1]
        );
        assert_eq!(parse_nspid("NSpid:\t4321\n"), vec![4321]);
        assert!(parse_nspid("Name:\tx\n").is_empty());
    }

    #[test]
    fn status_memory_lines() {
        let text = "Name:\tx\nVmRSS:\t  3000 kB\nRssAnon:\t  2000 kB\nRssFile:\t   900 kB\nRssShmem:\t   100 kB\nVmSwap:\t 50 kB\n";
        let m = parse_status_mem(text);
        assert_eq!(m.anon, 2000 * 1024);
        assert_eq!(m.file, 900 * 1024);
        assert_eq!(m.shmem, 100 * 1024);
        assert_eq!(m.swap, 50 * 1024);
        assert_eq!(m.resident(), 3000 * 1024);
        assert_eq!(m.charged(), 2150 * 1024);
    }

    #[test]
    fn cgroup_prefers_the_memory_controller() {
        let hybrid = "12:memory:/sentinel-test\n11:cpu:/x\n0::/system.slice/a.service\n";
        assert_eq!(parse_cgroup(hybrid), "/sentinel-test");
        let v2 = "0::/kubepods/pod1/abc\n";
        assert_eq!(parse_cgroup(v2), "/kubepods/pod1/abc");
        let merged = "4:cpu,memory:/m\n";
        assert_eq!(parse_cgroup(merged), "/m");
        assert_eq!(parse_cgroup(""), "/");
    }

    #[test]
    fn the_unit_comes_from_systemds_own_hierarchy() {
        // v1: the memory path may be the root while systemd's is the unit.
        let v1 = "12:memory:/\n1:name=systemd:/system.slice/ssh.service\n0::/\n";
        assert_eq!(
            parse_systemd_cgroup(v1).as_deref(),
            Some("/system.slice/ssh.service")
        );
        let v2 = "0::/system.slice/kubelet.service\n";
        assert_eq!(
            parse_systemd_cgroup(v2).as_deref(),
            Some("/system.slice/kubelet.service")
        );
        assert_eq!(parse_systemd_cgroup("12:memory:/x\n"), None);
        let status = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_uid(status), Some(1000));
    }

    /// The process running this test: its executable is root's where only
    /// root writes, or it is not, and the answer must say which.
    #[test]
    fn an_executable_anyone_could_write_is_not_trusted() {
        use std::os::unix::fs::MetadataExt;
        let me = std::process::id();
        let exe = std::fs::read_link(format!("/proc/{me}/exe")).unwrap();
        let root_only = |p: &std::path::Path| {
            std::fs::metadata(p).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
        };
        let root = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
        let host = root("/proc/1/root").or_else(|| root("/"));
        let expected = root(&format!("/proc/{me}/root")) == host
            && root_only(&exe)
            && exe.ancestors().skip(1).all(root_only);
        assert_eq!(exe_trusted(me), expected, "{}", exe.display());
        assert!(!exe_trusted(u32::MAX), "no such process");
    }
}
