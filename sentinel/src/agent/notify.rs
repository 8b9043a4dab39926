//! systemd's service protocol (sd_notify): "ready" once the API listens,
//! a watchdog ping from the host timer's thread, "stopping" on the way
//! out. Datagrams to `$NOTIFY_SOCKET`; without it (not under systemd, or a
//! unit of another type) every call does nothing.

use std::{
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    },
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// What the service manager asked for, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `$NOTIFY_SOCKET`: a path, or an abstract name after `@`.
    pub socket: String,
    /// `$WATCHDOG_USEC`, when it is meant for this process.
    pub watchdog: Option<Duration>,
}

impl Settings {
    /// `None` without a notify socket. The watchdog applies only when
    /// `$WATCHDOG_PID` is unset or names this process: a child started by
    /// the agent must not ping for it.
    pub fn parse(
        notify_socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Option<Self> {
        let socket = notify_socket.filter(|s| !s.is_empty())?.to_string();
        let ours = watchdog_pid.is_none_or(|p| p.trim().parse() == Ok(pid));
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        Some(Self { socket, watchdog })
    }

    pub fn from_env() -> Option<Self> {
        let var = |k| std::env::var(k).ok();
        Self::parse(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }
}

pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    watchdog: Option<Duration>,
    last_ping: Mutex<Option<Instant>>,
    /// Pings start once "ready" is said: systemd hears the two in order.
    ready: AtomicBool,
}

impl Notifier {
    /// A notifier for `settings`; an unusable socket is said once and the
    /// agent runs on (systemd then reports the start as timed out).
    pub fn new(settings: Settings) -> Option<Self> {
        let to = match settings.socket.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
            None => SocketAddr::from_pathname(&settings.socket),
        };
        // Never blocking: the watchdog's pings come from the host timer's
        // thread, and a manager that stops reading (a full queue, ten
        // datagrams by default) must not stop the engine's clock.
        let made = to.and_then(|to| {
            let s = UnixDatagram::unbound()?;
            s.set_nonblocking(true)?;
            Ok((s, to))
        });
        match made {
            Ok((socket, to)) => Some(Self {
                socket,
                to,
                watchdog: settings.watchdog,
                last_ping: Mutex::new(None),
                ready: AtomicBool::new(false),
            }),
            Err(e) => {
                tracing::warn!(
                    "NOTIFY_SOCKET {}: {e}; systemd will not hear that the agent is ready",
                    settings.socket
                );
                None
            }
        }
    }

    fn send(&self, message: &str) {
        match self.socket.send_to_addr(message.as_bytes(), &self.to) {
            Ok(_) => {}
            // The manager is behind: this message is dropped, the next
            // ping is another chance.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tracing::debug!("systemd's notify queue is full; dropped {message:?}");
            }
            Err(e) => tracing::warn!("cannot notify systemd ({message:?}): {e}"),
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
        self.ready.store(true, Ordering::Release);
    }

    /// The watchdog's period, when systemd set one for this process.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Called after every host tick: pings at most twice per watchdog
    /// period, so a tick that stops coming (a stuck engine) is noticed.
    pub fn tick(&self) {
        let Some(period) = self.watchdog else { return };
        if !self.ready.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let mut last = self.last_ping.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| now.duration_since(t) >= period / 2) {
            *last = Some(now);
            self.send("WATCHDOG=1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_no_notifier() {
        assert_eq!(Settings::parse(None, Some("1000000"), None, 7), None);
        assert_eq!(Settings::parse(Some(""), None, None, 7), None);
    }

    #[test]
    fn the_watchdog_is_ours_only_when_its_pid_is_ours_or_unset() {
        let s = |pid| Settings::parse(Some("/run/n"), Some("30000000"), pid, 7);
        assert_eq!(s(None).unwrap().watchdog, Some(Duration::from_secs(30)));
        assert_eq!(
            s(Some("7")).unwrap().watchdog,
            Some(Duration::from_secs(30))
        );
        assert_eq!(s(Some("8")).unwrap().watchdog, None);
        let zero = Settings::parse(Some("@n"), Some("0"), None, 7).unwrap();
        assert_eq!(zero.watchdog, None);
        assert_eq!(zero.socket, "@n");
    }

    #[test]
    fn pings_at_most_twice_a_period_and_says_ready_and_stopping() {
        let dir = std::env::temp_dir().join(format!("sentinel-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let n = Notifier::new(Settings {
            socket: path.display().to_string(),
            watchdog: Some(Duration::from_secs(3600)),
        })
        .unwrap();
        n.tick(); // before ready: not pinged
        n.ready("watching");
        n.tick();
        n.tick();
        n.stopping();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(len) = listener.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert_eq!(
            got,
            ["READY=1\nSTATUS=watching", "WATCHDOG=1", "STOPPING=1"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_manager_that_stops_reading_never_blocks_the_sender() {
        let dir = std::env::temp_dir().join(format!("sentinel-notify-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        // Bound and never read: its queue fills after a few datagrams.
        let _listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(Settings {
            socket: path.display().to_string(),
            watchdog: None,
        })
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..1000 {
                n.stopping();
            }
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "sending blocked on a full queue"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
