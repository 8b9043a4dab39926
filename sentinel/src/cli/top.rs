//! `sentinel top`: tracked processes, fastest growers first; `--watch`
//! redraws the table until interrupted.

use std::{io::Write, time::Duration};

use super::{
    CliError,
    output::{eta, rate},
};
use sentinel_api::{client, pb};
use sentinel_core::units::human_bytes;

#[derive(clap::Args)]
pub struct Args {
    /// How many to show.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: u32,
    /// Only processes a rule governs.
    #[arg(long)]
    pub matched: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filter: TopFilter,
    /// Refresh every this many seconds until interrupted.
    #[arg(short, long)]
    pub watch: Option<f64>,
}

/// Which processes `sentinel top` lists, in what order.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TopFilter {
    /// Only processes whose memory cgroup path starts with this.
    #[arg(long, default_value = "")]
    pub cgroup: String,
    /// Only processes whose command name contains this.
    #[arg(long, default_value = "")]
    pub comm: String,
    /// Only processes governed by this rule.
    #[arg(long, default_value = "")]
    pub rule: String,
    /// slope (fastest growers first), charged, eta or pid.
    #[arg(long, default_value = "slope")]
    pub sort: String,
}

pub async fn run(args: Args, agent: &client::Target) -> Result<(), CliError> {
    let Some(every) = args.watch else {
        return show(&args, agent).await;
    };
    loop {
        // Home and clear, then the table: a refreshing view.
        print!("\x1b[H\x1b[2J");
        show(&args, agent).await?;
        tokio::time::sleep(Duration::from_secs_f64(every.max(0.1))).await;
    }
}

/// One listing, as a table or one JSON object per process.
async fn show(args: &Args, agent: &client::Target) -> Result<(), CliError> {
    let f = args.filter.clone();
    let r = client::connect_to(agent)
        .await?
        .list_processes(pb::ListProcessesRequest {
            limit: args.limit,
            matched_only: args.matched,
            cgroup_prefix: f.cgroup,
            comm: f.comm,
            rule: f.rule,
            sort: f.sort,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if args.json {
        print_json(&mut out, &r.processes)?;
    } else {
        print_table(&mut out, &r.processes)?;
    }
    Ok(())
}

fn print_json(out: &mut impl Write, processes: &[pb::Process]) -> std::io::Result<()> {
    for p in processes {
        let v = serde_json::json!({
            "pid": p.pid, "comm": p.comm, "cgroup": p.cgroup, "rule": p.rule,
            "resident_bytes": p.resident_bytes, "charged_bytes": p.charged_bytes,
            "slope_bytes_per_sec": p.slope_bytes_per_sec, "limit_bytes": p.limit_bytes,
            "predicted_seconds_to_limit": p.predicted_seconds_to_limit, "state": p.state,
            "page_faults": p.page_faults, "mapped_bytes": p.mapped_bytes,
            "level": p.level, "gpu_bytes": p.gpu_bytes, "ns_pid": p.ns_pid,
        });
        writeln!(out, "{v}")?;
    }
    Ok(())
}

fn print_table(out: &mut impl Write, processes: &[pb::Process]) -> std::io::Result<()> {
    // The GPU column only where some process holds GPU memory.
    let gpu = processes.iter().any(|p| p.gpu_bytes > 0);
    let gpu_cell = |p: &pb::Process| {
        if !gpu {
            String::new()
        } else if p.gpu_bytes > 0 {
            format!("{:>11} ", human_bytes(p.gpu_bytes as f64))
        } else {
            format!("{:>11} ", "-")
        }
    };
    writeln!(
        out,
        "{:>8} {:<16} {:>11} {:>11} {}{:>12} {:>11} {:>8} {:<11} {:<7} {:<12} CGROUP",
        "PID",
        "COMM",
        "RESIDENT",
        "CHARGED",
        if gpu {
            format!("{:>11} ", "GPU")
        } else {
            String::new()
        },
        "SLOPE",
        "LIMIT",
        "ETA",
        "STATE",
        "LEVEL",
        "RULE"
    )?;
    for p in processes {
        writeln!(
            out,
            "{:>8} {:<16} {:>11} {:>11} {}{:>12} {:>11} {:>8} {:<11} {:<7} {:<12} {}",
            p.pid,
            p.comm,
            human_bytes(p.resident_bytes as f64),
            human_bytes(p.charged_bytes as f64),
            gpu_cell(p),
            rate(p.slope_bytes_per_sec),
            if p.limit_bytes > 0 {
                human_bytes(p.limit_bytes as f64)
            } else {
                "-".into()
            },
            eta(p.predicted_seconds_to_limit),
            p.state,
            p.level,
            if p.rule.is_empty() { "-" } else { &p.rule },
            p.cgroup
        )?;
    }
    Ok(())
}
