//! The gRPC API (`sentinel.v1`, from the `sentinel-api` crate) served over
//! the agent: a thin layer that checks requests and callers, calls the
//! agent's named operations (`service`), and maps domain errors to precise
//! status codes.

pub mod access;
pub mod admission;
mod convert;
pub mod gate;
mod listen;
mod service;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use sentinel_api::pb;
use sentinel_core::config::ConnectionLimits;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;

use crate::{relay::TcpConnections, service::Sentinel};

/// Upper bound on list sizes so one request cannot make the agent build an
/// arbitrarily large reply.
pub const MAX_LIST: u32 = 10_000;
/// Live WatchDecisions streams at most, root's aside; more get
/// RESOURCE_EXHAUSTED.
pub const MAX_WATCHERS: usize = 64;
/// Live WatchDecisions streams of one peer at most.
pub const MAX_WATCHERS_PER_PEER: usize = 8;
/// Calls in progress on one connection at most (HTTP/2 streams).
pub const MAX_CALLS_PER_CONNECTION: u32 = 32;
/// A resuming watcher may be this many decisions behind at most; further
/// back, ListDecisions pages through the journal.
pub const MAX_BACKLOG: u64 = 100_000;
/// Largest request accepted (a policy is at most 1 MiB).
pub const MAX_REQUEST_BYTES: usize = 2 << 20;
/// Longest text field a request may carry (a filter, a name, a holder);
/// the policy's text has its own bound.
pub const MAX_TEXT: usize = 4096;

/// INVALID_ARGUMENT naming the first field longer than [`MAX_TEXT`].
fn bounded_text(fields: &[(&str, &str)]) -> Result<(), tonic::Status> {
    match fields.iter().find(|(_, v)| v.len() > MAX_TEXT) {
        Some((name, v)) => Err(tonic::Status::invalid_argument(format!(
            "{name}: {} bytes, at most {MAX_TEXT}",
            v.len()
        ))),
        None => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The TCP listener with what its mutual TLS needs, read and checked
/// before anything is served so a bad file stops the agent at start.
pub struct TlsListener {
    pub incoming: TcpConnections,
    pub tls: tonic::transport::ServerTlsConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("api.{key} {path}: cannot read: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("api.tcp {addr}: cannot listen: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("api: TLS setup from {cert}, {key} and {ca}: {source}")]
    Tls {
        cert: String,
        key: String,
        ca: String,
        source: tonic::transport::Error,
    },
}

impl TlsListener {
    /// Reads the TLS files, and binds `tcp.listen` unless `relayed` brings
    /// the connections.
    pub fn bind(
        tcp: &sentinel_core::config::TcpApi,
        relayed: Option<TcpConnections>,
    ) -> Result<Self, TlsSetupError> {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let read = |key: &'static str, path: &std::path::Path| {
            std::fs::read(path).map_err(|source| TlsSetupError::Read {
                key,
                path: path.display().to_string(),
                source,
            })
        };
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                read("tls_cert", &tcp.cert)?,
                read("tls_key", &tcp.key)?,
            ))
            .client_ca_root(Certificate::from_pem(read(
                "tls_client_ca",
                &tcp.client_ca,
            )?))
            .client_auth_optional(false)
            .timeout(std::time::Duration::from_secs(10));
        // Build it once here: a key that does not match its certificate, or
        // a file that is not PEM, is an error at start, not at first client.
        Server::builder()
            .tls_config(tls.clone())
            .map_err(|source| TlsSetupError::Tls {
                cert: tcp.cert.display().to_string(),
                key: tcp.key.display().to_string(),
                ca: tcp.client_ca.display().to_string(),
                source,
            })?;
        let incoming = match relayed {
            Some(r) => r,
            None => Box::pin(
                tonic::transport::server::TcpIncoming::bind(tcp.listen)
                    .map_err(|source| TlsSetupError::Bind {
                        addr: tcp.listen,
                        source,
                    })?
                    .with_nodelay(Some(true)),
            ),
        };
        Ok(Self { incoming, tls })
    }
}

/// Serves `sentinel.v1`, the standard `grpc.health.v1` (SERVING while the
/// agent runs) and server reflection on the Unix socket, and on TCP with
/// mutual TLS when configured, until `shutdown`. Each listener counts its
/// connections against `limits` on its own (see `gate`): TCP peers are
/// counted before their TLS handshake, so remote addresses without a
/// certificate must not take the places of local users.
pub async fn serve(
    sentinel: Arc<Sentinel>,
    access: access::AccessPolicy,
    limits: ConnectionLimits,
    listener: UnixListener,
    tcp: Option<TlsListener>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let gate = gate::Gate::new(gate::Caps::connections(&limits));
    let idle = limits.idle_timeout;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::sentinel_server::SentinelServer<service::Service>>()
        .await;
    health
        .set_serving::<pb::admission_server::AdmissionServer<admission::Service>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sentinel_api::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // The older protocol too: grpcurl builds before 1.8.8 (and other tools
    // of their age) ask for v1alpha and got UNIMPLEMENTED.
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sentinel_api::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    // One service for both listeners, so the stream limit counts them all.
    let access = Arc::new(access);
    let admission = pb::admission_server::AdmissionServer::new(admission::Service {
        sentinel: sentinel.clone(),
        access: access.clone(),
    })
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let sentinel = pb::sentinel_server::SentinelServer::new(service::Service {
        sentinel,
        access,
        watchers: gate::Gate::new(gate::Caps {
            what: "decision streams",
            total: MAX_WATCHERS,
            total_is: "the agent's MAX_WATCHERS",
            per_peer: MAX_WATCHERS_PER_PEER,
            per_peer_is: "the agent's MAX_WATCHERS_PER_PEER",
        }),
    })
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let builder = || {
        Server::builder()
            .max_concurrent_streams(Some(MAX_CALLS_PER_CONNECTION))
            .layer(listen::CallLayer)
    };
    let incoming = listen::gated(
        UnixListenerStream::new(listener),
        listen::uid_of,
        gate,
        idle,
        "unix",
    );
    let unix = builder()
        .add_service(sentinel.clone())
        .add_service(admission.clone())
        .add_service(health_service.clone())
        .add_service(reflection.clone())
        .add_service(reflection_alpha.clone())
        .serve_with_incoming_shutdown(incoming, wait(stopped.clone()));
    let tcp = async {
        let Some(t) = tcp else {
            return Ok(());
        };
        let tcp_gate = gate::Gate::new(gate::Caps::connections(&limits));
        let incoming = listen::gated(t.incoming, listen::addr_of, tcp_gate, idle, "tcp");
        builder()
            .tls_config(t.tls)?
            .add_service(sentinel)
            .add_service(admission)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .serve_with_incoming_shutdown(incoming, wait(stopped))
            .await
    };
    let signal = async {
        shutdown.await;
        let _ = stop.send(true);
    };
    let (u, t, ()) = tokio::join!(unix, tcp, signal);
    u?;
    t?;
    Ok(())
}
