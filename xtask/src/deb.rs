//! The Debian package: cargo-deb at a fixed version, and what the package
//! holds beside the binary that the binary itself generates (man pages,
//! shell completions).

use std::process::Command;

use anyhow::{Context, Result};

use crate::{cargo, cargo_home_bin, output, root, run};

/// cargo-deb, at a fixed version, when missing.
pub fn deb_setup() -> Result<()> {
    let deb = cargo_home_bin().join("cargo-deb");
    if output(Command::new(&deb).arg("--version")).is_none() {
        eprintln!("setup: installing cargo-deb");
        run(Command::new("cargo").args([
            "install",
            "--locked",
            "cargo-deb",
            "--version",
            "3.8.0",
        ]))?;
    }
    Ok(())
}

/// Builds the release binary, writes what it generates for the package
/// (man pages, shell completions) under target/release/debian-assets/
/// (cargo-deb's name for what the build made), where
/// sentinel/Cargo.toml's assets name them, then packages it all.
pub fn deb(args: &[&str]) -> Result<()> {
    run(cargo().args(["build", "--release", "-p", "sentinel"]))?;
    let bin = root().join("target/release/sentinel");
    let assets = root().join("target/release/debian-assets");
    let _ = std::fs::remove_dir_all(&assets);
    let man = assets.join("man");
    run(Command::new(&bin).arg("man").arg(&man))?;
    // Debian installs man pages compressed; -n keeps the archive
    // reproducible (no name or time stamp in it).
    for page in std::fs::read_dir(&man)? {
        run(Command::new("gzip").args(["-9nf"]).arg(page?.path()))?;
    }
    let completions = assets.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (shell, file) in [
        ("bash", "sentinel"),
        ("zsh", "_sentinel"),
        ("fish", "sentinel.fish"),
    ] {
        let script = Command::new(&bin)
            .args(["completions", shell])
            .output()
            .with_context(|| format!("{} completions {shell}", bin.display()))?;
        anyhow::ensure!(
            script.status.success(),
            "sentinel completions {shell}: {}",
            String::from_utf8_lossy(&script.stderr)
        );
        std::fs::write(completions.join(file), script.stdout)?;
    }
    run(cargo()
        .args(["deb", "-p", "sentinel", "--no-build"])
        .args(args))
}
