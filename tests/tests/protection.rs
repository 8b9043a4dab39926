//! Protection by what the kernel vouches for, not by name (issue 16): a
//! leaker named like a protected daemon, by its file name or by prctl, is
//! stopped at cgroup and at host scope; a protected daemon's real
//! executable is not, and the decision names it as what drives the growth.

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use sentinel_tests::{Agent, Hog, MIB, MemCgroup, memhog_bin, privileged, serial_async, tempdir};

/// Where the test's "real daemon" lives: a root-only directory, as a
/// package would install it.
const DAEMON: &str = "/usr/local/libexec/sentinel-test-daemon";

/// memhog under another file name in `dir` (a copy a user could make).
fn copy_named(dir: &Path, name: &str) -> String {
    let to = dir.join(name);
    std::fs::copy(memhog_bin(), &to).unwrap();
    to.display().to_string()
}

/// memhog installed as root's, where only root can write.
fn install_daemon() {
    std::fs::create_dir_all(Path::new(DAEMON).parent().unwrap()).unwrap();
    std::fs::copy(memhog_bin(), DAEMON).unwrap();
    std::fs::set_permissions(DAEMON, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A memhog started from `exe` in `cg`.
fn hog_from(exe: &str, cg: &MemCgroup, args: &[&str]) -> Hog {
    Hog::spawn_exe(exe, cg, args)
}

const GROW: [&str; 6] = ["--target", "480MiB", "--rate", "150MB/s", "--hold", "30"];

/// The two ways to be called `sshd`: (how, the file to run, a name to set
/// with prctl).
fn impostors<'a>(
    copy: &'a str,
    memhog: &'a str,
) -> [(&'static str, &'a str, Option<&'static str>); 2] {
    [("file name", copy, None), ("prctl", memhog, Some("sshd"))]
}

/// At host scope the leaker grows far past the preempt line (set 200 MiB
/// above what is in use): other processes on the machine may free a few
/// hundred MiB meanwhile, and the line must still be crossed.
const GROW_PAST_THE_HOST_LINE: [&str; 6] =
    ["--target", "900MiB", "--rate", "150MB/s", "--hold", "30"];

/// A leaker called `sshd` the way `how` says, growing as `grow` says.
fn impostor_hog(cg: &MemCgroup, exe: &str, name: Option<&str>, grow: &[&'static str]) -> Hog {
    let mut args = grow.to_vec();
    if let Some(n) = name {
        args.extend(["--name", n]);
    }
    hog_from(exe, cg, &args)
}

/// Each impostor is stopped at a cgroup's limit and at the host's floor;
/// the daemon is left alone and named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaker_named_like_a_protected_daemon_is_stopped_and_the_real_one_is_named() {
    if !privileged("a_leaker_named_like_a_protected_daemon") {
        return;
    }
    let _serial = serial_async().await;
    install_daemon();
    let dir = tempdir::Dir::new("impostor");
    let impostor = copy_named(&dir.0, "sshd");
    let cg = MemCgroup::new("impostor", 512 * MIB);
    // The built-in protections, and one for the test's daemon by its
    // executable; a name-only one, to be warned about.
    let protect = format!(
        "protected = [\"decoy\"]\n[[protect]]\nname = \"sshd\"\nmatch = {{ exe = \"^/usr/s?bin/sshd$\" }}\n[[protect]]\nname = \"test daemon\"\nmatch = {{ exe = \"^{DAEMON}$\" }}\n"
    );
    let cgroup_rule = format!(
        "[[cgroup]]\nname = \"jobs\"\nmatch = \"^{}$\"\naction = \"freeze\"\n",
        cg.path
    );
    let memhog = memhog_bin().display().to_string();
    let agent = Agent::start("impostor", &format!("{protect}{cgroup_rule}"), &[]);
    let log = agent.log_text();
    assert!(
        log.contains("agent.protected `decoy`") && log.contains("anyone can claim"),
        "{log}"
    );
    for (how, exe, name) in impostors(&impostor, &memhog) {
        let hog = impostor_hog(&cg, exe, name, &GROW);
        let d = agent
            .expect_action(hog.pid, "freeze", Duration::from_secs(10))
            .await;
        assert_eq!(d.rule, "jobs", "{how}: {d:?}");
        if how == "file name" {
            assert_eq!(d.comm, "sshd", "{how}");
        }
        assert!(hog.frozen(), "{how}");
    }

    // The daemon's own executable is protected: it grows past the preempt
    // line untouched, and the alert names it.
    let daemon = hog_from(
        DAEMON,
        &cg,
        &["--target", "470MiB", "--rate", "150MB/s", "--hold", "30"],
    );
    let d = agent
        .wait_decision(Duration::from_secs(10), |d| {
            d.pid == daemon.pid && d.rule == "jobs"
        })
        .await
        .expect("a decision about the daemon");
    assert_eq!(d.action, "alert", "{d:?}");
    assert!(
        d.reason
            .contains("which may not be signalled (protected as `test daemon`)")
            && d.reason.contains("nothing was stopped"),
        "{}",
        d.reason
    );
    assert!(!daemon.frozen());
    let stopped = agent
        .wait_decision(Duration::from_secs(2), |d| {
            d.pid == daemon.pid && d.action != "alert"
        })
        .await;
    assert!(stopped.is_none(), "{stopped:?}");
    drop(daemon);

    // The same path, but a file anyone may rewrite: no protection.
    std::fs::set_permissions(DAEMON, std::fs::Permissions::from_mode(0o777)).unwrap();
    let rewritable = hog_from(DAEMON, &cg, &GROW);
    let d = agent
        .expect_action(rewritable.pid, "freeze", Duration::from_secs(10))
        .await;
    assert_eq!(d.rule, "jobs");
    drop(rewritable);
    std::fs::set_permissions(DAEMON, std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(agent);
    drop(cg);
    let cg = MemCgroup::new("impostor-host", 1024 * MIB);

    // At the host's floor: the same impostors, with the built-in
    // protections only (no [[protect]] written) and the host policy's
    // defaults but for a floor just under what is in use now (an agent for
    // each, each floor drawn afresh).
    for (how, exe, name) in impostors(&impostor, &memhog) {
        let (min_available, _) = sentinel_tests::host_floor(200 * MIB, 0.97);
        let host = format!(
            "[host]\nmin_available = \"{min_available}\"\ncandidates = \"^{}$\"\n",
            cg.path
        );
        let agent = Agent::start("impostor-host", &host, &[]);
        let hog = impostor_hog(&cg, exe, name, &GROW_PAST_THE_HOST_LINE);
        let d = agent
            .expect_action(hog.pid, "freeze", Duration::from_secs(10))
            .await;
        assert_eq!(d.rule, "host", "{how}: {d:?}");
    }
}
