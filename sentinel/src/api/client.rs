//! Connecting to a running agent over its Unix socket.

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use super::pb::sentinel_client::SentinelClient;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "no Sentinel agent is listening on {socket} ({reason}); start one with `sudo sentinel run` (or `cargo xtask run`), or point --socket at it"
    )]
    NotRunning { socket: String, reason: String },
    #[error("permission denied on {0}; run as root or as a member of the socket's group")]
    PermissionDenied(String),
}

pub async fn connect(socket: &str) -> Result<SentinelClient<Channel>, ConnectError> {
    Ok(SentinelClient::new(channel(socket).await?))
}

/// A channel to the agent's socket, for any of the services it serves
/// (`sentinel.v1`, `grpc.health.v1`, server reflection).
pub async fn channel(socket: &str) -> Result<Channel, ConnectError> {
    // Fail with a plain message before tonic wraps the error.
    if let Err(e) = tokio::net::UnixStream::connect(socket).await {
        return Err(match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                ConnectError::PermissionDenied(socket.to_string())
            }
            _ => ConnectError::NotRunning {
                socket: socket.to_string(),
                reason: e.to_string(),
            },
        });
    }
    let path = socket.to_string();
    // The URI is required by the API but unused: the connector dials the socket.
    let channel = Endpoint::from_static("http://sentinel.local")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .map_err(|e| ConnectError::NotRunning {
            socket: socket.to_string(),
            reason: e.to_string(),
        })?;
    Ok(channel)
}
