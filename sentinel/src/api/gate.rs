//! Who may hold a connection, and for how long. Every connection is a
//! descriptor and a task in the agent; without caps one unprivileged user
//! could open enough of them to leave the engine none for pidfds and /proc
//! (measured: a leaker ran 100 MiB past its rule while idle connections held
//! the agent's 1,024 descriptors). So:
//!
//! - each peer (a uid on the Unix socket, an address over TCP) holds at
//!   most `api.max_connections_per_uid`, and all peers but root together at
//!   most `api.max_connections`: root keeps a share of its own, so an
//!   operator gets in while everyone else's are in use;
//! - a connection over a cap is still served for a moment, so its calls get
//!   RESOURCE_EXHAUSTED saying which cap, rather than a bare reset; those
//!   are few ([`MAX_REFUSED`]) and short-lived ([`REFUSED_LIFETIME`]);
//! - a connection with no call in progress is closed after
//!   `api.idle_timeout` (a call in progress, a decision stream included,
//!   keeps it open);
//! - an accept that fails (out of descriptors) waits before the next, rather
//!   than spinning on a listener that stays readable.
//!
//! The engine never waits on any of this: the caps bound what clients hold,
//! and the agent's descriptor limit is set to fit them with room to spare
//! ([`descriptors_needed`]). The calls side is in `listen`.

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use sentinel_core::config::ConnectionLimits;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};
use tonic::transport::server::Connected;

/// Connections over a cap held open at once to answer RESOURCE_EXHAUSTED;
/// beyond, they are closed at accept.
pub const MAX_REFUSED: usize = 32;
/// How long a connection over a cap is served before it is closed.
pub const REFUSED_LIFETIME: Duration = Duration::from_secs(2);
/// Descriptors kept for the engine (pidfds, /proc reads, the journal, the
/// probes) beyond everything clients may hold.
pub const ENGINE_DESCRIPTORS: u64 = 4096;

/// The descriptor limit the agent needs for `limits` on both listeners
/// (the Unix socket, TCP), `others` held by other servers (the metrics
/// scrapers) and the engine's share.
pub fn descriptors_needed(limits: &ConnectionLimits, others: u64) -> u64 {
    let api = 2 * (limits.total + limits.per_uid + MAX_REFUSED);
    api as u64 + others + ENGINE_DESCRIPTORS
}

/// `limits` shrunk, if need be, so that everything clients may hold and
/// the engine's share fit in `nofile` descriptors; with a note saying so.
pub fn fit(
    limits: ConnectionLimits,
    nofile: u64,
    others: u64,
) -> (ConnectionLimits, Option<String>) {
    let needed = descriptors_needed(&limits, others);
    if nofile >= needed {
        return (limits, None);
    }
    // What is left after the engine, the scrapers and the refusals, for
    // each listener's total and root's own share.
    let fixed = ENGINE_DESCRIPTORS + others + 2 * MAX_REFUSED as u64;
    let room = (nofile.saturating_sub(fixed) / 2) as usize;
    let per_uid = limits.per_uid.min(room / 4).max(1);
    let total = limits.total.min(room.saturating_sub(per_uid)).max(per_uid);
    let fitted = ConnectionLimits {
        total,
        per_uid,
        ..limits
    };
    let note = format!(
        "the open-file limit ({nofile}) is below the {needed} that api.max_connections ({}) and \
         api.max_connections_per_uid ({}) need beside the agent's own {ENGINE_DESCRIPTORS}: \
         serving at most {total} connections, {per_uid} per uid; raise LimitNOFILE",
        limits.total, limits.per_uid
    );
    (fitted, Some(note))
}

/// Who a connection counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKey {
    Uid(u32),
    Addr(IpAddr),
    /// Credentials the kernel did not give: counted together.
    Unknown,
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerKey::Uid(u) => write!(f, "uid {u}"),
            PeerKey::Addr(a) => write!(f, "{a}"),
            PeerKey::Unknown => f.write_str("a peer of unknown uid"),
        }
    }
}

#[derive(Default)]
struct Counts {
    per_peer: HashMap<PeerKey, usize>,
    /// Open connections of everyone but root.
    total: usize,
    refused: usize,
    /// When each peer was last logged as refused, so a storm logs once a
    /// minute per peer.
    warned: HashMap<PeerKey, Instant>,
}

