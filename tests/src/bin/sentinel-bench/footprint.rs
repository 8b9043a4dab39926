//! The agent's own footprint on a busy host: resident memory and CPU share
//! of one core, sampled every second over a long run with many processes
//! that keep allocating and freeing, while a Prometheus-like scraper reads
//! its metrics every 15 s.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sentinel::collector::procfs;
use sentinel_tests::{Agent, MIB, MemCgroup, memhog_bin, observability::http_get, rule_for};

/// Kills the fleet however the run ends.
pub struct Fleet(pub Vec<Child>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

pub async fn footprint(procs: usize, secs: u64) {
    println!("## Agent footprint: {procs} processes, {secs} s\n");
    // Each process holds at most 2 MiB plus its binary: 1,000 fit well
    // under the cap, which only guards against a runaway.
    let cg = MemCgroup::new("footprint", 8192 * MIB);
    // A rule over the fleet so every process is matched and forecast;
    // alert-only, so nothing is stopped.
    let agent = Agent::start("footprint", &rule_for(&cg, "fleet", "64MiB", "alert"), &[]);
    let agent_pid = agent.child.id();
    let metrics = agent.metrics_url();

    let mut fleet = Fleet(Vec::with_capacity(procs));
    for i in 0..procs {
        let mut cmd = Command::new(memhog_bin());
        // Staggered so the fleet's churn is steady, not in waves.
        let delay = format!("{:.2}", (i % 100) as f64 * 0.12);
        cmd.args([
            "--target", "2MiB", "--rate", "1MB/s", "--hold", "5", "--cycle", "--delay", &delay,
        ])
        .stdout(Stdio::null());
        cg.contain(&mut cmd);
        fleet.0.push(cmd.spawn().expect("spawn memhog"));
    }
    // Let discovery and the first cycles settle before measuring.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let tracked = sentinel_tests::observability::metric(
        &http_get(&metrics).map(|r| r.1).unwrap_or_default(),
        "sentinel_tracked_processes",
    )
    .unwrap_or(0.0);

    let (cpu0, _, _) = procfs::usage(agent_pid).expect("agent usage");
    let start = Instant::now();
    let mut rss: Vec<u64> = Vec::new();
    let mut last_scrape = Instant::now() - Duration::from_secs(15);
    while start.elapsed() < Duration::from_secs(secs) {
        if last_scrape.elapsed() >= Duration::from_secs(15) {
            let _ = http_get(&metrics);
            last_scrape = Instant::now();
        }
        if let Ok((_, r, _)) = procfs::usage(agent_pid) {
            rss.push(r);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let wall = start.elapsed().as_secs_f64();
    let (cpu1, _, _) = procfs::usage(agent_pid).expect("agent usage");
    let text = http_get(&metrics).map(|r| r.1).unwrap_or_default();
    let events =
        sentinel_tests::observability::metric(&text, "sentinel_probe_events_total").unwrap_or(0.0);
    drop(fleet);

    let mean = rss.iter().sum::<u64>() as f64 / rss.len().max(1) as f64;
    let max = rss.iter().copied().max().unwrap_or(0);
    let hwm = peak_rss(agent_pid);
    let share = (cpu1 - cpu0) / wall * 100.0;
    let mib = |b: f64| b / MIB as f64;
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!("| processes tracked | {tracked:.0} | {procs} spawned |");
    println!(
        "| resident memory, mean | {:.1} MiB | < 25 MiB |",
        mib(mean)
    );
    println!(
        "| resident memory, max sampled | {:.1} MiB | < 25 MiB |",
        mib(max as f64)
    );
    println!(
        "| resident memory, peak (VmHWM, whole run) | {:.1} MiB | |",
        mib(hwm as f64)
    );
    println!("| CPU, share of one core | {share:.2}% | < 1% |");
    println!("| kernel events delivered (whole run) | {events:.0} | |");
    println!(
        "\nratios to target: memory {:.2} (max/25 MiB), CPU {:.2} (share/1%)\n",
        mib(max as f64) / 25.0,
        share / 1.0
    );
}
