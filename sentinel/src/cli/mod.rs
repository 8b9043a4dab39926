//! The client side of the binary: `status`, `top`, `decisions`, and the
//! offline `replay`.

pub mod exec;
mod output;
pub mod replay;

use std::io::Write;

use tokio_stream::StreamExt;

use self::output::{eta, print_decision, rate};
use crate::{
    api::{client, pb},
    units::human_bytes,
};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Connect(#[from] client::ConnectError),
    /// Not a `source`: the code and message are the whole story, printed once.
    #[error("the agent refused the request: {:?}: {}", .0.code(), .0.message())]
    Rpc(tonic::Status),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        Self::Rpc(s)
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Resume,
    Protect,
    Unprotect,
}

/// Resume, protect or unprotect a process; prints the journal entry.
pub async fn operate(socket: &client::Target, op: Op, pid: u32) -> Result<(), CliError> {
    let mut c = client::connect_to(socket).await?;
    let r = pb::ProcessRef { pid };
    let d = match op {
        Op::Resume => c.resume(r).await?,
        Op::Protect => c.protect(r).await?,
        Op::Unprotect => c.unprotect(r).await?,
    }
    .into_inner();
    print_decision(&mut std::io::stdout().lock(), &d, false)?;
    Ok(())
}

pub async fn policy_show(socket: &client::Target) -> Result<(), CliError> {
    let p = client::connect_to(socket)
        .await?
        .get_policy(pb::GetPolicyRequest {})
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    writeln!(out, "# running policy, from {}", p.source)?;
    write!(out, "{}", p.toml)?;
    Ok(())
}

pub async fn policy_apply(socket: &client::Target, file: &std::path::Path) -> Result<(), CliError> {
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
    Ok(())
}

