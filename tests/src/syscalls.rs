//! The system calls a unit's `SystemCallFilter=` allows, as systemd would
//! resolve them on this machine: groups expanded by `systemd-analyze
//! syscall-filter` (no running systemd needed), names turned into x86-64
//! numbers from the kernel headers.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

/// The kernel's x86-64 system call numbers (package linux-libc-dev).
const UNISTD_64: &str = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";

/// The names `unit` allows: the union of its allow-list lines less the
/// union of its `~` deny lines (systemd's reading when the first line is an
/// allow list). Panics when the unit has no allow list.
pub fn allowed_by_unit(unit: &str) -> BTreeSet<String> {
    let (allow, deny) = filter_lines(unit);
    assert!(
        !allow.is_empty(),
        "the unit has no SystemCallFilter allow list"
    );
    allow.difference(&deny).cloned().collect()
}

/// The names the unit's `~` lines take out: refused with its
/// SystemCallErrorNumber= (an error the agent must live with) rather than
/// left out unawares.
pub fn denied_by_unit(unit: &str) -> BTreeSet<String> {
    filter_lines(unit).1
}

/// The unions of the unit's allow lines and of its `~` lines.
fn filter_lines(unit: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let groups = groups();
    let (mut allow, mut deny) = (BTreeSet::new(), BTreeSet::new());
    for value in unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SystemCallFilter="))
    {
        let (into, list) = match value.strip_prefix('~') {
            Some(rest) => (&mut deny, rest),
            None => (&mut allow, value),
        };
        for entry in list.split_whitespace() {
            // `name:errno` sets a call's own error; the call is still listed.
            let name = entry.split(':').next().unwrap_or(entry);
            expand(name, &groups, into);
        }
    }
    (allow, deny)
}

/// Every group `systemd-analyze syscall-filter` knows, with its entries
/// (calls and nested groups).
fn groups() -> BTreeMap<String, Vec<String>> {
    let out = crate::stdout_of(Command::new("systemd-analyze").arg("syscall-filter"));
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&out).lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            current = Some(t.to_string());
            groups.entry(t.to_string()).or_default();
        } else if let Some(g) = &current {
            groups
                .get_mut(g)
                .expect("inserted above")
                .push(t.to_string());
        }
    }
    groups
}

fn expand(name: &str, groups: &BTreeMap<String, Vec<String>>, into: &mut BTreeSet<String>) {
    if name.starts_with('@') {
        let entries = groups
            .get(name)
            .unwrap_or_else(|| panic!("systemd-analyze knows no group {name}"));
        for e in entries {
            expand(e, groups, into);
        }
    } else {
        into.insert(name.to_string());
    }
}

/// The x86-64 numbers of `names`; names this architecture lacks (other
/// architectures' calls in systemd's groups) are left out, as systemd does.
pub fn numbers(names: &BTreeSet<String>) -> Vec<u32> {
    let table = header_numbers(UNISTD_64, "__NR_");
    assert!(table.len() > 300, "{UNISTD_64} lists too few calls");
    names.iter().filter_map(|n| table.get(n).copied()).collect()
}

/// The `#define <prefix>NAME <number>` lines of the kernel header at
/// `path`, by NAME (without the prefix): numbers the kernel and userspace
/// agree on, such as system calls' and capabilities'.
pub fn header_numbers(path: &str, prefix: &str) -> BTreeMap<String, u32> {
    let header = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    header
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("#define ")?.split_whitespace();
            let name = words.next()?.strip_prefix(prefix)?;
            Some((name.to_string(), words.next()?.parse().ok()?))
        })
        .collect()
}
