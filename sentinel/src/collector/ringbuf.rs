//! Draining the eBPF ring buffer: wait until readable, drain everything,
//! clear readiness, hand the batch on.

use aya::maps::{MapData, RingBuf};
use sentinel_common::Event;
use tokio::{io::unix::AsyncFd, sync::mpsc};

pub async fn forward(ring: RingBuf<MapData>, tx: mpsc::Sender<Vec<Event>>) -> std::io::Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
    // until it is dropped, which happens only with the AsyncFd.
    let mut fd =
        unsafe { AsyncFd::register(ring) }.map_err(|e| std::io::Error::other(e.to_string()))?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let mut batch = Vec::new();
        {
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                match Event::from_bytes(&item) {
                    Some(e) => batch.push(e),
                    None => tracing::warn!(len = item.len(), "short ring-buffer record dropped"),
                }
            }
        }
        guard.clear_ready();
        // Waiting here when the engine is behind lets the ring buffer fill,
        // where the kernel counts what it cannot store as lost.
        if !batch.is_empty() && tx.send(batch).await.is_err() {
            return Ok(());
        }
    }
}
