//! The built-in policy (what the package ships) on this machine's real
//! memory, nothing written but `candidates` narrowed to the benchmark's own
//! capped cgroup: a leaker beside a steady process must be stopped before
//! the host's floor with the steady one untouched; a burst that levels off
//! above the floor, a sawtooth, and a large mapping never touched must get
//! no action.
//!
//! The cgroup is capped so that, unguarded, its processes could take the
//! host to half its floor and no further: the kernel's cgroup OOM killer,
//! not the host's, is the backstop, and nothing outside the cgroup can be
//! chosen by the agent.

use std::time::{Duration, Instant};

use sentinel::collector::host::read_meminfo;
use sentinel_core::config::DEFAULT_MIN_AVAILABLE;
use sentinel_tests::{Agent, Hog, MemCgroup};

const MIB: u64 = 1 << 20;
const GIB: f64 = (1u64 << 30) as f64;

struct Run {
    min_available: u64,
    /// (pid, action) of every decision that stopped something.
    stops: Vec<(u32, String)>,
}

/// Samples MemAvailable every 20 ms until `done` says so (or `limit`).
fn watch(limit: Duration, mut done: impl FnMut() -> bool) -> u64 {
    let start = Instant::now();
    let mut min = u64::MAX;
    while start.elapsed() < limit {
        if let Ok(m) = read_meminfo() {
            min = min.min(m.available + m.swap_free);
        }
        if done() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    min
}

/// Every decision that stopped something: (pid, action).
async fn stops(agent: &Agent) -> Vec<(u32, String)> {
    agent
        .decisions_of("", "")
        .await
        .into_iter()
        .filter(|d| ["freeze", "terminate", "kill"].contains(&d.action.as_str()))
        .map(|d| (d.pid, d.action))
        .collect()
}

/// Starts an agent on the built-in policy for a fresh cgroup, runs
/// `scenario` in it, and reports.
async fn run(tag: &str, floor: u64, scenario: impl FnOnce(&MemCgroup, u64) -> u64) -> Run {
    let m = read_meminfo().unwrap();
    let room = (m.available + m.swap_free).saturating_sub(floor);
    let cg = MemCgroup::new(tag, room + floor / 2);
    let agent = Agent::start(
        tag,
        &format!("[host]\ncandidates = \"^{}$\"\n", cg.path),
        &[],
    );
    let min_available = tokio::task::block_in_place(|| scenario(&cg, room));
    tokio::time::sleep(Duration::from_millis(300)).await;
    Run {
        min_available,
        stops: stops(&agent).await,
    }
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / GIB)
}

fn mb(b: u64) -> String {
    format!("{}MiB", b / MIB)
}

pub async fn defaults_bench() {
    let m = read_meminfo().unwrap();
    let floor = DEFAULT_MIN_AVAILABLE.of(m.total);
    println!("## The shipped defaults on real memory (issue 16)\n");
    println!(
        "Built-in policy, nothing written but `[host] candidates` = the benchmark's cgroup. RAM {}, floor {} (10% of RAM, at most 4 GiB), available at start {}.\n",
        gib(m.total),
        gib(floor),
        gib(m.available + m.swap_free)
    );
    println!("| scenario | expected | least available seen | stops | steady one | verdict |");
    println!("| --- | --- | ---: | --- | --- | --- |");

    // A steady process holding 60% of the room, and a leaker at 500 MB/s.
    let mut steady_pid = 0;
    let mut leaker_pid = 0;
    let r = run("def-leak", floor, |cg, room| {
        let steady = Hog::spawn(
            cg,
            &[
                "--target",
                &mb(room * 6 / 10),
                "--rate",
                "max",
                "--hold",
                "600",
            ],
        );
        steady.expect_line("done", Duration::from_secs(60));
        steady_pid = steady.pid;
        let leaker = Hog::spawn(
            cg,
            &["--target", &mb(room), "--rate", "500MB/s", "--hold", "600"],
        );
        leaker_pid = leaker.pid;
        let min = watch(Duration::from_secs(60), || {
            leaker.frozen() || leaker.state().is_none()
        });
        // Watch a while longer: a frozen leaker must hold the line.
        let after = watch(Duration::from_secs(3), || false);
        drop(leaker);
        drop(steady);
        min.min(after)
    })
    .await;
    let leaker_stopped = r.stops.iter().any(|(p, _)| *p == leaker_pid);
    let steady_touched = r.stops.iter().any(|(p, _)| *p == steady_pid);
    let ok = leaker_stopped && !steady_touched && r.min_available > floor;
    println!(
        "| leaker at 500 MB/s beside a steady process | the leaker stopped above the floor | {} | {:?} | {} | {} |",
        gib(r.min_available),
        r.stops,
        if steady_touched {
            "stopped"
        } else {
            "untouched"
        },
        if ok { "ok" } else { "WRONG" }
    );

    // A burst that levels off 1.5 GiB above the floor and holds.
    let r = run("def-burst", floor, |cg, room| {
        let burst = Hog::spawn(
            cg,
            &[
                "--target",
                &mb(room.saturating_sub(1536 * MIB)),
                "--rate",
                "500MB/s",
                "--hold",
                "10",
            ],
        );
        watch(Duration::from_secs(60), || burst.state().is_none())
    })
    .await;
    println!(
        "| burst to 1.5 GiB above the floor, held 10 s | no stop | {} | {:?} | - | {} |",
        gib(r.min_available),
        r.stops,
        if r.stops.is_empty() { "ok" } else { "WRONG" }
    );

    // A sawtooth: up to half the room, freed, and again, five times.
    let r = run("def-saw", floor, |cg, room| {
        let saw = Hog::spawn(
            cg,
            &[
                "--target",
                &mb(room / 2),
                "--rate",
                "1GB/s",
                "--hold",
                "1",
                "--cycle",
            ],
        );
        let min = watch(Duration::from_secs(25), || false);
        drop(saw);
        min
    })
    .await;
    println!(
        "| sawtooth to half the room, freed every few seconds | no stop | {} | {:?} | - | {} |",
        gib(r.min_available),
        r.stops,
        if r.stops.is_empty() { "ok" } else { "WRONG" }
    );

    // A mapping as large as the room and more, never touched.
    let r = run("def-map", floor, |cg, room| {
        let map = Hog::spawn(
            cg,
            &["--target", &mb(room * 2), "--untouched", "--hold", "10"],
        );
        watch(Duration::from_secs(15), || map.state().is_none())
    })
    .await;
    println!(
        "| a mapping twice the room, never touched | no stop | {} | {:?} | - | {} |\n",
        gib(r.min_available),
        r.stops,
        if r.stops.is_empty() { "ok" } else { "WRONG" }
    );
}
