//! `[api]`: the optional TCP listener, and how many connections clients
//! may hold. The Unix socket is always served; TCP is served only with
//! mutual TLS, because over a network nothing but a client certificate can
//! say who is calling.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::units::Span;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiSettings {
    /// `None`: the Unix socket only.
    pub tcp: Option<TcpApi>,
    pub connections: ConnectionLimits,
    /// Each client's refusals (admission denials, timeouts) beyond the
    /// first few in this window are journalled as one summary at its end.
    pub refusal_window: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            tcp: None,
            connections: ConnectionLimits::default(),
            refusal_window: Duration::from_secs(60),
        }
    }
}

/// What clients may hold open, so that no client (or many) can take the
/// descriptors and the time the agent needs to protect the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once from all clients but root (root has its
    /// own `per_uid` share on top, so an operator can always get in).
    pub total: usize,
    /// Connections open at once from one uid (over TCP: one address).
    pub per_uid: usize,
    /// A connection with no call in progress is closed after this long.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            total: 256,
            per_uid: 32,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// A TCP listener that requires a client certificate signed by `client_ca`.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpApi {
    pub listen: SocketAddr,
    /// The server's certificate chain and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA bundle (PEM) that client certificates must chain to.
    pub client_ca: PathBuf,
    /// A client certificate with one of these DNS names in its
    /// subjectAltName may change policy and signal; any other certificate
    /// the CA signed may read.
    pub admin_names: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    tcp: Option<toml::Spanned<String>>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_client_ca: Option<String>,
    admin_names: Option<toml::Spanned<Vec<String>>>,
    max_connections: Option<toml::Spanned<i64>>,
    max_connections_per_uid: Option<toml::Spanned<i64>>,
    idle_timeout: Option<toml::Spanned<String>>,
    refusal_window: Option<toml::Spanned<String>>,
}

/// A problem at a byte offset of the file (the table's start when no key
/// holds it), for the caller to turn into a positioned error.
pub(super) type Problem = (usize, String);

fn at_least_a_second(t: &toml::Spanned<String>) -> Result<Duration, Problem> {
    let span = Span::parse(t.get_ref()).map_err(|e| (t.span().start, e))?;
    if span.0 < Duration::from_secs(1) {
        return Err((t.span().start, format!("`{}`: at least 1s", t.get_ref())));
    }
    Ok(span.0)
}

/// The most connections a cap may allow: each is a descriptor, and the
/// agent's own (pidfds, /proc, the journal) must always fit beside them.
pub const MAX_CONNECTIONS: i64 = 16_384;

impl RawApi {
    pub(super) fn check(self, table_start: usize) -> Result<ApiSettings, Problem> {
        let connections = self.connections()?;
        let refusal_window = match &self.refusal_window {
            None => ApiSettings::default().refusal_window,
            Some(t) => at_least_a_second(t)?,
        };
        let tcp = self.tcp(table_start)?;
        Ok(ApiSettings {
            tcp,
            connections,
            refusal_window,
        })
    }

    fn connections(&self) -> Result<ConnectionLimits, Problem> {
        let d = ConnectionLimits::default();
        let count = |v: &Option<toml::Spanned<i64>>, default: usize| match v {
            None => Ok(default),
            Some(n) if (1..=MAX_CONNECTIONS).contains(n.get_ref()) => Ok(*n.get_ref() as usize),
            Some(n) => Err((
                n.span().start,
                format!("{}: from 1 to {MAX_CONNECTIONS}", n.get_ref()),
            )),
        };
        let total = count(&self.max_connections, d.total)?;
        let per_uid = count(&self.max_connections_per_uid, d.per_uid)?;
        if per_uid > total
            && let Some(n) = &self.max_connections_per_uid
        {
            return Err((
                n.span().start,
                format!("{per_uid} is more than api.max_connections ({total})"),
            ));
        }
        let idle_timeout = match &self.idle_timeout {
            None => d.idle_timeout,
            Some(t) => at_least_a_second(t)?,
        };
        Ok(ConnectionLimits {
            total,
            per_uid,
            idle_timeout,
        })
    }

