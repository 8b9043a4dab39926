//! The API's Unix socket: refused while a live agent answers on it,
//! replaced when a crash left it behind.

use std::path::Path;

use tokio::net::UnixListener;

use super::AgentError;

/// Refuses a socket that a live agent answers on, so a second agent fails
/// before it loads anything.
pub async fn check_free(path: &str) -> Result<(), AgentError> {
    if Path::new(path).exists() && tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(AgentError::SocketInUse(path.to_string()));
    }
    Ok(())
}

/// Binds the API socket (mode 0660, owned by `group`), replacing a stale
/// one left by a crash. Done last, so a client that can connect talks to an
/// agent whose probes are live.
pub async fn bind(path: &str, group: Option<u32>) -> Result<UnixListener, AgentError> {
    check_free(path).await?;
    let p = Path::new(path);
    let err = |source| AgentError::Socket {
        path: path.to_string(),
        source,
    };
    if p.exists() {
        std::fs::remove_file(p).map_err(err)?;
    }
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let listener = UnixListener::bind(p).map_err(err)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(p, None, Some(gid)).map_err(|source| {
            if source.raw_os_error() == Some(libc::EPERM) {
                AgentError::SocketGroup {
                    path: path.to_string(),
                    gid,
                }
            } else {
                err(source)
            }
        })?;
    }
    Ok(listener)
}
