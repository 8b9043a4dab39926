//! `sentinel relay`: the agent's network, in a process of its own (see
//! `crate::relay`).

use std::path::PathBuf;

use sentinel_core::config::{self, Config};

use super::CliError;
use crate::relay::{
    self,
    broker::{Plan, Relay},
};

#[derive(clap::Args)]
pub struct Args {
    /// The agent's config: the listeners and alert receivers to serve.
    #[arg(long, env = "SENTINEL_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// The Unix socket the agent is started with (`sentinel run --relay`).
    #[arg(long, default_value = relay::DEFAULT_SOCKET)]
    pub listen: PathBuf,
}

/// Serves until SIGTERM. Receivers missing from what it read at start are
/// looked for in the config again when the agent asks for them (the agent
/// reads its own at its start); listeners change when it restarts.
pub async fn run(args: Args) -> Result<(), CliError> {
    super::run::init_logging();
    // As the agent reads it: the defaults when the file is missing.
    let cfg = Config::load_with_env(&args.config)?;
    let plan = Plan::of(&cfg);
    let (relay, bound) = Relay::bind(&plan, &args.listen, Some(args.config.clone()))?;
    tracing::info!(
        socket = %args.listen.display(),
        metrics = ?plan.metrics,
        api = ?plan.api,
        receivers = plan.receivers.len(),
        "relay serving"
    );
    tokio::spawn(relay::broker::serve(relay, bound));
    // A SIGHUP (a reload meant for the agent) must not end the relay.
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!(
                    "relay: nothing to reload (receivers are read again when the agent asks for one it lacks; listeners change on a restart)"
                );
            }
        });
    }
    crate::agent::shutdown().await;
    let _ = std::fs::remove_file(&args.listen);
    Ok(())
}
