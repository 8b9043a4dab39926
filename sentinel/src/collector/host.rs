//! The host's memory: /proc/meminfo, and memory pressure (PSI) with a poll
//! trigger that wakes the agent when tasks start stalling on memory.

use std::{
    fs,
    io::{self, Write},
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    time::Duration,
};

const PSI_MEMORY: &str = "/proc/pressure/memory";

pub use sentinel_core::model::{HostMem, Psi};

pub fn parse_meminfo(text: &str) -> HostMem {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    HostMem {
        total: get("MemTotal:"),
        available: get("MemAvailable:"),
        swap_total: get("SwapTotal:"),
        swap_free: get("SwapFree:"),
    }
}

pub fn read_meminfo() -> io::Result<HostMem> {
    Ok(parse_meminfo(&fs::read_to_string("/proc/meminfo")?))
}

/// The share of the last 10 s in which some task (`kind` "some") or all
/// tasks ("full") stalled on memory, in percent (PSI's `avg10`).
pub fn parse_psi_avg10(text: &str, kind: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.strip_prefix(kind).is_some_and(|r| r.starts_with(' ')))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// The `total=` (µs) of the `kind` line.
pub fn parse_psi_total(text: &str, kind: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.strip_prefix(kind).is_some_and(|r| r.starts_with(' ')))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// The `some` line; `None` when the kernel has no PSI (CONFIG_PSI off, or
/// psi=0).
pub fn read_psi_some() -> Option<Psi> {
    let text = fs::read_to_string(PSI_MEMORY).ok()?;
    Some(Psi {
        avg10: parse_psi_avg10(&text, "some")?,
        total_us: parse_psi_total(&text, "some")?,
    })
}

/// `some` and `full` avg10 from one read of the file.
pub fn read_psi_both() -> (Option<f64>, Option<f64>) {
    match fs::read_to_string(PSI_MEMORY) {
        Ok(t) => (parse_psi_avg10(&t, "some"), parse_psi_avg10(&t, "full")),
        Err(_) => (None, None),
    }
}

/// A PSI poll trigger: the file becomes ready (POLLPRI) when tasks stalled
/// on memory for `stall` per second. Kept open for as long as the trigger
/// should live.
pub struct PsiTrigger {
    file: fs::File,
    /// The stall and window the kernel accepted.
    pub stall: Duration,
    pub window: Duration,
}

impl PsiTrigger {
    /// Arms a one-second window; without CAP_SYS_RESOURCE (as in many
    /// containers) the kernel only takes windows in whole multiples of 2 s,
    /// so then the stall is doubled over a 2 s window.
    pub fn open(stall: Duration) -> io::Result<Self> {
        match Self::open_window(stall, Duration::from_secs(1)) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                Self::open_window(stall * 2, Duration::from_secs(2))
            }
            r => r,
        }
    }

    fn open_window(stall: Duration, window: Duration) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(PSI_MEMORY)?;
        // The kernel overwrites the write's last byte with a NUL: send one.
        let spec = format!("some {} {}\0", stall.as_micros(), window.as_micros());
        file.write_all(spec.as_bytes())?;
        Ok(Self {
            file,
            stall,
            window,
        })
    }
}

impl AsRawFd for PsiTrigger {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for PsiTrigger {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_with_swap() {
        let text = "MemTotal:       1000 kB\nMemFree:  10 kB\nMemAvailable:    400 kB\nSwapTotal:     500 kB\nSwapFree:      300 kB\n";
        let m = parse_meminfo(text);
        assert_eq!(m.capacity(), 1500 * 1024);
        assert_eq!(m.headroom(), 700 * 1024);
        assert_eq!(m.used(), 800 * 1024);
    }

    #[test]
    fn psi_some_line() {
        let text = "some avg10=1.53 avg60=0.20 avg300=0.04 total=12345\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=100\n";
        assert_eq!(parse_psi_avg10(text, "some"), Some(1.53));
        assert_eq!(parse_psi_avg10(text, "full"), Some(0.5));
        assert_eq!(parse_psi_avg10("nonsense", "some"), None);
        assert_eq!(parse_psi_total(text, "some"), Some(12345));
        assert_eq!(parse_psi_total(text, "full"), Some(100));
    }

    #[test]
    fn a_trigger_can_be_armed_where_psi_exists() {
        if !std::path::Path::new(PSI_MEMORY).exists() {
            return;
        }
        // Root, or the 2 s fallback without CAP_SYS_RESOURCE.
        match PsiTrigger::open(Duration::from_millis(150)) {
            Ok(t) => assert!(t.window >= Duration::from_secs(1)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
            Err(e) => panic!("arming a PSI trigger: {e}"),
        }
    }

    #[test]
    fn the_live_files_parse() {
        let m = read_meminfo().unwrap();
        assert!(
            m.total > 0 && m.available > 0 && m.available <= m.total,
            "{m:?}"
        );
    }
}
