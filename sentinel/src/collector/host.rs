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

/// A /proc file kept open and read again from its start: the host timer
/// reads meminfo and PSI several times a second, and an idle agent's cost
/// is mostly such calls (open, stat, close each time otherwise).
pub struct Reread {
    path: String,
    file: Option<fs::File>,
    text: String,
}

impl Reread {
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            file: None,
            text: String::new(),
        }
    }

    /// The file's whole text now.
    pub fn read(&mut self) -> io::Result<&str> {
        use std::os::unix::fs::FileExt;
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(fs::File::open(&self.path)?),
        };
        // A seq file is generated afresh by a read at offset 0.
        let mut buf = std::mem::take(&mut self.text).into_bytes();
        buf.clear();
        buf.resize(buf.capacity().max(4096), 0);
        let mut len = 0;
        loop {
            if len == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            match file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.file = None;
                    return Err(e);
                }
            }
        }
        buf.truncate(len);
        self.text =
            String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(&self.text)
    }
}

/// /proc/meminfo and the memory PSI file, kept open.
pub struct HostFiles {
    meminfo: Reread,
    psi: Reread,
}

impl Default for HostFiles {
    fn default() -> Self {
        Self {
            meminfo: Reread::new("/proc/meminfo"),
            psi: Reread::new(PSI_MEMORY),
        }
    }
}

impl HostFiles {
    pub fn meminfo(&mut self) -> io::Result<HostMem> {
        self.meminfo.read().map(parse_meminfo)
    }

    pub fn psi_some(&mut self) -> Option<Psi> {
        parse_psi(self.psi.read().ok()?, "some")
    }
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

/// The `kind` line ("some" or "full"); `None` when the kernel has no PSI
/// (CONFIG_PSI off, or psi=0).
pub fn parse_psi(text: &str, kind: &str) -> Option<Psi> {
    Some(Psi {
        avg10: parse_psi_avg10(text, kind)?,
        total_us: parse_psi_total(text, kind)?,
    })
}

/// The `some` and `full` lines from one read of the file.
pub fn read_psi_both() -> (Option<Psi>, Option<Psi>) {
    match fs::read_to_string(PSI_MEMORY) {
        Ok(t) => (parse_psi(&t, "some"), parse_psi(&t, "full")),
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
    fn a_file_kept_open_is_read_whole_each_time() {
        let dir = std::env::temp_dir().join(format!("sentinel-reread-{}", std::process::id()));
        let long = "x".repeat(10_000);
        std::fs::write(&dir, &long).unwrap();
        let mut r = Reread::new(dir.display().to_string());
        assert_eq!(r.read().unwrap(), long);
        std::fs::write(&dir, "short").unwrap();
        assert_eq!(r.read().unwrap(), "short");
        std::fs::remove_file(&dir).unwrap();
        let mut m = HostFiles::default();
        let (a, b) = (m.meminfo().unwrap(), m.meminfo().unwrap());
        assert!(a.total > 0 && a.total == b.total);
    }

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
