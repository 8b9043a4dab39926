//! The listeners' side of the gate: accepting through it, and the calls
//! layer that refuses calls on a connection over a cap and keeps a
//! connection with a call in progress from being closed as idle.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{
    body::Body,
    codegen::http,
    transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo},
};

use super::gate::{Busy, Conn, Gate, Gated, Linked, PeerKey};

/// How long an accept that failed (descriptors exhausted) waits before the
/// next: the listener stays readable, so retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts from `accept` through `gate`, on a task of its own, and hands
/// the connections it admits (or serves briefly to refuse) to the server.
pub fn gated<IO, S>(
    accept: S,
    peer_of: fn(&IO) -> PeerKey,
    gate: Arc<Gate>,
    idle: Duration,
    listener: &'static str,
) -> ReceiverStream<io::Result<Gated<IO>>>
where
    IO: Send + 'static,
    S: Stream<Item = io::Result<IO>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut accept = std::pin::pin!(accept);
        let mut warned: Option<tokio::time::Instant> = None;
        loop {
            let next = tokio::select! {
                n = accept.next() => n,
                () = tx.closed() => return,
            };
            match next {
                None => return,
                Some(Ok(io)) => {
                    let admission = gate.admit(peer_of(&io));
                    if let Some(g) = Gated::new(io, admission, idle)
                        && tx.send(Ok(g)).await.is_err()
                    {
                        return;
                    }
                }
                Some(Err(e)) => {
                    if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        warned = Some(tokio::time::Instant::now());
                        tracing::warn!(listener, "cannot accept a connection: {e}; retrying");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

pub fn uid_of(s: &tokio::net::UnixStream) -> PeerKey {
    s.peer_cred()
        .map_or(PeerKey::Unknown, |c| PeerKey::Uid(c.uid()))
}

pub fn addr_of(s: &tokio::net::TcpStream) -> PeerKey {
    s.peer_addr()
        .map_or(PeerKey::Unknown, |a| PeerKey::Addr(a.ip()))
}

/// The connection a call came on, over either listener.
fn conn_of(ext: &http::Extensions) -> Option<Arc<Conn>> {
    ext.get::<Linked<UdsConnectInfo>>()
        .map(|l| l.conn.clone())
        .or_else(|| {
            ext.get::<TlsConnectInfo<Linked<TcpConnectInfo>>>()
                .map(|t| t.get_ref().conn.clone())
        })
}

/// Refuses calls on connections over a cap; counts the others as busy
/// until their response (a stream included) ends.
#[derive(Clone, Copy, Default)]
pub struct CallLayer;

impl<S> tower::Layer<S> for CallLayer {
    type Service = Calls<S>;

    fn layer(&self, inner: S) -> Calls<S> {
        Calls { inner }
    }
}

#[derive(Clone)]
pub struct Calls<S> {
    inner: S,
}

type CallFuture<E> = Pin<Box<dyn Future<Output = Result<http::Response<Body>, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Calls<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = CallFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let conn = conn_of(req.extensions());
        if let Some(why) = conn.as_ref().and_then(|c| c.refused.clone()) {
            return Box::pin(std::future::ready(Ok(tonic::Status::resource_exhausted(
                why,
            )
            .into_http())));
        }
        let busy = conn.map(|c| c.begin());
        let call = self.inner.call(req);
        Box::pin(async move {
            let response = call.await?;
            Ok(match busy {
                None => response,
                Some(busy) => response.map(|body| Body::new(Tracked { body, _busy: busy })),
            })
        })
    }
}

/// A response body that keeps its connection busy until it is done.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
