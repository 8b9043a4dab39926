//! The client side of the binary: `status`, `top`, `decisions`, and the
//! offline `replay`.

pub mod exec;
mod output;
pub mod replay;
mod socket;
pub mod status;
pub mod top;

use std::io::Write;

use tokio_stream::StreamExt;

use self::output::print_decision;
pub use self::socket::SocketArg;
use crate::api::{client, pb};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Connect(#[from] client::ConnectError),
    /// Not a `source`: the code and message are the whole story, printed once.
    #[error("the agent refused the request: {:?}: {}", .0.code(), .0.message())]
    Rpc(tonic::Status),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        Self::Rpc(s)
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Resume,
    Protect,
    Unprotect,
}

/// Resume, protect or unprotect a process; prints the journal entry.
pub async fn operate(socket: &client::Target, op: Op, pid: u32) -> Result<(), CliError> {
    let mut c = client::connect_to(socket).await?;
    let r = pb::ProcessRef { pid };
    let d = match op {
        Op::Resume => c.resume(r).await?,
        Op::Protect => c.protect(r).await?,
        Op::Unprotect => c.unprotect(r).await?,
    }
    .into_inner();
    print_decision(&mut std::io::stdout().lock(), &d, false)?;
    Ok(())
}

pub async fn policy_show(socket: &client::Target) -> Result<(), CliError> {
    let p = client::connect_to(socket)
        .await?
        .get_policy(pb::GetPolicyRequest {})
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    writeln!(out, "# running policy, from {}", p.source)?;
    write!(out, "{}", p.toml)?;
    Ok(())
}

pub async fn policy_apply(socket: &client::Target, file: &std::path::Path) -> Result<(), CliError> {
    let toml = std::fs::read_to_string(file).map_err(|source| CliError::Read {
        path: file.display().to_string(),
        source,
    })?;
    let r = client::connect_to(socket)
        .await?
        .apply_policy(pb::PolicyText { toml })
        .await?
        .into_inner();
    if let Some(d) = r.decision {
        print_decision(&mut std::io::stdout().lock(), &d, false)?;
    }
    Ok(())
}

/// Which decisions `sentinel decisions` shows.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DecisionFilter {
    /// Only decisions about this process.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Only this kind: preempt, resume, pressure, kernel_oom_kill, policy,
    /// protect.
    #[arg(long, default_value = "")]
    pub kind: String,
    /// Only decisions under this rule.
    #[arg(long, default_value = "")]
    pub rule: String,
    /// Only this action: alert, freeze, terminate, kill, resume, ...
    #[arg(long, default_value = "")]
    pub action: String,
}

impl DecisionFilter {
    fn keeps(&self, d: &pb::Decision) -> bool {
        self.pid.is_none_or(|p| d.pid == p)
            && (self.kind.is_empty() || d.kind == self.kind)
            && (self.rule.is_empty() || d.rule == self.rule)
            && (self.action.is_empty() || d.action == self.action)
    }
}

pub async fn decisions(
    socket: &client::Target,
    follow: bool,
    json: bool,
    since: Option<u64>,
    limit: u32,
    filter: DecisionFilter,
) -> Result<(), CliError> {
    let mut c = client::connect_to(socket).await?;
    if follow {
        let mut stream = c
            .watch_decisions(pb::WatchDecisionsRequest { after_seq: since })
            .await?
            .into_inner();
        while let Some(d) = stream.next().await {
            let d = d?;
            if !filter.keeps(&d) {
                continue;
            }
            let mut out = std::io::stdout().lock();
            print_decision(&mut out, &d, json)?;
            out.flush()?;
        }
        return Ok(());
    }
    let r = c
        .list_decisions(pb::ListDecisionsRequest {
            after_seq: since.unwrap_or(0),
            limit,
            pid: filter.pid,
            kind: filter.kind,
            rule: filter.rule,
            action: filter.action,
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    for d in &r.decisions {
        print_decision(&mut out, d, json)?;
    }
    Ok(())
}
