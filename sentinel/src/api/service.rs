//! `sentinel.v1.Sentinel`: each call checks its request and its caller,
//! calls one named operation of the agent, and converts the answer.

use std::{pin::Pin, sync::Arc};

use sentinel_api::pb;
use sentinel_core::{
    config::Config,
    engine::{ProcDetail, ProcQuery, SortKey},
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::{
    MAX_BACKLOG, MAX_LIST,
    access::AccessPolicy,
    convert,
    gate::{Admission, Gate, Permit},
};
use crate::{journal::Decision, service::Sentinel};

pub struct Service {
    pub sentinel: Arc<Sentinel>,
    pub access: Arc<AccessPolicy>,
    /// Live decision streams, per peer and in all.
    pub watchers: Arc<Gate>,
}

fn bounded(limit: u32, default: u32, field: &str) -> Result<usize, Status> {
    match limit {
        0 => Ok(default as usize),
        n if n > MAX_LIST => Err(Status::invalid_argument(format!(
            "{field} is {n}; at most {MAX_LIST}"
        ))),
        n => Ok(n as usize),
    }
}

/// Policies larger than this are refused before parsing.
const MAX_POLICY_BYTES: usize = 1 << 20;

fn bounded_text(text: &str) -> Result<(), Status> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(Status::resource_exhausted(format!(
            "toml is {} bytes; at most {MAX_POLICY_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

fn process_ref(r: pb::ProcessRef) -> Result<u32, Status> {
    if r.pid == 0 {
        return Err(Status::invalid_argument("pid must be above 0"));
    }
    Ok(r.pid)
}

/// The listing a ListProcesses request asks for.
/// How many decisions a ListDecisions request may have, once its filters
/// are checked.
pub(super) fn decisions_limit(r: &pb::ListDecisionsRequest) -> Result<usize, Status> {
    super::bounded_text(&[("kind", &r.kind), ("rule", &r.rule), ("action", &r.action)])?;
    bounded(r.limit, 100, "limit")
}

pub(super) fn query(r: pb::ListProcessesRequest) -> Result<ProcQuery, Status> {
    super::bounded_text(&[
        ("cgroup_prefix", &r.cgroup_prefix),
        ("comm", &r.comm),
        ("rule", &r.rule),
        ("sort", &r.sort),
        ("page_token", &r.page_token),
    ])?;
    let limit = bounded(r.limit, 20, "limit")?;
    let sort: SortKey = r
        .sort
        .parse()
        .map_err(|e| Status::invalid_argument(format!("sort: {e}")))?;
    // The token is the offset of the next page; opaque to clients.
    let offset = if r.page_token.is_empty() {
        0
    } else {
        r.page_token.parse::<usize>().map_err(|_| {
            Status::invalid_argument(format!(
                "page_token `{}` is not one this server gave",
                r.page_token
            ))
        })?
    };
    Ok(ProcQuery {
        matched_only: r.matched_only,
        cgroup_prefix: r.cgroup_prefix,
        comm: r.comm,
        rule: r.rule,
        sort,
        offset,
        limit,
    })
}

type DecisionStream = Pin<Box<dyn Stream<Item = Result<pb::Decision, Status>> + Send>>;

#[tonic::async_trait]
impl pb::sentinel_server::Sentinel for Service {
    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, Status> {
        let s = &self.sentinel;
        let journal = s.journal();
        Ok(Response::new(convert::status(
            s.overview(),
            journal.health(),
            journal.last_seq(),
            s.uptime_secs(),
            s.admission.summary(),
        )))
    }

    async fn list_processes(
        &self,
        req: Request<pb::ListProcessesRequest>,
    ) -> Result<Response<pb::ListProcessesResponse>, Status> {
        let q = query(req.into_inner())?;
        let (infos, total) = self.sentinel.processes(&q);
        let next = q.offset + infos.len();
        Ok(Response::new(pb::ListProcessesResponse {
            processes: infos.into_iter().map(convert::process).collect(),
            next_page_token: if next < total {
                next.to_string()
            } else {
                String::new()
            },
            total: total as u64,
        }))
    }

    async fn get_process(
        &self,
        req: Request<pb::ProcessRef>,
    ) -> Result<Response<pb::ProcessDetail>, Status> {
        let pid = process_ref(req.into_inner())?;
        let (info, ProcDetail { samples, eta, .. }) =
            self.sentinel.process(pid).ok_or_else(|| {
                Status::not_found(format!("pid {pid} is not a process Sentinel tracks"))
            })?;
        Ok(Response::new(pb::ProcessDetail {
            process: Some(convert::process(info)),
            samples: samples
                .into_iter()
                .map(|(ago, bytes)| pb::Sample {
                    seconds_ago: ago,
                    bytes,
                })
                .collect(),
            seconds_to_warn: eta[0],
            seconds_to_preempt: eta[1],
            seconds_to_kill: eta[2],
            seconds_to_limit: eta[3],
        }))
    }

    async fn list_decisions(
        &self,
        req: Request<pb::ListDecisionsRequest>,
    ) -> Result<Response<pb::ListDecisionsResponse>, Status> {
        let r = req.into_inner();
        let limit = decisions_limit(&r)?;
        let keep = |d: &Decision| {
            r.pid.is_none_or(|p| d.pid == p)
                && (r.kind.is_empty() || d.kind.as_str() == r.kind)
                && (r.rule.is_empty() || d.rule == r.rule)
                && (r.action.is_empty() || d.action.as_str() == r.action)
        };
        let decisions = self
            .sentinel
            .journal()
            .since_where(r.after_seq, limit, &keep)
            .iter()
            .map(convert::decision)
            .collect();
        Ok(Response::new(pb::ListDecisionsResponse { decisions }))
    }

    async fn get_policy(
        &self,
        _: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let (source, toml, not_in_use) = self.sentinel.policy();
        Ok(Response::new(pb::Policy {
            source,
            toml,
            not_in_use,
        }))
    }

    async fn validate_policy(
        &self,
        req: Request<pb::PolicyText>,
    ) -> Result<Response<pb::ValidatePolicyResponse>, Status> {
        let text = req.into_inner().toml;
        bounded_text(&text)?;
        Ok(Response::new(match Config::parse(&text, "policy") {
            Ok(c) => pb::ValidatePolicyResponse {
                valid: true,
                error: String::new(),
                rules: c.rules.len() as u32,
                cgroup_rules: c.cgroup_rules.len() as u32,
            },
            Err(e) => pb::ValidatePolicyResponse {
                valid: false,
                error: e.to_string(),
                rules: 0,
                cgroup_rules: 0,
            },
        }))
    }

    async fn apply_policy(
        &self,
        req: Request<pb::PolicyText>,
    ) -> Result<Response<pb::ApplyPolicyResponse>, Status> {
        let peer = self.access.require_admin(&req, "ApplyPolicy")?;
        let text = req.into_inner().toml;
        bounded_text(&text)?;
        // Refused whole when invalid: the running policy stays.
        // The agent's SENTINEL_* environment applies here as to its file.
        let env: Vec<(String, String)> = std::env::vars().collect();
        let cfg = Config::parse_with_env(&text, "policy", &env)
            .map_err(|e| Status::invalid_argument(format!("policy refused: {e}")))?;
        // One that would drop every rule depends on what runs now.
        let applied = self
            .sentinel
            .apply_policy(cfg, &peer, &format!("ApplyPolicy by {peer}"), &text)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(pb::ApplyPolicyResponse {
            decision: Some(convert::decision(&applied.decision)),
            start_only: applied.start_only.iter().map(|k| k.to_string()).collect(),
        }))
    }

    async fn resume(&self, req: Request<pb::ProcessRef>) -> Result<Response<pb::Decision>, Status> {
        let peer = self.access.require_admin(&req, "Resume")?;
        let pid = process_ref(req.into_inner())?;
        let d = self
            .sentinel
            .resume(pid, &peer)
            .map_err(convert::op_status)?;
        Ok(Response::new(convert::decision(&d)))
    }

    async fn protect(
        &self,
        req: Request<pb::ProcessRef>,
    ) -> Result<Response<pb::Decision>, Status> {
        self.set_protection(req, true, "Protect")
    }

    async fn unprotect(
        &self,
        req: Request<pb::ProcessRef>,
    ) -> Result<Response<pb::Decision>, Status> {
        self.set_protection(req, false, "Unprotect")
    }

    type WatchDecisionsStream = DecisionStream;

    async fn watch_decisions(
        &self,
        req: Request<pb::WatchDecisionsRequest>,
    ) -> Result<Response<Self::WatchDecisionsStream>, Status> {
        let slot = match self.watchers.admit(AccessPolicy::peer_key(&req)) {
            Admission::Open(slot) => slot,
            Admission::Refused(_, why) => {
                return Err(Status::resource_exhausted(format!(
                    "{why}, or poll ListDecisions"
                )));
            }
            Admission::Closed => {
                return Err(Status::resource_exhausted(
                    "too many decision streams are open; poll ListDecisions",
                ));
            }
        };
        Ok(Response::new(self.watch(req.into_inner().after_seq, slot)?))
    }
}

impl Service {
    fn set_protection(
        &self,
        req: Request<pb::ProcessRef>,
        on: bool,
        what: &str,
    ) -> Result<Response<pb::Decision>, Status> {
        let peer = self.access.require_admin(&req, what)?;
        let pid = process_ref(req.into_inner())?;
        let d = self
            .sentinel
            .protect(pid, on, &peer)
            .map_err(convert::op_status)?;
        Ok(Response::new(convert::decision(&d)))
    }

    /// The decisions after `after` (when given) from the journal, then live
    /// ones, with no gap and no duplicate; the slot is freed as soon as the
    /// client goes away.
    fn watch(&self, after: Option<u64>, slot: Permit) -> Result<DecisionStream, Status> {
        let journal = self.sentinel.journal().clone();
        // Subscribe before reading the backlog so nothing falls between the
        // two; duplicates are then skipped by sequence number.
        let mut live = journal.subscribe();
        let mut last = journal.last_seq();
        let mut backlog = Vec::new();
        if let Some(after) = after {
            // Decisions up to `after` would never be sent: a resume point
            // from another journal, or a typo, must not skip silently.
            if after > last {
                return Err(Status::out_of_range(format!(
                    "after_seq {after} is beyond the last decision ({last}); resume from at most {last}"
                )));
            }
            if last.saturating_sub(after) > MAX_BACKLOG {
                return Err(Status::resource_exhausted(format!(
                    "after_seq {after} is {} decisions behind (at most {MAX_BACKLOG}); page with ListDecisions, then watch from nearer",
                    last - after
                )));
            }
            backlog = journal.since(after, usize::MAX);
            last = backlog.last().map_or(last, |d| d.seq);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let _slot = slot;
            loop {
                // A client that went away frees its slot at once, not at
                // the next decision.
                let next = tokio::select! {
                    _ = tx.closed() => return,
                    next = live.recv() => next,
                };
                match next {
                    Ok(d) if d.seq <= last => continue,
                    Ok(d) => {
                        last = d.seq;
                        if tx.send(Ok(convert::decision(&d))).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "watcher fell {n} decisions behind; resume with after_seq={last}"
                            ))))
                            .await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
        let head = tokio_stream::iter(
            backlog
                .iter()
                .map(|d| Ok(convert::decision(d)))
                .collect::<Vec<_>>(),
        );
        Ok(Box::pin(
            head.chain(tokio_stream::wrappers::ReceiverStream::new(rx)),
        ))
    }
}
