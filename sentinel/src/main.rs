use std::process::ExitCode;

use clap::Parser;
use sentinel::{
    agent,
    cli::{self, Cli, Cmd, Exit},
};

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // Before the runtime's threads exist (see the function).
    if let Cmd::Run(args) = &mut cli.cmd {
        args.cgroup_namespace =
            Some(agent::join_host_cgroup_namespace().map_err(|e| e.to_string()));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sentinel: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::dispatch(cli)) {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        // exec: the status its command ended with, or 75.
        Ok(Exit::Code(code)) => std::process::exit(code),
        Err(e) => {
            eprintln!("sentinel: {}", cli::said_once(&e));
            ExitCode::FAILURE
        }
    }
}
