//! A unit's sandbox rebuilt without systemd (none runs here), so that a
//! test can run the agent's real work (and its relay's) inside what
//! deploy/sentinel.service (deploy/sentinel-relay.service) asks for: its
//! user and capability bounding set (setpriv), its limits (prlimit), its
//! network (PrivateNetwork=: a network namespace of its own), its mount
//! protections (ProtectKernelTunables=, ProtectProc=, ProtectHome=, in a
//! mount namespace of its own) and its system call filter with
//! MemoryDenyWriteExecute= and RestrictAddressFamilies= (seccomp-run).
//! Each is read from the unit's own lines, so editing the unit changes
//! what the tests run under.
//!
//! Not rebuilt: PrivateTmp= (the tests' agents keep their files in /tmp),
//! DevicePolicy= (a cgroup device program; no device the agent opens here
//! but the GPU library's, which is a fake), IPAddressDeny= (a cgroup
//! program; the network namespace already leaves nothing to reach),
//! SupplementaryGroups= (the group is the package's; the tests' agents
//! give their socket to no group), DynamicUser= is played by nobody, and
//! the Restrict*= and Protect*= lines that take away what the agent never
//! uses.

use std::{
    collections::BTreeSet,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{Agent, syscalls};

/// From the kernel headers (package linux-libc-dev): `#define CAP_KILL 5`.
const CAPABILITY_H: &str = "/usr/include/linux/capability.h";

/// The agent's unit, as the package installs it.
pub const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sentinel.service");
/// The relay's unit.
pub const RELAY_UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/sentinel-relay.service"
);

pub fn unit() -> String {
    read(UNIT)
}

pub fn relay_unit() -> String {
    read(RELAY_UNIT)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The value of the unit's last `key=` line (systemd's reading of a
/// setting given twice).
pub fn setting(unit: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .map(str::to_string)
}

/// `inner` (the agent's command) run in the agent's unit's sandbox; see
/// [`launcher_for`].
pub fn launcher(inner: Command, dir: &Path, refuse: &[&str], errno: bool) -> Command {
    launcher_for(&unit(), inner, dir, refuse, errno)
}

/// `inner` run in `unit`'s sandbox, with the calls in `refuse` taken out
/// of its filter; a call the unit's `~` lines take out fails with EPERM
/// (the unit's SystemCallErrorNumber=), any other call outside the filter
/// kills, or with `errno` fails with EPERM too (the unit's mode). The
/// filter's lists are written under `dir`.
pub fn launcher_for(
    unit: &str,
    inner: Command,
    dir: &Path,
    refuse: &[&str],
    errno: bool,
) -> Command {
    let mut args: Vec<OsString> = ["--mount", "--propagation", "private"]
        .map(OsString::from)
        .into();
    match setting(unit, "PrivateNetwork").as_deref() {
        None | Some("no") => {}
        Some("yes") => args.push("--net".into()),
        Some(other) => panic!("PrivateNetwork={other}?"),
    }
    args.push("--".into());
    args.extend(["sh", "-c", &mounts(unit), "sandbox", "prlimit"].map(OsString::from));
    args.extend(limit_args(unit));
    args.extend(["--", "setpriv"].map(OsString::from));
    args.extend(identity_args(unit));
    args.extend(capability_args(unit));
    args.push("--".into());
    args.push(crate::bin_dir().join("seccomp-run").into());
    if errno {
        args.push("--errno".into());
    }
    if setting(unit, "MemoryDenyWriteExecute").as_deref() == Some("yes") {
        args.push("--deny-write-execute".into());
    }
    if let Some(families) = setting(unit, "RestrictAddressFamilies") {
        args.push("--families".into());
        args.push(family_numbers(&families).into());
    }
    let denied = numbers_file(dir, "denied", &syscalls::denied_by_unit(unit));
    args.push("--eperm".into());
    args.push(denied.into());
    args.push(allow_list(unit, dir, refuse).into());
    args.push("--".into());
    let args: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
    Agent::run_by("unshare", &args, &inner)
}

/// prlimit's arguments for the unit's LimitNOFILE= and LimitMEMLOCK=
/// (soft and hard alike, as systemd sets them). Above this test's own hard
/// limit (raising it takes CAP_SYS_RESOURCE, which some sandboxes lack)
/// the hard limit is used, and said.
fn limit_args(unit: &str) -> Vec<OsString> {
    let mut out = Vec::new();
    for (key, flag, resource) in [
        ("LimitNOFILE", "--nofile", libc::RLIMIT_NOFILE),
        ("LimitMEMLOCK", "--memlock", libc::RLIMIT_MEMLOCK),
    ] {
        let Some(v) = setting(unit, key) else {
            continue;
        };
        let wanted = match v.as_str() {
            "infinity" => libc::RLIM_INFINITY,
            n => n
                .parse()
                .unwrap_or_else(|_| panic!("the test rebuilds no {key}={v}")),
        };
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct we own.
        assert_eq!(unsafe { libc::getrlimit(resource, &mut lim) }, 0);
        let n = if wanted > lim.rlim_max {
            eprintln!(
                "note: {key}={v} is above this test's hard limit; {} instead",
                lim.rlim_max
            );
            lim.rlim_max
        } else {
            wanted
        };
        let n = if n == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            n.to_string()
        };
        out.push(format!("{flag}={n}:{n}").into());
    }
    out
}

/// setpriv's arguments for the unit's user: root (no User=), or for
/// DynamicUser=yes a user with nothing of its own (nobody, no groups).
fn identity_args(unit: &str) -> Vec<OsString> {
    match (
        setting(unit, "User"),
        setting(unit, "DynamicUser").as_deref(),
    ) {
        (None, None | Some("no")) => Vec::new(),
        (None, Some("yes")) => ["--reuid=65534", "--regid=65534", "--clear-groups"]
            .map(OsString::from)
            .into(),
        (user, dynamic) => panic!("the test rebuilds no User={user:?} DynamicUser={dynamic:?}"),
    }
}

