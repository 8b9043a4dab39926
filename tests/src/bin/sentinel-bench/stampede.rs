//! Stampedes, side by side in one run: eight workers of 1.5 GiB started at
//! once in a cgroup capped at 6 GiB, with no guard, under a cgroup rule
//! that freezes, under one that kills, and through `sentinel exec
//! --reserve` with the sizes known in advance; then the variants the
//! stampede issue asks for (unequal sizes, a runaway among them, the
//! host's limit, three big loads of which two fit).

use std::time::Duration;

use sentinel_tests::{
    Agent, MemCgroup,
    stampede::{self, Outcome, Worker},
};

const GIB: u64 = 1 << 30;
const DEADLINE: Duration = Duration::from_secs(180);

fn eight() -> Vec<Worker> {
    vec![Worker::new("1536MiB", "300MB/s", 3.0); 8]
}

fn row(guard: &str, o: &Outcome, of: usize) {
    println!(
        "| {guard} | {} of {of} | {} | {} | {:.2} GiB | {:.1} s |",
        o.finished,
        o.killed,
        o.oom_kills,
        o.peak as f64 / GIB as f64,
        o.wall.as_secs_f64()
    );
}

/// The workers in a fresh cgroup of `cap` (`CGROUP` in `policy` is its
/// path), with an agent on `policy` (none when `None`).
fn run(
    tag: &str,
    cap: u64,
    policy: Option<&str>,
    workers: impl FnOnce(&MemCgroup, Option<&Agent>) -> Vec<Worker>,
) -> (Outcome, Option<Agent>) {
    let cg = MemCgroup::new(tag, cap);
    let agent = policy.map(|p| {
        let p = p.replace("CGROUP", &cg.path);
        Agent::start(tag, &p, &[])
    });
    let w = workers(&cg, agent.as_ref());
    let out = tokio::task::block_in_place(|| stampede::run(&cg, &w, DEADLINE));
    (out, agent)
}

