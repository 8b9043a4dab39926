//! Who may do what through the API. Anyone who can connect to the socket
//! (mode 0660, owner root, group `agent.socket_group`) may read; changing
//! policy or signalling (ApplyPolicy, Resume, Protect, Unprotect) takes
//! uid 0 or membership of `agent.admin_group`. The kernel vouches for the
//! peer (SO_PEERCRED), so nothing the client sends decides its role.
//!
//! Over TCP (mutual TLS only) the client certificate, which the handshake
//! has already checked against the configured CA, is the identity: a DNS
//! name in its subjectAltName listed in `api.admin_names` makes it admin.

use std::net::SocketAddr;

use tonic::{
    Request, Status,
    transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo},
};

use super::gate::{Linked, PeerKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reader,
    Admin,
}

/// A caller on the Unix socket, as the kernel reported it at connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "uid {} (pid {pid})", self.uid),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

/// A caller over mutual TLS: the admin name its certificate carries, if
/// any, and the certificate's SHA-256 so a reader is still identifiable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPeer {
    pub addr: Option<SocketAddr>,
    pub admin_name: Option<String>,
    pub fingerprint: String,
}

impl std::fmt::Display for TlsPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.admin_name {
            Some(n) => write!(f, "tls client `{n}`")?,
            None => write!(f, "tls client sha256:{}", self.fingerprint)?,
        }
        match self.addr {
            Some(a) => write!(f, " from {a}"),
            None => Ok(()),
        }
    }
}

/// The first of `admin_names` that the certificate (DER) is valid for,
/// by the DNS names of its subjectAltName.
pub fn admin_name_of(cert_der: &[u8], admin_names: &[String]) -> Option<String> {
    let der = rustls_pki_types::CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der).ok()?;
    admin_names
        .iter()
        .find(|n| {
            rustls_pki_types::ServerName::try_from(n.as_str())
                .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
        })
        .cloned()
}

/// Lower-case hex SHA-256 of a certificate, as `openssl x509 -fingerprint
/// -sha256` prints it without the colons.
pub fn fingerprint(cert_der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, cert_der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The role of a peer: uid 0, or the admin group as its primary or a
/// supplementary group, is admin.
pub fn role(peer: &Peer, groups: &[u32], admin_gid: Option<u32>) -> Role {
    let in_admin = admin_gid.is_some_and(|g| peer.gid == g || groups.contains(&g));
    if peer.uid == 0 || in_admin {
        Role::Admin
    } else {
        Role::Reader
    }
}

/// The `Groups:` line of /proc/PID/status.
pub fn parse_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The real uid of a running process.
pub fn uid_of(pid: u32) -> Option<u32> {
    crate::collector::procfs::read_uid(pid)
}

/// The group id of `name`, from the system's group database.
pub fn gid_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam returns a pointer into static storage or null; the
    // gid is copied out at once, and the agent resolves groups only at start.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    // SAFETY: checked non-null just before.
    (!g.is_null()).then(|| unsafe { (*g).gr_gid })
}

#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    pub admin_group: Option<(String, u32)>,
    /// `api.admin_names`: certificate names that are admins over TLS.
    pub tls_admin_names: Vec<String>,
}

impl AccessPolicy {
    /// The caller, when it came over TLS with a client certificate.
    pub fn tls_peer<T>(&self, req: &Request<T>) -> Option<TlsPeer> {
        let tls = req
            .extensions()
            .get::<TlsConnectInfo<Linked<TcpConnectInfo>>>()?;
        let certs = tls.peer_certs()?;
        let leaf = certs.first()?;
        Some(TlsPeer {
            addr: tls.get_ref().info.remote_addr(),
            admin_name: admin_name_of(leaf, &self.tls_admin_names),
            fingerprint: fingerprint(leaf),
        })
    }

    /// The caller's identity as the kernel reported it at connect.
    pub fn peer<T>(req: &Request<T>) -> Option<Peer> {
        let info = &req.extensions().get::<Linked<UdsConnectInfo>>()?.info;
        let cred = info.peer_cred?;
        Some(Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        })
    }

    /// Who a call counts against in the API's caps: its uid on the Unix
    /// socket, its address over TCP.
    pub fn peer_key<T>(req: &Request<T>) -> PeerKey {
        if let Some(p) = Self::peer(req) {
            return PeerKey::Uid(p.uid);
        }
        req.extensions()
            .get::<TlsConnectInfo<Linked<TcpConnectInfo>>>()
            .and_then(|t| t.get_ref().info.remote_addr())
            .map_or(PeerKey::Unknown, |a| PeerKey::Addr(a.ip()))
    }

    /// Who the caller is (for the journal), when it may change policy or
    /// signal processes; otherwise PERMISSION_DENIED saying what it would
    /// take (and a log line).
    pub fn require_admin<T>(&self, req: &Request<T>, what: &str) -> Result<String, Status> {
        if let Some(tls) = self.tls_peer(req) {
            if tls.admin_name.is_some() {
                return Ok(tls.to_string());
            }
            let needs = if self.tls_admin_names.is_empty() {
                "no api.admin_names are set, so TLS clients only read".to_string()
            } else {
                format!(
                    "it needs a client certificate with one of these DNS names in its subjectAltName: {}",
                    self.tls_admin_names.join(", ")
                )
            };
            tracing::warn!(peer = %tls, what, "refused: not an admin");
            return Err(Status::permission_denied(format!(
                "{what} refused to {tls}: {needs}"
            )));
        }
        let peer = Self::peer(req)
            .ok_or_else(|| Status::permission_denied("the caller's credentials are unknown"))?;
        let groups = peer
            .pid
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .map(|s| parse_groups(&s))
            .unwrap_or_default();
        if role(&peer, &groups, self.admin_group.as_ref().map(|g| g.1)) == Role::Admin {
            return Ok(peer.to_string());
        }
        let needs = match &self.admin_group {
            Some((name, _)) => format!("uid 0 or group `{name}`"),
            None => "uid 0 (no agent.admin_group is set)".to_string(),
        };
        tracing::warn!(%peer, what, "refused: not an admin");
        Err(Status::permission_denied(format!(
            "{what} needs {needs}; the caller is {peer}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            uid,
            gid,
            pid: None,
        }
    }

    #[test]
    fn root_and_the_admin_group_are_admins_everyone_else_reads() {
        assert_eq!(role(&peer(0, 0), &[], None), Role::Admin);
        assert_eq!(role(&peer(1000, 1000), &[], None), Role::Reader);
        assert_eq!(role(&peer(1000, 1000), &[27, 998], Some(998)), Role::Admin);
        assert_eq!(role(&peer(1000, 998), &[], Some(998)), Role::Admin);
        assert_eq!(role(&peer(1000, 1000), &[27], Some(998)), Role::Reader);
    }

    #[test]
    fn groups_come_from_proc_status() {
        let s = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 998 \n";
        assert_eq!(parse_groups(s), vec![4, 24, 27, 998]);
        assert_eq!(crate::collector::procfs::parse_uid(s), Some(1000));
        assert_eq!(crate::collector::procfs::parse_uid("Name:\tx\n"), None);
        assert!(parse_groups("Groups:\n").is_empty());
        assert_eq!(gid_of("root"), Some(0));
        assert_eq!(gid_of("no-such-group-here"), None);
    }
}
