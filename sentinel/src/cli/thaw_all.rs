//! `sentinel thaw-all`: with the agent stopped for good (the package
//! removed, the agent disabled), resumes every process it left frozen, so
//! that none stays stopped without an owner. Reads the journal the agent
//! would take them back from, and journals each thaw.

use std::path::{Path, PathBuf};

use sentinel_core::{
    config::{Config, DEFAULT_PATH},
    decision::{Decision, DecisionAction, DecisionKind, Outcome, ScopeKind},
    engine::{Held, Signal},
};

use super::CliError;
use crate::{
    actuator::{self, Freezer, Pidfd},
    collector::procfs,
    journal::{Journal, Retention, unix_ms},
};

#[derive(clap::Args)]
pub struct Args {
    /// The agent's config: its journal is where it says.
    #[arg(long, default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    /// Why, for the journal (e.g. "package removed").
    #[arg(long, default_value = "the operator ran `sentinel thaw-all`")]
    pub why: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ThawError {
    #[error(
        "{0}: cannot open the journal ({1}); if the agent is running, stop it first (systemctl stop sentinel), or resume one process with `sentinel resume PID`"
    )]
    Journal(String, String),
    #[error("cannot tell when the host booted: {0}")]
    Boot(std::io::Error),
    #[error("{0} of the processes could not be thawed (see above)")]
    Failed(usize),
}

pub fn run(args: Args) -> Result<(), CliError> {
    let cfg = Config::load_with_env(&args.config)?;
    let path = Path::new(&cfg.agent.journal);
    let (journal, _) = Journal::open(path, cfg.agent.decision_log, Retention::of(&cfg))
        .map_err(|e| ThawError::Journal(path.display().to_string(), e.to_string()))?;
    let boot = procfs::boot_time().map_err(ThawError::Boot)? * 1000;
    let mut held = journal.held_since(boot);
    // Whatever the config says now: an earlier run may have used it. What
    // its cgroups hold is the agent's, journalled or not.
    let freezer = Freezer::detect();
    if let Some(f) = &freezer {
        f.sweep();
        for (pid, start_time) in f.members() {
            if !held
                .iter()
                .any(|h| (h.pid, h.start_time) == (pid, start_time))
            {
                held.push(Held {
                    pid,
                    start_time,
                    queued: false,
                    scope: ScopeKind::Process,
                    rule: String::new(),
                    slope: 0.0,
                    seq: 0,
                    time_unix_ms: 0,
                });
            }
        }
    }
    if held.is_empty() {
        println!("nothing frozen by Sentinel");
        return Ok(());
    }
    let mut failed = 0;
    for h in held {
        match thaw(&h, freezer.as_ref()) {
            Ok(None) => continue,
            Ok(Some(comm)) => {
                println!("thawed pid {} ({comm})", h.pid);
                journal.append(thawed(&h, comm, Outcome::Done, &args.why));
            }
            Err(e) => {
                eprintln!("pid {}: {e}", h.pid);
                failed += 1;
                journal.append(thawed(&h, String::new(), Outcome::Failed(e), &args.why));
            }
        }
    }
    if failed > 0 {
        return Err(ThawError::Failed(failed).into());
    }
    Ok(())
}

/// Thaws (the freezer, then SIGCONT) through a pidfd checked against the
/// start time; `None` when the process is gone or no longer stopped.
fn thaw(h: &Held, freezer: Option<&Freezer>) -> Result<Option<String>, String> {
    if actuator::stopped(freezer, h.pid, h.start_time) != Some(true) {
        return Ok(None);
    }
    let comm = procfs::read_stat(h.pid).map(|s| s.comm).unwrap_or_default();
    let fd = Pidfd::open(h.pid, h.start_time).map_err(|e| e.to_string())?;
    actuator::send(&fd, Signal::Resume, freezer).map_err(|e| e.to_string())?;
    Ok(Some(comm))
}

fn thawed(h: &Held, comm: String, outcome: Outcome, why: &str) -> Decision {
    Decision {
        time_unix_ms: unix_ms(),
        kind: DecisionKind::Resume,
        pid: h.pid,
        start_time: h.start_time,
        comm,
        rule: h.rule.clone(),
        scope: Some(h.scope),
        action: DecisionAction::Resume,
        outcome,
        reason: format!("thawed by `sentinel thaw-all` with the agent stopped: {why}"),
        ..Decision::default()
    }
}
