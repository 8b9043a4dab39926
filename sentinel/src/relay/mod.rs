//! The network relay: the agent's network, held by a process that is not
//! root and has no capabilities, so that the agent itself can run without
//! any (systemd's PrivateNetwork=yes, RestrictAddressFamilies=AF_UNIX).
//!
//! The relay (`sentinel relay`, [`broker`]) binds the TCP listeners the
//! config names (`metrics.listen`, `api.tcp`) and connects to the alert
//! receivers it names, and nothing else. It hands each connection's
//! descriptor to the agent over a Unix socket ([`fd`]); the agent speaks
//! HTTP, gRPC and TLS on it with the same code as on connections of its
//! own ([`dial`]), so the relay sees no certificate and no key, and a peer's
//! address is the peer's, for the API's per-address caps.
//!
//! Protocol, on a Unix stream the agent opens: one request line, then
//! single bytes from the relay, each with at most one descriptor.
//! - `connect HOST PORT`: `+` with the connected socket, or `-` and a
//!   reason up to the end of the stream.
//! - `accept`: `+`, then for every connection accepted from then on,
//!   [`METRICS`] or [`API`] with its socket, until either side closes; or
//!   `-` and a reason.

pub mod broker;
pub mod dial;
pub mod fd;

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
    pin::Pin,
};

use tokio::net::TcpStream;
use tokio_stream::Stream;

/// Where the packaged units put the relay's socket.
pub const DEFAULT_SOCKET: &str = "/run/sentinel-relay/relay.sock";

/// The accepted connection is for the metrics listener.
pub const METRICS: u8 = b'm';
/// The accepted connection is for the API's TCP listener.
pub const API: u8 = b'a';
const CONNECTED: u8 = b'+';
const REFUSED: u8 = b'-';
/// Longest request line.
const MAX_REQUEST: usize = 512;

/// Connections for one listener, bound here or accepted by the relay.
pub type TcpConnections = Pin<Box<dyn Stream<Item = io::Result<TcpStream>> + Send>>;

/// The host (an IPv6 literal without its brackets) and port an `http://`
/// or `https://` URL connects to.
pub fn destination(url: &hyper::Uri) -> Option<(String, u16)> {
    let host = url.host()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let https = url.scheme_str() == Some("https");
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    Some((bare.to_string(), port))
}

/// A descriptor from the relay as a TCP stream: refused unless it is a
/// connected stream socket (a peer address is what the API's caps count
/// by).
fn tcp_stream(fd: OwnedFd) -> io::Result<TcpStream> {
    let mut kind: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `kind`, ours.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut kind).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if kind != libc::SOCK_STREAM {
        return Err(io::Error::other("not a stream socket"));
    }
    let s = std::net::TcpStream::from(fd);
    s.peer_addr()?;
    s.set_nonblocking(true)?;
    TcpStream::from_std(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_take_the_scheme_s_port_and_drop_ipv6_brackets() {
        let d = |u: &str| destination(&u.parse().unwrap());
        assert_eq!(d("http://am:9093/api"), Some(("am".into(), 9093)));
        assert_eq!(
            d("https://hooks.example/x"),
            Some(("hooks.example".into(), 443))
        );
        assert_eq!(
            d("http://hooks.example"),
            Some(("hooks.example".into(), 80))
        );
        assert_eq!(d("http://[::1]:8080/"), Some(("::1".into(), 8080)));
    }
}
