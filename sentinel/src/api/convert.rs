//! Domain values to their `sentinel.v1` messages, and domain errors to
//! precise gRPC codes. Strings are made here, at the edge.

use sentinel_api::pb;
use sentinel_core::{
    decision::Decision,
    engine::{GpuDeviceView, Instrument, Mode, OpError, QueuedView},
    policy::Level,
};
use tonic::Status;

use crate::service::{
    Overview, ProcessInfo,
    admission::{AdmissionError, Entry, Event},
};

pub fn decision(d: &Decision) -> pb::Decision {
    pb::Decision {
        seq: d.seq,
        time_unix_ms: d.time_unix_ms,
        kind: d.kind.as_str().to_string(),
        pid: d.pid,
        comm: d.comm.clone(),
        cgroup: d.cgroup.clone(),
        rule: d.rule.clone(),
        action: d.action.as_str().to_string(),
        outcome: d.outcome.to_string(),
        reason: d.reason.clone(),
        resident_bytes: d.resident_bytes,
        charged_bytes: d.charged_bytes,
        slope_bytes_per_sec: d.slope_bytes_per_sec,
        limit_bytes: d.limit_bytes,
        predicted_seconds_to_limit: d.predicted_seconds_to_limit,
        level: d.level.map(Level::as_str).unwrap_or("").to_string(),
        crash_loop: d.crash_loop,
        scope: d.scope.map(|s| s.as_str()).unwrap_or("").to_string(),
        start_time: d.start_time,
    }
}

pub fn process(p: ProcessInfo) -> pb::Process {
    let v = p.view;
    pb::Process {
        pid: v.pid,
        comm: v.comm,
        cgroup: v.cgroup,
        rule: v.rule,
        resident_bytes: v.mem.resident(),
        charged_bytes: v.mem.charged(),
        slope_bytes_per_sec: v.slope,
        limit_bytes: v.limit,
        predicted_seconds_to_limit: v.seconds_to_limit,
        state: v.state.as_str().to_string(),
        page_faults: p.faults.unwrap_or(0),
        mapped_bytes: p.mapped_bytes.unwrap_or(0),
        level: v.level.as_str().to_string(),
        gpu_bytes: v.gpu_bytes,
        ns_pid: v.ns_pid,
    }
}

/// The agent's status, with the journal's and admission's figures.
pub fn status(
    o: Overview,
    journal: crate::journal::JournalHealth,
    last_decision_seq: u64,
    uptime_seconds: f64,
    admission: (usize, u64, [usize; 5]),
) -> pb::Status {
    let (host, c) = (o.host, o.counters);
    let ins = &o.instrument;
    let wide = ins.instrument == Instrument::Wide;
    let instrument = match o.startup.mode {
        Mode::Polling => "procfs-polling",
        Mode::Ebpf => ins.instrument.as_str(),
    };
    pb::Status {
        instrument: instrument.to_string(),
        instrument_reason: ins.why.clone(),
        precise_attachments: ins.armed,
        reach_bytes: ins.reach_bytes,
        instrument_seconds: o.instrument_seconds,
        version: env!("CARGO_PKG_VERSION").to_string(),
        mode: o.startup.mode.as_str().to_string(),
        degraded_reason: o.startup.degraded_reason,
        probes: o
            .startup
            .probes
            .iter()
            .map(|p| {
                // Loaded, but detached while nothing is within reach.
                let resting = wide && p.name == "rss_stat" && p.attached;
                pb::Probe {
                    name: p.name.to_string(),
                    attached: p.attached && !resting,
                    detail: if resting {
                        format!("{} (detached: no line within reach; the wide watch reads the governed scopes)", p.detail)
                    } else {
                        p.detail.clone()
                    },
                }
            })
            .collect(),
        tracked_processes: o.tracked as u64,
        rules: o.rules as u32,
        dry_run: o.dry_run,
        last_decision_seq,
        kernel_oom_kills: o.kernel_oom_kills,
        probe_events: c.events,
        lost_events: c.lost_events,
        host_available_bytes: host.mem.available,
        host_total_bytes: host.mem.total,
        host_used_bytes: host.used,
        host_limit_bytes: host.limit,
        host_level: host.level.as_str().to_string(),
        psi_some_avg10: host.psi_some_avg10,
        psi_trigger: host.psi_trigger,
        journal_path: journal.path,
        journal_write_failures: journal.write_failures,
        crash_loops: o
            .crash_loops
            .into_iter()
            .map(|(l, ago)| pb::CrashLoop {
                cmdline: l.cmdline,
                count: l.count as u32,
                seconds_ago: ago,
            })
            .collect(),
        uptime_seconds,
        tripwire_fires: c.tripwire_fires,
        gpus: o.gpu.devices.into_iter().map(gpu).collect(),
        gpu_unavailable: o.gpu.unavailable,
        gpu_driver: o.gpu.driver,
        gpu_unmapped_pids: o.gpu.unmapped,
        reservations: admission.0 as u32,
        reserved_bytes: admission.1,
        admission_queued: admission.2.iter().map(|&n| n as u32).collect(),
        queued: o.queued.into_iter().map(queued).collect(),
    }
}

fn gpu(g: GpuDeviceView) -> pb::GpuDevice {
    pb::GpuDevice {
        index: g.index,
        uuid: g.uuid,
        name: g.name,
        total_bytes: g.total,
        used_bytes: g.used,
        level: g.level.as_str().to_string(),
        error: g.error.unwrap_or_default(),
    }
}

fn queued(q: QueuedView) -> pb::QueuedProcess {
    pb::QueuedProcess {
        pid: q.pid,
        comm: q.comm,
        scope: q.scope,
        rule: q.rule,
        waited_seconds: q.waited_secs,
        position: q.position as u32,
    }
}

pub fn reservation(e: &Entry) -> pb::Reservation {
    pb::Reservation {
        id: e.id,
        bytes: e.bytes,
        pool: sentinel_core::engine::pool_name(&e.pool),
        priority: e.priority.as_str().into(),
        holder: e.holder.clone(),
        pid: e.pid,
        state: if e.granted { "granted" } else { "queued" }.into(),
        used_bytes: e.used_bytes,
        seconds_left: e.seconds_left,
    }
}

pub fn reservation_event(e: &Event) -> pb::ReservationEvent {
    pb::ReservationEvent {
        event: e.action.as_str().into(),
        reservation: Some(reservation(&e.entry)),
        reason: e.reason.clone(),
    }
}

pub fn op_status(e: OpError) -> Status {
    match e {
        OpError::NotFound(_) => Status::not_found(e.to_string()),
        OpError::NotFrozen { .. } => Status::failed_precondition(e.to_string()),
        OpError::Failed { .. } => Status::internal(e.to_string()),
    }
}

pub fn admission_status(e: AdmissionError) -> Status {
    let why = e.to_string();
    match e {
        AdmissionError::NoPool(_) | AdmissionError::TooLarge(_) => Status::failed_precondition(why),
        AdmissionError::Displaced(_) | AdmissionError::TooManyWaiting(_) => {
            Status::resource_exhausted(why)
        }
        AdmissionError::QueueFull {
            retry_after_secs, ..
        } => {
            let mut s = Status::resource_exhausted(why);
            if let Ok(v) = format!("{}", retry_after_secs.ceil() as u64).parse() {
                s.metadata_mut().insert("retry-after", v);
            }
            s
        }
        AdmissionError::TimedOut(_) => Status::deadline_exceeded(why),
        AdmissionError::NotFound(_) => Status::not_found(why),
    }
}
