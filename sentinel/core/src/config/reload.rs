//! What a reload may change while the agent runs, and what it may not do
//! without being told.

use super::{Config, GpuPolicy, HostPolicy};
use crate::policy::Action;

/// Keys the agent reads only at start: the socket, journal, listeners,
/// probes and task timers. A reload keeps the running values and names
/// the ones it was asked to change, so that nothing shows a value the
/// agent is not using.
pub fn keep_start_only(new: &mut Config, running: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($($field:ident).+ => $key:literal) => {
            if new.$($field).+ != running.$($field).+ {
                changed.push($key);
                new.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    keep!(agent.socket => "agent.socket");
    keep!(agent.socket_group => "agent.socket_group");
    keep!(agent.admin_group => "agent.admin_group");
    keep!(agent.dry_run => "agent.dry_run");
    keep!(agent.journal => "agent.journal");
    keep!(agent.journal_max_entries => "agent.journal_max_entries");
    keep!(agent.journal_max_age => "agent.journal_max_age");
    keep!(agent.decision_log => "agent.decision_log");
    keep!(agent.step_bytes => "agent.step");
    keep!(agent.disable_probes => "agent.disable_probes");
    keep!(agent.poll_interval => "agent.poll_interval");
    keep!(agent.rescan_interval => "agent.rescan_interval");
    keep!(agent.reconcile_interval => "agent.reconcile_interval");
    keep!(agent.rest_interval => "agent.rest_interval");
    keep!(agent.lock_memory => "agent.lock_memory");
    keep!(agent.freezer => "agent.freezer");
    keep!(host.interval => "host.interval");
    keep!(host.psi_stall => "host.psi_stall");
    keep!(gpu.enabled => "gpu.enabled");
    keep!(gpu.library => "gpu.library");
    keep!(gpu.interval => "gpu.interval");
    keep!(api => "[api]");
    keep!(metrics => "[metrics]");
    keep!(alerting => "[alerting]");
    changed
}

impl Config {
    /// Whether the policy itself says what to stop: a process or cgroup
    /// rule, or a host or GPU policy of its own above `alert`. The built-in
    /// host policy is not counted: an emptied or truncated file gets it
    /// too, and must not pass for a policy that drops every rule.
    pub fn has_rules(&self) -> bool {
        let gpu_acts = |g: &GpuPolicy| g.enabled && g.action != Action::Alert;
        !self.rules.is_empty()
            || !self.cgroup_rules.is_empty()
            || (self.host.action != Action::Alert && self.host != HostPolicy::default())
            || gpu_acts(&self.gpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, "t.toml").unwrap()
    }

    #[test]
    fn a_reload_keeps_what_is_read_at_start_and_names_it() {
        let running = parse("[agent]\nsocket = \"/run/a.sock\"\nfreeze_timeout = \"30s\"\n");
        let mut new = parse(
            "[agent]\nsocket = \"/run/b.sock\"\nfreeze_timeout = \"10s\"\ndry_run = true\n[metrics]\nenabled = false\n",
        );
        let changed = keep_start_only(&mut new, &running);
        assert_eq!(changed, ["agent.socket", "agent.dry_run", "[metrics]"]);
        assert_eq!(new.agent.socket, "/run/a.sock");
        assert!(!new.agent.dry_run);
        assert_eq!(new.metrics, running.metrics);
        // What a reload may change, it changes.
        assert_eq!(new.agent.freeze_timeout.as_secs(), 10);
        let mut same = running.clone();
        assert!(keep_start_only(&mut same, &running).is_empty());
    }

    #[test]
    fn a_policy_has_rules_when_something_can_stop_a_process() {
        assert!(!parse("").has_rules());
        assert!(!parse("[host]\naction = \"alert\"\n").has_rules());
        assert!(parse("[host]\naction = \"freeze\"\n").has_rules());
        assert!(
            parse("[[rule]]\nname = \"a\"\nmatch = { comm = \"x\" }\nlimit = \"1GiB\"\n")
                .has_rules()
        );
    }
}
