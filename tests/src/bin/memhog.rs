//! A controllable memory grower for tests and benchmarks.
//!
//! memhog --target 400MiB [--rate 200MB/s | --rate max] [--hold 10]
//!        [--prefault 8MiB] [--delay 1] [--ignore-term] [--cycle]
//!        [--name NAME] [--untouched]
//!
//! `--untouched` maps `target` and holds it for `hold` seconds without
//! touching a page: a large mapping that costs no memory.
//! `--name` renames the process (prctl PR_SET_NAME), as anyone can.
//! Maps `target` bytes of anonymous memory and touches it page by page at
//! `rate` (bytes per second, or as fast as possible with `max`), after first
//! touching `prefault` bytes and waiting `delay` seconds; then it holds
//! it for `hold` seconds and exits 0. Prints `ready <pid>` before growing and
//! `done <bytes>` after reaching the target. Always run it inside a memory
//! cgroup with a hard cap.
//!
//! memhog --target 256MiB --storm 2 runs the page-fault microbenchmark instead.

use std::{
    io::Write,
    time::{Duration, Instant},
};

fn parse_size(s: &str) -> u64 {
    sentinel_core::units::ByteSize::parse(s)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

fn main() {
    let mut target = 0u64;
    let mut rate: Option<f64> = None; // None = as fast as possible
    let mut hold = 0.0f64;
    let mut start_delay = 0.0f64;
    let mut prefault = 0usize;
    let mut storm: Option<f64> = None;
    // --cycle: grow, hold, free, wait `hold`, and again, forever (a
    // process with a steady churn, for the footprint benchmark).
    let mut cycle = false;
    let mut untouched = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--target" => target = parse_size(&v),
            "--rate" => rate = (v != "max").then(|| parse_size(v.trim_end_matches("/s")) as f64),
            "--hold" => hold = v.parse().expect("--hold SECS"),
            "--delay" => start_delay = v.parse().expect("--delay SECS"),
            "--prefault" => prefault = parse_size(&v) as usize,
            "--storm" => storm = Some(v.parse::<f64>().expect("--storm SECS")),
            "--name" => {
                let name = std::ffi::CString::new(v.as_str()).expect("--name NAME");
                // SAFETY: PR_SET_NAME reads a NUL-terminated string of at
                // most 16 bytes (longer ones are cut), which `name` is.
                unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
            }
            "--cpu" => sentinel_tests::pin_to_cpus([v.parse().expect("--cpu N")])
                .expect("sched_setaffinity"),
            "--cycle" => {
                cycle = true;
                i += 1;
                continue;
            }
            "--untouched" => {
                untouched = true;
                i += 1;
                continue;
            }
            "--ignore-term" => {
                // A process that does not answer SIGTERM, for the grace
                // before SIGKILL.
                // SAFETY: ignoring a signal installs no handler code.
                unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    assert!(target > 0, "--target is required");
    let page = 4096usize;
    let len = target as usize;
    // SAFETY: anonymous private mapping, checked below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "mmap failed");
    let base = base.cast::<u8>();
    let mut touched = 0usize;
    while touched < prefault.min(len) {
        // SAFETY: within the mapping.
        unsafe { base.add(touched).write_volatile(1) };
        touched += page;
    }
    let mut out = std::io::stdout();
    writeln!(out, "ready {}", std::process::id()).unwrap();
    out.flush().unwrap();
    std::thread::sleep(Duration::from_secs_f64(start_delay));
    if let Some(secs) = storm {
        fault_storm(base, len, page, secs);
        return;
    }
    if untouched {
        std::thread::sleep(Duration::from_secs_f64(hold));
        return;
    }

    loop {
        grow(base, len, page, touched, rate);
        writeln!(out, "done {len}").unwrap();
        out.flush().unwrap();
        std::thread::sleep(Duration::from_secs_f64(hold));
        if !cycle {
            return;
        }
        // SAFETY: the whole mapping, which we own.
        unsafe { libc::madvise(base.cast(), len, libc::MADV_DONTNEED) };
        touched = 0;
        std::thread::sleep(Duration::from_secs_f64(hold));
    }
}

/// Touches pages from `touched` to `len` at `rate` bytes/s (None: at once).
fn grow(base: *mut u8, len: usize, page: usize, mut touched: usize, rate: Option<f64>) {
    let start = Instant::now();
    let base_touched = touched;
    while touched < len {
        let allowed = match rate {
            None => len,
            Some(r) => (base_touched + (start.elapsed().as_secs_f64() * r) as usize).min(len),
        };
        while touched < allowed {
            // SAFETY: within the mapping.
            unsafe { base.add(touched).write_volatile(1) };
            touched += page;
        }
        if rate.is_some() && touched < len {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// Page-fault microbenchmark: touch every page of the mapping (each touch a
/// fresh fault), drop them with MADV_DONTNEED, repeat for `secs`. Prints
/// `faults N seconds S`.
fn fault_storm(base: *mut u8, len: usize, page: usize, secs: f64) {
    let start = Instant::now();
    let mut faults = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut off = 0;
        while off < len {
            // SAFETY: within the mapping.
            unsafe { base.add(off).write_volatile(1) };
            off += page;
            faults += 1;
        }
        // SAFETY: the whole mapping, which we own.
        unsafe { libc::madvise(base.cast(), len, libc::MADV_DONTNEED) };
    }
    println!(
        "faults {faults} seconds {:.6}",
        start.elapsed().as_secs_f64()
    );
}
