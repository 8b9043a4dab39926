//! `sentinel policy`: check a policy file, show the running policy, or
//! replace it.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use super::{CliError, output::print_decision};
use sentinel_api::{client, pb};
use sentinel_core::config::Config;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Validate a config file; errors name the file, line and key.
    Check { file: PathBuf },
    /// Print the running policy and where it came from.
    Show,
    /// Replace the running policy with FILE (admin); an invalid one is
    /// refused and the running one stays.
    Apply { file: PathBuf },
}

pub async fn run(args: Args, agent: &client::Target) -> Result<(), CliError> {
    match args.cmd {
        Cmd::Check { file } => check(&file),
        Cmd::Show => show(agent).await,
        Cmd::Apply { file } => apply(agent, &file).await,
    }
}

/// Needs no agent: parses the file as the agent would.
fn check(file: &Path) -> Result<(), CliError> {
    let c = Config::load(file)?;
    println!("{}: ok, {} rules", file.display(), c.rules.len());
    for w in c.warnings() {
        eprintln!("warning: {}: {w}", file.display());
    }
    Ok(())
}

async fn show(socket: &client::Target) -> Result<(), CliError> {
    let p = client::connect_to(socket)
        .await?
        .get_policy(pb::GetPolicyRequest {})
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    writeln!(out, "# running policy, from {}", p.source)?;
    if !p.not_in_use.is_empty() {
        writeln!(
            out,
            "# not in use until the agent restarts (read only at start, it runs with its earlier values): {}",
            p.not_in_use.join(", ")
        )?;
    }
    write!(out, "{}", p.toml)?;
    Ok(())
}

async fn apply(socket: &client::Target, file: &Path) -> Result<(), CliError> {
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
    if !r.start_only.is_empty() {
        eprintln!(
            "note: read only at start, these keep their running values until the agent restarts: {}",
            r.start_only.join(", ")
        );
    }
    Ok(())
}
