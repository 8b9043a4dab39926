//! Which processes are never signalled, by what the kernel vouches for
//! rather than what a process calls itself. A name (`comm`) is anyone's
//! to take: a copy of a leaker named `sshd`, or `prctl(PR_SET_NAME)`, was
//! spared while the host went under its floor. So protections match the
//! resolved executable (counted only for a process in the host's root
//! filesystem, not a container's, whose file root owns and only root can
//! write, nor any directory above it), the systemd system unit, the uid,
//! the cgroup; a name-only protection still works, and is warned about.

use super::rules::{Pattern, ProcessFacts, Selector};

/// A `[[protect]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Protection {
    pub name: String,
    pub selector: Selector,
}

/// The highest uid of a system account (login.defs' SYS_UID_MAX): users'
/// processes are above it.
pub const SYSTEM_UID_MAX: u32 = 999;

impl Protection {
    /// Whether it protects the process. An `exe` or `unit` match counts
    /// only for a process of a system account: a user can run a root-owned
    /// daemon with their own code preloaded (LD_PRELOAD), or log in through
    /// sshd into `ssh.service` where no session manager moves them out. An
    /// `exe` match counts only for an executable no one but root could have
    /// put there (`trusted`, asked only when the path matches: it costs a
    /// few stats). `uid` and `cgroup` are the operator's own word.
    pub fn covers(&self, p: &ProcessFacts<'_>, trusted: impl FnOnce() -> bool) -> bool {
        let s = &self.selector;
        let by_identity = s.exe.is_some() || s.unit.is_some();
        s.matches(p)
            && (!by_identity || p.uid.is_some_and(|u| u <= SYSTEM_UID_MAX))
            && (s.exe.is_none() || trusted())
    }
}

/// The first protection that covers the process, by name.
pub fn protection_of<'a>(
    protections: &'a [Protection],
    p: &ProcessFacts<'_>,
    mut trusted: impl FnMut() -> bool,
) -> Option<&'a str> {
    protections
        .iter()
        .find(|r| r.covers(p, &mut trusted))
        .map(|r| r.name.as_str())
}

/// The systemd system unit a cgroup path (the systemd hierarchy's, or the
/// unified one) belongs to: the unit directly under `/system.slice`, or
/// `init.scope`. Empty otherwise: user slices (a user may create cgroups
/// there and name them anything), containers' own paths, no systemd.
pub fn unit_of(cgroup: &str) -> &str {
    if cgroup == "/init.scope" {
        return "init.scope";
    }
    cgroup
        .strip_prefix("/system.slice/")
        .and_then(|rest| rest.split('/').next())
        .filter(|u| u.ends_with(".service") || u.ends_with(".scope"))
        .unwrap_or("")
}

/// What is protected when the config says nothing: the platform a host
/// needs to stay reachable and to run its workloads, by executable and by
/// unit (either suffices), never by name alone.
pub const DEFAULT_PROTECTIONS: &[(&str, &str, &str)] = &[
    // (name, executable, unit)
    ("sshd", r"^/usr/s?bin/sshd$", r"^ssh(d)?\.service$"),
    (
        "systemd",
        r"^/(usr/)?lib/systemd/systemd(-journald|-logind|-udevd|-networkd|-resolved|-timesyncd)?$",
        r"^(init\.scope|systemd-[a-z-]+\.service)$",
    ),
    (
        "dbus",
        r"^/usr/bin/dbus-(daemon|broker(-launch)?)$",
        r"^dbus(-broker)?\.service$",
    ),
    (
        "container runtime",
        r"^/usr/(local/)?s?bin/(containerd(-shim[a-z0-9-]*)?|dockerd|crio|conmon)$",
        r"^(containerd|docker|crio)\.service$",
    ),
    (
        "kubelet",
        r"^/usr/(local/)?s?bin/kubelet$",
        r"^kubelet\.service$",
    ),
];

/// [`DEFAULT_PROTECTIONS`] as protections: one entry by executable and
/// one by unit for each.
pub fn default_protections() -> Vec<Protection> {
    let pat = |s: &str| Pattern(regex::Regex::new(s).expect("a built-in pattern"));
    DEFAULT_PROTECTIONS
        .iter()
        .flat_map(|(name, exe, unit)| {
            [
                Protection {
                    name: (*name).to_string(),
                    selector: Selector {
                        exe: Some(pat(exe)),
                        ..Selector::default()
                    },
                },
                Protection {
                    name: (*name).to_string(),
                    selector: Selector {
                        unit: Some(pat(unit)),
                        ..Selector::default()
                    },
                },
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(comm: &'a str, exe: &'a str, unit: &'a str) -> ProcessFacts<'a> {
        ProcessFacts {
            pid: 100,
            comm,
            exe,
            cgroup: "/",
            ancestors: &[],
            uid: Some(0),
            unit,
        }
    }

    #[test]
    fn the_defaults_go_by_executable_or_unit_never_by_name() {
        let d = default_protections();
        let is = |f: &ProcessFacts<'_>, trusted: bool| protection_of(&d, f, || trusted);
        assert_eq!(is(&facts("sshd", "/usr/sbin/sshd", ""), true), Some("sshd"));
        assert_eq!(
            is(
                &facts("containerd-shim", "/usr/bin/containerd-shim-runc-v2", ""),
                true
            ),
            Some("container runtime")
        );
        assert_eq!(
            is(
                &facts("systemd-journal", "/lib/systemd/systemd-journald", ""),
                true
            ),
            Some("systemd")
        );
        // A leaker named like the daemon, by file name or prctl.
        assert_eq!(is(&facts("sshd", "/tmp/x/sshd", ""), true), None);
        assert_eq!(is(&facts("sshd", "/usr/bin/python3", ""), true), None);
        // The right path, but a file a user could have put there.
        assert_eq!(is(&facts("sshd", "/usr/sbin/sshd", ""), false), None);
        // The unit, whatever the executable.
        assert_eq!(
            is(&facts("sshd", "/usr/bin/perl", "ssh.service"), false),
            Some("sshd")
        );
        assert_eq!(is(&facts("x", "/usr/bin/x", "cron.service"), true), None);
        // A user's process running the daemon's file (with a preloaded
        // library), or in its unit (a session sshd did not move out): not.
        let mut user = facts("dbus-daemon", "/usr/bin/dbus-daemon", "");
        user.uid = Some(1000);
        assert_eq!(is(&user, true), None);
        let mut session = facts("bash", "/usr/bin/bash", "ssh.service");
        session.uid = Some(1000);
        assert_eq!(is(&session, true), None);
        // A system account's (messagebus) is.
        user.uid = Some(104);
        assert_eq!(is(&user, true), Some("dbus"));
    }

    #[test]
    fn units_are_system_units_only() {
        assert_eq!(unit_of("/system.slice/sshd.service"), "sshd.service");
        assert_eq!(
            unit_of("/system.slice/docker-4f2a.scope/sub"),
            "docker-4f2a.scope"
        );
        assert_eq!(unit_of("/init.scope"), "init.scope");
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/sshd.service"),
            ""
        );
        assert_eq!(unit_of("/system.slice/foo"), "");
        assert_eq!(unit_of("/"), "");
        assert_eq!(unit_of("/kubepods/burstable/pod1"), "");
    }
}
