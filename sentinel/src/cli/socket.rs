//! `--socket` and the client TLS files: how every client subcommand reaches
//! the agent. Global, so they go before the subcommand or after it
//! (`sentinel --socket /run/x.sock status`), as with kubectl or docker.

use std::path::PathBuf;

use sentinel_api::client;
use sentinel_core::config;

#[derive(clap::Args, Clone)]
pub struct SocketArg {
    /// The agent's API socket, or https://HOST:PORT for its TCP listener
    /// (mutual TLS: give --tls-cert, --tls-key and --tls-ca).
    /// For `run`: the socket to listen on, instead of the config's
    /// agent.socket. [default for clients: /run/sentinel/sentinel.sock]
    #[arg(long, env = "SENTINEL_SOCKET", global = true)]
    socket: Option<String>,
    /// Client certificate (PEM) for https:// addresses.
    #[arg(long, env = "SENTINEL_TLS_CERT", global = true, requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, env = "SENTINEL_TLS_KEY", global = true, requires_all = ["tls_cert", "tls_ca"])]
    tls_key: Option<PathBuf>,
    /// CA certificate (PEM) that signed the agent's certificate.
    #[arg(long, env = "SENTINEL_TLS_CA", global = true, requires_all = ["tls_cert", "tls_key"])]
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
            address: self
                .socket
                .clone()
                .unwrap_or_else(|| config::DEFAULT_SOCKET.to_string()),
            tls,
        }
    }

    /// For `run`: the socket to listen on, if given.
    pub fn listen_socket(&self) -> Option<String> {
        self.socket.clone()
    }

    /// Whether client TLS files were given (on the command line or in
    /// SENTINEL_TLS_*): `run` says it ignores them.
    pub fn has_client_tls(&self) -> bool {
        self.tls_cert.is_some()
    }
}
