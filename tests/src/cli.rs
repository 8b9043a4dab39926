//! The `sentinel` binary run as an operator runs it, with no agent needed.

use std::process::Command;

use crate::sentinel_bin;

/// Runs `sentinel` with `args`; returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(sentinel_bin()).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
