//! `sentinel completions SHELL`: a completion script for the whole command
//! line, generated from its clap definition.

use clap::CommandFactory;

use super::Cli;

#[derive(clap::Args)]
pub struct Args {
    pub shell: clap_complete::Shell,
}

pub fn run(args: Args) {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "sentinel",
        &mut std::io::stdout(),
    );
}
