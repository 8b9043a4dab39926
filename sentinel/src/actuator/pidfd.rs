//! Process handles that cannot be confused with a later process reusing the
//! pid: a pidfd opened at discovery and checked against the start time.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use crate::collector::procfs;

#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
    pub pid: u32,
    /// Clock ticks after boot: with the pid, the process.
    pub start_time: u64,
}

impl Pidfd {
    /// Opens a pidfd for `pid` and checks that it is still the process that
    /// started at `start_time` (clock ticks after boot, from /proc/PID/stat).
    pub fn open(pid: u32, start_time: u64) -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd to us.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // The pid could have been reused between reading /proc and opening
        // the fd; the start time tells the two processes apart.
        let now = procfs::read_stat(pid)?;
        if now.start_time != start_time {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("pid {pid} was reused by another process"),
            ));
        }
        Ok(Self {
            fd,
            pid,
            start_time,
        })
    }

    pub fn send_signal(&self, sig: i32) -> io::Result<()> {
        // SAFETY: plain syscall on an fd we own; the result is checked.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Reaps a killed process's memory now instead of waiting for its exit.
    pub fn mrelease(&self) -> io::Result<()> {
        // SAFETY: plain syscall on an fd we own; the result is checked.
        let r = unsafe { libc::syscall(libc::SYS_process_mrelease, self.fd.as_raw_fd(), 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// The process-handle calls the agent relies on that this kernel, or a
/// system call filter around the agent, refuses: each with what is lost.
/// Probed once at start on handles that cannot touch anything (fd -1, the
/// agent's own pid), so that a filter missing one is reported in status
/// and the log at start rather than found out at the first kill.
pub fn refused_calls() -> Vec<String> {
    // SAFETY: pidfd_open of our own pid; the fd it returns is closed.
    let own = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    let open = refusal(own);
    if own >= 0 {
        // SAFETY: the fd pidfd_open just returned, ours to close.
        unsafe { libc::close(own as i32) };
    }
    // On fd -1 each is answered EBADF when the call is there.
    // SAFETY: plain syscalls on an invalid fd; nothing is touched.
    let on_no_fd = |nr: libc::c_long| {
        refusal(unsafe { libc::syscall(nr, -1, 0, std::ptr::null::<libc::c_void>(), 0) })
    };
    let mut out = Vec::new();
    for (name, refused) in [
        ("pidfd_open", open),
        ("pidfd_send_signal", on_no_fd(libc::SYS_pidfd_send_signal)),
    ] {
        if let Some(e) = refused {
            out.push(format!(
                "{name} is refused ({e}): the agent signals processes only through pidfds, so it can stop none; allow {name} (SystemCallFilter)"
            ));
        }
    }
    match on_no_fd(libc::SYS_process_mrelease) {
        Some(e) if e.raw_os_error() == Some(libc::EPERM) => out.push(format!(
            "process_mrelease is refused ({e}): a killed process's memory is freed only when the kernel reaps it; allow process_mrelease (SystemCallFilter)"
        )),
        Some(e) => tracing::info!(
            "process_mrelease unavailable ({e}; Linux 5.15+): a killed process's memory is freed when the kernel reaps it"
        ),
        None => {}
    }
    out
}

/// The error of a system call that just returned `r`, when it says the
/// call is not there: EPERM is a filter's answer, ENOSYS an old kernel's.
fn refusal(r: libc::c_long) -> Option<io::Error> {
    if r >= 0 {
        return None;
    }
    let e = io::Error::last_os_error();
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)).then_some(e)
}

#[cfg(test)]
mod tests {
    #[test]
    fn nothing_is_refused_here_without_a_filter() {
        // This machine's kernel has all three, and tests run unfiltered.
        assert_eq!(super::refused_calls(), Vec::<String>::new());
    }
}
