//! The Debian package, as `cargo xtask test` builds it (target/debian/):
//! it installs, its config validates, and its unit starts the agent where
//! systemd runs (elsewhere the unit passes `systemd-analyze verify`).
//! Installing touches the machine, so this is privileged, and the package
//! is purged afterwards.

use std::{path::PathBuf, process::Command, time::Duration};

use sentinel_tests::{privileged, serial};

fn the_deb() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

fn sh(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Purges the package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "sentinel"]).output();
    }
}

#[test]
fn the_package_installs_the_agent_its_unit_and_config() {
    if !privileged("the_package_installs") {
        return;
    }
    let _serial = serial();
    let Some(deb) = the_deb() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no package in target/debian: `cargo xtask test` builds it (cargo xtask deb)"
        );
        eprintln!("SKIP: no package in target/debian; run `cargo xtask deb` first");
        return;
    };
    let (ok, out) = sh(Command::new("dpkg")
        .arg("-i")
        .arg(&deb)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    let _installed = Installed;
    assert!(ok, "dpkg -i {}: {out}", deb.display());

    for path in [
        "/usr/bin/sentinel",
        "/usr/lib/systemd/system/sentinel.service",
        "/etc/sentinel/sentinel.toml",
        "/usr/share/sentinel/prometheus/sentinel-rules.yml",
        "/usr/share/sentinel/grafana/sentinel-dashboard.json",
        "/usr/share/doc/sentinel/OPERATIONS.md",
    ] {
        assert!(std::path::Path::new(path).exists(), "{path} not installed");
    }
    let (ok, out) =
        sh(Command::new("dpkg-query").args(["-W", "-f=${Status} ${Conffiles}", "sentinel"]));
    assert!(ok && out.contains("install ok installed"), "{out}");
    assert!(
        out.contains("/etc/sentinel/sentinel.toml"),
        "the config is a conffile: {out}"
    );

    // The installed binary accepts the installed config.
    let (ok, out) = sh(Command::new("/usr/bin/sentinel").args([
        "policy",
        "check",
        "/etc/sentinel/sentinel.toml",
    ]));
    assert!(ok, "{out}");

    let unit = "/usr/lib/systemd/system/sentinel.service";
    if std::path::Path::new("/run/systemd/system").exists() {
        // systemd runs here: the package enabled and started the unit.
        let active = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(200));
            sh(Command::new("systemctl").args(["is-active", "sentinel"])).0
        });
        let (_, status) = sh(Command::new("systemctl").args(["status", "sentinel", "--no-pager"]));
        assert!(active, "the unit did not start the agent: {status}");
        let (ok, out) = sh(Command::new("/usr/bin/sentinel").arg("status"));
        assert!(ok, "the agent the unit started does not answer: {out}");
    } else {
        let (ok, out) = sh(Command::new("systemd-analyze").args(["verify", unit]));
        assert!(
            ok && out.trim().is_empty(),
            "systemd-analyze verify {unit}: {out}"
        );
        eprintln!("no systemd running here: the unit was verified, not started");
    }
}
