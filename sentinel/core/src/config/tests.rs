use super::*;

const GOOD: &str = r#"
[agent]
socket = "/tmp/s.sock"
reaction_horizon = "150ms"
step = "2MiB"

[[rule]]
name = "workers"
limit = "256MiB"
action = "freeze"
[rule.match]
comm = "^worker"
cgroup = "^/test"

[[rule]]
name = "kids"
limit = "1G"
action = "kill"
match = { descendant_of = 42 }
"#;

#[test]
fn parses_a_full_config() {
    let c = Config::parse(GOOD, "good.toml").unwrap();
    assert_eq!(c.agent.socket, "/tmp/s.sock");
    assert_eq!(c.agent.reaction_horizon, Duration::from_millis(150));
    assert_eq!(c.agent.step_bytes, 2 << 20);
    assert_eq!(c.rules.len(), 2);
    assert_eq!(c.rules[0].limit_bytes, 256 << 20);
    assert_eq!(c.rules[0].action, Action::Freeze);
    assert_eq!(c.rules[1].action, Action::Kill);
    assert_eq!(c.rules[1].selector.descendant_of, Some(42));
}

#[test]
fn the_shipped_config_is_valid_and_matches_the_defaults() {
    let c = Config::parse(
        include_str!("../../../../deploy/sentinel.toml"),
        "deploy/sentinel.toml",
    )
    .unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn cgroup_rules_parse_and_validate() {
    let c = Config::parse(
        "[levels]\nwarn = 0.6\n[[cgroup]]\nname = \"jobs\"\nmatch = \"^/jobs/\"\naction = \"kill\"\nlevels = { preempt = 0.9 }\n",
        "c.toml",
    )
    .unwrap();
    assert_eq!(c.cgroup_rules.len(), 1);
    assert_eq!(c.cgroup_rules[0].action, Action::Kill);
    // Its own preempt, the global warn, the default kill.
    let l = c.cgroup_rules[0].levels;
    assert_eq!((l.warn, l.preempt, l.kill), (0.6, 0.9, 0.95));
    let e = err("[[cgroup]]\nname = \"j\"\nmatch = \"^/j\"\nlevels = { kill = 1.5 }\n");
    assert!(
        e.starts_with("/etc/s.toml:4:")
            && e.contains("key `cgroup[0].levels.kill`: must be a share"),
        "{e}"
    );
    let e = err("[agent]\nhistory = \"5s\"\n[levels]\nwarn = 0.9\npreempt = 0.8\n");
    assert!(
        e.contains("key `levels.warn`: must not be above preempt"),
        "{e}"
    );
    let e = err("[host]\n  levels = { clear = 0.95 }\n");
    assert!(e.contains("key `host.levels.clear`"), "{e}");
    let e = err("[agent]\n  history = \"0s\"\n");
    assert!(
        e.starts_with("/etc/s.toml:2:") && e.contains("agent.history") && e.contains("above 0"),
        "{e}"
    );
    let e = err("[[cgroup]]\nname = \"j\"\nmatch = \"(\"\n");
    assert!(
        e.starts_with("/etc/s.toml:3:") && e.contains("invalid regex"),
        "{e}"
    );
}

#[test]
fn host_policy_parses_and_protects_by_default() {
    // Out of the box: the whole ladder near a floor of 10% (at most 4 GiB).
    let c = Config::default();
    assert_eq!(c.host.action, Action::Kill);
    assert_eq!(c.host.min_available, crate::config::DEFAULT_MIN_AVAILABLE);
    assert_eq!(c.host.levels, crate::config::HOST_LEVELS);
    // Written without levels, the host keeps its own, not [levels]'.
    let c = Config::parse(
        "[levels]\nkill = 0.9\n[host]\naction = \"freeze\"\n",
        "h.toml",
    )
    .unwrap();
    assert_eq!(c.host.levels, crate::config::HOST_LEVELS);
    let c = Config::parse(
        "[host]\naction = \"kill\"\nmin_available = \"1GiB\"\ncandidates = \"^/kubepods\"\nlevels = { kill = 0.97 }\n",
        "h.toml",
    )
    .unwrap();
    assert_eq!(c.host.action, Action::Kill);
    assert_eq!(
        c.host.min_available,
        crate::config::MinAvailable::Bytes(1 << 30)
    );
    assert_eq!(c.host.levels.kill, 0.97);
    assert!(c.host.candidates.unwrap().is_match("/kubepods/pod1"));
    let e = err("[host]\npsi_stall = \"2s\"\n");
    assert!(
        e.starts_with("/etc/s.toml:2:") && e.contains("host.psi_stall"),
        "{e}"
    );
    let e = err("[host]\nactoin = \"kill\"\n");
    assert!(e.contains("actoin"), "{e}");
}

#[test]
fn priority_classes_and_file_pages_opt_in() {
    let c = Config::parse(
        "[[priority]]\nname = \"batch\"\npriority = -10\nmatch = { cgroup = \"^/batch\" }\n[[rule]]\nname = \"cache\"\nlimit = \"1G\"\ninclude_file = true\nmatch = { comm = \"^cache$\" }\n",
        "p.toml",
    )
    .unwrap();
    assert_eq!(c.priorities.len(), 1);
    assert_eq!(c.priorities[0].priority, -10);
    assert!(c.rules[0].include_file);
    let e = err("[[priority]]\nname = \"all\"\npriority = 1\nmatch = {}\n");
    assert!(
        e.starts_with("/etc/s.toml:4:") && e.contains("priority class `all` matches every"),
        "{e}"
    );
    let e = err("[[priority]]\nname = \"x\"\npriority = \"high\"\nmatch = { comm = \"x\" }\n");
    assert!(e.contains("priority[0].priority"), "{e}");
}

#[test]
fn environment_overrides_agent_keys_and_names_itself_in_errors() {
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let c = Config::parse_with_env(
        GOOD,
        "good.toml",
        &env(&[
            ("SENTINEL_DRY_RUN", "true"),
            ("SENTINEL_STEP", "4MiB"),
            ("SENTINEL_PROTECTED", "[\"a\", \"b\"]"),
            ("SENTINEL_LOG", "debug"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    assert!(c.agent.dry_run);
    assert_eq!(c.agent.step_bytes, 4 << 20);
    assert_eq!(c.agent.protected, vec!["a", "b"]);
    // The rest of the file stands.
    assert_eq!(c.agent.reaction_horizon, Duration::from_millis(150));
    assert_eq!(c.rules.len(), 2);
    let e = Config::parse_with_env(GOOD, "good.toml", &env(&[("SENTINEL_STEP", "lots")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("good.toml with SENTINEL_STEP:")
            && e.contains("agent.step")
            && e.contains("lots"),
        "{e}"
    );
    // The file's own errors keep their lines.
    let e = Config::parse_with_env(
        "[agent]\nstep = 1\n",
        "f.toml",
        &env(&[("SENTINEL_DRY_RUN", "true")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("f.toml:2:"), "{e}");
}

#[test]
fn empty_config_is_the_defaults() {
    assert_eq!(Config::parse("", "x").unwrap(), Config::default());
}

fn err(text: &str) -> String {
    Config::parse(text, "/etc/s.toml").unwrap_err().to_string()
}

#[test]
fn bad_size_names_file_line_and_key() {
    let e = err("[[rule]]\nname = \"a\"\nlimit = \"12 parsecs\"\nmatch = { comm = \"x\" }\n");
    assert!(e.starts_with("/etc/s.toml:3:"), "{e}");
    assert!(e.contains("rule[0].limit"), "{e}");
    assert!(e.contains("parsecs"), "{e}");
}

#[test]
fn unknown_key_is_named() {
    let e = err("[agent]\nsokcet = \"/x\"\n");
    assert!(e.starts_with("/etc/s.toml:2:"), "{e}");
    assert!(e.contains("sokcet"), "{e}");
}

#[test]
fn bad_regex_points_at_its_line() {
    let e = err("[[rule]]\nname = \"a\"\nlimit = \"1G\"\n[rule.match]\ncomm = \"(unclosed\"\n");
    assert!(e.starts_with("/etc/s.toml:5:"), "{e}");
    assert!(e.contains("rule[0].match.comm"), "{e}");
    assert!(e.contains("invalid regex"), "{e}");
}

#[test]
fn rules_must_select_something() {
    let e = err("[[rule]]\nname = \"all\"\nlimit = \"1G\"\nmatch = {}\n");
    assert!(e.contains("matches every process"), "{e}");
}

#[test]
fn syntax_errors_have_a_line() {
    let e = err("[agent\n");
    assert!(e.starts_with("/etc/s.toml:1:"), "{e}");
}

#[test]
fn out_of_range_settings_are_refused() {
    let e = err("[agent]\nstep = \"16\"\n");
    assert!(
        e.contains("/etc/s.toml:2:") && e.contains("agent.step"),
        "{e}"
    );
    let e = err(
        "[[rule]]\nname = \"a\"\nlimit = \"1G\"\naction = \"explode\"\nmatch = { comm = \"x\" }\n",
    );
    assert!(e.contains(":4:") && e.contains("rule[0].action"), "{e}");
}

#[test]
fn fastest_growth_is_auto_by_default_or_bytes_per_second() {
    use super::FastestGrowth;
    let growth = |text: &str| Config::parse(text, "t").unwrap().agent.fastest_growth;
    assert_eq!(growth(""), FastestGrowth::Auto);
    assert_eq!(
        growth("[agent]\nfastest_growth = \"auto\"\n"),
        FastestGrowth::Auto
    );
    assert_eq!(
        growth("[agent]\nfastest_growth = \"12GiB\"\n"),
        FastestGrowth::Fixed(12 << 30)
    );
    assert_eq!(
        growth("[agent]\nfastest_growth = 2000000000\n"),
        FastestGrowth::Fixed(2_000_000_000)
    );
    // Auto: 4 GiB/s per CPU, never under 8 GiB/s.
    assert_eq!(FastestGrowth::Auto.bytes_per_sec(1), 8 << 30);
    assert_eq!(FastestGrowth::Auto.bytes_per_sec(2), 8 << 30);
    assert_eq!(FastestGrowth::Auto.bytes_per_sec(64), 256 << 30);
    assert_eq!(FastestGrowth::Fixed(1 << 30).bytes_per_sec(64), 1 << 30);
    for (text, why) in [
        ("fastest_growth = \"fast\"", "or \"auto\""),
        ("fastest_growth = \"512KiB\"", "at least 1MiB"),
        ("fastest_growth = 1.5", "or \"auto\""),
        ("fastest_growth = -1", "or \"auto\""),
    ] {
        let e = err(&format!("[agent]\n{text}\n"));
        assert!(
            e.starts_with("/etc/s.toml:2:1: key `agent.fastest_growth`") && e.contains(why),
            "{text}: {e}"
        );
    }
}
