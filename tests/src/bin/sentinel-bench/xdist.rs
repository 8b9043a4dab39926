//! The seed's pytest-xdist suite three ways, one run each: guarded by the
//! Python client's plugin (reservations through the agent), by a file lock
//! in conftest.py (the seed team's fix: one test at a time), and by
//! nothing.

use sentinel_tests::{
    Agent,
    pysuite::{self, Guard},
};

pub async fn xdist_bench() {
    println!("## A pytest-xdist suite of the seed's shape (issue 18)\n");
    println!(
        "Eight tests, each building a 1.5 GiB object and holding it 2 s, under `pytest -n 8` in a cgroup capped at 6 GiB.\n"
    );
    println!("| guard | tests finished | kernel OOM kills | most at once | wall time |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let agent = Agent::start("bench-xdist", "", &[]);
    for (name, guard, socket) in [
        (
            "sentinel_reserve marker (plugin)",
            Guard::Plugin,
            Some(agent.socket.clone()),
        ),
        ("file lock in conftest.py", Guard::FileLock, None),
        ("none", Guard::None, None),
    ] {
        let r = tokio::task::block_in_place(|| pysuite::run(guard, socket.as_deref()));
        println!(
            "| {name} | {} of 8 | {} | {} | {:.1} s |",
            r.passed,
            r.oom_kills,
            r.most_at_once,
            r.wall.as_secs_f64()
        );
    }
    println!();
}
