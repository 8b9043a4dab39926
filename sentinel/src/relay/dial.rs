//! The agent's side of the relay: connections made and accepted for it.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UnixStream},
    sync::mpsc,
};
use tokio_stream::wrappers::ReceiverStream;

use super::{API, CONNECTED, METRICS, REFUSED, TcpConnections, fd, tcp_stream};

/// How long the agent waits before asking again for accepted connections
/// after the relay went away (restarted, or not started yet).
const RETRY: Duration = Duration::from_secs(1);
/// Accepted connections waiting for their listener's server.
const BACKLOG: usize = 16;

/// How the agent reaches the network: itself, or through a relay.
#[derive(Debug, Clone, Default)]
pub enum Network {
    #[default]
    Direct,
    Relay(PathBuf),
}

impl Network {
    pub fn is_relay(&self) -> bool {
        matches!(self, Self::Relay(_))
    }

    /// A TCP connection to `host:port`: the relay's when there is one (it
    /// refuses any destination that is not a configured receiver).
    pub async fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        match self {
            Self::Direct => TcpStream::connect((host, port)).await,
            Self::Relay(path) => through(path, host, port).await,
        }
    }
}

async fn through(path: &Path, host: &str, port: u16) -> io::Result<TcpStream> {
    let mut s = UnixStream::connect(path)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("the relay at {}: {e}", path.display())))?;
    s.write_all(format!("connect {host} {port}\n").as_bytes())
        .await?;
    match fd::recv(&s).await? {
        Some((CONNECTED, Some(fd))) => tcp_stream(fd),
        Some((REFUSED, _)) => Err(reason(&mut s).await),
        _ => Err(io::Error::other("the relay answered out of protocol")),
    }
}

/// The relay's reason for a refusal, which follows its `-`.
async fn reason(s: &mut UnixStream) -> io::Error {
    let mut why = String::new();
    let _ = s.take(1024).read_to_string(&mut why).await;
    io::Error::other(format!("the relay: {}", why.trim()))
}

/// The relay's accepted connections for the metrics listener and the
/// API's TCP listener (each only when wanted), asked for again whenever
/// the relay goes away, for as long as either stream is read.
pub fn accepted(
    path: PathBuf,
    metrics: bool,
    api: bool,
) -> (Option<TcpConnections>, Option<TcpConnections>) {
    let (m_tx, m_rx) = channel(metrics);
    let (a_tx, a_rx) = channel(api);
    if m_tx.is_some() || a_tx.is_some() {
        tokio::spawn(follow(path, m_tx, a_tx));
    }
    (m_rx, a_rx)
}

type Sender = Option<mpsc::Sender<io::Result<TcpStream>>>;

/// A listener's channel from the relay's session to its server, if wanted.
fn channel(wanted: bool) -> (Sender, Option<TcpConnections>) {
    if !wanted {
        return (None, None);
    }
    let (tx, rx) = mpsc::channel(BACKLOG);
    (Some(tx), Some(Box::pin(ReceiverStream::new(rx))))
}

async fn follow(path: PathBuf, metrics: Sender, api: Sender) {
    let mut reachable = None;
    let gone = |s: &Sender| s.as_ref().is_none_or(|s| s.is_closed());
    while !(gone(&metrics) && gone(&api)) {
        let why = match session(&path, &metrics, &api, &mut reachable).await {
            Ok(()) => "it closed the connection".to_string(),
            Err(e) => e.to_string(),
        };
        // Said once per change, not once a second.
        if reachable != Some(false) {
            tracing::warn!(
                relay = %path.display(),
                "the relay is not serving the agent ({why}): metrics and the TCP API are unreachable and alerts wait until it is back"
            );
            reachable = Some(false);
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn session(
    path: &Path,
    metrics: &Sender,
    api: &Sender,
    reachable: &mut Option<bool>,
) -> io::Result<()> {
    let mut s = UnixStream::connect(path).await?;
    s.write_all(b"accept\n").await?;
    match fd::recv(&s).await? {
        Some((CONNECTED, _)) => {}
        Some((REFUSED, _)) => return Err(reason(&mut s).await),
        _ => return Err(io::Error::other("the relay answered out of protocol")),
    }
    if *reachable != Some(true) {
        tracing::info!(relay = %path.display(), "the relay serves the agent's listeners");
        *reachable = Some(true);
    }
    while let Some((tag, fd)) = fd::recv(&s).await? {
        let to = match tag {
            METRICS => metrics,
            API => api,
            _ => return Err(io::Error::other("the relay sent an unknown listener")),
        };
        let (Some(fd), Some(to)) = (fd, to) else {
            continue;
        };
        // A peer that reset the connection before it was handed over (or
        // anything but a connected TCP socket) is dropped here: a server
        // that gets an error from its listener waits before the next.
        let stream = match tcp_stream(fd) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("a connection from the relay is dropped: {e}");
                continue;
            }
        };
        if tag == API {
            let _ = stream.set_nodelay(true);
        }
        // A server that stopped reading has ended: the connection is
        // dropped, closing it.
        let _ = to.send(Ok(stream)).await;
    }
    Ok(())
}
