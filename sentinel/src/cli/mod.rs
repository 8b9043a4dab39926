//! The command line: `Cli` and its `Cmd` table here, and one module per
//! subcommand with its clap `Args` beside the code that runs it. `run` is
//! the agent; `replay`, `completions` and `policy check` work offline;
//! every other subcommand is a client of a running agent's API.

pub mod completions;
pub mod decisions;
pub mod exec;
pub mod man;
mod output;
pub mod policy;
pub mod process_ops;
pub mod relay;
pub mod replay;
pub mod run;
mod socket;
pub mod status;
pub mod thaw_all;
pub mod top;

use clap::{Parser, Subcommand};

use self::process_ops::Op;
pub use self::socket::SocketArg;
use sentinel_api::client;

#[derive(Parser)]
#[command(
    version,
    about = "Predicts which process will exhaust memory and stops it first"
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: SocketArg,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the agent (needs root for eBPF and for signalling processes).
    Run(run::Args),
    /// The agent's network for an agent without one (`run --relay`): binds
    /// its TCP listeners and connects to its alert receivers, unprivileged.
    Relay(relay::Args),
    /// Agent health, probes and counters.
    Status(status::Args),
    /// Tracked processes, fastest growers first.
    Top(top::Args),
    /// Decisions the agent made; --follow streams new ones.
    Decisions(decisions::Args),
    /// Replay a trace through the model and policy, without a kernel, and
    /// print the decisions (--scenarios: run the built-in scenario table).
    Replay(replay::Args),
    /// Policy files, and the running policy.
    Policy(policy::Args),
    /// Wait for a memory reservation, run CMD under it, release it when CMD
    /// ends, and exit as CMD did; exit 75 when not admitted in time.
    Exec(exec::Args),
    /// Resume a process Sentinel froze (uid 0 or agent.admin_group).
    Resume(process_ops::Args),
    /// Never signal this process, not even freeze it (admin).
    Protect(process_ops::Args),
    /// Take back `protect` (admin).
    Unprotect(process_ops::Args),
    /// With the agent stopped for good, resume every process it left
    /// frozen (the package's removal runs this).
    ThawAll(thaw_all::Args),
    /// Print a shell completion script, e.g.
    /// `sentinel completions bash > /etc/bash_completion.d/sentinel`.
    Completions(completions::Args),
    /// Write the man pages into DIR (the package build runs this).
    #[command(hide = true)]
    Man(man::Args),
}

/// How the process ends when a subcommand succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// Exactly this status: `exec` passes on its command's, or 75.
    Code(i32),
}

/// Runs one subcommand. `run`'s `cgroup_namespace` must already be filled
/// in (see `run::Args`).
pub async fn dispatch(cli: Cli) -> Result<Exit, CliError> {
    let agent = cli.conn.target();
    match cli.cmd {
        Cmd::Run(args) => run::run(args, &cli.conn).await?,
        Cmd::Relay(args) => relay::run(args).await?,
        Cmd::Status(args) => status::run(args, &agent).await?,
        Cmd::Top(args) => top::run(args, &agent).await?,
        Cmd::Decisions(args) => decisions::run(args, &agent).await?,
        Cmd::Replay(args) => replay::run(args)?,
        Cmd::Policy(args) => policy::run(args, &agent).await?,
        Cmd::Exec(args) => return Ok(Exit::Code(exec::run(args, &agent).await?)),
        Cmd::Resume(args) => process_ops::run(Op::Resume, args, &agent).await?,
        Cmd::Protect(args) => process_ops::run(Op::Protect, args, &agent).await?,
        Cmd::Unprotect(args) => process_ops::run(Op::Unprotect, args, &agent).await?,
        Cmd::ThawAll(args) => thaw_all::run(args)?,
        Cmd::Completions(args) => completions::run(args),
        Cmd::Man(args) => man::run(args)?,
    }
    Ok(Exit::Success)
}

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
    /// `policy check`: the file's own error, naming file, line and key.
    #[error(transparent)]
    Config(#[from] sentinel_core::config::ConfigError),
    /// `run`: the agent's own error.
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    #[error(transparent)]
    Replay(#[from] replay::ReplayError),
    #[error(transparent)]
    Relay(#[from] crate::relay::broker::RelayError),
    #[error(transparent)]
    Thaw(#[from] thaw_all::ThawError),
}

/// An error and its causes for the terminal, each said once: most errors
/// here already name their cause in their own message ("{path}: cannot
/// read: {source}"), and the whole chain would repeat it.
pub fn said_once(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        Self::Rpc(s)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let missing = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = super::CliError::Config(sentinel_core::config::ConfigError::Read {
            path: "/etc/x.toml".into(),
            source: missing(),
        });
        let text = super::said_once(&e);
        assert_eq!(text, format!("/etc/x.toml: cannot read: {}", missing()));
        // A cause the message does not name is still said.
        #[derive(Debug, thiserror::Error)]
        #[error("loading failed")]
        struct Outer(#[source] std::io::Error);
        let text = super::said_once(&Outer(missing()));
        assert_eq!(text, format!("loading failed: {}", missing()));
    }
}
