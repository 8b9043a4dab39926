//! Carrying out decisions on processes. Everything goes through a pidfd;
//! nothing here signals a bare pid.

mod pidfd;

pub use pidfd::Pidfd;

use crate::policy::Action;

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("signalling pid {pid} failed: {source}")]
    Signal { pid: u32, source: std::io::Error },
}

/// What happened when a decision was carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    DryRun,
    /// Alert-only rules.
    Recorded,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::DryRun => "dry-run",
            Self::Recorded => "recorded",
        }
    }
}

pub trait Actuator: Send + Sync {
    fn act(&self, target: &Pidfd, action: Action) -> Result<Outcome, ActError>;
    fn resume(&self, target: &Pidfd) -> Result<Outcome, ActError>;
}

/// Sends real signals.
pub struct Signaller;

impl Actuator for Signaller {
    fn act(&self, target: &Pidfd, action: Action) -> Result<Outcome, ActError> {
        let sig = match action {
            Action::Alert => return Ok(Outcome::Recorded),
            Action::Freeze => libc::SIGSTOP,
            Action::Terminate => libc::SIGTERM,
            Action::Kill => libc::SIGKILL,
        };
        let send = |sig| {
            target.send_signal(sig).map_err(|source| ActError::Signal {
                pid: target.pid,
                source,
            })
        };
        send(sig)?;
        if action == Action::Terminate {
            // A stopped process handles SIGTERM only once it runs again.
            send(libc::SIGCONT)?;
        }
        if action == Action::Kill {
            // Frees the address space now; failure only means the kernel
            // reaps it a little later on its own.
            if let Err(e) = target.mrelease() {
                tracing::debug!(pid = target.pid, "process_mrelease: {e}");
            }
        }
        Ok(Outcome::Done)
    }

    fn resume(&self, target: &Pidfd) -> Result<Outcome, ActError> {
        target
            .send_signal(libc::SIGCONT)
            .map(|_| Outcome::Done)
            .map_err(|source| ActError::Signal {
                pid: target.pid,
                source,
            })
    }
}

/// Runs the whole engine but signals nothing.
pub struct DryRun;

impl Actuator for DryRun {
    fn act(&self, _: &Pidfd, action: Action) -> Result<Outcome, ActError> {
        Ok(if action == Action::Alert {
            Outcome::Recorded
        } else {
            Outcome::DryRun
        })
    }

    fn resume(&self, _: &Pidfd) -> Result<Outcome, ActError> {
        Ok(Outcome::DryRun)
    }
}
