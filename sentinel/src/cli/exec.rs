//! `sentinel exec --reserve SIZE -- CMD`: waits for a memory reservation,
//! runs CMD under it, releases it when CMD ends, and exits as CMD did.

use std::process::Command;

use super::CliError;
use crate::api::{client, pb};

/// Exit status when the reservation was not granted in time (or the queue
/// was full): EX_TEMPFAIL, "try again later".
pub const NOT_ADMITTED: i32 = 75;

pub struct ExecArgs {
    pub bytes: u64,
    pub priority: String,
    pub scope: String,
    pub wait_secs: f64,
    pub ttl_secs: f64,
    pub holder: Option<String>,
    pub cmd: Vec<String>,
}

/// CMD's exit status (128 + the signal that ended it), or `NOT_ADMITTED`.
pub async fn run(target: &client::Target, a: ExecArgs) -> Result<i32, CliError> {
    let mut c = pb::admission_client::AdmissionClient::new(client::channel_to(target).await?);
    let holder = a.holder.unwrap_or_else(|| a.cmd.join(" "));
    let granted = c
        .reserve(pb::ReserveRequest {
            bytes: a.bytes,
            scope: a.scope,
            priority: a.priority,
            holder,
            // This process: CMD is its child, so the reservation covers the
            // tree it starts.
            pid: std::process::id(),
            ttl_seconds: a.ttl_secs,
            wait_seconds: a.wait_secs,
        })
        .await;
    let r = match granted {
        Ok(r) => r.into_inner(),
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted
            ) =>
        {
            eprintln!("sentinel exec: not admitted: {}", s.message());
            return Ok(NOT_ADMITTED);
        }
        Err(s) => return Err(CliError::Rpc(s)),
    };
    let cmd = a.cmd.clone();
    let status =
        tokio::task::spawn_blocking(move || Command::new(&cmd[0]).args(&cmd[1..]).status())
            .await
            .map_err(|e| CliError::Io(std::io::Error::other(e)))?;
    // Released whatever happened to CMD; a reservation already ended
    // (expired, or its tree seen gone) is not an error.
    if let Err(s) = c.release(pb::ReleaseRequest { id: r.id }).await
        && s.code() != tonic::Code::NotFound
    {
        eprintln!(
            "sentinel exec: releasing reservation {}: {}",
            r.id,
            s.message()
        );
    }
    let status = status
        .map_err(|e| CliError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", a.cmd[0]))))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}
