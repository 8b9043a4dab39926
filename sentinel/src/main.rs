use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use sentinel::{
    agent::{self, RunOptions},
    cli, config,
};

#[derive(Parser)]
#[command(
    version,
    about = "Predicts which process will exhaust memory and stops it first"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent (needs root for eBPF and for signalling processes).
    Run {
        #[arg(long, env = "SENTINEL_CONFIG", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Overrides the config's socket.
        #[arg(long)]
        socket: Option<String>,
        /// Decide and record, but signal nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not load eBPF; poll /proc instead.
        #[arg(long)]
        no_ebpf: bool,
    },
    /// Agent health, probes and counters.
    Status(cli::status::Args),
    /// Tracked processes, fastest growers first.
    Top(cli::top::Args),
    /// Decisions the agent made; --follow streams new ones.
    Decisions(cli::decisions::Args),
    /// Replay a trace through the model and policy, without a kernel, and
    /// print the decisions (--scenarios: run the built-in scenario table).
    Replay(cli::replay::Args),
    /// Policy files, and the running policy.
    Policy(cli::policy::Args),
    /// Wait for a memory reservation, run CMD under it, release it when CMD
    /// ends, and exit as CMD did; exit 75 when not admitted in time.
    Exec(cli::exec::Args),
    /// Resume a process Sentinel froze (uid 0 or agent.admin_group).
    Resume(cli::process_ops::Args),
    /// Never signal this process, not even freeze it (admin).
    Protect(cli::process_ops::Args),
    /// Take back `protect` (admin).
    Unprotect(cli::process_ops::Args),
    /// Print a shell completion script, e.g.
    /// `sentinel completions bash > /etc/bash_completion.d/sentinel`.
    Completions { shell: clap_complete::Shell },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SENTINEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before the runtime's threads exist (see the function).
    let cgroup_ns = matches!(cli.cmd, Cmd::Run { .. }).then(agent::join_host_cgroup_namespace);
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
    let result: anyhow::Result<()> = rt.block_on(async {
        match cli.cmd {
            Cmd::Run {
                config,
                socket,
                dry_run,
                no_ebpf,
            } => {
                init_logging();
                agent::run(RunOptions {
                    config_path: config,
                    socket,
                    dry_run,
                    no_ebpf,
                    cgroup_namespace: cgroup_ns.map(|r| r.map_err(|e| e.to_string())),
                })
                .await?
            }
            Cmd::Status(args) => cli::status::run(args).await?,
            Cmd::Top(args) => cli::top::run(args).await?,
            Cmd::Decisions(args) => cli::decisions::run(args).await?,
            Cmd::Replay(args) => cli::replay::run(args)?,
            Cmd::Policy(args) => cli::policy::run(args).await?,
            Cmd::Exec(args) => {
                let code = cli::exec::run(args).await?;
                std::process::exit(code);
            }
            Cmd::Resume(args) => cli::process_ops::run(cli::process_ops::Op::Resume, args).await?,
            Cmd::Protect(args) => {
                cli::process_ops::run(cli::process_ops::Op::Protect, args).await?
            }
            Cmd::Unprotect(args) => {
                cli::process_ops::run(cli::process_ops::Op::Unprotect, args).await?
            }
            Cmd::Completions { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "sentinel",
                    &mut std::io::stdout(),
                );
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sentinel: {e:#}");
            ExitCode::FAILURE
        }
    }
}
