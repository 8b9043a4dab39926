//! GPU sampling cost and reaction lag, against the fake NVML library
//! (tests/fake-nvml): 8 devices and 200 GPU processes (real sleeping
//! processes, so the agent tracks them), sampled at 10 Hz.

use std::time::{Duration, Instant};

use sentinel::collector::procfs;
use sentinel_tests::{
    Agent, MIB, MemCgroup,
    gpu::{Scenario, fake_nvml},
};

const GIB: u64 = 1 << 30;
const DEVICES: u32 = 8;
const PROCS: usize = 200;

fn scenario(pids: &[u32], hot: Option<u32>) -> String {
    let mut s = String::new();
    for d in 0..DEVICES {
        s.push_str(&format!("device {d} total {} name Fake H100\n", 80 * GIB));
    }
    for (i, pid) in pids.iter().enumerate() {
        let d = i as u32 % DEVICES;
        // 25 processes of 1 GiB per device (about 31%); on the hot device
        // one of them takes the device past its preempt line.
        let bytes = if hot == Some(d) && i < DEVICES as usize {
            GIB + 50 * GIB
        } else {
            GIB
        };
        s.push_str(&format!("proc {d} {pid} {bytes} compute\n"));
    }
    s
}

fn cpu_of(pid: u32) -> f64 {
    procfs::usage(pid).map(|u| u.0).unwrap_or(0.0)
}

/// Agent CPU over `secs` with the fleet steady, GPU sampling on or off.
async fn cpu_share(gpu: bool, lib: &str, scn: &Scenario, secs: u64) -> f64 {
    let agent = Agent::start_env(
        "bench-gpu",
        &format!("[gpu]\nenabled = {gpu}\nlibrary = \"{lib}\"\ninterval = \"100ms\"\n"),
        &[],
        &[("FAKE_NVML_SCENARIO", scn.path.to_str().unwrap())],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = agent.child.id();
    let c0 = cpu_of(pid);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (cpu_of(pid) - c0) / t.elapsed().as_secs_f64() * 100.0
}

pub async fn gpu_bench() {
    println!("## GPU sampling (fake NVML: {DEVICES} devices, {PROCS} GPU processes, 10 Hz)\n");
    let cg = MemCgroup::new("bench-gpu", 512 * MIB);
    let mut fleet: Vec<std::process::Child> = (0..PROCS)
        .map(|_| {
            let mut c = std::process::Command::new("sleep");
            c.arg("600");
            cg.contain(&mut c);
            c.spawn().unwrap()
        })
        .collect();
    let pids: Vec<u32> = fleet.iter().map(|c| c.id()).collect();
    let dir = sentinel_tests::tempdir::Dir::new("bench-gpu-scn");
    let scn = Scenario::new(&dir.0);
    scn.write(&scenario(&pids, None));
    let lib = fake_nvml().display().to_string();

    let secs = 30;
    let off = cpu_share(false, &lib, &scn, secs).await;
    let on = cpu_share(true, &lib, &scn, secs).await;
    println!("| agent | CPU, share of one core ({secs} s) |");
    println!("|---|---|");
    println!("| GPU sampling off | {off:.2}% |");
    println!("| GPU sampling on, 10 Hz | {on:.2}% |");
    println!("| difference: the sampling | {:.2}% |\n", on - off);

    // Lag: the fake driver's device goes past its preempt line; the time
    // from the rewrite to the agent's decision. Then back down, and again.
    let agent = Agent::start_env(
        "bench-gpu-lag",
        &format!("[gpu]\nlibrary = \"{lib}\"\ninterval = \"100ms\"\n"),
        &[],
        &[("FAKE_NVML_SCENARIO", scn.path.to_str().unwrap())],
    );
    let mut stream = agent.watch(None).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut lags = Vec::new();
    for round in 0..20 {
        let hot = round % DEVICES;
        let t0 = sentinel_tests::unix_ms();
        scn.write(&scenario(&pids, Some(hot)));
        let rule = format!("gpu:{hot}");
        if let Some(d) =
            sentinel_tests::next_decision(&mut stream, Duration::from_secs(5), |d| d.rule == rule)
                .await
        {
            lags.push(d.time_unix_ms as f64 - t0);
        }
        // Back to normal, long enough for the level to clear, and a phase
        // that moves across the sampling period from round to round (else
        // every change lands at the same point of it).
        scn.write(&scenario(&pids, None));
        tokio::time::sleep(Duration::from_millis(600 + 37 * round as u64 % 100)).await;
    }
    let (p50, p99) = (
        super::percentile(&mut lags, 0.5),
        super::percentile(&mut lags, 0.99),
    );
    println!(
        "driver change to decision: {} of 20 seen; p50 {p50:.0} ms, p99 {p99:.0} ms, max {:.0} ms (sampling every 100 ms)\n",
        lags.len(),
        lags.last().copied().unwrap_or(0.0)
    );
    for c in &mut fleet {
        let _ = c.kill();
        let _ = c.wait();
    }
}
