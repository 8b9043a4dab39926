//! The relay process: binds the agent's TCP listeners, connects to its
//! alert receivers, and hands the descriptors to the agent. It serves
//! only uid 0 (the agent) and its own uid, so no other local user can take
//! the agent's connections or reach its receivers through it.

use std::{
    collections::BTreeSet,
    io,
    net::SocketAddr,
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use sentinel_core::config::Config;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::mpsc,
};

use super::{API, CONNECTED, MAX_REQUEST, METRICS, REFUSED, destination, fd};

/// A connect to a receiver gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A listener that could not be bound is tried again this often.
const RETRY_BIND: Duration = Duration::from_secs(5);
/// A request line must arrive within this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Accepted connections waiting to be handed to the agent; beyond, they
/// are closed (the agent is not keeping up, or not there).
const HANDOVER: usize = 64;

/// What the relay does for a config: listen where the agent would, and
/// connect to the receivers it alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub metrics: Option<SocketAddr>,
    pub api: Option<SocketAddr>,
    pub receivers: BTreeSet<(String, u16)>,
}

impl Plan {
    pub fn of(cfg: &Config) -> Self {
        let a = &cfg.alerting;
        let receivers = a
            .alertmanagers
            .iter()
            .chain(&a.webhooks)
            .filter_map(|u| destination(&u.parse().ok()?))
            .collect();
        Self {
            metrics: cfg.metrics.listen,
            api: cfg.api.tcp.as_ref().map(|t| t.listen),
            receivers,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("{key} {addr}: cannot listen: {source}")]
    Listen {
        key: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("{path}: cannot listen: {source}")]
    Socket { path: String, source: io::Error },
}

/// The relay's state: the receivers it may connect to, and where
/// accepted connections go (the agent's latest `accept` request).
pub struct Relay {
    receivers: RwLock<BTreeSet<(String, u16)>>,
    /// Read again for a destination the receivers lack: the agent reads
    /// its receivers when it starts, which may be after the relay did.
    config: Option<PathBuf>,
    agent: Mutex<Option<mpsc::Sender<(u8, std::net::TcpStream)>>>,
    own_uid: u32,
}

impl Relay {
    /// Binds `socket` (failing naming it) and the plan's listeners: one
    /// that cannot be bound yet (its port taken, its address not up) is
    /// said and tried again while the rest serves, alert delivery
    /// included. `config` is where the plan came from.
    pub fn bind(
        plan: &Plan,
        socket: &Path,
        config: Option<PathBuf>,
    ) -> Result<(Arc<Self>, Bound), RelayError> {
        let listeners = [
            ("metrics.listen", plan.metrics, METRICS),
            ("api.tcp", plan.api, API),
        ]
        .into_iter()
        .filter_map(|(key, addr, tag)| {
            let addr = addr?;
            let bound = listen(key, addr)
                .inspect_err(|e| tracing::error!("relay: {e}; tried again every {RETRY_BIND:?}"))
                .ok();
            Some(Planned {
                key,
                addr,
                tag,
                bound,
            })
        })
        .collect();
        let unix = bind_socket(socket).map_err(|source| RelayError::Socket {
            path: socket.display().to_string(),
            source,
        })?;
        // SAFETY: geteuid has no preconditions.
        let own_uid = unsafe { libc::geteuid() };
        let relay = Arc::new(Self {
            receivers: RwLock::new(plan.receivers.clone()),
            config,
            agent: Mutex::new(None),
            own_uid,
        });
        Ok((relay, Bound { listeners, unix }))
    }

    /// Whether `host:port` is a receiver in the config, read again when
    /// it is not among those known (a bad config keeps them).
    fn allows(&self, host: &str, port: u16) -> bool {
        let wanted = (host.to_string(), port);
        let known = |r: &RwLock<BTreeSet<_>>| {
            r.read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&wanted)
        };
        if known(&self.receivers) {
            return true;
        }
        let Some(path) = &self.config else {
            return false;
        };
        match Config::load_with_env(path) {
            Ok(cfg) => {
                *self.receivers.write().unwrap_or_else(|e| e.into_inner()) =
                    Plan::of(&cfg).receivers;
            }
            Err(e) => tracing::error!("relay: {e}; keeping the receivers it had"),
        }
        known(&self.receivers)
    }
}

/// The listeners a [`Relay`] serves.
pub struct Bound {
    listeners: Vec<Planned>,
    unix: UnixListener,
}

