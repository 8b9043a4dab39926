//! Any bytes as ring-buffer records, decoded and handled by the engine on
//! the agent's real host port (dry-run: nothing is signalled): never a
//! panic.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sentinel::{host::LiveHost, journal::Journal};
use sentinel_common::Event;
use sentinel_core::{
    config::Config,
    engine::{Engine, Mode, Options},
};

fuzz_target!(|data: &[u8]| {
    let events: Vec<Event> = data
        .chunks(Event::SIZE)
        .filter_map(Event::from_bytes)
        .collect();
    let mut cfg = Config::default();
    cfg.agent.dry_run = true;
    let opts = Options {
        mode: Mode::Ebpf,
        self_pid: std::process::id(),
        page_size: 4096,
    };
    let host = LiveHost::new(Arc::new(Journal::new(100)), None);
    let mut engine = Engine::new(cfg, opts, host);
    engine.handle_batch(&events);
});
