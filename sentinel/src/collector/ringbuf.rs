//! Draining the eBPF ring buffer: wait until readable (or the periodic
//! drain is due), drain everything, clear readiness, hand the batch on.
//!
//! The kernel wakes the agent at once only for events that need it now
//! (governed processes, tripwires, OOM kills, execs and cgroup moves). The
//! rest are written without a wakeup, because a wakeup is a self-IPI that
//! cost a page-fault storm about 5% of its throughput, and are collected
//! here every `DRAIN_EVERY`. While the per-fault probe rests the kernel
//! wakes the agent for forks and exits too, and `DRAIN_AT_REST` only
//! collects the odd lazy record (a large mapping).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use sentinel_common::Event;
use tokio::{io::unix::AsyncFd, sync::mpsc};

/// Latency bound for events written without a wakeup.
pub const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// The same while the per-fault probe rests.
pub const DRAIN_AT_REST: Duration = Duration::from_secs(1);

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

pub async fn forward(
    ring: RingBuf<MapData>,
    precise: Arc<AtomicBool>,
    tx: mpsc::Sender<Vec<Event>>,
) -> std::io::Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
    // until it is dropped, which happens only with the AsyncFd.
    let mut fd =
        unsafe { AsyncFd::register(ring) }.map_err(|e| std::io::Error::other(e.to_string()))?;
    loop {
        let every = if precise.load(Ordering::Relaxed) {
            DRAIN_EVERY
        } else {
            DRAIN_AT_REST
        };
        let batch = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                let batch = drain(guard.get_inner_mut());
                guard.clear_ready();
                batch
            }
            () = tokio::time::sleep(every) => drain(fd.get_mut()),
        };
        // Waiting here when the engine is behind lets the ring buffer fill,
        // where the kernel counts what it cannot store as lost.
        if !batch.is_empty() && tx.send(batch).await.is_err() {
            return Ok(());
        }
    }
}
