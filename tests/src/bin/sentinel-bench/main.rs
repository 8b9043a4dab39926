//! Sentinel's benchmarks. Run with `cargo xtask bench` (root). Prints
//! markdown tables; docs/BENCHMARKS.md records them with this command.
//!
//! 1. Probe overhead: a page-fault storm (fresh faults, then re-faults after
//!    MADV_DONTNEED) with the agent's probes attached versus detached,
//!    alternating in one run; plus ring-buffer events reaching userspace and
//!    events lost during the storm.
//! 2. Leaker overshoot: peak charged memory of a leaker relative to its
//!    limit across rates up to the fastest the machine allows, with and
//!    without the in-kernel tripwire, and the lead time of the action.
//! 3. API: durable journal appends, action-to-watcher latency, ListProcesses
//!    with 10,000 processes.
//! 4. Alerting: decision latency with receivers up, refusing, hanging.
//! 5. GPU: NVML sampling cost at 10 Hz and the lag from a driver change to
//!    the decision, against the fake NVML (8 devices, 200 processes).
//! 6. Admission: grant latency with memory free, Reserve/Release pairs per
//!    second.
//! 7. Footprint (`footprint`, ten minutes; `footprint-quick`, one): the
//!    agent's resident memory and CPU with 1,000 churning processes.
//! 8. Freeze and thaw latency, SIGSTOP against the cgroup v1 freezer.
//! 9. Stampedes (`stampede`, several minutes): eight workers at once in a
//!    capped cgroup with no guard, a freeze rule, a kill rule and `sentinel
//!    exec --reserve`, and the variants (unequal sizes, a runaway among
//!    them, the host's limit, three loads of which two fit).
//!
//! 10. Two instruments (`reach`, or `reach-overhead`, `reach-arm`,
//!     `reach-idle`): the storm with the agent at rest, how early the
//!     precise probe is back, and the idle agent's cost.
//!
//! Every memory-hungry process runs in a capped cgroup, and the agent's only
//! rule selects that cgroup.

mod admission;
mod alerting;
mod defaults;
mod footprint;
mod freeze;
mod gpu;
mod reach;
mod stampede;
mod xdist;

use std::time::{Duration, Instant};

use sentinel_tests::{Agent, Hog, MIB, MemCgroup, pb, read_charged, rule_for};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs one storm in `cg` and returns faults per second.
fn storm(cg: &MemCgroup, secs: f64) -> f64 {
    // The storm runs on the last CPU; the agent (started from this process,
    // pinned in main) on the others.
    let cpu = (online_cpus() - 1).to_string();
    let mut hog = Hog::spawn(
        cg,
        &[
            "--target",
            "256MiB",
            "--storm",
            &secs.to_string(),
            "--cpu",
            &cpu,
        ],
    );
    let line = hog
        .expect_line("faults", Duration::from_secs_f64(secs + 30.0))
        .expect("storm result");
    let _ = hog.wait_exit(Duration::from_secs(5));
    let f: Vec<&str> = line.split_whitespace().collect();
    let faults: f64 = f[1].parse().unwrap();
    let seconds: f64 = f[3].parse().unwrap();
    faults / seconds
}

async fn probe_overhead(label: &str, agent_config: &str, rounds: usize, secs: f64) {
    let cg = MemCgroup::new("bench-storm", 512 * MIB);
    // Warm up page allocator and caches.
    storm(&cg, 1.0);
    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut events_per_sec = Vec::new();
    let mut lost = 0u64;
    for round in 0..rounds {
        // ABBA order: drift of the machine over the run (the host's other
        // tenants, thermal state) falls on both sides alike.
        if round % 2 == 0 {
            off.push(storm(&cg, secs));
        }
        // Attached throughout, as before the probe could rest (`reach`
        // measures the agent at rest).
        let config = format!("precise_probe = \"always\"\n{agent_config}");
        let agent = Agent::start("bench-storm", &config, &[]);
        let before = agent.status().await;
        if !agent_config.contains("rss_stat") {
            assert_eq!(before.mode, "ebpf", "probes must be attached: {before:?}");
        }
        let t = Instant::now();
        on.push(storm(&cg, secs));
        let elapsed = t.elapsed().as_secs_f64();
        let after = agent.status().await;
        events_per_sec.push((after.probe_events - before.probe_events) as f64 / elapsed);
        lost += after.lost_events - before.lost_events;
        drop(agent);
        if round % 2 == 1 {
            off.push(storm(&cg, secs));
        }
    }
    // Each round's pair ran back to back: its ratio is the least disturbed
    // by drift; the median over rounds is the figure.
    let mut paired: Vec<f64> = off
        .iter()
        .zip(&on)
        .map(|(d, a)| (1.0 - a / d) * 100.0)
        .collect();
    let paired_m = median(&mut paired);
    let off_m = median(&mut off.clone());
    let on_m = median(&mut on.clone());
    println!(
        "## Probe overhead: {label} (page-fault storm, {rounds} alternating rounds of {secs} s each)\n"
    );
    println!("| probes | median faults/s | rounds (faults/s) |");
    println!("| --- | ---: | --- |");
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{:.0}", x))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("| detached | {off_m:.0} | {} |", fmt(&off));
    println!("| attached | {on_m:.0} | {} |", fmt(&on));
    println!(
        "\nslowdown with probes attached: {paired_m:.2}% (median of the rounds' paired slowdowns; target: at most 3%); ratio of the medians: {:.2}%",
        (1.0 - on_m / off_m) * 100.0
    );
    println!(
        "ring-buffer events reaching userspace during the storm: median {:.0}/s; lost events: {lost} (target: 0)\n",
        median(&mut events_per_sec)
    );
}

