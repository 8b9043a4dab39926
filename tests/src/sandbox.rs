//! The unit's sandbox rebuilt without systemd (none runs here), so that a
//! test can run the agent's real work inside what deploy/sentinel.service
//! asks for: its capability bounding set (setpriv), its mount protections
//! (ProtectKernelTunables=, ProtectProc=, ProtectHome=, in a mount
//! namespace of the agent's own) and its system call filter with
//! MemoryDenyWriteExecute= (seccomp-run). Each is read from the unit's own
//! lines, so editing the unit changes what the tests run under.
//!
//! Not rebuilt: PrivateTmp= (the tests' agents keep their files in /tmp),
//! DevicePolicy= (a cgroup device program; no device the agent opens here
//! but the GPU library's, which is a fake), and the Restrict*= and
//! Protect*= lines that take away what the agent never uses.

use std::{
    collections::BTreeSet,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{Agent, syscalls};

/// From the kernel headers (package linux-libc-dev): `#define CAP_KILL 5`.
const CAPABILITY_H: &str = "/usr/include/linux/capability.h";

/// The unit the package installs.
pub const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sentinel.service");

pub fn unit() -> String {
    std::fs::read_to_string(UNIT).unwrap_or_else(|e| panic!("{UNIT}: {e}"))
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

/// `inner` (the agent's command) run in the unit's sandbox, with the
/// calls in `refuse` taken out of its filter; any call outside the filter
/// kills the agent, or with `errno` fails with EPERM (the unit's mode).
/// The allow list is written under `dir`.
pub fn launcher(inner: Command, dir: &Path, refuse: &[&str], errno: bool) -> Command {
    let unit = unit();
    let mut args: Vec<OsString> = ["--mount", "--propagation", "private", "--"]
        .map(OsString::from)
        .into();
    args.extend(["sh", "-c", &mounts(&unit), "sandbox", "setpriv"].map(OsString::from));
    args.extend(capability_args(&unit));
    args.push("--".into());
    args.push(crate::bin_dir().join("seccomp-run").into());
    if errno {
        args.push("--errno".into());
    }
    if setting(&unit, "MemoryDenyWriteExecute").as_deref() == Some("yes") {
        args.push("--deny-write-execute".into());
    }
    args.push(allow_list(&unit, dir, refuse).into());
    args.push("--".into());
    let args: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
    Agent::run_by("unshare", &args, &inner)
}

/// The unit's allow list as numbers in a file under `dir`, less `refuse`.
fn allow_list(unit: &str, dir: &Path, refuse: &[&str]) -> PathBuf {
    let mut names = syscalls::allowed_by_unit(unit);
    for r in refuse {
        names.remove(*r);
    }
    let path = dir.join("allowed");
    let text: String = syscalls::numbers(&names)
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

/// setpriv's arguments for the unit's capabilities: bounding, inheritable
/// and ambient sets all the unit's list. A capability this test's own
/// process lacks (CAP_SYS_RESOURCE, in some sandboxes) cannot be passed
/// on: it is left out, and said.
fn capability_args(unit: &str) -> Vec<OsString> {
    let list = |key| -> BTreeSet<String> {
        setting(unit, key)
            .unwrap_or_else(|| panic!("the unit sets no {key}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let caps = list("CapabilityBoundingSet");
    assert_eq!(
        caps,
        list("AmbientCapabilities"),
        "the unit's ambient and bounding sets differ"
    );
    let held = own_bounding_set();
    let numbers = syscalls::header_numbers(CAPABILITY_H, "CAP_");
    let mut names = Vec::new();
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
    let set = format!("-all,{}", names.join(","));
    [
        "--bounding-set",
        &set,
        "--inh-caps",
        &set,
        "--ambient-caps",
        &set,
    ]
    .map(OsString::from)
    .into()
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
