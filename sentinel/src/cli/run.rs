//! `sentinel run`: the agent itself.

use std::path::PathBuf;

use super::{CliError, SocketArg};
use sentinel_core::config;

use crate::{
    agent::{self, RunOptions},
    relay::dial::Network,
};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, env = "SENTINEL_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Decide and record, but signal nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not load eBPF; poll /proc instead.
    #[arg(long)]
    pub no_ebpf: bool,
    /// Reach the network only through `sentinel relay` at this socket:
    /// the relay binds metrics.listen and api.tcp and connects to the
    /// alert receivers, so the agent needs no network of its own (the
    /// packaged unit runs it with PrivateNetwork=yes).
    #[arg(long, value_name = "SOCKET")]
    pub relay: Option<PathBuf>,
    /// Not a flag: what `agent::join_host_cgroup_namespace` did. main.rs
    /// calls it and fills this in before the runtime starts any thread.
    #[arg(skip)]
    pub cgroup_namespace: Option<Result<bool, String>>,
}

/// `conn`: the global --socket, which overrides the config's.
pub async fn run(args: Args, conn: &SocketArg) -> Result<(), CliError> {
    init_logging();
    if conn.has_client_tls() {
        tracing::warn!(
            "--tls-cert, --tls-key and --tls-ca (or SENTINEL_TLS_*) are for clients and ignored by the agent; its own TLS is [api.tcp] in its config"
        );
    }
    agent::run(RunOptions {
        config_path: args.config,
        socket: conn.listen_socket(),
        dry_run: args.dry_run,
        no_ebpf: args.no_ebpf,
        network: args.relay.map_or(Network::Direct, Network::Relay),
        cgroup_namespace: args.cgroup_namespace,
    })
    .await?;
    Ok(())
}

pub(super) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SENTINEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