/// How many of something (connections, decision streams) peers may hold,
/// and the names an operator looks up when one is refused.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub what: &'static str,
    /// All peers but root together.
    pub total: usize,
    pub total_is: &'static str,
    pub per_peer: usize,
    pub per_peer_is: &'static str,
}

impl Caps {
    /// The connection caps of `[api]`.
    pub fn connections(l: &ConnectionLimits) -> Self {
        Self {
            what: "connections",
            total: l.total,
            total_is: "api.max_connections",
            per_peer: l.per_uid,
            per_peer_is: "api.max_connections_per_uid",
        }
    }
}

/// Counts of what peers hold, against [`Caps`]: one for the listeners'
/// connections, one for decision streams.
pub struct Gate {
    caps: Caps,
    counts: Mutex<Counts>,
}

/// What a new connection gets.
pub enum Admission {
    /// Served, counted against its peer until dropped.
    Open(Permit),
    /// Served briefly, every call refused with this text.
    Refused(Permit, String),
    /// Closed at once: too many refused ones are open already.
    Closed,
}

/// A connection's place in the counts, given back when it closes.
pub struct Permit {
    gate: Arc<Gate>,
    slot: Slot,
}

enum Slot {
    Open { peer: PeerKey, in_total: bool },
    Refused,
}

impl Gate {
    pub fn new(caps: Caps) -> Arc<Self> {
        Arc::new(Self {
            caps,
            counts: Mutex::default(),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Held now: (all but root's, root's).
    pub fn open(&self) -> (usize, usize) {
        let c = self.counts();
        (
            c.total,
            c.per_peer.get(&PeerKey::Uid(0)).copied().unwrap_or(0),
        )
    }

    /// Counts a new one from `peer`, or says which cap it is over.
    pub fn admit(self: &Arc<Self>, peer: PeerKey) -> Admission {
        let mut c = self.counts();
        let root = peer == PeerKey::Uid(0);
        let mine = c.per_peer.get(&peer).copied().unwrap_or(0);
        let Caps { what, .. } = self.caps;
        let over = if mine >= self.caps.per_peer {
            Some(format!(
                "{peer} has {mine} {what} open, the most one peer may ({}); close one",
                self.caps.per_peer_is
            ))
        } else if !root && c.total >= self.caps.total {
            Some(format!(
                "{} {what} are open, the most all clients but root may ({}); retry later",
                c.total, self.caps.total_is
            ))
        } else {
            None
        };
        let Some(why) = over else {
            *c.per_peer.entry(peer).or_default() += 1;
            c.total += usize::from(!root);
            return Admission::Open(Permit {
                gate: self.clone(),
                slot: Slot::Open {
                    peer,
                    in_total: !root,
                },
            });
        };
        let now = Instant::now();
        if c.warned.len() > 1024 {
            c.warned.retain(|_, t| now.duration_since(*t) < WARN_EVERY);
        }
        if c.warned
            .get(&peer)
            .is_none_or(|t| now.duration_since(*t) >= WARN_EVERY)
        {
            c.warned.insert(peer, now);
            tracing::warn!(%peer, "{what} refused: {why}");
        }
        if c.refused >= MAX_REFUSED {
            return Admission::Closed;
        }
        c.refused += 1;
        Admission::Refused(
            Permit {
                gate: self.clone(),
                slot: Slot::Refused,
            },
            why,
        )
    }
}

const WARN_EVERY: Duration = Duration::from_secs(60);

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.gate.counts();
        match self.slot {
            Slot::Open { peer, in_total } => {
                if let Some(n) = c.per_peer.get_mut(&peer) {
                    *n -= 1;
                    if *n == 0 {
                        c.per_peer.remove(&peer);
                    }
                }
                c.total -= usize::from(in_total);
            }
            Slot::Refused => c.refused -= 1,
        }
    }
}

/// One connection's state, shared by its transport (which closes it when
/// idle) and the calls made on it (which keep it busy).
pub struct Conn {
    /// Calls in progress, streams included.
    active: AtomicUsize,
    /// When the last call ended (or the connection opened).
    idle_since: Mutex<Instant>,
    /// The transport's reader, woken when the last call ends so that the
    /// idle clock starts even if no byte arrives.
    reader: Mutex<Option<Waker>>,
    /// Set when the connection is over a cap: every call gets this.
    pub refused: Option<String>,
}

impl Conn {
    fn new(refused: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            reader: Mutex::new(None),
            refused,
        })
    }

    /// A call started; it ends when the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.active.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// When the connection may be closed for idleness, if no call is on.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(*self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) + idle)
    }
}