/// RestrictAddressFamilies='s names as the kernel's numbers.
fn family_numbers(list: &str) -> String {
    list.split_whitespace()
        .map(|f| match f {
            "AF_UNIX" => libc::AF_UNIX.to_string(),
            "AF_INET" => libc::AF_INET.to_string(),
            "AF_INET6" => libc::AF_INET6.to_string(),
            "AF_NETLINK" => libc::AF_NETLINK.to_string(),
            other => panic!("the test rebuilds no RestrictAddressFamilies entry {other}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The unit's allow list as numbers in a file under `dir`, less `refuse`.
fn allow_list(unit: &str, dir: &Path, refuse: &[&str]) -> PathBuf {
    let mut names = syscalls::allowed_by_unit(unit);
    for r in refuse {
        names.remove(*r);
    }
    numbers_file(dir, "allowed", &names)
}

/// `names`' numbers, one per line, in a file `dir/NAME` (readable by the
/// sandbox's user, whoever it is).
fn numbers_file(dir: &Path, name: &str, names: &BTreeSet<String>) -> PathBuf {
    let path = dir.join(name);
    let text: String = syscalls::numbers(names)
        .iter()
        .map(|n| format!("{n}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// A shell script that makes, in the mount namespace it runs in, what the
/// unit's mount protections make, then runs its arguments. Systemd's
/// tables (src/core/namespace.c): ProtectKernelTunables=yes makes /sys
/// and /proc/sys read-only and leaves /sys/fs/cgroup writable;
/// ProtectProc=invisible mounts /proc with hidepid=invisible;
/// ProtectHome=yes leaves /home, /root and /run/user empty and closed.
fn mounts(unit: &str) -> String {
    let mut script = String::from("set -e\n");
    match setting(unit, "ProtectProc").as_deref() {
        None | Some("default") => {}
        Some("invisible") => script.push_str("mount -t proc -o hidepid=invisible proc /proc\n"),
        Some(other) => panic!("the test rebuilds ProtectProc=invisible only, not {other}"),
    }
    match setting(unit, "ProtectKernelTunables").as_deref() {
        None | Some("no") => {}
        Some("yes") => script.push_str(
            "mount --bind /proc/sys /proc/sys\n\
             mount -o remount,bind,ro /proc/sys\n\
             mount -o remount,bind,ro /sys\n\
             for m in /sys/kernel/tracing /sys/kernel/debug /sys/fs/bpf; do\n\
             \x20   if mountpoint -q $m; then mount -o remount,bind,ro $m; fi\n\
             done\n",
        ),
        Some(other) => panic!("ProtectKernelTunables={other}?"),
    }
    match setting(unit, "ProtectHome").as_deref() {
        None | Some("no") => {}
        Some("yes") => script.push_str(
            "for d in /home /root /run/user; do\n\
             \x20   if [ -d $d ]; then mount -t tmpfs -o mode=000 tmpfs $d; fi\n\
             done\n",
        ),
        Some(other) => panic!("the test rebuilds ProtectHome=yes only, not {other}"),
    }
    script.push_str("exec \"$@\"\n");
    script
}

/// setpriv's arguments for the unit's capabilities: its bounding set
/// (all a root service gets at exec), and the same as inheritable and
/// ambient when the unit gives ambient ones. A capability this test's own
/// process lacks (CAP_SYS_RESOURCE, in some sandboxes) cannot be passed
/// on: it is left out, and said.
fn capability_args(unit: &str) -> Vec<OsString> {
    let list = |key| -> Option<BTreeSet<String>> {
        setting(unit, key).map(|v| v.split_whitespace().map(str::to_string).collect())
    };
    let caps = list("CapabilityBoundingSet").expect("the unit sets CapabilityBoundingSet=");
    let ambient = list("AmbientCapabilities");
    if let Some(ambient) = &ambient {
        assert_eq!(
            &caps, ambient,
            "the unit's ambient and bounding sets differ"
        );
    }
    let held = own_bounding_set();
    let numbers = syscalls::header_numbers(CAPABILITY_H, "CAP_");
    let mut names = vec!["-all".to_string()];
    for cap in &caps {
        let name = cap.trim_start_matches("CAP_");
        let nr = *numbers
            .get(name)
            .unwrap_or_else(|| panic!("{CAPABILITY_H} has no {cap}"));
        if held & (1 << nr) == 0 {
            eprintln!("note: this test holds no {cap}; the agent runs without it");
            continue;
        }
        names.push(format!("+{}", name.to_lowercase()));
    }
    let set = names.join(",");
    let mut args = vec!["--bounding-set".into(), set.clone().into()];
    if ambient.is_some() {
        args.extend([
            "--inh-caps".into(),
            set.clone().into(),
            "--ambient-caps".into(),
            set.into(),
        ]);
    }
    args
}

fn own_bounding_set() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .expect("CapBnd in /proc/self/status");
    u64::from_str_radix(hex.trim(), 16).expect("CapBnd is hex")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_given_twice_is_read_as_systemd_does() {
        let unit = "[Service]\nProtectHome=read-only\nX=1\n ProtectHome=yes\n";
        assert_eq!(setting(unit, "ProtectHome").as_deref(), Some("yes"));
        assert_eq!(setting(unit, "ProtectProc"), None);
    }

    #[test]
    fn capabilities_are_numbered_from_the_kernel_headers() {
        let n = syscalls::header_numbers(CAPABILITY_H, "CAP_");
        assert_eq!(n.get("KILL"), Some(&5));
        assert_eq!(n.get("BPF"), Some(&39));
    }
}
