//! Draining the eBPF ring buffer: wait until readable (or the periodic
//! drain is due), drain everything, clear readiness, hand the batch on.
//!
//! The kernel wakes the agent at once only for events that need it now
//! (governed processes, tripwires, OOM kills). The rest are written without
//! a wakeup, because a wakeup is a self-IPI that cost a page-fault storm
//! about 5% of its throughput, and are collected here every `DRAIN_EVERY`.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use sentinel_common::Event;
use tokio::{io::unix::AsyncFd, sync::mpsc};

/// Latency bound for events written without a wakeup.
pub const DRAIN_EVERY: Duration = Duration::from_millis(10);

fn drain(ring: &mut RingBuf<MapData>) -> Vec<Event> {
    let mut batch = Vec::new();
    while let Some(item) = ring.next() {
        match Event::from_bytes(&item) {
            Some(e) => batch.push(e),
            None => tracing::warn!(len = item.len(), "short ring-buffer record dropped"),
        }
    }
    batch
}

pub async fn forward(ring: RingBuf<MapData>, tx: mpsc::Sender<Vec<Event>>) -> std::io::Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
    // until it is dropped, which happens only with the AsyncFd.
    let mut fd =
        unsafe { AsyncFd::register(ring) }.map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let batch = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                let batch = drain(guard.get_inner_mut());
                guard.clear_ready();
                batch
            }
            _ = tick.tick() => drain(fd.get_mut()),
        };
        // Waiting here when the engine is behind lets the ring buffer fill,
        // where the kernel counts what it cannot store as lost.
        if !batch.is_empty() && tx.send(batch).await.is_err() {
            return Ok(());
        }
    }
}
