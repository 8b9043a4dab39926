//! `sentinel status`: the agent's health, probes and counters.

use std::io::Write;

use super::CliError;
use sentinel_api::{client, pb};
use sentinel_core::units::human_bytes;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args, agent: &client::Target) -> Result<(), CliError> {
    let s = client::connect_to(agent)
        .await?
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", json(&s))?;
        return Ok(());
    }
    agent_and_host(&mut out, &s)?;
    tracking(&mut out, &s)?;
    admission_and_gpus(&mut out, &s)?;
    queue(&mut out, &s)?;
    Ok(())
}

/// Processes waiting for memory at a shared limit, in the order each
/// limit resumes them.
fn queue(out: &mut impl Write, s: &pb::Status) -> std::io::Result<()> {
    if s.queued.is_empty() {
        return Ok(());
    }
    writeln!(out, "waiting for memory (frozen, resumed as it frees):")?;
    for q in &s.queued {
        writeln!(
            out,
            "  #{} pid {} ({}) at {} (rule {}), waiting {:.0}s",
            q.position, q.pid, q.comm, q.scope, q.rule, q.waited_seconds
        )?;
    }
    Ok(())
}

/// One JSON object, for `--json`.
fn json(s: &pb::Status) -> serde_json::Value {
    let probes: Vec<_> = s
        .probes
        .iter()
        .map(|p| serde_json::json!({"name": p.name, "attached": p.attached, "detail": p.detail}))
        .collect();
    let mut v = serde_json::json!({
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
        "queued": s.queued.iter().map(|q| serde_json::json!({
            "pid": q.pid, "comm": q.comm, "scope": q.scope, "rule": q.rule,
            "waited_seconds": q.waited_seconds, "position": q.position,
        })).collect::<Vec<_>>(),
        "gpus": s.gpus.iter().map(|g| serde_json::json!({
            "index": g.index, "uuid": g.uuid, "name": g.name, "total_bytes": g.total_bytes,
            "used_bytes": g.used_bytes, "level": g.level, "error": g.error,
        })).collect::<Vec<_>>(),
    });
    // In a second object: one macro call this long passes the recursion limit.
    let instrument = serde_json::json!({
        "instrument": s.instrument, "instrument_reason": s.instrument_reason,
        "instrument_seconds": s.instrument_seconds,
        "precise_attachments": s.precise_attachments, "reach_bytes": s.reach_bytes,
    });
    if let (Some(all), serde_json::Value::Object(more)) = (v.as_object_mut(), instrument) {
        all.extend(more);
    }
    v
}

/// Version, mode, the host's memory and pressure, crash loops.
fn agent_and_host(out: &mut impl Write, s: &pb::Status) -> std::io::Result<()> {
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
        "instrument: {} for {:.0}s, attached {} times ({})",
        s.instrument, s.instrument_seconds, s.precise_attachments, s.instrument_reason
    )?;
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
    Ok(())
}

/// What is tracked and seen: processes, rules, the journal, the probes.
fn tracking(out: &mut impl Write, s: &pb::Status) -> std::io::Result<()> {
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
        let resting = p.name == "rss_stat" && s.instrument == "wide";
        let mark = match (p.attached, resting) {
            (true, _) => "ok  ",
            (false, true) => "rest",
            (false, false) => "MISS",
        };
        writeln!(out, "  {mark} {:<20} {}", p.name, p.detail)?;
    }
    Ok(())
}

/// Reservations and their queue, then the GPUs, each only when present.
fn admission_and_gpus(out: &mut impl Write, s: &pb::Status) -> std::io::Result<()> {
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
