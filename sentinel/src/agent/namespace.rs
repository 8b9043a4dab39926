//! In a container that shares the host's PID namespace (a DaemonSet with
//! hostPID), /proc/PID/cgroup is relative to the container's own cgroup
//! namespace (`/../../kubepods...`), which no rule or candidate pattern
//! written for host paths matches. Joining pid 1's cgroup namespace makes
//! every path the host's.

/// Whether pid 1's cgroups, as /proc/1/cgroup shows them from here, lie
/// outside this cgroup namespace (`/..`): then paths the agent reads are
/// relative to a namespace of its own, not the host's.
pub fn outside_namespace(init_cgroup: &str) -> bool {
    init_cgroup
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .any(|path| path.starts_with("/.."))
}

/// Joins pid 1's cgroup namespace when this one is not it. setns applies
/// to the calling thread and to the threads it starts, so this runs before
/// the runtime starts any. Ok(false): nothing to do (already sharing pid
/// 1's view).
pub fn join_host_cgroup_namespace() -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let Ok(init) = std::fs::read_to_string("/proc/1/cgroup") else {
        return Ok(false);
    };
    if !outside_namespace(&init) {
        return Ok(false);
    }
    let f = std::fs::File::open("/proc/1/ns/cgroup")?;
    // SAFETY: a valid namespace fd; setns only changes this thread's
    // cgroup namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWCGROUP) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pid_1_outside_the_namespace_shows_as_dot_dot() {
        let host = "12:memory:/\n0::/init.scope\n";
        let from_a_container = "12:memory:/../../..\n0::/../../../init.scope\n";
        assert!(!super::outside_namespace(host));
        assert!(super::outside_namespace(from_a_container));
        assert!(!super::outside_namespace(""));
    }
}
