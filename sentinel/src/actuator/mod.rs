//! Carrying out decisions on processes. Everything goes through a pidfd;
//! nothing here signals a bare pid. Whether to signal at all (dry-run, a
//! rule that only alerts) is the engine's decision, not this module's; how
//! to freeze (the kernel's freezer where there is one, else SIGSTOP) is
//! this module's.

pub mod freezer;
mod pidfd;

pub use freezer::Freezer;
pub use pidfd::{Pidfd, refused_calls};
use sentinel_core::engine::Signal;

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("signalling pid {pid} failed: {source}")]
    Signal { pid: u32, source: std::io::Error },
    #[error("freezer for pid {pid}: {source}")]
    Freezer { pid: u32, source: std::io::Error },
}

/// Whether the process that started at `start_time` is stopped: by
/// SIGSTOP (state `T`, also the kernel's tripwire) or in one of the
/// freezer's cgroups for it; either may hold it, alone or on top of the
/// other. `None` when it is gone (or the pid is another process's now).
pub fn stopped(freezer: Option<&Freezer>, pid: u32, start_time: u64) -> Option<bool> {
    let s = crate::collector::procfs::read_stat(pid).ok()?;
    if s.start_time != start_time {
        return None;
    }
    let frozen = freezer.and_then(|f| f.frozen(pid, start_time));
    Some(frozen.unwrap_or(false) || matches!(s.state, 'T' | 't'))
}

/// Carries out `signal` on the process: through its pidfd, and through
/// the freezer when one is given. A freeze falls back to SIGSTOP when the
/// freezer fails; every other step also thaws what the freezer holds,
/// since a process frozen there can neither run nor die until thawed.
pub fn send(target: &Pidfd, signal: Signal, freezer: Option<&Freezer>) -> Result<(), ActError> {
    let send = |sig| {
        target.send_signal(sig).map_err(|source| ActError::Signal {
            pid: target.pid,
            source,
        })
    };
    let thaw = || match freezer {
        Some(f) => f
            .thaw(target.pid, target.start_time)
            .map(|_| ())
            .map_err(|source| ActError::Freezer {
                pid: target.pid,
                source,
            }),
        None => Ok(()),
    };
    match signal {
        Signal::Freeze => match freezer.map(|f| f.freeze(target.pid, target.start_time)) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => {
                tracing::warn!(pid = target.pid, "freezer: {e}; freezing with SIGSTOP");
                let _ = thaw();
                send(libc::SIGSTOP)
            }
            None => send(libc::SIGSTOP),
        },
        Signal::Resume => {
            thaw()?;
            // Also after a freezer freeze: the kernel's tripwire stops with
            // SIGSTOP.
            send(libc::SIGCONT)
        }
        Signal::Terminate => {
            send(libc::SIGTERM)?;
            // A stopped process handles SIGTERM only once it runs again.
            thaw()?;
            send(libc::SIGCONT)
        }
        Signal::Kill => {
            send(libc::SIGKILL)?;
            // Frozen by the freezer, it dies only once thawed.
            let _ = thaw();
            // Frees the address space now; failure only means the kernel
            // reaps it a little later on its own.
            if let Err(e) = target.mrelease() {
                tracing::debug!(pid = target.pid, "process_mrelease: {e}");
            }
            Ok(())
        }
    }
}
