//! Any bytes as ring-buffer records, decoded and handled by the engine
//! (dry-run: nothing is signalled): never a panic.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sentinel::{
    actuator::DryRun,
    agent::{Engine, Mode},
    config::Config,
    journal::Journal,
};
use sentinel_common::Event;

fuzz_target!(|data: &[u8]| {
    let events: Vec<Event> = data
        .chunks(Event::SIZE)
        .filter_map(Event::from_bytes)
        .collect();
    let mut cfg = Config::default();
    cfg.agent.dry_run = true;
    let mut engine = Engine::new(
        cfg,
        Mode::Ebpf,
        None,
        Box::new(DryRun),
        Arc::new(Journal::new(100)),
    );
    engine.handle_batch(&events);
});