pub async fn stampede_bench() {
    println!("## Stampedes\n");
    println!(
        "Eight workers, each growing to 1.5 GiB at 300 MB/s, holding 3 s and exiting, all started at once in a cgroup capped at 6 GiB (cgroup v1 here).\n"
    );
    println!("| guard | finished | killed | kernel OOM kills | cgroup peak | wall time |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let freeze = "[[cgroup]]\nname = \"jobs\"\nmatch = \"^CGROUP$\"\naction = \"freeze\"\n";
    let kill = &freeze.replace("\"freeze\"", "\"kill\"");
    let (none, _) = run("st-none", 6 * GIB, None, |_, _| eight());
    row("none (kernel OOM killer)", &none, 8);
    let (f, _) = run("st-freeze", 6 * GIB, Some(freeze), |_, _| eight());
    row("`[[cgroup]]` rule, action freeze", &f, 8);
    let (k, _) = run("st-kill", 6 * GIB, Some(kill), |_, _| eight());
    row("`[[cgroup]]` rule, action kill", &k, 8);
    let (r, _) = run("st-reserve", 6 * GIB, Some(""), |_, a| {
        let socket = &a.expect("an agent").socket;
        eight()
            .into_iter()
            .map(|w| w.reserved(socket, "1600M"))
            .collect()
    });
    row("`sentinel exec --reserve 1600M`, no rule", &r, 8);
    let ratio = |o: &Outcome| o.wall.as_secs_f64() / r.wall.as_secs_f64();
    println!(
        "\nwall time against `exec --reserve`: freeze rule {:.2}x, kill rule {:.2}x (target: at most 1.5x, with 8 of 8 finished, 0 killed, 0 kernel OOM kills)\n",
        ratio(&f),
        ratio(&k)
    );
    variants(freeze, kill).await;
}

async fn variants(freeze: &str, kill: &str) {
    println!("Variants:\n");
    println!(
        "| variant | guard | finished | killed | kernel OOM kills | cgroup peak | wall time |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    let unequal = || {
        ["512MiB", "1GiB", "1536MiB", "2GiB"]
            .iter()
            .flat_map(|s| {
                [
                    Worker::new(s, "300MB/s", 3.0),
                    Worker::new(s, "300MB/s", 3.0),
                ]
            })
            .collect::<Vec<_>>()
    };
    for (guard, policy) in [("freeze rule", freeze), ("kill rule", kill)] {
        let (o, _) = run("st-unequal", 6 * GIB, Some(policy), |_, _| unequal());
        print!("| unequal sizes (2 each of 0.5, 1, 1.5, 2 GiB) ");
        row(guard, &o, 8);
    }
    let (o, agent) = run("st-runaway", 6 * GIB, Some(kill), |_, _| {
        let mut w = vec![Worker::new("1536MiB", "300MB/s", 3.0); 7];
        w.push(Worker::new("8GiB", "300MB/s", 60.0));
        w
    });
    print!("| one runaway among them (grows to 8 GiB) ");
    row("kill rule", &o, 8);
    let runaway = *o.pids.last().unwrap();
    let stopped = agent
        .as_ref()
        .unwrap()
        .decisions_of("preempt", "")
        .await
        .iter()
        .filter(|d| d.action != "alert")
        .map(|d| d.pid)
        .collect::<std::collections::BTreeSet<_>>();
    println!(
        "\nrunaway: the ladder stopped pids {stopped:?}; the runaway was pid {runaway}; the other seven: {} finished\n",
        o.finished
    );
    host_scope().await;
    three_loads(freeze).await;
}

/// As the host-scope end-to-end tests do it: the workers in a capped
/// cgroup, `candidates` only that cgroup, the host's floor such that the
/// stampede reaches the host's preempt line 3 GiB above what is in use.
async fn host_scope() {
    let m = sentinel::collector::host::read_meminfo().unwrap();
    let line = m.used() + 3 * GIB;
    let limit = (line as f64 / 0.85) as u64;
    let policy = format!(
        "[host]\naction = \"kill\"\nlevels = {{ warn = 0.70, preempt = 0.85, kill = 0.95, clear = 0.10 }}\nmin_available = \"{}\"\ncandidates = \"^CGROUP$\"\n",
        m.capacity() - limit
    );
    let (o, agent) = run("st-host", 12 * GIB, Some(&policy), |_, _| {
        vec![Worker::new("1GiB", "300MB/s", 3.0); 8]
    });
    if o.killed > 0 {
        // Why, for whoever reads a bad run.
        for d in agent.unwrap().decisions_of("", "").await {
            eprintln!(
                "host scope: #{} {} pid {} {}: {}",
                d.seq, d.kind, d.pid, d.action, d.reason
            );
        }
    }
    println!(
        "host scope: 8 workers of 1 GiB, the host's preempt line 3 GiB above its use, action kill: {} of 8 finished, {} killed, {} kernel OOM kills, {:.1} s\n",
        o.finished,
        o.killed,
        o.oom_kills,
        o.wall.as_secs_f64()
    );
}

/// Seed 003: three big loads started two seconds apart, of which only two
/// fit: 3 GiB each at 1 GB/s, serving 8 s, in 8 GiB (its preempt line,
/// 6.8 GiB, holds two).
async fn three_loads(freeze: &str) {
    let (o, agent) = run("st-three", 8 * GIB, Some(freeze), |_, _| {
        (0..3)
            .map(|i| Worker::new("3GiB", "1GB/s", 8.0).after(2.0 * f64::from(i)))
            .collect()
    });
    let agent = agent.unwrap();
    let queued = agent.decisions_of("queue", "").await;
    let resumed = agent.decisions_of("resume", "").await;
    let waited: Vec<u32> = queued.iter().map(|d| d.pid).collect();
    let wait = resumed
        .iter()
        .find(|r| r.pid == o.pids[2])
        .zip(queued.iter().find(|q| q.pid == o.pids[2]))
        .map(|(r, q)| (r.time_unix_ms - q.time_unix_ms) as f64 / 1e3);
    println!(
        "three loads 2 s apart, two fit: {} of 3 finished, {} killed, {} kernel OOM kills, {:.1} s; queued: {waited:?} (the third is pid {}); it waited {} s\n",
        o.finished,
        o.killed,
        o.oom_kills,
        o.wall.as_secs_f64(),
        o.pids[2],
        wait.map_or("-".to_string(), |w| format!("{w:.1}"))
    );
}
