//! `[metrics]` and `[alerting]`: where the agent reports to. Both are read
//! at start; neither can hold up a decision.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::api::Problem;
use crate::units::Span;

pub const DEFAULT_METRICS: &str = "127.0.0.1:9777";

/// The Prometheus endpoint (`GET /metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// `None`: no listener.
    pub listen: Option<SocketAddr>,
    /// Growers shown with their pid and command (bounded label cardinality).
    pub top_growers: usize,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            listen: Some(DEFAULT_METRICS.parse().expect("a valid address")),
            top_growers: 10,
        }
    }
}

/// How the agent checks `https://` receivers and proves itself to them
/// (`[alerting.tls]`, named as in Prometheus' `tls_config`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReceiverTls {
    /// The CAs a receiver's certificate must chain to; the system's bundle
    /// when unset.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for receivers that ask for one.
    pub client: Option<ClientIdentity>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Receivers of warnings and actions, and how delivery behaves when one
/// of them is down.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertingSettings {
    /// Alertmanager base URLs (`http://am:9093`, `https://am:9093`);
    /// alerts go to `/api/v2/alerts`.
    pub alertmanagers: Vec<String>,
    /// URLs that get each batch of alerts as JSON (`{"alerts": [...]}`).
    pub webhooks: Vec<String>,
    /// For the `https://` ones among both.
    pub tls: ReceiverTls,
    /// The `host` label; the machine's hostname when unset.
    pub host: Option<String>,
    /// A firing alert is sent again this often (Alertmanager forgets alerts
    /// that are not), each time valid for three intervals.
    pub resend_interval: Duration,
    /// An alert is resolved no sooner than this after it fired, so that a
    /// receiver grouping alerts sees it even when a kill ends it at once.
    pub min_firing: Duration,
    /// Alerts waiting per receiver at most; past it the oldest are dropped
    /// (and counted), as the journal has them all.
    pub queue_size: usize,
    pub timeout: Duration,
    /// Circuit breaker: this many failures within `breaker_window` open
    /// it; after `breaker_open` one delivery is tried again.
    pub breaker_failures: usize,
    pub breaker_window: Duration,
    pub breaker_open: Duration,
    /// Longest wait between retries.
    pub backoff_max: Duration,
}