/// A call in progress on a connection.
pub struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        let conn = &self.0;
        // The idle clock is set before the count drops: a reader between
        // the two would otherwise see no call and an old clock, and close
        // the connection before the call's last bytes went out.
        *conn.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        if conn.active.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(w) = conn.reader.lock().unwrap_or_else(|e| e.into_inner()).take()
        {
            w.wake();
        }
    }
}

/// What the server sees of a gated connection: the transport's own
/// connect info, and the connection's state for the calls made on it.
#[derive(Clone)]
pub struct Linked<I> {
    pub info: I,
    pub conn: Arc<Conn>,
}

/// A transport that ends (reads EOF) when idle, or when a refused
/// connection's time is up, and gives its place back when dropped.
pub struct Gated<IO> {
    io: IO,
    conn: Arc<Conn>,
    idle: Duration,
    /// Closed at this instant whatever it is doing (refused connections).
    hard_end: Option<Instant>,
    timer: Pin<Box<tokio::time::Sleep>>,
    _permit: Permit,
}

impl<IO> Gated<IO> {
    /// Wraps a freshly accepted transport as the gate decided; `None` when
    /// it is to be closed at once.
    pub fn new(io: IO, admission: Admission, idle: Duration) -> Option<Self> {
        let (permit, refused) = match admission {
            Admission::Open(p) => (p, None),
            Admission::Refused(p, why) => (p, Some(why)),
            Admission::Closed => return None,
        };
        let hard_end = refused.is_some().then(|| Instant::now() + REFUSED_LIFETIME);
        Some(Self {
            io,
            conn: Conn::new(refused),
            idle,
            hard_end,
            timer: Box::pin(tokio::time::sleep(idle)),
            _permit: permit,
        })
    }

