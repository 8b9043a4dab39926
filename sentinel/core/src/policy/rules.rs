//! Which rule governs a process.

use serde::Deserialize;

use super::Levels;

/// The rungs of the action ladder, lowest first. A rule's action is the
/// highest rung it may climb to: levels pick the rung, the rule caps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Record the decision and signal nothing.
    Alert,
    /// SIGSTOP: reversible, the memory stays but stops growing.
    #[default]
    Freeze,
    /// SIGTERM: lets the process exit cleanly, with a grace before SIGKILL
    /// when the rule allows kill.
    Terminate,
    /// SIGKILL and reclaim the memory at once.
    Kill,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Freeze => "freeze",
            Self::Terminate => "terminate",
            Self::Kill => "kill",
        }
    }
}

/// A compiled regex that compares by its source text.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Pattern {
    pub fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

impl From<regex::Regex> for Pattern {
    fn from(r: regex::Regex) -> Self {
        Self(r)
    }
}

/// Every given field must match (AND); a rule with none is refused at load.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    /// The command name: a process chooses it (its file name, or
    /// `prctl(PR_SET_NAME)`), so it says what a process calls itself.
    pub comm: Option<Pattern>,
    /// The resolved executable, `/proc/PID/exe`.
    pub exe: Option<Pattern>,
    pub cgroup: Option<Pattern>,
    pub descendant_of: Option<u32>,
    /// Real uids, any of them.
    pub uid: Option<Vec<u32>>,
    /// The systemd system unit (`sshd.service`), from the process's cgroup
    /// under `/system.slice`: only root can create those.
    pub unit: Option<Pattern>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.comm.is_none()
            && self.exe.is_none()
            && self.cgroup.is_none()
            && self.descendant_of.is_none()
            && self.uid.is_none()
            && self.unit.is_none()
    }

    /// Whether it says only what a process calls itself: its name, which
    /// any process can take.
    pub fn by_name_only(&self) -> bool {
        self.comm.is_some()
            && Selector {
                comm: None,
                ..self.clone()
            }
            .is_empty()
    }

    pub fn matches(&self, p: &ProcessFacts<'_>) -> bool {
        self.comm.as_ref().is_none_or(|r| r.is_match(p.comm))
            && self.exe.as_ref().is_none_or(|r| r.is_match(p.exe))
            && self.cgroup.as_ref().is_none_or(|r| r.is_match(p.cgroup))
            && self
                .descendant_of
                .is_none_or(|a| p.pid == a || p.ancestors.contains(&a))
            && self
                .uid
                .as_ref()
                .is_none_or(|uids| p.uid.is_some_and(|u| uids.contains(&u)))
            && self
                .unit
                .as_ref()
                .is_none_or(|r| !p.unit.is_empty() && r.is_match(p.unit))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub limit_bytes: u64,
    /// Highest rung of the ladder this rule may climb to.
    pub action: Action,
    pub levels: Levels,
    /// Count file-backed resident pages too (for example a cache the
    /// process must not outgrow); by default only memory the kernel cannot
    /// simply reclaim (anon, shmem, swap) counts.
    pub include_file: bool,
    /// Most GPU memory a matched process may hold on any one device, with
    /// the same levels and cap; `None`: its GPU memory is only judged as
    /// part of its device's.
    pub gpu_limit_bytes: Option<u64>,
    pub selector: Selector,
}

/// What rule matching needs to know about a process.
#[derive(Debug, Clone, Copy)]
pub struct ProcessFacts<'a> {
    pub pid: u32,
    pub comm: &'a str,
    pub exe: &'a str,
    /// The memory cgroup path (v1 memory controller, else the v2 path).
    pub cgroup: &'a str,
    /// Parent, grandparent, ... up to pid 1.
    pub ancestors: &'a [u32],
    /// The real uid, when /proc said.
    pub uid: Option<u32>,
    /// Its systemd system unit, or empty (see [`Selector::unit`]).
    pub unit: &'a str,
}

/// The first rule, in config order, that selects the process.
pub fn match_rule(rules: &[Rule], p: &ProcessFacts<'_>) -> Option<usize> {
    rules.iter().position(|r| r.selector.matches(p))
}