/// Where the overhead comes from: alternating rounds with no agent, the
/// agent with every probe detached, the agent whose rss_stat program
/// returns at once (the kernel's dispatch of a program on that tracepoint,
/// and the cold probes), and the agent as it ships. Paired per round.
async fn overhead_floor(rounds: usize, secs: f64) {
    let cg = MemCgroup::new("bench-floor", 512 * MIB);
    storm(&cg, 1.0);
    let none = "disable_probes = [\"rss_stat\", \"page_fault_user\", \"sched_process_fork\", \"mmap\", \"munmap\", \"brk\", \"oom_mark_victim\", \"sched_process_exec\", \"sched_process_exit\"]\n";
    /// (label, config, environment of the agent)
    type Arm<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let arms: [Arm; 3] = [
        ("agent, no probes attached", none, &[]),
        (
            "rss_stat program returning at once (+ cold probes)",
            "",
            &[("SENTINEL_MEASURE_DISPATCH_ONLY", "1")],
        ),
        ("default probes, as shipped", "", &[]),
    ];
    let mut detached = Vec::new();
    let mut with: Vec<Vec<f64>> = vec![Vec::new(); arms.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..arms.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        if round % 2 == 0 {
            detached.push(storm(&cg, secs));
        }
        for i in order {
            let (_, cfg, envs) = arms[i];
            let cfg = format!("precise_probe = \"always\"\n{cfg}");
            let agent = Agent::start_env("bench-floor", &cfg, &[], envs);
            with[i].push(storm(&cg, secs));
            drop(agent);
        }
        if round % 2 == 1 {
            detached.push(storm(&cg, secs));
        }
    }
    println!(
        "## Where the probe overhead comes from (page-fault storm, {rounds} alternating rounds of {secs} s each)\n"
    );
    println!("| agent | median faults/s | slowdown vs no agent (median of paired rounds) |");
    println!("| --- | ---: | ---: |");
    println!("| no agent | {:.0} | |", median(&mut detached.clone()));
    let mut last = Vec::new();
    for (i, (label, ..)) in arms.iter().enumerate() {
        let mut paired: Vec<f64> = detached
            .iter()
            .zip(&with[i])
            .map(|(d, a)| (1.0 - a / d) * 100.0)
            .collect();
        let m = median(&mut paired);
        last.push(m);
        println!(
            "| {label} | {:.0} | {m:.2}% |",
            median(&mut with[i].clone())
        );
    }
    let mut own: Vec<f64> = with[1]
        .iter()
        .zip(&with[2])
        .map(|(n, f)| (1.0 - f / n) * 100.0)
        .collect();
    println!(
        "\nthe shipped program's own cost over the bare dispatch: {:.2}% (median of paired rounds)\n",
        median(&mut own)
    );
}

struct LeakResult {
    rate: String,
    tripwire: bool,
    measured_rate: f64,
    charged_at_stop: u64,
    cgroup_peak: u64,
    actor: String,
    lead_secs: Option<f64>,
}