    /// Whether the connection is to end now; otherwise the timer is set to
    /// wake the reader when it might.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        *self.conn.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        loop {
            let end = match (self.conn.idle_deadline(self.idle), self.hard_end) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return false,
            };
            if Instant::now() >= end {
                return true;
            }
            self.timer.as_mut().reset(end);
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Gated<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            // End of stream: the server closes the connection.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Gated<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: Connected> Connected for Gated<IO> {
    type ConnectInfo = Linked<IO::ConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        Linked {
            info: self.io.connect_info(),
            conn: self.conn.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_uid: usize) -> Caps {
        Caps::connections(&ConnectionLimits {
            total,
            per_uid,
            idle_timeout: Duration::from_secs(60),
        })
    }

    fn open(a: Admission) -> Permit {
        match a {
            Admission::Open(p) => p,
            Admission::Refused(_, why) => panic!("refused: {why}"),
            Admission::Closed => panic!("closed"),
        }
    }

    fn refusal(a: Admission) -> String {
        match a {
            Admission::Refused(_, why) => why,
            _ => panic!("not refused"),
        }
    }

    #[test]
    fn a_peer_is_capped_and_root_keeps_a_share_when_the_total_is_reached() {
        let gate = Gate::new(limits(4, 3));
        let a: Vec<_> = (0..3)
            .map(|_| open(gate.admit(PeerKey::Uid(1000))))
            .collect();
        let why = refusal(gate.admit(PeerKey::Uid(1000)));
        assert!(
            why.contains("uid 1000 has 3") && why.contains("max_connections_per_uid"),
            "{why}"
        );
        let b = open(gate.admit(PeerKey::Uid(1001)));
        let why = refusal(gate.admit(PeerKey::Uid(1002)));
        assert!(
            why.contains("4 connections are open") && why.contains("api.max_connections"),
            "{why}"
        );
        // Root is not held back by everyone else's connections.
        let r: Vec<_> = (0..3).map(|_| open(gate.admit(PeerKey::Uid(0)))).collect();
        assert!(refusal(gate.admit(PeerKey::Uid(0))).contains("uid 0 has 3"));
        assert_eq!(gate.open(), (4, 3));
        // Closing gives the place back.
        drop(b);
        drop(r);
        let _c = open(gate.admit(PeerKey::Uid(1002)));
        assert_eq!(gate.open(), (4, 0));
        drop(a);
        assert_eq!(gate.open(), (1, 0));
    }

    #[test]
    fn caps_shrink_to_fit_the_descriptor_limit() {
        let d = ConnectionLimits::default();
        let others = 16;
        assert_eq!(fit(d, 65_536, others), (d, None));
        assert_eq!(fit(d, descriptors_needed(&d, others), others).1, None);
        // Room for 100 connections on each listener beside the fixed part.
        let fixed = ENGINE_DESCRIPTORS + others + 2 * MAX_REFUSED as u64;
        let (small, note) = fit(d, fixed + 200, others);
        assert!(
            descriptors_needed(&small, others) <= fixed + 200,
            "{small:?}"
        );
        assert_eq!((small.total, small.per_uid), (75, 25));
        assert!(note.unwrap().contains("raise LimitNOFILE"));
        // Even a hopeless limit leaves one connection for root and others.
        let (least, _) = fit(d, 1024, others);
        assert_eq!((least.total, least.per_uid), (1, 1));
    }

    #[test]
    fn refused_connections_are_bounded_too() {
        let gate = Gate::new(limits(1, 1));
        let _a = open(gate.admit(PeerKey::Unknown));
        let held: Vec<_> = (0..MAX_REFUSED)
            .map(|_| refusal(gate.admit(PeerKey::Unknown)))
            .collect();
        assert_eq!(held.len(), MAX_REFUSED);
        // Refusals hold their permits inside `Admission`; these were dropped
        // at once, so the count is free again.
        let mut kept = Vec::new();
        for _ in 0..MAX_REFUSED {
            match gate.admit(PeerKey::Unknown) {
                Admission::Refused(p, _) => kept.push(p),
                _ => panic!("a refusal slot was free"),
            }
        }
        assert!(matches!(gate.admit(PeerKey::Unknown), Admission::Closed));
        drop(kept);
        assert!(matches!(
            gate.admit(PeerKey::Unknown),
            Admission::Refused(..)
        ));
    }

    #[tokio::test]
    async fn an_idle_connection_reads_end_of_stream_and_a_busy_one_does_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let idle = Duration::from_millis(200);
        let gate = Gate::new(limits(4, 4));
        let (server, mut client) = tokio::io::duplex(64);
        let mut g = Gated::new(server, gate.admit(PeerKey::Uid(5)), idle).unwrap();
        let conn = g.conn.clone();
        let busy = conn.begin();
        client.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(g.read(&mut buf).await.unwrap(), 1);
        // A call in progress: no end however long it lasts.
        let t = tokio::time::timeout(idle * 3, g.read(&mut buf)).await;
        assert!(t.is_err(), "a busy connection was closed");
        // The call ends while the reader waits: the idle clock starts then.
        let ended = Instant::now();
        let reader = tokio::spawn(async move {
            let n = g.read(&mut [0u8; 8]).await.unwrap();
            (n, g)
        });
        tokio::time::sleep(idle / 4).await;
        drop(busy);
        let (n, g) = tokio::time::timeout(idle * 5, reader)
            .await
            .expect("the end of the last call did not wake the reader")
            .unwrap();
        assert_eq!(n, 0, "idle: end of stream");
        let took = ended.elapsed();
        assert!(took >= idle + idle / 4 && took < idle * 3, "{took:?}");
        assert_eq!(gate.open(), (1, 0));
        drop(g);
        assert_eq!(gate.open(), (0, 0));
    }

    #[tokio::test]
    async fn a_refused_connection_ends_soon_even_while_busy() {
        use tokio::io::AsyncReadExt;
        let gate = Gate::new(limits(1, 1));
        let _a = open(gate.admit(PeerKey::Uid(7)));
        let (server, _client) = tokio::io::duplex(64);
        let mut g = Gated::new(
            server,
            gate.admit(PeerKey::Uid(7)),
            Duration::from_secs(600),
        )
        .unwrap();
        assert!(g.conn.refused.is_some());
        let _busy = g.conn.begin();
        let started = Instant::now();
        assert_eq!(g.read(&mut [0u8; 4]).await.unwrap(), 0);
        let took = started.elapsed();
        assert!(
            took >= REFUSED_LIFETIME - Duration::from_millis(5) && took < REFUSED_LIFETIME * 2,
            "{took:?}"
        );
    }
}
