//! The client side of the binary: `status`, `top`, `decisions`, and the
//! offline `replay`.

pub mod decisions;
pub mod exec;
mod output;
pub mod policy;
pub mod replay;
mod socket;
pub mod status;
pub mod top;

use self::output::print_decision;
pub use self::socket::SocketArg;
use crate::api::{client, pb};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Connect(#[from] client::ConnectError),
    /// Not a `source`: the code and message are the whole story, printed once.
    #[error("the agent refused the request: {:?}: {}", .0.code(), .0.message())]
    Rpc(tonic::Status),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `policy check`: the file's own error, naming file, line and key.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        Self::Rpc(s)
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Resume,
    Protect,
    Unprotect,
}

/// Resume, protect or unprotect a process; prints the journal entry.
pub async fn operate(socket: &client::Target, op: Op, pid: u32) -> Result<(), CliError> {
    let mut c = client::connect_to(socket).await?;
    let r = pb::ProcessRef { pid };
    let d = match op {
        Op::Resume => c.resume(r).await?,
        Op::Protect => c.protect(r).await?,
        Op::Unprotect => c.unprotect(r).await?,
    }
    .into_inner();
    print_decision(&mut std::io::stdout().lock(), &d, false)?;
    Ok(())
}
