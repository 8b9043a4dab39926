//! The client side of the binary: `status`, `top`, `decisions`, and the
//! offline `replay`.

pub mod decisions;
pub mod exec;
mod output;
pub mod policy;
pub mod process_ops;
pub mod replay;
mod socket;
pub mod status;
pub mod top;

pub use self::socket::SocketArg;
use crate::api::client;

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
