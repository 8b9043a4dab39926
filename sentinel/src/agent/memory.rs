//! What the agent keeps resident once it runs: the start-up's heap given
//! back, the start-up's code let go, and the rest locked in RAM.

/// Gives back what loading cost. Parsing the kernel's BTF for the probes
/// and the first /proc walk allocate tens of MiB that are free afterwards
/// but stay in the heap unless trimmed; and locked pages could not be
/// trimmed at all, so this comes before `lock`.
pub fn trim_heap() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
}

/// Keeps the agent's pages in RAM, so that it is not itself slowed by
/// reclaim or swap-in at the moment memory runs out. ONFAULT locks pages
/// as they are touched, so reserved but unused memory (thread stacks)
/// costs nothing.
pub fn lock() {
    // SAFETY: mlockall has no memory-safety preconditions.
    let r = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    if r == 0 {
        tracing::debug!("agent memory locked");
    } else {
        tracing::warn!(
            "could not lock the agent's memory ({}): under memory pressure its own pages may be reclaimed; give it CAP_IPC_LOCK or LimitMEMLOCK=infinity",
            std::io::Error::last_os_error()
        );
    }
}

/// One mapping of /proc/self/smaps that holds only pages of a file: not
/// writable, and no private copy of any page, in RAM or swapped out
/// (`Anonymous` and `Swap` both 0 kB; RELRO data, relocated at load and
/// then made read-only, has such copies). `Private_Dirty` is no sign of
/// them: a binary just built is dirty in the page cache, which keeps it.
#[derive(Debug, PartialEq, Eq)]
pub struct CleanMapping {
    pub start: usize,
    pub end: usize,
}

/// A mapping of `path` being read, and which of the fields that prove it
/// clean were seen at zero.
struct Candidate {
    mapping: CleanMapping,
    zero: [bool; 2],
}

const ZERO_FIELDS: [&str; 2] = ["Anonymous:", "Swap:"];

/// The clean mappings of `path` in an smaps listing. A mapping is taken
/// only when all of `ZERO_FIELDS` were read as 0: one missing field, or an
/// unexpected layout, keeps it.
pub fn parse_clean_mappings(smaps: &str, path: &str) -> Vec<CleanMapping> {
    let mut out = Vec::new();
    let mut current: Option<Candidate> = None;
    let mut finish = |c: Option<Candidate>| {
        if let Some(c) = c.filter(|c| c.zero.iter().all(|&z| z)) {
            out.push(c.mapping);
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-') {
            finish(current.take());
            // A mapping's header: range, perms, offset, dev, inode, path.
            let perms = fields.next().unwrap_or_default();
            let mine = fields.nth(3) == Some(path) && !perms.contains('w');
            current = match (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                (Ok(start), Ok(end)) if mine => Some(Candidate {
                    mapping: CleanMapping { start, end },
                    zero: [false; 2],
                }),
                _ => None,
            };
        } else if let (Some(c), Some(i)) = (
            current.as_mut(),
            ZERO_FIELDS.iter().position(|f| *f == first),
        ) {
            c.zero[i] = fields.next() == Some("0");
        }
    }
    finish(current);
    out
}

/// Lets go of the pages of the agent's own binary that start-up touched:
/// before the kernel's BTF is parsed (the largest allocation the agent
/// ever makes, so the two do not add up to its peak), and again before
/// `lock` would pin what only start-up ran (argument and config parsing,
/// probe loading, server set-up: most of what it touched). They stay in
/// the page cache and fault back in when run again; what the running
/// agent touches is locked as it is touched. Dropping our mappings of a
/// file's pages loses nothing when no page has a private copy, which
/// `parse_clean_mappings` makes sure of (a debugger's breakpoint set
/// between that reading and the drop would be lost). Must not be called
/// after `lock`: locked pages cannot be dropped (madvise fails,
/// harmlessly).
pub fn release_startup_code() {
    let (Ok(exe), Ok(smaps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/smaps"),
    ) else {
        return;
    };
    let Some(exe) = exe.to_str() else { return };
    for m in parse_clean_mappings(&smaps, exe) {
        // SAFETY: the range is a whole read-only mapping of a file with no
        // private copy of any page (in RAM or swap), so dropping it changes
        // no contents: the next access reads the same bytes from the page
        // cache or the file.
        let r = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if r != 0 {
            tracing::debug!(
                "could not release start-up pages at {:#x}: {}",
                m.start,
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55eb67d0b000-55eb680b0000 r--p 00000000 fe:00 5383864    /usr/bin/sentinel
Rss:                1364 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
55eb680b0000-55eb68b09000 r-xp 003a4000 fe:00 5383864    /usr/bin/sentinel
Rss:                8452 kB
Private_Dirty:      8452 kB
Anonymous:             0 kB
Swap:                  0 kB
55eb68b09000-55eb68b64000 r--p 00dfc000 fe:00 5383864    /usr/bin/sentinel
Rss:                 364 kB
Private_Dirty:       364 kB
Anonymous:           364 kB
Swap:                  0 kB
55eb68b64000-55eb68b69000 rw-p 00e56000 fe:00 5383864    /usr/bin/sentinel
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
7f0000000000-7f0000001000 r-xp 00000000 fe:00 1234       /usr/lib/libc.so.6
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
7f0000002000-7f0000003000 r--p 00000000 00:00 0
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_mappings_of_the_binary_are_released() {
        assert_eq!(
            parse_clean_mappings(SMAPS, "/usr/bin/sentinel"),
            [
                CleanMapping {
                    start: 0x55eb67d0b000,
                    end: 0x55eb680b0000
                },
                CleanMapping {
                    start: 0x55eb680b0000,
                    end: 0x55eb68b09000
                },
            ]
        );
    }

    /// RELRO pages swapped out show no Anonymous, only Swap: dropping
    /// them would bring back the unrelocated bytes of the file.
    #[test]
    fn a_mapping_with_private_pages_in_swap_or_a_field_missing_is_kept() {
        let swapped = "\
55eb68b09000-55eb68b64000 r--p 00dfc000 fe:00 5383864    /usr/bin/sentinel
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                364 kB
55eb68b64000-55eb68b69000 r--p 00e56000 fe:00 5383864    /usr/bin/sentinel
Anonymous:             0 kB
";
        assert!(parse_clean_mappings(swapped, "/usr/bin/sentinel").is_empty());
    }

    #[test]
    fn other_files_and_garbage_match_nothing() {
        assert!(parse_clean_mappings(SMAPS, "/usr/bin/other").is_empty());
        assert!(parse_clean_mappings("garbage\nAnonymous: 0 kB\n", "/usr/bin/sentinel").is_empty());
    }
}
