use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use sentinel::{
    agent::{self, RunOptions},
    cli::{self, SocketArg},
    config,
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
    Exec {
        /// Memory CMD's process tree will need (e.g. 1600M, 12GiB).
        #[arg(long, value_parser = parse_size)]
        reserve: u64,
        /// background, low, normal, high or critical.
        #[arg(long, default_value = "normal")]
        priority: String,
        /// How long to wait for the grant (e.g. 30s, 10m); 0 for not at all.
        #[arg(long, default_value = "10m", value_parser = parse_span)]
        wait: f64,
        /// Reserve from the host, or from this process's memory cgroup.
        #[arg(long, default_value = "host", value_parser = ["host", "cgroup"])]
        scope: String,
        /// Longest life of the reservation (default 24h).
        #[arg(long, value_parser = parse_span)]
        ttl: Option<f64>,
        /// Shown to operators instead of the command line.
        #[arg(long)]
        holder: Option<String>,
        #[command(flatten)]
        socket: SocketArg,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
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

fn parse_size(s: &str) -> Result<u64, String> {
    sentinel::units::ByteSize::parse(s).map(|b| b.0)
}

fn parse_span(s: &str) -> Result<f64, String> {
    if s == "0" {
        return Ok(0.0);
    }
    sentinel::units::Span::parse(s).map(|d| d.0.as_secs_f64())
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
            Cmd::Exec {
                reserve,
                priority,
                wait,
                scope,
                ttl,
                holder,
                socket,
                cmd,
            } => {
                let code = cli::exec::run(
                    &socket.target(),
                    cli::exec::ExecArgs {
                        bytes: reserve,
                        priority,
                        scope,
                        wait_secs: wait,
                        ttl_secs: ttl.unwrap_or(0.0),
                        holder,
                        cmd,
                    },
                )
                .await?;
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
