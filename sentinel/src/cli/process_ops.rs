//! `sentinel resume`, `protect` and `unprotect`: the operator's actions on
//! one process. They take the same arguments and print the journal entry
//! the agent made.

use super::{CliError, output::print_decision};
use sentinel_api::{client, pb};

#[derive(clap::Args)]
pub struct Args {
    pub pid: u32,
}

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Resume,
    Protect,
    Unprotect,
}

/// Resume, protect or unprotect a process; prints the journal entry.
pub async fn run(op: Op, args: Args, agent: &client::Target) -> Result<(), CliError> {
    let mut c = client::connect_to(agent).await?;
    let r = pb::ProcessRef { pid: args.pid };
    let d = match op {
        Op::Resume => c.resume(r).await?,
        Op::Protect => c.protect(r).await?,
        Op::Unprotect => c.unprotect(r).await?,
    }
    .into_inner();
    print_decision(&mut std::io::stdout().lock(), &d, false)?;
    Ok(())
}