impl Bound {
    /// Where the listener for `tag` listens, once bound.
    pub fn local_addr(&self, tag: u8) -> Option<SocketAddr> {
        let l = self.listeners.iter().find(|l| l.tag == tag)?;
        l.bound.as_ref()?.local_addr().ok()
    }
}

/// One of the agent's TCP listeners, bound or still to be.
struct Planned {
    key: &'static str,
    addr: SocketAddr,
    tag: u8,
    bound: Option<TcpListener>,
}

fn listen(key: &'static str, addr: SocketAddr) -> Result<TcpListener, RelayError> {
    std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(TcpListener::from_std)
        .map_err(|source| RelayError::Listen { key, addr, source })
}

fn bind_socket(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let l = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    // Its owner and root (the agent) only.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves until the process ends.
pub async fn serve(relay: Arc<Relay>, bound: Bound) {
    for planned in bound.listeners {
        tokio::spawn(hand_over(relay.clone(), planned));
    }
    let unix = &bound.unix;
    loop {
        let (s, _) = next_connection(|| unix.accept()).await;
        tokio::spawn(request(relay.clone(), s));
    }
}

/// The next connection `accept` gives. After an error (descriptors
/// exhausted) it waits a moment before trying again: the listener stays
/// readable, so an immediate retry would spin.
async fn next_connection<T, F>(mut accept: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(c) => return c,
            Err(e) => {
                tracing::debug!("relay: cannot accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Binds one listener if it is not yet, accepts on it and passes each
/// connection to the agent, or closes it when no agent is there to take it.
async fn hand_over(relay: Arc<Relay>, planned: Planned) {
    let Planned {
        key,
        addr,
        tag,
        bound,
    } = planned;
    let listener = match bound {
        Some(l) => l,
        None => loop {
            tokio::time::sleep(RETRY_BIND).await;
            if let Ok(l) = listen(key, addr) {
                tracing::info!("relay: {key} {addr} listens now");
                break l;
            }
        },
    };
    loop {
        let (stream, _) = next_connection(|| listener.accept()).await;
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let agent = relay
            .agent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(agent) = agent {
            let _ = agent.try_send((tag, stream));
        }
    }
}

async fn request(relay: Arc<Relay>, mut s: UnixStream) {
    let uid = s.peer_cred().map(|c| c.uid()).ok();
    if !uid.is_some_and(|u| u == 0 || u == relay.own_uid) {
        tracing::warn!(?uid, "relay: refused a client that is not the agent");
        return refuse(&mut s, "the relay serves only the agent (uid 0)").await;
    }
    let line = match tokio::time::timeout(REQUEST_TIMEOUT, read_line(&mut s)).await {
        Ok(Ok(l)) => l,
        _ => return refuse(&mut s, "no request line").await,
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["accept"] => follow(&relay, s).await,
        ["connect", host, port] => match port.parse() {
            Ok(port) => connect(&relay, s, host, port).await,
            Err(_) => refuse(&mut s, &format!("`{port}` is not a port")).await,
        },
        _ => refuse(&mut s, &format!("unknown request `{line}`")).await,
    }
}

async fn read_line(s: &mut UnixStream) -> io::Result<String> {
    let mut buf = Vec::new();
    while !buf.ends_with(b"\n") {
        if buf.len() >= MAX_REQUEST || s.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
    Ok(String::from_utf8_lossy(&buf).trim().to_string())
}

/// Says why a request fails, and closes.
async fn refuse(s: &mut UnixStream, why: &str) {
    if fd::send(s, REFUSED, None).await.is_ok() {
        let _ = s.write_all(why.as_bytes()).await;
    }
}

/// Makes this agent connection the one accepted connections go to, until
/// it closes or a newer one replaces it.
async fn follow(relay: &Relay, s: UnixStream) {
    if fd::send(&s, CONNECTED, None).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::channel(HANDOVER);
    *relay.agent.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    tracing::info!("relay: the agent takes the accepted connections");
    while let Some((tag, stream)) = rx.recv().await {
        if let Err(e) = fd::send(&s, tag, Some(stream.as_fd())).await {
            tracing::warn!(
                "relay: the agent went away ({e}); connections are closed until it is back"
            );
            return;
        }
    }
}

async fn connect(relay: &Relay, mut s: UnixStream, host: &str, port: u16) {
    if !relay.allows(host, port) {
        tracing::warn!("relay: refused to connect to {host}:{port}, not a receiver in its config");
        return refuse(
            &mut s,
            &format!("{host}:{port} is not an alert receiver in the relay's config (alerting.alertmanagers, alerting.webhooks)"),
        )
        .await;
    }
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await;
    let why = match tcp {
        Ok(Ok(tcp)) => match tcp.into_std() {
            Ok(tcp) => {
                let _ = fd::send(&s, CONNECTED, Some(tcp.as_fd())).await;
                return;
            }
            Err(e) => e.to_string(),
        },
        Ok(Err(e)) => format!("connect {host}:{port}: {e}"),
        Err(_) => format!("connect {host}:{port}: no answer within {CONNECT_TIMEOUT:?}"),
    };
    tracing::debug!("relay: {why}");
    refuse(&mut s, &why).await;
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    use super::*;
    use crate::relay::dial::{self, Network};

    fn plan(metrics: bool, receivers: &[(String, u16)]) -> Plan {
        Plan {
            metrics: metrics.then(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            api: None,
            receivers: receivers.iter().cloned().collect(),
        }
    }

    async fn started(plan: &Plan, dir: &Path) -> (Arc<Relay>, PathBuf, Option<SocketAddr>) {
        let socket = dir.join("relay.sock");
        let (relay, bound) = Relay::bind(plan, &socket, Some(dir.join("sentinel.toml"))).unwrap();
        let metrics = bound.local_addr(METRICS);
        tokio::spawn(serve(relay.clone(), bound));
        (relay, socket, metrics)
    }

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sentinel-relay-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn it_connects_to_configured_receivers_only_read_again_from_the_config() {
        let receiver = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = receiver.local_addr().unwrap().port();
        let dir = temp("connect");
        let (_relay, socket, _) = started(&plan(false, &[]), &dir).await;
        let network = Network::Relay(socket);
        let refused = network.connect("127.0.0.1", port).await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains(&format!("127.0.0.1:{port} is not an alert receiver")),
            "{refused}"
        );
        // The agent started later, with a receiver the relay had not read.
        std::fs::write(
            dir.join("sentinel.toml"),
            format!("[alerting]\nwebhooks = [\"http://127.0.0.1:{port}/hook\"]\n"),
        )
        .unwrap();
        let mut stream = network.connect("127.0.0.1", port).await.unwrap();
        let (mut served, from) = receiver.accept().await.unwrap();
        assert_eq!(
            from,
            stream.local_addr().unwrap(),
            "the relay's socket is the agent's now"
        );
        stream.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        served.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn accepted_connections_reach_the_agent_with_their_peer_and_none_without_it() {
        let dir = temp("accept");
        let (_relay, socket, metrics) = started(&plan(true, &[]), &dir).await;
        let metrics = metrics.unwrap();
        // No agent yet: the relay closes what it accepts.
        let mut early = tokio::net::TcpStream::connect(metrics).await.unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(early.read(&mut buf).await.unwrap(), 0, "closed at once");

        let (incoming, api) = dial::accepted(socket, true, false);
        assert!(api.is_none());
        let mut incoming = incoming.unwrap();
        // The agent's request reaches the relay a moment after this: until
        // then connections are closed. One handed over late belongs to an
        // earlier try, and is skipped.
        let handed = async {
            loop {
                let mut c = tokio::net::TcpStream::connect(metrics).await.unwrap();
                let _ = c.write_all(b"GET").await;
                while let Ok(Some(Ok(mut served))) =
                    tokio::time::timeout(Duration::from_millis(200), incoming.next()).await
                {
                    if served.peer_addr().unwrap() != c.local_addr().unwrap() {
                        continue;
                    }
                    let mut buf = [0u8; 3];
                    served.read_exact(&mut buf).await.unwrap();
                    assert_eq!(&buf, b"GET");
                    served.write_all(b"200").await.unwrap();
                    return c;
                }
            }
        };
        let mut client = tokio::time::timeout(Duration::from_secs(10), handed)
            .await
            .expect("a connection handed over within 10 s");
        let mut buf = [0u8; 3];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"200");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_listener_that_cannot_bind_leaves_alert_delivery_running() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let receiver = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = receiver.local_addr().unwrap().port();
        let dir = temp("taken");
        let mut p = plan(false, &[("127.0.0.1".to_string(), port)]);
        p.metrics = Some(taken.local_addr().unwrap());
        let (_relay, socket, metrics) = started(&p, &dir).await;
        assert_eq!(metrics, None, "the port is taken");
        Network::Relay(socket)
            .connect("127.0.0.1", port)
            .await
            .expect("alerts still get through");
        let _ = std::fs::remove_dir_all(dir);
    }
}
