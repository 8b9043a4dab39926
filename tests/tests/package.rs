//! The Debian package, as `cargo xtask test` builds it (target/debian/):
//! it installs, its config validates, and its unit starts the agent where
//! systemd runs (elsewhere the unit passes `systemd-analyze verify`).
//! Installing touches the machine, so this is privileged, and the package
//! is purged afterwards.

use std::{path::PathBuf, process::Command, time::Duration};

use sentinel_tests::{Hog, MIB, MemCgroup, privileged, rule_for, serial, tempdir};

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

/// Where systemd reads an override of the unit: the test's, so that the
/// agent the package starts (on a host with systemd) runs in dry-run. The
/// shipped policy freezes and kills at host scope, over any process: it
/// must not act on the test machine.
const DRY_RUN_DROP_IN: &str = "/etc/systemd/system/sentinel.service.d/zz-test-dry-run.conf";

/// Purges the package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "sentinel"]).output();
        let _ = std::fs::remove_file(DRY_RUN_DROP_IN);
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
    if std::path::Path::new("/run/systemd/system").exists() {
        let dir = std::path::Path::new(DRY_RUN_DROP_IN).parent().unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            DRY_RUN_DROP_IN,
            "[Service]\nEnvironment=SENTINEL_DRY_RUN=true\n",
        )
        .unwrap();
        let _ = Command::new("systemctl").arg("daemon-reload").output();
    }
    let (ok, out) = sh(Command::new("dpkg")
        .arg("-i")
        .arg(&deb)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    let _installed = Installed;
    assert!(ok, "dpkg -i {}: {out}", deb.display());
    lintian_is_clean(&deb);

    for path in [
        "/usr/bin/sentinel",
        "/usr/lib/systemd/system/sentinel.service",
        "/usr/lib/systemd/system/sentinel-relay.service",
        "/etc/sentinel/sentinel.toml",
        "/etc/default/sentinel",
        "/usr/share/sentinel/prometheus/sentinel-rules.yml",
        "/usr/share/sentinel/grafana/sentinel-dashboard.json",
        "/usr/share/doc/sentinel/OPERATIONS.md",
        "/usr/share/doc/sentinel/changelog.Debian.gz",
        "/usr/share/doc/sentinel/copyright",
        "/usr/share/man/man1/sentinel.1.gz",
        "/usr/share/man/man1/sentinel-status.1.gz",
        "/usr/share/man/man1/sentinel-relay.1.gz",
        "/usr/share/bash-completion/completions/sentinel",
        "/usr/share/zsh/vendor-completions/_sentinel",
        "/usr/share/fish/vendor_completions.d/sentinel.fish",
    ] {
        assert!(std::path::Path::new(path).exists(), "{path} not installed");
    }
    // The groups the environment file hands the socket exist.
    for group in ["sentinel", "sentinel-admin"] {
        let (ok, out) = sh(Command::new("getent").args(["group", group]));
        assert!(ok, "group {group} was not created: {out}");
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
        let relay = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(200));
            sh(Command::new("systemctl").args(["is-active", "sentinel-relay"])).0
        });
        assert!(relay, "the relay's unit did not start");
        // The packaged config's metrics, served by the agent through its
        // relay: the relay's dynamic user, its socket and the agent's
        // reach into it work together.
        let scraped = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(200));
            sh(Command::new("curl").args(["-sf", "http://127.0.0.1:9777/metrics"])).0
        });
        assert!(scraped, "no metrics through the relay");
    } else {
        let relay = "/usr/lib/systemd/system/sentinel-relay.service";
        let (ok, out) = sh(Command::new("systemd-analyze").args(["verify", unit, relay]));
        assert!(
            ok && out.trim().is_empty(),
            "systemd-analyze verify {unit} {relay}: {out}"
        );
        eprintln!("no systemd running here: the unit was verified, not started");
    }

    // Removing the package (not upgrading it) thaws what the agent froze.
    let cg = MemCgroup::new("pkgthaw", 512 * MIB);
    let hog = frozen_by_the_installed_agent(&cg);
    let (ok, out) = sh(Command::new("dpkg")
        .args(["-r", "sentinel"])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(ok, "dpkg -r: {out}");
    assert!(
        out.contains(&format!("thawed pid {} (memhog)", hog.pid)),
        "dpkg -r: {out}"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(!hog.frozen(), "still stopped after removal: {out}");

    // Purge takes the journal and the config with it.
    assert!(
        std::path::Path::new("/var/lib/sentinel/journal.redb").exists(),
        "removal (not purge) keeps the journal"
    );
    let (ok, out) = sh(Command::new("dpkg")
        .args(["--purge", "sentinel"])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(ok, "dpkg --purge: {out}");
    for gone in [
        "/var/lib/sentinel",
        "/etc/sentinel",
        "/etc/default/sentinel",
    ] {
        assert!(
            !std::path::Path::new(gone).exists(),
            "{gone} left after purge"
        );
    }
}

/// lintian reports nothing but what the package overrides, each override
/// with its reason (deploy/debian/lintian-overrides).
fn lintian_is_clean(deb: &std::path::Path) {
    let Ok(out) = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(deb)
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "lintian is missing, and CI is set (`cargo xtask test` installs it)"
        );
        eprintln!("SKIP lintian: not installed");
        return;
    };
    let report = String::from_utf8_lossy(&out.stdout);
    let tags: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    assert!(
        tags.is_empty(),
        "lintian {}:\n{}",
        deb.display(),
        tags.join("\n")
    );
}

/// KEY=VALUE lines of an environment file, as systemd's EnvironmentFile=
/// reads them (comments and blank lines skipped).
fn environment_file(path: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The installed agent, on the package's journal and a rule for `cg`,
/// freezes a leaker and is stopped (SIGTERM), leaving it frozen.
fn frozen_by_the_installed_agent(cg: &MemCgroup) -> Hog {
    if std::path::Path::new("/run/systemd/system").exists() {
        // The unit's agent holds the journal.
        sh(Command::new("systemctl").args(["stop", "sentinel"]));
    }
    let dir = tempdir::Dir::new("pkgthaw");
    let socket = dir.0.join("s.sock");
    let config = dir.0.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nsocket = \"{}\"\njournal = \"/var/lib/sentinel/journal.redb\"\n[metrics]\nenabled = false\n{}{}",
            socket.display(),
            rule_for(cg, "leaky", "256MiB", "freeze"),
            sentinel_tests::TEST_HOST
        ),
    )
    .unwrap();
    // With the package's environment file, as the unit runs it.
    let mut agent = Command::new("/usr/bin/sentinel")
        .args(["run", "--config"])
        .arg(&config)
        .envs(environment_file("/etc/default/sentinel"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    assert!(up, "the installed agent did not come up");
    let (_, group) = sh(Command::new("stat").args(["-c", "%G"]).arg(&socket));
    assert_eq!(group.trim(), "sentinel", "the socket's group");
    let hog = Hog::spawn(
        cg,
        &["--target", "400MiB", "--rate", "200MB/s", "--hold", "60"],
    );
    let frozen = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        hog.frozen()
    });
    // SAFETY: our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    assert!(frozen, "the installed agent did not freeze the leaker");
    assert!(hog.frozen(), "a stop leaves it frozen");
    hog
}