async fn leak_once(rate: &str, tripwire: bool, limit: u64) -> LeakResult {
    let cg = MemCgroup::new("bench-leak", 3 * limit);
    // Every level at the limit itself: the action is meant to land right
    // under that line, so the figure is how close the prediction (or the
    // tripwire) gets to a line without crossing it. With the default levels
    // the freeze would come at 85% of the limit instead.
    let cfg = format!(
        "tripwire = {tripwire}\n{}",
        rule_for(&cg, "bench", &format!("{}MiB", limit / MIB), "freeze").replacen(
            "[rule.match]",
            "levels = { warn = 1.0, preempt = 1.0, kill = 1.0 }\n[rule.match]",
            1
        )
    );
    let agent = Agent::start("bench-leak", &cfg, &[]);
    let hog = Hog::spawn(
        &cg,
        &[
            "--target",
            &format!("{}MiB", 2 * limit / MIB),
            "--rate",
            rate,
            "--hold",
            "60",
        ],
    );
    let d = agent
        .wait_decision(Duration::from_secs(60), |d| d.pid == hog.pid)
        .await;
    std::thread::sleep(Duration::from_millis(300));
    let charged = read_charged(hog.pid);
    let (actor, lead, measured) = match &d {
        Some(d) if d.reason.contains("tripwire") => {
            ("kernel tripwire".to_string(), None, d.slope_bytes_per_sec)
        }
        Some(d) => {
            let lead =
                (d.limit_bytes as f64 - d.charged_bytes as f64) / d.slope_bytes_per_sec.max(1.0);
            (
                "agent prediction".to_string(),
                Some(lead),
                d.slope_bytes_per_sec,
            )
        }
        None => ("none".to_string(), None, 0.0),
    };
    LeakResult {
        rate: rate.to_string(),
        tripwire,
        measured_rate: measured,
        charged_at_stop: charged,
        cgroup_peak: cg.peak_bytes(),
        actor,
        lead_secs: lead,
    }
}

