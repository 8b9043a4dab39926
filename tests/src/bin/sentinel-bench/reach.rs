//! The two instruments (issue 17): what the agent costs while nothing is
//! near a line, and how early the precise probe is back when something
//! grows toward one.
//!
//! - `reach-overhead`: a page-fault storm with no agent, with the agent at
//!   rest (the per-fault probe detached, nothing within reach) and with
//!   `precise_probe = "always"`, in alternating rounds.
//! - `reach-arm`: a leaker at full speed from nothing under a 4 GiB rule,
//!   rounds apart: time from its start to the probe attached, its distance
//!   to the preempt line then, and where it was frozen.
//! - `reach-idle`: the agent on its defaults after it went to rest, with
//!   the machine's own processes and with 1,000 more (sleeping): CPU from
//!   the kernel's per-thread run time, resident memory and its peak.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sentinel_tests::{Agent, Hog, MIB, MemCgroup, pb, rule_for};

use super::{footprint::Fleet, median, online_cpus, storm};

async fn until_instrument(agent: &Agent, which: &str, within: Duration) -> pb::Status {
    let until = Instant::now() + within;
    loop {
        let s = agent.status().await;
        if s.instrument == which || Instant::now() > until {
            assert_eq!(s.instrument, which, "{s:?}");
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn overhead(rounds: usize, secs: f64) {
    let cg = MemCgroup::new("bench-reach-storm", 512 * MIB);
    storm(&cg, 1.0);
    let (mut none, mut rest, mut always) = (Vec::new(), Vec::new(), Vec::new());
    let mut attached_during_rest = 0;
    for round in 0..rounds {
        if round % 2 == 0 {
            none.push(storm(&cg, secs));
        }
        let agent = Agent::start("bench-reach-rest", "", &[]);
        until_instrument(&agent, "wide", Duration::from_secs(20)).await;
        rest.push(storm(&cg, secs));
        attached_during_rest += agent.status().await.precise_attachments;
        drop(agent);
        let agent = Agent::start("bench-reach-always", "precise_probe = \"always\"\n", &[]);
        always.push(storm(&cg, secs));
        drop(agent);
        if round % 2 == 1 {
            none.push(storm(&cg, secs));
        }
    }
    let slowdown = |on: &[f64]| {
        let mut paired: Vec<f64> = none
            .iter()
            .zip(on)
            .map(|(d, a)| (1.0 - a / d) * 100.0)
            .collect();
        median(&mut paired)
    };
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("## Two instruments: page-fault storm ({rounds} alternating rounds of {secs} s)\n");
    println!(
        "| agent | median faults/s | slowdown vs no agent (median of paired rounds) | target | rounds |"
    );
    println!("| --- | ---: | ---: | --- | --- |");
    println!(
        "| none | {:.0} | | | {} |",
        median(&mut none.clone()),
        fmt(&none)
    );
    println!(
        "| at rest (defaults, nothing within reach) | {:.0} | {:.2}% | at most 1% | {} |",
        median(&mut rest.clone()),
        slowdown(&rest),
        fmt(&rest)
    );
    println!(
        "| precise_probe = \"always\" | {:.0} | {:.2}% | no worse than before | {} |",
        median(&mut always.clone()),
        slowdown(&always),
        fmt(&always)
    );
    println!(
        "\nratio to target (at rest): {:.2}; the probe attached {attached_during_rest} times during the at-rest storms (0 expected)\n",
        slowdown(&rest) / 1.0
    );
}

/// `pct` percentile (nearest rank) of `v`.
fn percentile(v: &mut [f64], pct: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((pct / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// MiB below the warn line in an instrument reason
/// ("..., 1100 MiB below its line; reach ...").
fn headroom_mib(reason: &str) -> Option<f64> {
    let before = reason.split(" MiB below its line").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

pub async fn arm(rounds: usize) {
    let limit = 4096 * MIB;
    let cg = MemCgroup::new("bench-reach-arm", limit + 1024 * MIB);
    let agent = Agent::start(
        "bench-reach-arm",
        &rule_for(&cg, "big", "4GiB", "freeze"),
        &[],
    );
    let (warn, preempt) = (limit * 70 / 100, limit * 85 / 100);
    let cpu = (online_cpus() - 1).to_string();
    let (mut to_attach, mut to_line, mut overshoot) = (Vec::new(), Vec::new(), Vec::new());
    let mut by_tripwire = 0;
    let mut reach = 0;
    for _ in 0..rounds {
        let s = until_instrument(&agent, "wide", Duration::from_secs(30)).await;
        reach = s.reach_bytes;
        let armed_before = s.precise_attachments;
        let fires_before = s.tripwire_fires;
        let started = Instant::now();
        let hog = Hog::spawn(
            &cg,
            &[
                "--target", "4600MiB", "--rate", "max", "--hold", "30", "--cpu", &cpu,
            ],
        );
        let attached = loop {
            let s = agent.status().await;
            if s.precise_attachments > armed_before {
                break Some((started.elapsed().as_secs_f64(), s.instrument_reason));
            }
            if started.elapsed() > Duration::from_secs(60) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        // A loaded machine slows the leaker (seen: 270 MB/s at "max").
        let d = agent
            .expect_action(hog.pid, "freeze", Duration::from_secs(60))
            .await;
        let (secs, reason) = attached.expect("the probe attached");
        to_attach.push(secs * 1000.0);
        if let Some(h) = headroom_mib(&reason) {
            to_line.push(h + (preempt - warn) as f64 / MIB as f64);
        }
        overshoot.push((d.charged_bytes as f64 - preempt as f64) / MIB as f64);
        if agent.status().await.tripwire_fires > fires_before {
            by_tripwire += 1;
        }
        drop(hog);
    }
    let n = to_attach.len();
    println!(
        "## Two instruments: a leaker at full speed from nothing under a 4 GiB rule ({n} rounds, reach {:.0} MiB)\n",
        reach as f64 / MIB as f64
    );
    println!("| measure | p50 | p99 (max of {n}) |");
    println!("| --- | ---: | ---: |");
    println!(
        "| start of growth to the probe attached | {:.0} ms | {:.0} ms |",
        percentile(&mut to_attach.clone(), 50.0),
        percentile(&mut to_attach, 99.0)
    );
    println!(
        "| distance to the preempt line when attached | {:.0} MiB | {:.0} MiB (least: {:.0} MiB) |",
        percentile(&mut to_line.clone(), 50.0),
        percentile(&mut to_line.clone(), 99.0),
        to_line.iter().copied().fold(f64::INFINITY, f64::min)
    );
    println!(
        "| charged at the freeze, past the preempt line | {:.1} MiB | {:.1} MiB |",
        percentile(&mut overshoot.clone(), 50.0),
        percentile(&mut overshoot, 99.0)
    );
    println!(
        "\nfrozen by the in-kernel tripwire in {by_tripwire} of {n} rounds (the others by the agent, earlier, from the forecast)\n"
    );
}

/// CPU seconds of all the process's threads, from the scheduler's own
/// run-time counters (nanoseconds, not ticks).
fn run_time(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

fn count_processes() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count()
        })
        .unwrap_or(0)
}

async fn idle_row(agent: &Agent, label: &str, secs: u64) {
    let pid = agent.child.id();
    until_instrument(agent, "wide", Duration::from_secs(30)).await;
    let processes = count_processes();
    let cpu0 = run_time(pid);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let share = (run_time(pid) - cpu0) / t.elapsed().as_secs_f64() * 100.0;
    let s = agent.status().await;
    let (rss, hwm) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));
    let (anon, file) = (status_kib(pid, "RssAnon:"), status_kib(pid, "RssFile:"));
    let (cpu_target, ratio) = if processes > 500 {
        ("0.5%", share / 0.5)
    } else {
        ("0.1%", share / 0.1)
    };
    println!(
        "| {label} | {processes} | {} | {share:.3}% (target {cpu_target}, ratio {ratio:.2}) | {:.1} MiB (ratio {:.2}; anon {:.1}, files {:.1}) | {:.1} MiB (ratio {:.2}) |",
        s.instrument,
        rss as f64 / 1024.0,
        rss as f64 / 1024.0 / 15.0,
        anon as f64 / 1024.0,
        file as f64 / 1024.0,
        hwm as f64 / 1024.0,
        hwm as f64 / 1024.0 / 25.0,
    );
}

pub async fn idle(secs: u64) {
    println!("## Two instruments: the agent at rest on its defaults ({secs} s each)\n");
    println!(
        "| processes | on the machine | instrument | CPU, share of one core | VmRSS (target 15 MiB) | VmHWM (target 25 MiB) |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: |");
    let agent = Agent::start("bench-reach-idle", "", &[]);
    idle_row(&agent, "the machine's own", secs).await;
    let cg = MemCgroup::new("bench-reach-idle", 2048 * MIB);
    let mut sleepers = Fleet(Vec::with_capacity(1000));
    for _ in 0..1000 {
        let mut cmd = Command::new("sleep");
        cmd.arg("3600").stdout(Stdio::null());
        cg.contain(&mut cmd);
        sleepers.0.push(cmd.spawn().expect("spawn sleep"));
    }
    // Their forks and execs are read as they come, and their cgroups
    // checked again while they count as active (10 s): idle after that.
    tokio::time::sleep(Duration::from_secs(15)).await;
    idle_row(&agent, "and 1,000 sleeping", secs).await;
    drop(sleepers);
    println!();
}
