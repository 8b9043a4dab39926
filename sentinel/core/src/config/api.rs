//! `[api]`: the optional TCP listener. The Unix socket is always served;
//! TCP is served only with mutual TLS, because over a network nothing but a
//! client certificate can say who is calling.

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApiSettings {
    /// `None`: the Unix socket only.
    pub tcp: Option<TcpApi>,
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
}

/// A problem at a byte offset of the file (the table's start when no key
/// holds it), for the caller to turn into a positioned error.
pub(super) type Problem = (usize, String);

impl RawApi {
    pub(super) fn check(self, table_start: usize) -> Result<ApiSettings, Problem> {
        let Some(tcp) = self.tcp else {
            if self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_client_ca.is_some() {
                return Err((
                    table_start,
                    "tls_cert, tls_key and tls_client_ca apply only with `tcp = \"ADDRESS:PORT\"`"
                        .to_string(),
                ));
            }
            return Ok(ApiSettings::default());
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
        Ok(ApiSettings {
            tcp: Some(TcpApi {
                listen,
                cert,
                key,
                client_ca,
                admin_names,
            }),
        })
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
}