async fn overshoot(limit: u64) {
    println!(
        "## Leaker overshoot (limit {} MiB on charged memory, action freeze)\n",
        limit / MIB
    );
    println!(
        "| rate asked | measured slope | tripwire | stopped by | charged at stop | stop - limit | cgroup peak | lead time |"
    );
    println!("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |");
    for rate in ["50MB/s", "200MB/s", "1GB/s", "max"] {
        for tripwire in [true, false] {
            let r = leak_once(rate, tripwire, limit).await;
            let over = r.charged_at_stop as f64 - limit as f64;
            println!(
                "| {} | {:.0} MB/s | {} | {} | {:.2} MiB | {:+.2} MiB | {:.2} MiB | {} |",
                r.rate,
                r.measured_rate / 1e6,
                if r.tripwire { "on" } else { "off" },
                r.actor,
                r.charged_at_stop as f64 / MIB as f64,
                over / MIB as f64,
                r.cgroup_peak as f64 / MIB as f64,
                r.lead_secs
                    .map(|s| format!("{:.1} ms", s * 1e3))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    println!();
}

/// The `p` quantile (0..1) of `v`, which it sorts.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The operator interface (issue 4): journal appends per second with every
/// append committed and synced; time from an action to its decision
/// reaching a watching client; ListProcesses latency with 10,000 tracked
/// processes.
async fn api_bench() {
    use sentinel::journal::{Decision, DecisionKind, Journal, Retention};
    println!("## Operator interface\n");

    // Journal appends, durable (fsync per append), in one thread.
    let dir = sentinel_tests::tempdir::Dir::new("bench-journal");
    let (j, _) = Journal::open(
        &dir.0.join("j.redb"),
        10_000,
        Retention {
            max_entries: 1_000_000,
            max_age_ms: u64::MAX,
        },
    )
    .unwrap();
    let n = 2000;
    let t = Instant::now();
    for pid in 0..n {
        j.append(Decision {
            seq: 0,
            time_unix_ms: 0,
            kind: DecisionKind::Preempt,
            pid,
            start_time: 4242,
            comm: "bench".into(),
            cgroup: "/bench".into(),
            rule: "r".into(),
            level: Some(sentinel_core::policy::Level::Preempt),
            action: sentinel_core::decision::DecisionAction::Freeze,
            outcome: sentinel_core::decision::Outcome::Done,
            reason: "a reason of ordinary length, about as long as the real ones are".into(),
            resident_bytes: 1 << 30,
            charged_bytes: 1 << 30,
            slope_bytes_per_sec: 2e8,
            limit_bytes: 1 << 31,
            predicted_seconds_to_limit: Some(0.02),
            crash_loop: false,
            scope: Some(sentinel_core::decision::ScopeKind::Process),
        });
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "journal: {n} durable appends in {secs:.2} s: {:.0} appends/s, {:.2} ms each",
        n as f64 / secs,
        secs * 1e3 / n as f64
    );

    // Action to client: leakers frozen under a rule; the watcher's receipt
    // time less the decision's own time (both wall clock, one machine).
    let cg = MemCgroup::new("bench-api", 512 * MIB);
    let agent = Agent::start("bench-api", &rule_for(&cg, "r", "128MiB", "freeze"), &[]);
    let mut stream = agent.watch(None).await;
    let mut lat = Vec::new();
    for _ in 0..20 {
        let hog = Hog::spawn(
            &cg,
            &["--target", "200MiB", "--rate", "400MB/s", "--hold", "5"],
        );
        loop {
            let d = tokio::time::timeout(
                Duration::from_secs(10),
                tokio_stream::StreamExt::next(&mut stream),
            )
            .await
            .expect("a decision in time")
            .unwrap()
            .unwrap();
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                * 1e3;
            if d.pid == hog.pid && d.action == "freeze" {
                lat.push(now_ms - d.time_unix_ms as f64);
                break;
            }
        }
        drop(hog);
    }
    println!(
        "action to watching client (20 freezes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&mut lat.clone(), 0.5),
        percentile(&mut lat.clone(), 0.99),
        percentile(&mut lat, 1.0)
    );
    drop(agent);

    // ListProcesses with 10,000 tracked processes (sleepers in a capped
    // cgroup), default sort (slope: every process's trend is computed).
    let cg = MemCgroup::new("bench-procs", 4096 * MIB);
    let mut sleepers = Vec::new();
    for _ in 0..10_000 {
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("600");
        cg.contain(&mut cmd);
        sleepers.push(cmd.spawn().expect("spawn sleep"));
    }
    let agent = Agent::start("bench-procs", "rescan_interval = \"1s\"\n", &[]);
    let mut c = agent.client().await;
    // Wait until the agent tracks them all.
    let tracked = loop {
        let s = c
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.tracked_processes >= 10_000 {
            break s.tracked_processes;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        c.list_processes(pb::ListProcessesRequest {
            limit: 20,
            ..Default::default()
        })
        .await
        .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "ListProcesses (top 20 by slope) with {tracked} tracked processes, 200 calls: p50 {:.1} ms, p99 {:.1} ms\n",
        percentile(&mut lat.clone(), 0.5),
        percentile(&mut lat, 0.99)
    );
    for mut s in sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("sentinel-bench needs root (eBPF, cgroups)");
        std::process::exit(2);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    pin_away_from_last_cpu();
    let only = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    println!("# Sentinel benchmark run\n");
    println!(
        "kernel {}, {} CPUs\n",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        online_cpus()
    );
    if only("overhead-floor") {
        overhead_floor(11, 2.0).await;
    }
    if only("overhead") || args.iter().any(|a| a == "overhead-quick") {
        probe_overhead("default probes (page_fault_user off)", "", 9, 2.0).await;
    }
    if only("overhead") {
        probe_overhead(
            "all probes (page_fault_user on)",
            "disable_probes = []\n",
            9,
            2.0,
        )
        .await;
    }
    if args.iter().any(|a| a == "overhead-detail") {
        for (label, cfg) in [
            ("rss_stat only", "disable_probes = [\"page_fault_user\"]\n"),
            ("page_fault_user only", "disable_probes = [\"rss_stat\"]\n"),
            (
                "neither hot probe",
                "disable_probes = [\"rss_stat\", \"page_fault_user\"]\n",
            ),
        ] {
            probe_overhead(label, cfg, 7, 2.0).await;
        }
    }
    if only("overshoot") {
        overshoot(256 * MIB).await;
    }
    if only("reach") || args.iter().any(|a| a == "reach-overhead") {
        reach::overhead(9, 2.0).await;
    }
    if only("reach") || args.iter().any(|a| a == "reach-arm") {
        reach::arm(10).await;
    }
    if only("reach") || args.iter().any(|a| a == "reach-idle") {
        reach::idle(60).await;
    }
    if only("api") {
        api_bench().await;
    }
    if only("alerting") {
        alerting::alerting(200).await;
    }
    if only("gpu") {
        gpu::gpu_bench().await;
    }
    if only("admission") {
        admission::admission_bench(2000).await;
    }
    if only("freeze") {
        freeze::freeze_bench(200);
    }
    if only("xdist") {
        xdist::xdist_bench().await;
    }
    // Fills most of the host's memory: only when asked for.
    if args.iter().any(|a| a == "defaults") {
        defaults::defaults_bench().await;
    }
    // Several minutes of stampedes: only when asked for.
    if args.iter().any(|a| a == "stampede") {
        stampede::stampede_bench().await;
    }
    // Ten minutes: only when asked for (`footprint`, or `footprint-quick`
    // for a one-minute run with the same fleet).
    if args.iter().any(|a| a == "footprint") {
        footprint::footprint(1000, 600).await;
    }
    if args.iter().any(|a| a == "footprint-quick") {
        footprint::footprint(1000, 60).await;
    }
}

/// Keeps the bench and the agents it starts off the CPU the storm runs on.
fn pin_away_from_last_cpu() {
    let n = online_cpus();
    if n < 2 {
        return;
    }
    // Best effort, as before: an unpinned run is still a run.
    let _ = sentinel_tests::pin_to_cpus(0..n - 1);
}

/// CPUs online on the machine (not the ones this process may use).
fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as usize } else { 1 }
}
