//! Carrying out decisions on processes. Everything goes through a pidfd;
//! nothing here signals a bare pid. Whether to signal at all (dry-run, a
//! rule that only alerts) is the engine's decision, not this module's.

mod pidfd;

pub use pidfd::Pidfd;
use sentinel_core::engine::Signal;

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("signalling pid {pid} failed: {source}")]
    Signal { pid: u32, source: std::io::Error },
}

/// Sends `signal` through the process's pidfd.
pub fn send(target: &Pidfd, signal: Signal) -> Result<(), ActError> {
    let send = |sig| {
        target.send_signal(sig).map_err(|source| ActError::Signal {
            pid: target.pid,
            source,
        })
    };
    match signal {
        Signal::Freeze => send(libc::SIGSTOP),
        Signal::Resume => send(libc::SIGCONT),
        Signal::Terminate => {
            send(libc::SIGTERM)?;
            // A stopped process handles SIGTERM only once it runs again.
            send(libc::SIGCONT)
        }
        Signal::Kill => {
            send(libc::SIGKILL)?;
            // Frees the address space now; failure only means the kernel
            // reaps it a little later on its own.
            if let Err(e) = target.mrelease() {
                tracing::debug!(pid = target.pid, "process_mrelease: {e}");
            }
            Ok(())
        }
    }
}
