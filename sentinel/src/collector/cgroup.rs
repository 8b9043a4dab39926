//! Memory cgroup limits, from cgroup v1 (`memory.limit_in_bytes`) or v2
//! (`memory.max`, `memory.high`). The parsers are pure; the reader takes its
//! roots as arguments so tests can lay out a cgroupfs tree in a temp dir.

use std::path::{Path, PathBuf};

/// v1 reports "no limit" as a page-rounded i64::MAX; anything this large is
/// unlimited.
const V1_UNLIMITED: u64 = 1 << 62;

pub fn parse_v1_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&v| v < V1_UNLIMITED)
}

/// `memory.max` / `memory.high`: a byte count or "max".
pub fn parse_v2_limit(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        v => v.parse().ok(),
    }
}

#[derive(Debug, Clone)]
pub struct CgroupFs {
    /// Root of the v1 memory hierarchy (/sys/fs/cgroup/memory), if mounted.
    pub v1_memory: Option<PathBuf>,
    /// Root of a v2 hierarchy with the memory controller, if any.
    pub v2: Option<PathBuf>,
}

impl CgroupFs {
    pub fn detect() -> Self {
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let v2 = Path::new("/sys/fs/cgroup");
        let v2_has_memory = std::fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"));
        Self {
            v1_memory: v1
                .join("memory.limit_in_bytes")
                .exists()
                .then(|| v1.to_path_buf()),
            v2: v2_has_memory.then(|| v2.to_path_buf()),
        }
    }

    /// The limit of the cgroup at `path` itself (the lower of v2's max and
    /// high), or None when it has none.
    pub fn own_limit(&self, path: &str) -> Option<u64> {
        let rel = path.trim_start_matches('/');
        if let Some(root) = &self.v1_memory
            && let Ok(t) = std::fs::read_to_string(root.join(rel).join("memory.limit_in_bytes"))
        {
            return parse_v1_limit(&t);
        }
        let root = self.v2.as_ref()?;
        let dir = root.join(rel);
        let max = std::fs::read_to_string(dir.join("memory.max"))
            .ok()
            .and_then(|t| parse_v2_limit(&t));
        let high = std::fs::read_to_string(dir.join("memory.high"))
            .ok()
            .and_then(|t| parse_v2_limit(&t));
        match (max, high) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What the kernel charges to the cgroup at `path` now (v1
    /// memory.usage_in_bytes, v2 memory.current).
    pub fn usage(&self, path: &str) -> Option<u64> {
        let rel = path.trim_start_matches('/');
        let file = match (&self.v1_memory, &self.v2) {
            (Some(root), _) => root.join(rel).join("memory.usage_in_bytes"),
            (None, Some(root)) => root.join(rel).join("memory.current"),
            (None, None) => return None,
        };
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// The nearest cgroup at or above `path` that has a limit, and that
    /// limit: the line its members share.
    pub fn effective_limit(&self, path: &str) -> Option<(String, u64)> {
        sentinel_core::engine::effective_limit(path, |p| self.own_limit(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(parse_v1_limit("1073741824\n"), Some(1 << 30));
        assert_eq!(parse_v1_limit("9223372036854771712\n"), None);
        assert_eq!(parse_v2_limit("max\n"), None);
        assert_eq!(parse_v2_limit("536870912\n"), Some(512 << 20));
        assert_eq!(parse_v2_limit("junk"), None);
    }

    #[test]
    fn v2_tree_in_a_temp_dir() {
        let root = std::env::temp_dir().join(format!("sentinel-cgfs-{}", std::process::id()));
        let job = root.join("jobs/job1/worker");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(root.join("jobs/memory.max"), "max\n").unwrap();
        std::fs::write(root.join("jobs/job1/memory.max"), "2147483648\n").unwrap();
        std::fs::write(root.join("jobs/job1/memory.high"), "1073741824\n").unwrap();
        std::fs::write(job.join("memory.max"), "max\n").unwrap();
        let fs = CgroupFs {
            v1_memory: None,
            v2: Some(root.clone()),
        };
        assert_eq!(
            fs.own_limit("/jobs/job1"),
            Some(1 << 30),
            "high is lower than max"
        );
        assert_eq!(fs.own_limit("/jobs/job1/worker"), None);
        assert_eq!(
            fs.effective_limit("/jobs/job1/worker"),
            Some(("/jobs/job1".to_string(), 1 << 30))
        );
        assert_eq!(fs.effective_limit("/jobs"), None);
        assert_eq!(fs.effective_limit("/nowhere"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
