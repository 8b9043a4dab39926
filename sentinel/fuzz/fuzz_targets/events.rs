//! Any bytes as ring-buffer records, decoded and handled by the engine on
//! the fake host, between the agent's timers (tick, rescan): never a panic,
//! whatever the kernel (or a corrupt record) sends. Records name one of a
//! few processes under a rule and a shared limit, so that they reach the
//! ladder and the stampede queue rather than being dropped as unknown.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_common::Event;
use sentinel_core::{
    config::Config,
    engine::Mode,
    fake::{FakeHost, FakeProc, World},
};

const POLICY: &str = r#"
[[rule]]
name = "leaky"
limit = "256MiB"
action = "kill"
[rule.match]
comm = "^leaky$"

[[cgroup]]
name = "jobs"
match = "^/jobs$"
action = "freeze"

[host]
action = "freeze"
"#;

const PIDS: u32 = 8;

fuzz_target!(|data: &[u8]| {
    let cfg = Config::parse(POLICY, "fuzz.toml").expect("the fuzz policy parses");
    let mut host = FakeHost::default();
    host.ram = Some(8 << 30);
    host.cgroup_limits.insert("/jobs".into(), 2 << 30);
    for i in 0..PIDS {
        let comm = if i % 2 == 0 { "leaky" } else { "worker" };
        host.spawn(100 + i, FakeProc::new(1, comm, "/jobs"));
    }
    let mut w = World::with_mode(cfg, host, Mode::Ebpf);
    for batch in data.chunks(Event::SIZE * 4) {
        let events: Vec<Event> = batch
            .chunks(Event::SIZE)
            .filter_map(Event::from_bytes)
            .map(|mut e| {
                e.tgid = 100 + e.tgid % PIDS;
                e
            })
            .collect();
        w.engine.handle_batch(&events);
        w.run_for(0.25);
    }
});
