//! The fake NVML library (tests/fake-nvml/fake_nvml.c), built here with
//! the system's C compiler, and the scenario file that drives it.

use std::path::{Path, PathBuf};

/// Builds the fake libnvidia-ml next to the test binaries when missing or
/// older than its source; returns its path.
pub fn fake_nvml() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fake-nvml/fake_nvml.c");
    let out = crate::bin_dir().join("libfake-nvml.so");
    let fresh = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    if fresh(&out) < fresh(&src) || !out.exists() {
        // Built under a temporary name and renamed: tests in parallel may
        // race to build it.
        let tmp = out.with_extension(format!("so.{}", std::process::id()));
        let status = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-lpthread")
            .status()
            .expect("a C compiler (cc) to build the fake NVML");
        assert!(status.success(), "building {}", src.display());
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

/// The fake driver's state, rewritten whole (atomically) on each change.
pub struct Scenario {
    pub path: PathBuf,
}

impl Scenario {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("gpu-scenario"),
        }
    }

    pub fn write(&self, text: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}
