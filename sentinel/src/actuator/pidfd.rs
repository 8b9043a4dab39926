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