/// A class of processes that is more (or less) expendable than others when
/// a shared limit needs a victim and their growth is alike.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityClass {
    pub name: String,
    /// Lower is stopped first; unclassified processes are 0.
    pub priority: i32,
    pub selector: Selector,
}

/// The priority of the first class, in config order, that selects the
/// process; 0 when none does.
pub fn priority_of(classes: &[PriorityClass], p: &ProcessFacts<'_>) -> i32 {
    classes
        .iter()
        .find(|c| c.selector.matches(p))
        .map(|c| c.priority)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Pattern {
        Pattern(regex::Regex::new(s).unwrap())
    }

    fn rule(name: &str, sel: Selector) -> Rule {
        Rule {
            name: name.into(),
            limit_bytes: 1,
            action: Action::Freeze,
            levels: Levels::default(),
            include_file: false,
            gpu_limit_bytes: None,
            selector: sel,
        }
    }

    fn facts<'a>(comm: &'a str, cgroup: &'a str, ancestors: &'a [u32]) -> ProcessFacts<'a> {
        ProcessFacts {
            pid: 100,
            comm,
            exe: "/usr/bin/python3",
            cgroup,
            ancestors,
            uid: Some(1000),
            unit: "",
        }
    }

    #[test]
    fn uids_and_units_are_matched_as_the_kernel_says() {
        let root = Selector {
            uid: Some(vec![0, 104]),
            ..Default::default()
        };
        let mut f = facts("x", "/", &[]);
        assert!(!root.matches(&f));
        f.uid = Some(104);
        assert!(root.matches(&f));
        f.uid = None;
        assert!(!root.matches(&f), "an unknown uid is no match");
        let any_unit = Selector {
            unit: Some(pat(".*")),
            ..Default::default()
        };
        assert!(!any_unit.matches(&f), "no unit is no match, even for .*");
        f.unit = "sshd.service";
        assert!(any_unit.matches(&f));
        assert!(
            Selector {
                comm: Some(pat("^sshd$")),
                ..Default::default()
            }
            .by_name_only()
        );
        assert!(!any_unit.by_name_only());
    }

    #[test]
    fn all_given_fields_must_match() {
        let sel = Selector {
            comm: Some(pat("^work")),
            cgroup: Some(pat("^/jobs/")),
            ..Default::default()
        };
        assert!(sel.matches(&facts("worker", "/jobs/a", &[1])));
        assert!(!sel.matches(&facts("worker", "/other", &[1])));
        assert!(!sel.matches(&facts("idle", "/jobs/a", &[1])));
    }

    #[test]
    fn descendants_include_the_root_itself() {
        let sel = Selector {
            descendant_of: Some(50),
            ..Default::default()
        };
        assert!(sel.matches(&facts("x", "/", &[60, 50, 1])));
        assert!(!sel.matches(&facts("x", "/", &[60, 1])));
        let mut f = facts("x", "/", &[1]);
        f.pid = 50;
        assert!(sel.matches(&f));
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = vec![
            rule(
                "a",
                Selector {
                    comm: Some(pat("^a")),
                    ..Default::default()
                },
            ),
            rule(
                "any",
                Selector {
                    exe: Some(pat(".")),
                    ..Default::default()
                },
            ),
        ];
        assert_eq!(match_rule(&rules, &facts("abc", "/", &[])), Some(0));
        assert_eq!(match_rule(&rules, &facts("zzz", "/", &[])), Some(1));
    }

    #[test]
    fn the_first_matching_class_sets_the_priority() {
        let classes = vec![
            PriorityClass {
                name: "batch".into(),
                priority: -10,
                selector: Selector {
                    cgroup: Some(pat("^/batch")),
                    ..Default::default()
                },
            },
            PriorityClass {
                name: "py".into(),
                priority: 5,
                selector: Selector {
                    exe: Some(pat("python")),
                    ..Default::default()
                },
            },
        ];
        assert_eq!(priority_of(&classes, &facts("x", "/batch/1", &[])), -10);
        assert_eq!(priority_of(&classes, &facts("x", "/web", &[])), 5);
        assert_eq!(priority_of(&classes[..1], &facts("x", "/web", &[])), 0);
    }
}
