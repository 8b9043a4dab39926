//! TLS to `https://` receivers: the CAs their certificates must chain to
//! (a file, or the system's bundle) and an optional client certificate.
//! Everything is read and checked once at start, so a bad file stops the
//! agent with its key and path instead of failing every alert later.

use std::{path::Path, sync::Arc};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::{
    TlsConnector,
    rustls::{self, RootCertStore},
};

use sentinel_core::config::ReceiverTls;

/// Where distributions keep their CA bundle: Debian and Ubuntu, Fedora and
/// RHEL, openSUSE, Alpine. `SSL_CERT_FILE` is read before these.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("alerting.tls.{key} {path}: {reason}")]
    File {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error(
        "alerting: https:// receivers need CAs to trust, and no system bundle exists ({tried}); set alerting.tls.ca_file"
    )]
    NoSystemBundle { tried: String },
    #[error("alerting.tls: client certificate {cert} with key {key}: {source}")]
    Identity {
        cert: String,
        key: String,
        source: rustls::Error,
    },
}

/// The connector for `https://` receivers.
pub fn connector(s: &ReceiverTls) -> Result<TlsConnector, TlsError> {
    let roots = roots(s)?;
    // The provider is named here rather than taken from a process default,
    // so nothing else in the binary can change what alerts are sent with.
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots);
    let mut config = match &s.client {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let certs = certificates("cert_file", &id.cert_file)?;
            let key = PrivateKeyDer::from_pem_file(&id.key_file)
                .map_err(|e| file_error("key_file", &id.key_file, e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|source| TlsError::Identity {
                    cert: id.cert_file.display().to_string(),
                    key: id.key_file.display().to_string(),
                    source,
                })?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `ca_file` alone when set (a private CA must not be widened to every
/// public one), every certificate of it usable; else the system's bundle,
/// less what webpki cannot use (large bundles carry a few such CAs).
fn roots(s: &ReceiverTls) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match &s.ca_file {
        Some(path) => {
            for cert in certificates("ca_file", path)? {
                store.add(cert).map_err(|e| TlsError::File {
                    key: "ca_file",
                    path: path.display().to_string(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
        }
        None => {
            let path = system_bundle()?;
            let (added, skipped) = store.add_parsable_certificates(certificates("ca_file", &path)?);
            if added == 0 {
                return Err(TlsError::NoSystemBundle {
                    tried: format!("{} holds no usable CA", path.display()),
                });
            }
            if skipped > 0 {
                tracing::debug!(bundle = %path.display(), added, skipped, "CA certificates webpki cannot use were left out");
            }
        }
    }
    Ok(store)
}

fn system_bundle() -> Result<std::path::PathBuf, TlsError> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| TlsError::NoSystemBundle {
            tried: SYSTEM_BUNDLES.join(", "),
        })
}

/// Every certificate in a PEM file; none at all is an error.
fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(key, path, e))?;
    if certs.is_empty() {
        return Err(file_error(
            key,
            path,
            rustls_pki_types::pem::Error::NoItemsFound,
        ));
    }
    Ok(certs)
}

fn file_error(key: &'static str, path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    use rustls_pki_types::pem::Error;
    let reason = match e {
        Error::Io(e) => format!("cannot read: {e}"),
        Error::NoItemsFound => match key {
            "key_file" => "no PEM private key in it".to_string(),
            _ => "no PEM certificate in it".to_string(),
        },
        other => format!("not valid PEM: {other}"),
    };
    TlsError::File {
        key,
        path: path.display().to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_core::config::ClientIdentity;

    fn dir(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("sentinel-alert-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn bad_files_are_named_by_key_and_path() {
        let d = dir("bad");
        let empty = d.join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let missing = d.join("missing.pem");
        let cases = [
            (
                Some(missing.clone()),
                None,
                "alerting.tls.ca_file",
                "cannot read",
            ),
            (
                Some(empty.clone()),
                None,
                "alerting.tls.ca_file",
                "no PEM certificate",
            ),
        ];
        for (ca, client, key, why) in cases {
            let e = connector(&ReceiverTls {
                ca_file: ca.clone(),
                client,
            })
            .err()
            .expect("an error")
            .to_string();
            let path = ca.unwrap().display().to_string();
            assert!(e.starts_with(&format!("{key} {path}: {why}")), "{e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A self-signed certificate and its key, made once with `openssl req
    /// -x509 -newkey ec` for these tests: only parsed, never trusted.
    const FIXTURE_CERT: &str = concat!(
        "-----BEGIN CERTIFICATE-----\n",
        "MIIBmDCCAT2gAwIBAgIUSFZpplBq4CEaXLvMz7nFzbRrKoswCgYIKoZIzj0EAwIw\n",
        "IDEeMBwGA1UEAwwVc2VudGluZWwtdGVzdC1maXh0dXJlMCAXDTI2MTIwNDIzNTU0\n",
        "MFoYDzIxMjYxMTEwMjM1NTQwWjAgMR4wHAYDVQQDDBVzZW50aW5lbC10ZXN0LWZp\n",
        "eHR1cmUwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATNn5d/5lWEP851ggTm7eLO\n",
        "ZArCnZtwdyOnMg4k+o1ylsjn+cd46TVcw9+BTpxHaV+YCz71DnabYSVtp/dIcLZu\n",
        "o1MwUTAdBgNVHQ4EFgQU1JYRZbzKKVUQXDJbIFsDbr97Qs8wHwYDVR0jBBgwFoAU\n",
        "1JYRZbzKKVUQXDJbIFsDbr97Qs8wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD\n",
        "AgNJADBGAiEAqn69DoTfke7iRGHqptwAjEYnoLsuEzyaGI8UQRU3o+cCIQDvdWeR\n",
        "stIWSd9VmbZU+jHvvfiqzJDHlNH2AXWZSoW0ew==\n",
        "-----END CERTIFICATE-----\n",
    );
    const FIXTURE_KEY: &str = concat!(
        "-----BEGIN PRIVATE KEY-----\n",
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgO7MMBBXS/c0qfPS2\n",
        "VQzBKyW7+AcQ/NEJIWKrCgAaFlChRANCAATNn5d/5lWEP851ggTm7eLOZArCnZtw\n",
        "dyOnMg4k+o1ylsjn+cd46TVcw9+BTpxHaV+YCz71DnabYSVtp/dIcLZu\n",
        "-----END PRIVATE KEY-----\n",
    );

    #[test]
    fn a_ca_file_and_a_client_pair_make_a_connector_and_a_bad_key_is_named() {
        let d = dir("pair");
        let (cert, key, empty) = (d.join("c.pem"), d.join("c.key"), d.join("empty.key"));
        std::fs::write(&cert, FIXTURE_CERT).unwrap();
        std::fs::write(&key, FIXTURE_KEY).unwrap();
        std::fs::write(&empty, "").unwrap();
        let tls = |key_file: &Path| ReceiverTls {
            ca_file: Some(cert.clone()),
            client: Some(ClientIdentity {
                cert_file: cert.clone(),
                key_file: key_file.to_path_buf(),
            }),
        };
        assert!(connector(&tls(&key)).is_ok());
        let e = connector(&tls(&empty)).err().expect("an error").to_string();
        assert_eq!(
            e,
            format!(
                "alerting.tls.key_file {}: no PEM private key in it",
                empty.display()
            )
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
