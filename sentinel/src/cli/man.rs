//! `sentinel man DIR`: the man pages, one for `sentinel` and one for each
//! subcommand (`sentinel-status.1`), generated from the clap definitions
//! so they cannot drift from `--help`. Hidden: the package build runs it.

use std::path::PathBuf;

use clap::CommandFactory;

use super::{Cli, CliError};

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the pages (created if missing).
    pub dir: PathBuf,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let err = |source| CliError::Read {
        path: args.dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&args.dir).map_err(err)?;
    clap_mangen::generate_to(Cli::command(), &args.dir).map_err(err)
}