impl Default for AlertingSettings {
    fn default() -> Self {
        Self {
            alertmanagers: Vec::new(),
            webhooks: Vec::new(),
            tls: ReceiverTls::default(),
            host: None,
            resend_interval: Duration::from_secs(60),
            min_firing: Duration::from_secs(30),
            queue_size: 10_000,
            timeout: Duration::from_secs(5),
            breaker_failures: 3,
            breaker_window: Duration::from_secs(60),
            breaker_open: Duration::from_secs(30),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl AlertingSettings {
    pub fn enabled(&self) -> bool {
        !self.alertmanagers.is_empty() || !self.webhooks.is_empty()
    }

    /// Whether any receiver is reached over TLS.
    pub fn any_https(&self) -> bool {
        self.alertmanagers
            .iter()
            .chain(&self.webhooks)
            .any(|u| u.starts_with("https://"))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    enabled: Option<bool>,
    listen: Option<toml::Spanned<String>>,
    top_growers: Option<toml::Spanned<usize>>,
}

impl RawMetrics {
    pub(super) fn check(self) -> Result<MetricsSettings, Problem> {
        let d = MetricsSettings::default();
        let listen = match self.listen {
            None => d.listen,
            Some(l) => Some(l.get_ref().parse().map_err(|_| {
                (
                    l.span().start,
                    format!(
                        "`{}` is not an address and port (like \"127.0.0.1:9777\")",
                        l.get_ref()
                    ),
                )
            })?),
        };
        let top_growers = match self.top_growers {
            Some(n) if *n.get_ref() > 100 => {
                return Err((
                    n.span().start,
                    "must be at most 100 (each grower is a label set)".into(),
                ));
            }
            Some(n) => n.into_inner(),
            None => d.top_growers,
        };
        Ok(MetricsSettings {
            listen: listen.filter(|_| self.enabled.unwrap_or(true)),
            top_growers,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerting {
    alertmanagers: Option<toml::Spanned<Vec<String>>>,
    webhooks: Option<toml::Spanned<Vec<String>>>,
    tls: Option<RawReceiverTls>,
    host: Option<String>,
    resend_interval: Option<toml::Spanned<Span>>,
    min_firing: Option<Span>,
    queue_size: Option<toml::Spanned<usize>>,
    timeout: Option<toml::Spanned<Span>>,
    breaker_failures: Option<toml::Spanned<usize>>,
    breaker_window: Option<toml::Spanned<Span>>,
    breaker_open: Option<toml::Spanned<Span>>,
    backoff_max: Option<toml::Spanned<Span>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReceiverTls {
    ca_file: Option<PathBuf>,
    cert_file: Option<toml::Spanned<PathBuf>>,
    key_file: Option<toml::Spanned<PathBuf>>,
}

impl RawReceiverTls {
    /// A client certificate without its key (or the reverse) is refused
    /// at the one that is set.
    fn check(self) -> Result<ReceiverTls, Problem> {
        let client = match (self.cert_file, self.key_file) {
            (Some(cert), Some(key)) => Some(ClientIdentity {
                cert_file: cert.into_inner(),
                key_file: key.into_inner(),
            }),
            (None, None) => None,
            (Some(cert), None) => {
                return Err((
                    cert.span().start,
                    "set key_file, its private key, too".into(),
                ));
            }
            (None, Some(key)) => {
                return Err((
                    key.span().start,
                    "set cert_file, its certificate, too".into(),
                ));
            }
        };
        Ok(ReceiverTls {
            ca_file: self.ca_file,
            client,
        })
    }
}

/// `http://` or `https://` with a host; a URL the agent could not deliver
/// to is refused here, not at the first alert.
fn urls(v: Option<toml::Spanned<Vec<String>>>) -> Result<Vec<String>, Problem> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let at = v.span().start;
    let v = v.into_inner();
    for u in &v {
        let parsed = u.parse::<http::Uri>().ok();
        let ok = u
            .strip_prefix("http://")
            .or_else(|| u.strip_prefix("https://"))
            .and_then(|rest| rest.split('/').next())
            .is_some_and(|authority| !authority.is_empty())
            && parsed.is_some();
        if !ok {
            return Err((
                at,
                format!("`{u}` is not an http:// or https:// URL with a host"),
            ));
        }
        // It would be sent as the Host header, and logged with the URL.
        if parsed
            .and_then(|p| p.authority().map(|a| a.as_str().contains('@')))
            .unwrap_or(false)
        {
            return Err((
                at,
                format!("`{u}` carries a user or password: the agent sends none, and would log it"),
            ));
        }
    }
    Ok(v)
}

fn positive(s: Option<toml::Spanned<Span>>, default: Duration) -> Result<Duration, Problem> {
    match s {
        None => Ok(default),
        Some(s) if s.get_ref().0.is_zero() => Err((s.span().start, "must be above 0".into())),
        Some(s) => Ok(s.into_inner().0),
    }
}

impl RawAlerting {
    pub(super) fn check(self) -> Result<AlertingSettings, Problem> {
        let d = AlertingSettings::default();
        let at_least_one = |v: Option<toml::Spanned<usize>>, default: usize| match v {
            Some(n) if *n.get_ref() == 0 => Err((n.span().start, "must be at least 1".into())),
            Some(n) => Ok(n.into_inner()),
            None => Ok(default),
        };
        let resend_interval = positive(self.resend_interval, d.resend_interval)?;
        Ok(AlertingSettings {
            alertmanagers: urls(self.alertmanagers)?,
            webhooks: urls(self.webhooks)?,
            tls: self
                .tls
                .map(RawReceiverTls::check)
                .transpose()?
                .unwrap_or_default(),
            host: self.host.filter(|h| !h.is_empty()),
            resend_interval,
            min_firing: self.min_firing.map(|s| s.0).unwrap_or(d.min_firing),
            queue_size: at_least_one(self.queue_size, d.queue_size)?,
            timeout: positive(self.timeout, d.timeout)?,
            breaker_failures: at_least_one(self.breaker_failures, d.breaker_failures)?,
            breaker_window: positive(self.breaker_window, d.breaker_window)?,
            breaker_open: positive(self.breaker_open, d.breaker_open)?,
            backoff_max: positive(self.backoff_max, d.backoff_max)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn metrics_listen_on_loopback_by_default_and_can_be_turned_off() {
        let c = Config::parse("", "t").unwrap();
        assert_eq!(c.metrics.listen.unwrap().to_string(), "127.0.0.1:9777");
        let c = Config::parse("[metrics]\nenabled = false\n", "t").unwrap();
        assert!(c.metrics.listen.is_none());
        let e = Config::parse("[metrics]\nlisten = \"9100\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:2:10: key `metrics.listen`"), "{e}");
        let e = Config::parse("[metrics]\ntop_growers = 1000\n", "t")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("metrics.top_growers") && e.contains("at most 100"),
            "{e}"
        );
    }

    #[test]
    fn alert_receivers_must_be_http_urls_and_bounds_positive() {
        let c = Config::parse(
            "[alerting]\nalertmanagers = [\"http://127.0.0.1:9093\"]\nbreaker_open = \"5s\"\n",
            "t",
        )
        .unwrap();
        assert!(c.alerting.enabled());
        assert_eq!(c.alerting.breaker_open.as_secs(), 5);
        assert_eq!(c.alerting.breaker_failures, 3);
        assert!(!Config::parse("", "t").unwrap().alerting.enabled());
        for (text, key) in [
            ("webhooks = [\"ftp://x\"]", "alerting.webhooks"),
            ("alertmanagers = [\"am:9093\"]", "alerting.alertmanagers"),
            ("queue_size = 0", "alerting.queue_size"),
            ("timeout = \"0s\"", "alerting.timeout"),
            ("tls = { cert_file = \"/c.pem\" }", "alerting.tls"),
            ("tls = { ca = \"/ca.pem\" }", "alerting.tls"),
            ("webhooks = [\"https://u:p@h/x\"]", "alerting.webhooks"),
        ] {
            let e = Config::parse(&format!("[alerting]\n{text}\n"), "t")
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("key `{key}`")), "{text}: {e}");
        }
    }

    #[test]
    fn https_receivers_take_a_ca_and_a_client_certificate_in_pairs() {
        let c = Config::parse(
            "[alerting]\nalertmanagers = [\"https://am.internal:9093\"]\nwebhooks = [\"http://h/x\"]\n[alerting.tls]\nca_file = \"/etc/sentinel/ca.pem\"\ncert_file = \"/etc/sentinel/client.pem\"\nkey_file = \"/etc/sentinel/client.key\"\n",
            "t",
        )
        .unwrap();
        assert!(c.alerting.any_https());
        let tls = &c.alerting.tls;
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(Path::new("/etc/sentinel/ca.pem"))
        );
        let id = tls.client.as_ref().unwrap();
        assert_eq!(id.key_file, Path::new("/etc/sentinel/client.key"));
        let c = Config::parse("[alerting]\nwebhooks = [\"http://h/x\"]\n", "t").unwrap();
        assert!(!c.alerting.any_https());
        assert_eq!(c.alerting.tls, Default::default());
        let e = Config::parse(
            "[alerting]\nwebhooks = [\"https://h/x\"]\n\n[alerting.tls]\nkey_file = \"/k\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("t.toml:5:12: key `alerting.tls.key_file`")
                && e.contains("set cert_file"),
            "{e}"
        );
        // TLS files with no https:// receiver: warned about at start.
        let c = Config::parse(
            "[alerting]\nwebhooks = [\"http://h/x\"]\n[alerting.tls]\nca_file = \"/ca.pem\"\n",
            "t",
        )
        .unwrap();
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.contains("no receiver is https://")),
            "{:?}",
            c.warnings()
        );
    }
}