pub async fn status(socket: &client::Target, json: bool) -> Result<(), CliError> {
    let s = client::connect_to(socket)
        .await?
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if json {
        let probes: Vec<_> = s
            .probes
            .iter()
            .map(
                |p| serde_json::json!({"name": p.name, "attached": p.attached, "detail": p.detail}),
            )
            .collect();
        let v = serde_json::json!({
            "version": s.version, "mode": s.mode, "degraded_reason": s.degraded_reason,
            "probes": probes, "tracked_processes": s.tracked_processes, "rules": s.rules,
            "dry_run": s.dry_run, "last_decision_seq": s.last_decision_seq,
            "kernel_oom_kills": s.kernel_oom_kills, "probe_events": s.probe_events,
            "lost_events": s.lost_events, "host_available_bytes": s.host_available_bytes,
            "host_total_bytes": s.host_total_bytes, "uptime_seconds": s.uptime_seconds,
            "tripwire_fires": s.tripwire_fires, "host_used_bytes": s.host_used_bytes,
            "host_limit_bytes": s.host_limit_bytes, "host_level": s.host_level,
            "psi_some_avg10": s.psi_some_avg10, "psi_trigger": s.psi_trigger,
            "journal_path": s.journal_path, "journal_write_failures": s.journal_write_failures,
            "crash_loops": s.crash_loops.iter().map(|l| serde_json::json!({
                "cmdline": l.cmdline, "count": l.count, "seconds_ago": l.seconds_ago,
            })).collect::<Vec<_>>(),
            "gpu_unavailable": s.gpu_unavailable, "gpu_driver": s.gpu_driver,
            "gpu_unmapped_pids": s.gpu_unmapped_pids,
            "reservations": s.reservations, "reserved_bytes": s.reserved_bytes,
            "admission_queued": s.admission_queued,
            "gpus": s.gpus.iter().map(|g| serde_json::json!({
                "index": g.index, "uuid": g.uuid, "name": g.name, "total_bytes": g.total_bytes,
                "used_bytes": g.used_bytes, "level": g.level, "error": g.error,
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "sentinel {} up {:.0}s, mode {}{}",
        s.version,
        s.uptime_seconds,
        s.mode,
        if s.dry_run { " (dry-run)" } else { "" }
    )?;
    if !s.degraded_reason.is_empty() {
        writeln!(out, "degraded: {}", s.degraded_reason)?;
    }
    writeln!(
        out,
        "host: {} available of {}; used {} of its {} line, level {}; memory pressure {}",
        human_bytes(s.host_available_bytes as f64),
        human_bytes(s.host_total_bytes as f64),
        human_bytes(s.host_used_bytes as f64),
        human_bytes(s.host_limit_bytes as f64),
        s.host_level,
        match (s.psi_some_avg10, s.psi_trigger) {
            (Some(a), true) => format!("{a:.2}% (trigger armed)"),
            (Some(a), false) => format!("{a:.2}% (no trigger)"),
            (None, _) => "unknown (no PSI)".to_string(),
        }
    )?;
    for l in &s.crash_loops {
        writeln!(
            out,
            "CRASH LOOP: `{}` preempted {} times, last {:.0}s ago",
            l.cmdline, l.count, l.seconds_ago
        )?;
    }
    writeln!(
        out,
        "tracking {} processes under {} rules; {} decisions, {} kernel OOM kills seen",
        s.tracked_processes, s.rules, s.last_decision_seq, s.kernel_oom_kills
    )?;
    writeln!(
        out,
        "journal: {}{}",
        if s.journal_path.is_empty() {
            "none (memory only)"
        } else {
            &s.journal_path
        },
        if s.journal_write_failures > 0 {
            format!(", {} WRITE FAILURES", s.journal_write_failures)
        } else {
            String::new()
        }
    )?;
    writeln!(
        out,
        "probe events {}, lost {}, tripwire fires {}",
        s.probe_events, s.lost_events, s.tripwire_fires
    )?;
    for p in &s.probes {
        let mark = if p.attached { "ok  " } else { "MISS" };
        writeln!(out, "  {mark} {:<20} {}", p.name, p.detail)?;
    }
    let queued: u32 = s.admission_queued.iter().sum();
    if s.reservations > 0 || queued > 0 {
        writeln!(
            out,
            "admission: {} reservations holding back {}, {} queued (background..critical: {:?})",
            s.reservations,
            human_bytes(s.reserved_bytes as f64),
            queued,
            s.admission_queued
        )?;
    }
    if !s.gpu_unavailable.is_empty() {
        writeln!(out, "GPU: unavailable: {}", s.gpu_unavailable)?;
    } else if !s.gpus.is_empty() {
        writeln!(out, "GPU: driver {}", s.gpu_driver)?;
    }
    if !s.gpu_unmapped_pids.is_empty() {
        writeln!(
            out,
            "  GPU processes not visible here (run in the host's PID namespace): {:?}",
            s.gpu_unmapped_pids
        )?;
    }
    for g in &s.gpus {
        writeln!(
            out,
            "  gpu {} {}: {} of {} used, level {}{}",
            g.index,
            g.name,
            human_bytes(g.used_bytes as f64),
            human_bytes(g.total_bytes as f64),
            g.level,
            if g.error.is_empty() {
                String::new()
            } else {
                format!(", READ FAILED: {}", g.error)
            }
        )?;
    }
    Ok(())
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

pub async fn top(
    socket: &client::Target,
    limit: u32,
    matched_only: bool,
    json: bool,
    f: TopFilter,
) -> Result<(), CliError> {
    let r = client::connect_to(socket)
        .await?
        .list_processes(pb::ListProcessesRequest {
            limit,
            matched_only,
            cgroup_prefix: f.cgroup,
            comm: f.comm,
            rule: f.rule,
            sort: f.sort,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if json {
        for p in &r.processes {
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
        return Ok(());
    }
    // The GPU column only where some process holds GPU memory.
    let gpu = r.processes.iter().any(|p| p.gpu_bytes > 0);
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
    for p in &r.processes {
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

/// Which decisions `sentinel decisions` shows.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DecisionFilter {
    /// Only decisions about this process.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Only this kind: preempt, resume, pressure, kernel_oom_kill, policy,
    /// protect.
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

pub async fn decisions(
    socket: &client::Target,
    follow: bool,
    json: bool,
    since: Option<u64>,
    limit: u32,
    filter: DecisionFilter,
) -> Result<(), CliError> {
    let mut c = client::connect_to(socket).await?;
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
    Ok(())
}
