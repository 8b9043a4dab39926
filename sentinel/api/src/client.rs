//! Connecting to a running agent: over its Unix socket, or over TCP with
//! mutual TLS (`https://HOST:PORT` and a client certificate).

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use crate::pb::sentinel_client::SentinelClient;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no Sentinel agent is listening on {socket} ({reason}); {}", start_hint(*.packaged))]
    NotRunning {
        socket: String,
        reason: String,
        /// Whether the package's systemd unit is installed here.
        packaged: bool,
    },
    #[error("permission denied on {0}; run as root or as a member of the socket's group")]
    PermissionDenied(String),
    #[error("{address}: {reason}")]
    Tls { address: String, reason: String },
}

/// Where a package puts the agent's unit (Debian's, and systemd's other
/// two places).
const UNIT_PATHS: [&str; 3] = [
    "/lib/systemd/system/sentinel.service",
    "/usr/lib/systemd/system/sentinel.service",
    "/etc/systemd/system/sentinel.service",
];

fn unit_installed() -> bool {
    UNIT_PATHS.iter().any(|p| std::path::Path::new(p).exists())
}

/// How to get an agent: through its unit where the package is installed,
/// by hand otherwise.
pub fn start_hint(packaged: bool) -> &'static str {
    if packaged {
        "start it with `sudo systemctl start sentinel` (`systemctl status sentinel` and `journalctl -u sentinel` say why it stopped), or point --socket at another agent"
    } else {
        "start one with `sudo sentinel run` (or `cargo xtask run` in a source tree), or point --socket at it"
    }
}

/// Client certificate, key and the CA that signed the agent's certificate.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Where the agent is: a socket path, or `https://HOST:PORT` with the files
/// mutual TLS needs.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: String,
    pub tls: Option<TlsFiles>,
}

impl Target {
    pub fn unix(path: &str) -> Self {
        Self {
            address: path.to_string(),
            tls: None,
        }
    }
}

pub async fn connect(socket: &str) -> Result<SentinelClient<Channel>, ConnectError> {
    Ok(SentinelClient::new(channel(socket).await?))
}

pub async fn connect_to(target: &Target) -> Result<SentinelClient<Channel>, ConnectError> {
    Ok(SentinelClient::new(channel_to(target).await?))
}

/// A channel to the agent at `target`, for any of its services.
pub async fn channel_to(target: &Target) -> Result<Channel, ConnectError> {
    if !target.address.contains("://") {
        return channel(&target.address).await;
    }
    let tls_err = |reason: String| ConnectError::Tls {
        address: target.address.clone(),
        reason,
    };
    if !target.address.starts_with("https://") {
        return Err(tls_err(
            "the agent's TCP listener speaks only mutual TLS: use https://HOST:PORT".into(),
        ));
    }
    let Some(files) = &target.tls else {
        return Err(tls_err(
            "a TCP connection needs --tls-cert, --tls-key and --tls-ca".into(),
        ));
    };
    let read = |flag: &str, p: &PathBuf| {
        std::fs::read(p).map_err(|e| tls_err(format!("{flag} {}: {e}", p.display())))
    };
    let tls = ClientTlsConfig::new()
        .identity(Identity::from_pem(
            read("--tls-cert", &files.cert)?,
            read("--tls-key", &files.key)?,
        ))
        .ca_certificate(Certificate::from_pem(read("--tls-ca", &files.ca)?));
    let channel = Endpoint::from_shared(target.address.clone())
        .map_err(|e| tls_err(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| tls_err(e.to_string()))?
        .connect()
        .await
        .map_err(|e| tls_err(error_chain(&e)))?;
    let mut client = SentinelClient::new(channel.clone());
    // Under TLS 1.3 the server judges the client certificate after the
    // client thinks the handshake is done, so a refusal shows only as the
    // first call failing; make that call here, where it can be explained.
    if let Err(s) = client.get_status(crate::pb::GetStatusRequest {}).await {
        return Err(tls_err(match s.code() {
            tonic::Code::Cancelled | tonic::Code::Unavailable | tonic::Code::Unknown => format!(
                "the agent closed the connection: it did not accept the client certificate {} (it must be signed by the CA in the agent's api.tls_client_ca) ({})",
                files.cert.display(),
                s.message()
            ),
            _ => s.message().to_string(),
        }));
    }
    Ok(channel)
}

/// The whole cause chain: a refused handshake is only named at the bottom.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
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
                packaged: unit_installed(),
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
            packaged: unit_installed(),
        })?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_names_the_unit_where_the_package_is_installed() {
        let said = |packaged| {
            ConnectError::NotRunning {
                socket: "/run/sentinel/sentinel.sock".into(),
                reason: "No such file or directory".into(),
                packaged,
            }
            .to_string()
        };
        let packaged = said(true);
        assert!(packaged.contains("systemctl start sentinel"), "{packaged}");
        assert!(!packaged.contains("cargo xtask"), "{packaged}");
        let by_hand = said(false);
        assert!(by_hand.contains("sudo sentinel run"), "{by_hand}");
        assert!(!by_hand.contains("systemctl"), "{by_hand}");
        assert!(by_hand.starts_with("no Sentinel agent is listening on /run/sentinel/sentinel.sock (No such file or directory); "));
    }
}
