//! Freeze and thaw latency for each mechanism the agent has: SIGSTOP and
//! SIGCONT through a pidfd, and the kernel's cgroup v1 freezer (its own
//! cgroup, FROZEN, and back). Measured on a process spinning on a CPU and
//! on one asleep, from the call until the kernel reports it stopped (state
//! `T`, or `freezer.state` FROZEN) or running again.

use std::time::{Duration, Instant};

use sentinel::{
    actuator::{self, Freezer, Pidfd},
    collector::procfs,
};
use sentinel_core::engine::Signal;

use super::percentile;

/// One process to freeze: spinning or asleep.
fn spawn(script: &str) -> std::process::Child {
    std::process::Command::new("sh")
        .args(["-c", script])
        .spawn()
        .expect("sh")
}

fn state(pid: u32) -> char {
    procfs::read_stat(pid).map(|s| s.state).unwrap_or('?')
}

/// Waits until `done` holds, spinning; the time it took.
fn until(t: Instant, done: impl Fn() -> bool) -> f64 {
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(5), "did not settle");
        std::hint::spin_loop();
    }
    t.elapsed().as_secs_f64() * 1e3
}

/// (freeze ms, thaw ms) samples over `rounds`.
fn measure(pid: u32, freezer: Option<&Freezer>, rounds: usize) -> (Vec<f64>, Vec<f64>) {
    let start = procfs::read_stat(pid).expect("alive").start_time;
    let fd = Pidfd::open(pid, start).expect("pidfd");
    let (mut freeze, mut thaw) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        actuator::send(&fd, Signal::Freeze, freezer).expect("freeze");
        freeze.push(match freezer {
            Some(f) => until(t, || f.settled(pid, start)),
            None => until(t, || state(pid) == 'T'),
        });
        std::thread::sleep(Duration::from_millis(2));
        let t = Instant::now();
        actuator::send(&fd, Signal::Resume, freezer).expect("thaw");
        thaw.push(until(t, || !matches!(state(pid), 'T' | 'D')));
        std::thread::sleep(Duration::from_millis(2));
    }
    (freeze, thaw)
}

pub fn freeze_bench(rounds: usize) {
    println!("## Freeze and thaw latency (issue 14)\n");
    println!(
        "{rounds} rounds per row: from the call until the kernel reports the process stopped (state T, or freezer.state FROZEN), and until it runs again.\n"
    );
    println!("| mechanism | process | freeze p50 | freeze p99 | thaw p50 | thaw p99 |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    let freezer = Freezer::detect();
    let mechanisms: Vec<(&str, Option<&Freezer>)> = match &freezer {
        Some(f) => vec![("SIGSTOP / SIGCONT", None), ("cgroup v1 freezer", Some(f))],
        None => vec![("SIGSTOP / SIGCONT", None)],
    };
    for (label, script) in [
        ("spinning on a CPU", "while :; do :; done"),
        ("asleep", "exec sleep 600"),
    ] {
        for (name, f) in &mechanisms {
            let mut child = spawn(script);
            std::thread::sleep(Duration::from_millis(50));
            let (mut fr, mut th) = measure(child.id(), *f, rounds);
            let _ = child.kill();
            let _ = child.wait();
            println!(
                "| {name} | {label} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms |",
                percentile(&mut fr, 0.5),
                percentile(&mut fr, 0.99),
                percentile(&mut th, 0.5),
                percentile(&mut th, 0.99),
            );
        }
    }
    if freezer.is_none() {
        println!("\n(no cgroup v1 freezer here: SIGSTOP only)");
    }
    println!();
}
