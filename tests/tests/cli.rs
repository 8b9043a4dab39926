//! The binary's behaviour on bad input, as an operator meets it, with no
//! agent running. These need no root.

use sentinel_tests::{cli::run, tempdir};

#[test]
fn invalid_config_exits_naming_file_line_and_key() {
    let dir = tempdir::Dir::new("badcfg");
    let path = dir.0.join("bad.toml");
    std::fs::write(
        &path,
        "[agent]\nsocket = \"/tmp/x.sock\"\n\n[[rule]]\nname = \"r\"\nlimit = \"lots\"\nmatch = { comm = \"x\" }\n",
    )
    .unwrap();
    let p = path.display().to_string();
    for args in [vec!["run", "--config", &p], vec!["policy", "check", &p]] {
        let (code, _, err) = run(&args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(&format!("{p}:6:")), "{args:?}: {err}");
        assert!(err.contains("rule[0].limit"), "{args:?}: {err}");
        assert!(err.contains("lots"), "{args:?}: {err}");
    }
}

#[test]
fn a_good_config_checks_clean() {
    let dir = tempdir::Dir::new("goodcfg");
    let path = dir.0.join("good.toml");
    std::fs::write(
        &path,
        "[[rule]]\nname = \"r\"\nlimit = \"1G\"\nmatch = { comm = \"^x$\" }\n",
    )
    .unwrap();
    let (code, out, err) = run(&["policy", "check", &path.display().to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ok, 1 rules"), "{out}");
    assert!(err.is_empty(), "no warnings: {err}");
    // The shipped config is clean too.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sentinel.toml");
    let (code, _, err) = run(&["policy", "check", shipped]);
    assert!(code == Some(0) && err.is_empty(), "{err}");
}

#[test]
fn a_protection_by_name_alone_is_accepted_with_a_warning() {
    let dir = tempdir::Dir::new("namecfg");
    let path = dir.0.join("names.toml");
    std::fs::write(
        &path,
        "[agent]\nprotected = [\"postgres\"]\n[[protect]]\nname = \"db\"\nmatch = { comm = \"^mysqld$\" }\n[[protect]]\nname = \"sshd\"\nmatch = { exe = \"^/usr/sbin/sshd$\" }\n",
    )
    .unwrap();
    let (code, _, err) = run(&["policy", "check", &path.display().to_string()]);
    assert_eq!(code, Some(0), "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(warnings[0].contains("agent.protected `postgres`") && warnings[0].contains("prctl"));
    assert!(warnings[1].contains("[[protect]] `db` matches the name only"));
}

#[test]
fn missing_config_file_is_named() {
    let (code, _, err) = run(&["run", "--config", "/nonexistent/sentinel.toml"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("/nonexistent/sentinel.toml") && err.contains("cannot read"),
        "{err}"
    );
    // Said once, not once by the error and again by its cause.
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn client_without_an_agent_says_how_to_start_one() {
    // The package test installs the unit for a while: the hint follows
    // where the client looks.
    let packaged = [
        "/lib/systemd/system/sentinel.service",
        "/usr/lib/systemd/system/sentinel.service",
        "/etc/systemd/system/sentinel.service",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists());
    let how = if packaged {
        "systemctl start sentinel"
    } else {
        "sentinel run"
    };
    for cmd in ["status", "top", "decisions"] {
        // --socket before the subcommand as after it.
        for args in [
            [cmd, "--socket", "/nonexistent/sentinel.sock"],
            ["--socket", "/nonexistent/sentinel.sock", cmd],
        ] {
            let (code, out, err) = run(&args);
            assert_eq!(code, Some(1), "{args:?}: {err}");
            assert!(out.is_empty());
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
            assert!(
                err.contains("no Sentinel agent is listening on /nonexistent/sentinel.sock")
                    && err.contains(how),
                "{err}"
            );
        }
    }
}

#[test]
fn replay_runs_the_scenario_table() {
    let (code, out, err) = run(&["replay", "--scenarios"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let n = sentinel_core::sim::scenarios::all().len();
    assert!(
        out.contains(&format!("victim accuracy: {n} of {n} scenarios")),
        "{out}"
    );
}

#[test]
fn replay_of_a_trace_file_names_the_grower() {
    let dir = tempdir::Dir::new("replay");
    let sc = sentinel_core::sim::scenarios::linear_leak_beside_steady();
    let text: String = sc
        .samples
        .iter()
        .map(|s| serde_json::to_string(s).unwrap() + "\n")
        .collect();
    let path = dir.0.join("trace.jsonl");
    std::fs::write(&path, text).unwrap();
    let p = path.display().to_string();
    let (code, out, err) = run(&["replay", &p, "--limit", "1GiB", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // A warning at 70% of the limit, then the leaker frozen at 85%.
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        (&lines[0]["level"], &lines[0]["action"]),
        (&"warn".into(), &"alert".into())
    );
    let stop = &lines[1];
    assert_eq!(stop["pid"], 2);
    assert_eq!(stop["comm"], "leaker");
    assert_eq!(stop["action"], "freeze");
    assert!(stop["group_bytes"].as_u64().unwrap() < (1u64 << 30) * 95 / 100);

    // The ladder's cap is the caller's to choose.
    let (code, out, _) = run(&["replay", &p, "--limit", "1GiB", "--action", "alert"]);
    assert_eq!(code, Some(0));
    assert!(!out.contains("freeze"), "{out}");
    let (code, _, err) = run(&["replay", &p, "--limit", "1GiB", "--action", "explode"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("explode"), "{err}");

    // A malformed line is named.
    std::fs::write(&path, "{\"t\": 0, \"pid\": 1, \"bytes\": 5}\nnot json\n").unwrap();
    let (code, _, err) = run(&["replay", &p, "--limit", "1GiB"]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&format!("{p}:2:")), "{err}");
}

#[test]
fn shell_completions_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}: {err}");
        for cmd in ["status", "decisions", "resume", "protect", "policy"] {
            assert!(out.contains(cmd), "{shell} completion lacks {cmd}");
        }
    }
    let (code, _, err) = run(&["completions", "cmd.exe"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("cmd.exe"), "{err}");
}