    fn tcp(self, table_start: usize) -> Result<Option<TcpApi>, Problem> {
        let Some(tcp) = self.tcp else {
            if self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_client_ca.is_some() {
                return Err((
                    table_start,
                    "tls_cert, tls_key and tls_client_ca apply only with `tcp = \"ADDRESS:PORT\"`"
                        .to_string(),
                ));
            }
            return Ok(None);
        };
        let at = tcp.span().start;
        let listen: SocketAddr = tcp.get_ref().parse().map_err(|_| {
            (
                at,
                format!(
                    "`{}` is not an address and port (like \"0.0.0.0:9443\" or \"[::1]:9443\")",
                    tcp.get_ref()
                ),
            )
        })?;
        let required = |v: Option<String>, key: &str| {
            v.filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .ok_or_else(|| {
                    (
                        at,
                        format!("the TCP listener serves only mutual TLS: set api.{key} as well"),
                    )
                })
        };
        let cert = required(self.tls_cert, "tls_cert")?;
        let key = required(self.tls_key, "tls_key")?;
        let client_ca = required(self.tls_client_ca, "tls_client_ca")?;
        let admin_names = match self.admin_names {
            None => Vec::new(),
            Some(names) => {
                let start = names.span().start;
                let names = names.into_inner();
                if let Some(bad) = names
                    .iter()
                    .find(|n| rustls_pki_types::DnsName::try_from(n.as_str()).is_err())
                {
                    return Err((
                        start,
                        format!(
                            "`{bad}` is not a DNS name; admins are named by a DNS name in their certificate's subjectAltName"
                        ),
                    ));
                }
                names
            }
        };
        Ok(Some(TcpApi {
            listen,
            cert,
            key,
            client_ca,
            admin_names,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn tcp_is_served_only_with_mutual_tls() {
        let e = err("[api]\ntcp = \"127.0.0.1:9443\"\ntls_cert = \"/c.pem\"\n");
        assert!(e.starts_with("t.toml:2:7: key `api.tcp`: "), "{e}");
        assert!(e.contains("set api.tls_key"), "{e}");
        let e = err("[api]\ntls_cert = \"/c.pem\"\n");
        assert!(e.contains("apply only with `tcp"), "{e}");
        let e = err("[api]\ntcp = \"localhost\"\n");
        assert!(
            e.contains("key `api.tcp`") && e.contains("not an address"),
            "{e}"
        );
    }

    #[test]
    fn admin_names_must_be_dns_names() {
        let base = "[api]\ntcp = \"0.0.0.0:9443\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\ntls_client_ca = \"/ca\"\n";
        let e = err(&format!("{base}admin_names = [\"ops admin\"]\n"));
        assert!(e.contains("key `api.admin_names`"), "{e}");
        assert!(e.contains("`ops admin` is not a DNS name"), "{e}");
        let c = Config::parse(&format!("{base}admin_names = [\"ops.example\"]\n"), "t").unwrap();
        let tcp = c.api.tcp.unwrap();
        assert_eq!(tcp.listen.port(), 9443);
        assert_eq!(tcp.client_ca, std::path::PathBuf::from("/ca"));
        assert_eq!(tcp.admin_names, vec!["ops.example".to_string()]);
        assert!(Config::parse("", "t").unwrap().api.tcp.is_none());
    }

    #[test]
    fn connection_caps_are_bounded_and_named() {
        let c = Config::parse("", "t").unwrap().api.connections;
        assert_eq!(
            (c.total, c.per_uid, c.idle_timeout.as_secs()),
            (256, 32, 120)
        );
        let c = Config::parse(
            "[api]\nmax_connections = 10\nmax_connections_per_uid = 2\nidle_timeout = \"5s\"\n",
            "t",
        )
        .unwrap()
        .api
        .connections;
        assert_eq!((c.total, c.per_uid, c.idle_timeout.as_secs()), (10, 2, 5));
        let e = err("[api]\nmax_connections = 0\n");
        assert!(
            e.contains("key `api.max_connections`") && e.contains("from 1 to"),
            "{e}"
        );
        let e = err("[api]\nmax_connections = 4\nmax_connections_per_uid = 5\n");
        assert!(
            e.contains("key `api.max_connections_per_uid`") && e.contains("more than"),
            "{e}"
        );
        let e = err("[api]\nidle_timeout = \"10ms\"\n");
        assert!(
            e.contains("key `api.idle_timeout`") && e.contains("at least 1s"),
            "{e}"
        );
    }
}
