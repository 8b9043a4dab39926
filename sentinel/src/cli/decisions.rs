//! `sentinel decisions`: the decisions the agent made; `--follow` streams
//! new ones as they are made.

use std::io::Write;

use tokio_stream::StreamExt;

use super::{CliError, output::print_decision};
use sentinel_api::{client, pb};

#[derive(clap::Args)]
pub struct Args {
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Only decisions after this sequence number.
    #[arg(long)]
    pub since: Option<u64>,
    #[arg(short = 'n', long, default_value_t = 100)]
    pub limit: u32,
    #[command(flatten)]
    pub filter: DecisionFilter,
}

/// Which decisions `sentinel decisions` shows.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DecisionFilter {
    /// Only decisions about this process.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Only this kind: preempt, resume, pressure, kernel_oom_kill, policy,
    /// protect, admission, queue, custody.
    #[arg(long, default_value = "")]
    pub kind: String,
    /// Only decisions under this rule.
    #[arg(long, default_value = "")]
    pub rule: String,
    /// Only this action: alert, freeze, terminate, kill, resume, ...
    #[arg(long, default_value = "")]
    pub action: String,
}

impl DecisionFilter {
    fn keeps(&self, d: &pb::Decision) -> bool {
        self.pid.is_none_or(|p| d.pid == p)
            && (self.kind.is_empty() || d.kind == self.kind)
            && (self.rule.is_empty() || d.rule == self.rule)
            && (self.action.is_empty() || d.action == self.action)
    }
}

pub async fn run(args: Args, agent: &client::Target) -> Result<(), CliError> {
    let Args {
        follow,
        json,
        since,
        limit,
        filter,
    } = args;
    let mut c = client::connect_to(agent).await?;
    if follow {
        let mut stream = c
            .watch_decisions(pb::WatchDecisionsRequest { after_seq: since })
            .await?
            .into_inner();
        while let Some(d) = stream.next().await {
            let d = d?;
            if !filter.keeps(&d) {
                continue;
            }
            let mut out = std::io::stdout().lock();
            print_decision(&mut out, &d, json)?;
            out.flush()?;
        }
        return Ok(());
    }
    let r = c
        .list_decisions(pb::ListDecisionsRequest {
            after_seq: since.unwrap_or(0),
            limit,
            pid: filter.pid,
            kind: filter.kind,
            rule: filter.rule,
            action: filter.action,
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    for d in &r.decisions {
        print_decision(&mut out, d, json)?;
    }
    if r.decisions.is_empty() && !json {
        // An empty answer is an answer: say so, on stderr so that scripts
        // reading stdout still see nothing.
        let since = since.map(|s| format!(" after {s}")).unwrap_or_default();
        eprintln!("no decisions{since} match; `sentinel decisions --follow` waits for new ones");
    }
    Ok(())
}
