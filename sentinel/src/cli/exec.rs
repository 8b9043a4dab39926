//! `sentinel exec --reserve SIZE -- CMD`: waits for a memory reservation,
//! runs CMD under it, releases it when CMD ends, and exits as CMD did.

use std::process::Command;

use super::CliError;
use sentinel_api::{client, pb};
use sentinel_core::units::{ByteSize, Span};

/// Exit status when the reservation was not granted in time (or the queue
/// was full): EX_TEMPFAIL, "try again later".
pub const NOT_ADMITTED: i32 = 75;

#[derive(clap::Args)]
pub struct Args {
    /// Memory CMD's process tree will need (e.g. 1600M, 12GiB).
    #[arg(long, value_parser = parse_size)]
    pub reserve: u64,
    /// background, low, normal, high or critical.
    #[arg(long, default_value = "normal")]
    pub priority: String,
    /// How long to wait for the grant (e.g. 30s, 10m); 0 for not at all.
    #[arg(long, default_value = "10m", value_parser = parse_span)]
    pub wait: f64,
    /// Reserve from the host, or from this process's memory cgroup.
    #[arg(long, default_value = "host", value_parser = ["host", "cgroup"])]
    pub scope: String,
    /// Longest life of the reservation (default 24h).
    #[arg(long, value_parser = parse_span)]
    pub ttl: Option<f64>,
    /// Shown to operators instead of the command line.
    #[arg(long)]
    pub holder: Option<String>,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    ByteSize::parse(s).map(|b| b.0)
}

fn parse_span(s: &str) -> Result<f64, String> {
    if s == "0" {
        return Ok(0.0);
    }
    Span::parse(s).map(|d| d.0.as_secs_f64())
}

/// CMD's exit status (128 + the signal that ended it), or `NOT_ADMITTED`.
pub async fn run(a: Args, agent: &client::Target) -> Result<i32, CliError> {
    let mut c = pb::admission_client::AdmissionClient::new(client::channel_to(agent).await?);
    let holder = a.holder.unwrap_or_else(|| a.cmd.join(" "));
    let granted = c
        .reserve(pb::ReserveRequest {
            bytes: a.reserve,
            scope: a.scope,
            priority: a.priority,
            holder,
            // This process: CMD is its child, so the reservation covers the
            // tree it starts.
            pid: std::process::id(),
            ttl_seconds: a.ttl.unwrap_or(0.0),
            wait_seconds: a.wait,
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
