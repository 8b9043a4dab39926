//! `--socket` and the client TLS files: how every client subcommand reaches
//! the agent.

use std::path::PathBuf;

use sentinel_api::client;
use sentinel_core::config;

#[derive(clap::Args, Clone)]
pub struct SocketArg {
    /// The agent's API socket, or https://HOST:PORT for its TCP listener
    /// (mutual TLS: give --tls-cert, --tls-key and --tls-ca).
    #[arg(long, env = "SENTINEL_SOCKET", default_value = config::DEFAULT_SOCKET)]
    socket: String,
    /// Client certificate (PEM) for https:// addresses.
    #[arg(long, env = "SENTINEL_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, env = "SENTINEL_TLS_KEY", requires_all = ["tls_cert", "tls_ca"])]
    tls_key: Option<PathBuf>,
    /// CA certificate (PEM) that signed the agent's certificate.
    #[arg(long, env = "SENTINEL_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
}

impl SocketArg {
    pub fn target(&self) -> client::Target {
        let tls = match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(client::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }),
            _ => None,
        };
        client::Target {
            address: self.socket.clone(),
            tls,
        }
    }
}
