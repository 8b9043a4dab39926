//! Sentinel wired to the monitoring operators already run: Debian's
//! Prometheus scraping the agent and evaluating the shipped rules, and
//! Debian's Alertmanager receiving the agent's own alerts. Every component
//! is real and started here on loopback; leakers run in capped cgroups.

use std::time::Duration;

use sentinel_tests::{
    Agent, Hog, MIB, MemCgroup,
    observability::{Alertmanager, Prometheus, WebhookSink, http_get, metric, wait_for},
    privileged, rule_for, serial_async, tempdir,
};

fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// Runs a tool of the monitoring stack (installed by `cargo xtask test`).
fn tool(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} (installed by `cargo xtask test`): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}:\n{text}");
    text
}

#[test]
fn promtool_checks_and_unit_tests_the_shipped_rules() {
    let rules = repo_file("deploy/prometheus");
    let out = tool(
        std::process::Command::new("promtool")
            .args(["check", "rules"])
            .arg(rules.join("sentinel-rules.yml")),
    );
    assert!(out.contains("SUCCESS: 16 rules found"), "{out}");
    let out = tool(
        std::process::Command::new("promtool")
            .args(["test", "rules", "sentinel-rules.test.yml"])
            .current_dir(&rules),
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_alertmanager_route_example_is_a_valid_config() {
    let out = tool(
        std::process::Command::new("amtool")
            .arg("check-config")
            .arg(repo_file("deploy/alertmanager/route-example.yml")),
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

fn scrape(agent: &Agent) -> String {
    let (status, body) = http_get(&agent.metrics_url()).expect("the agent serves metrics");
    assert_eq!(status, 200);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_agent_and_the_shipped_rule_fires_for_a_leaker() {
    if !privileged("prometheus_scrapes_the_agent") {
        return;
    }
    let _serial = serial_async().await;
    let cg = MemCgroup::new("prom", 512 * MIB);
    let agent = Agent::start("prom", &rule_for(&cg, "leaky", "256MiB", "freeze"), &[]);
    let target = agent
        .metrics_url()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let dir = tempdir::Dir::new("prometheus");
    let prom = Prometheus::start(
        &dir.0,
        &target,
        &repo_file("deploy/prometheus/sentinel-rules.yml"),
    );
    wait_for(
        "Prometheus to scrape the agent",
        Duration::from_secs(30),
        || prom.query("up{job=\"sentinel\"}").filter(|&v| v == 1.0),
    );
    assert!(
        prom.alerts()
            .iter()
            .all(|(name, _, _)| name != "SentinelProcessPreempted"),
        "nothing is preempted yet: {:?}",
        prom.alerts()
    );

    let hog = Hog::spawn(
        &cg,
        &["--target", "400MiB", "--rate", "200MB/s", "--hold", "60"],
    );
    agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;
    let text = scrape(&agent);
    assert_eq!(
        metric(&text, "sentinel_frozen_processes"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "sentinel_decisions_total{kind=\"preempt\",action=\"freeze\",scope=\"process\"}"
        ),
        Some(1.0),
        "{text}"
    );

    let labels = wait_for(
        "the shipped rule to fire in Prometheus",
        Duration::from_secs(30),
        || {
            prom.alerts()
                .into_iter()
                .find(|(name, state, _)| name == "SentinelProcessPreempted" && state == "firing")
                .map(|(_, _, labels)| labels)
        },
    );
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["action"], "freeze");
    assert_eq!(labels["outcome"], "done");
    // It resolves five minutes after the last stop (promtool's unit test
    // shows that); the dry-run test below shows what must not fire.
    drop(hog);
    assert!(
        prom.log_text().contains("Server is ready"),
        "{}",
        prom.log_text()
    );
}

/// Dry-run, the recommended first rollout: what would have been done is
/// said as such, at a severity that pages no one, and the rule meant for
/// real stops stays silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_says_what_it_would_have_done_and_pages_no_one() {
    if !privileged("a_dry_run_says_what_it_would_have_done") {
        return;
    }
    let _serial = serial_async().await;
    let sink = WebhookSink::start();
    let dir = tempdir::Dir::new("amdry");
    let am = Alertmanager::start(&dir.0, &sink.url);
    let cg = MemCgroup::new("amdry", 512 * MIB);
    let agent = Agent::start(
        "amdry",
        &format!(
            "{}\n[alerting]\nalertmanagers = [\"{}\"]\nhost = \"test-node\"\nmin_firing = \"1s\"\n",
            rule_for(&cg, "leaky", "128MiB", "kill"),
            am.url
        ),
        &["--dry-run"],
    );
    let target = agent
        .metrics_url()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let pdir = tempdir::Dir::new("promdry");
    let prom = Prometheus::start(
        &pdir.0,
        &target,
        &repo_file("deploy/prometheus/sentinel-rules.yml"),
    );
    wait_for(
        "Prometheus to scrape the agent",
        Duration::from_secs(30),
        || prom.query("up{job=\"sentinel\"}").filter(|&v| v == 1.0),
    );

    let hog = Hog::spawn(
        &cg,
        &["--target", "200MiB", "--rate", "200MB/s", "--hold", "20"],
    );
    let d = agent
        .wait_decision(Duration::from_secs(10), |d| {
            d.pid == hog.pid && d.action == "kill"
        })
        .await
        .unwrap_or_else(|| panic!("no kill-level decision\n{}", agent.log_text()));
    assert_eq!(d.outcome, "dry-run");
    let pid = hog.pid.to_string();
    let alert = wait_for(
        "the dry-run kill in Alertmanager",
        Duration::from_secs(20),
        || {
            am.active().into_iter().find(|a| {
                a["labels"]["alertname"] == "SentinelWouldPreempt"
                    && a["labels"]["pid"] == pid.as_str()
                    && a["labels"]["action"] == "kill"
            })
        },
    );
    assert_eq!(alert["labels"]["severity"], "info");
    assert_eq!(alert["labels"]["dry_run"], "true");
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("Sentinel would have killed pid {pid} (memhog)")),
        "{summary}"
    );
    assert!(summary.contains("dry-run: nothing was done"), "{summary}");
    // Prometheus: the dry-run rule fires, the real one does not.
    let labels = wait_for(
        "the dry-run rule to fire in Prometheus",
        Duration::from_secs(30),
        || {
            prom.alerts()
                .into_iter()
                .find(|(name, state, labels)| {
                    name == "SentinelProcessWouldBePreempted"
                        && state == "firing"
                        && labels["action"] == "kill"
                })
                .map(|(_, _, labels)| labels)
        },
    );
    assert_eq!(labels["severity"], "info");
    // The process really was left alone, and nothing claims otherwise.
    assert!(hog.expect_line("done", Duration::from_secs(10)).is_some());
    let pushed = am.active();
    assert!(
        pushed
            .iter()
            .all(|a| a["labels"]["alertname"] != "SentinelPreempted"
                && a["labels"]["severity"] != "critical"),
        "{pushed:?}"
    );
    let rules = prom.alerts();
    assert!(
        rules
            .iter()
            .all(|(name, _, _)| name != "SentinelProcessPreempted"
                && name != "SentinelProcessPreemptionFailed"),
        "{rules:?}"
    );
    let text = scrape(&agent);
    assert_eq!(
        metric(
            &text,
            "sentinel_preemptions_total{action=\"kill\",outcome=\"done\"}"
        ),
        Some(0.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_gets_the_leakers_alert_and_its_resolution() {
    if !privileged("alertmanager_gets_the_leakers_alert") {
        return;
    }
    let _serial = serial_async().await;
    let sink = WebhookSink::start();
    // The agent's own generic webhook, beside Alertmanager.
    let direct = WebhookSink::start();
    let dir = tempdir::Dir::new("alertmanager");
    let am = Alertmanager::start(&dir.0, &sink.url);
    let cg = MemCgroup::new("amleak", 512 * MIB);
    let agent = Agent::start(
        "amleak",
        &format!(
            "{}\n[alerting]\nalertmanagers = [\"{}\"]\nwebhooks = [\"{}\"]\nhost = \"test-node\"\nmin_firing = \"1s\"\n",
            rule_for(&cg, "leaky", "256MiB", "freeze"),
            am.url,
            direct.url
        ),
        &[],
    );

    let mut hog = Hog::spawn(
        &cg,
        &["--target", "400MiB", "--rate", "200MB/s", "--hold", "60"],
    );
    agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;
    let pid = hog.pid.to_string();
    let alert = wait_for("the alert in Alertmanager", Duration::from_secs(20), || {
        am.active().into_iter().find(|a| {
            a["labels"]["alertname"] == "SentinelPreempted" && a["labels"]["pid"] == pid.as_str()
        })
    });
    let l = &alert["labels"];
    assert_eq!(l["host"], "test-node");
    assert_eq!(l["comm"], "memhog");
    assert_eq!(l["cgroup"], cg.path.as_str());
    assert_eq!(l["rule"], "leaky");
    assert_eq!(l["scope"], "process");
    assert_eq!(l["level"], "preempt");
    assert_eq!(l["action"], "freeze");
    assert_eq!(l["severity"], "critical");
    assert_eq!(alert["status"]["state"], "active");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Sentinel froze pid {pid} (memhog)")),
        "{alert}"
    );
    // The warning at 70% came first, as its own alert.
    assert!(
        am.active()
            .iter()
            .any(|a| a["labels"]["alertname"] == "SentinelMemoryWarning"
                && a["labels"]["pid"] == pid.as_str()),
        "{:?}",
        am.active()
    );
    // Alertmanager passed it on to its receiver.
    let firing = |status: &str| {
        sink.all().into_iter().any(|n| {
            n["alerts"].as_array().is_some_and(|a| {
                a.iter().any(|x| {
                    x["status"] == status
                        && x["labels"]["alertname"] == "SentinelPreempted"
                        && x["labels"]["pid"] == pid.as_str()
                })
            })
        })
    };
    wait_for(
        "Alertmanager to notify the receiver",
        Duration::from_secs(20),
        || firing("firing").then_some(()),
    );

    // The leaker ends: the condition is gone, so the alert resolves.
    // SAFETY: the test's own child.
    unsafe { libc::kill(hog.pid as i32, libc::SIGKILL) };
    hog.wait_exit(Duration::from_secs(5));
    wait_for(
        "the resolution in Alertmanager",
        Duration::from_secs(30),
        || {
            am.active()
                .iter()
                .all(|a| a["labels"]["pid"] != pid.as_str())
                .then_some(())
        },
    );
    wait_for("the resolved notification", Duration::from_secs(20), || {
        firing("resolved").then_some(())
    });
    // The webhook got the same alert, firing then resolved, with the
    // status spelled out.
    let direct_statuses: Vec<String> = direct
        .all()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| {
            a["labels"]["alertname"] == "SentinelPreempted" && a["labels"]["pid"] == pid.as_str()
        })
        .map(|a| a["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        direct_statuses.first().map(String::as_str),
        Some("firing"),
        "{direct_statuses:?}"
    );
    assert_eq!(
        direct_statuses.last().map(String::as_str),
        Some("resolved"),
        "{direct_statuses:?}"
    );
    assert!(direct.all().iter().all(|b| b["source"] == "sentinel"));
    assert!(agent.log_text().contains("alerting on"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_alertmanager_down_decisions_go_on_the_breaker_opens_and_queued_alerts_arrive_later() {
    if !privileged("with_alertmanager_down") {
        return;
    }
    let _serial = serial_async().await;
    let sink = WebhookSink::start();
    let dir = tempdir::Dir::new("amdown");
    let mut am = Alertmanager::start(&dir.0, &sink.url);
    am.stop();
    let storm = MemCgroup::new("amstorm", 256 * MIB);
    let held = MemCgroup::new("amheld", 512 * MIB);
    // Storm processes only raise alerts (no signals); one leaker is frozen
    // and stays so, so its alert is still firing when Alertmanager is back.
    let agent = Agent::start(
        "amdown",
        &format!(
            "{}{}\n[alerting]\nalertmanagers = [\"{}\"]\nmin_firing = \"1s\"\nbreaker_open = \"2s\"\n",
            rule_for(&storm, "storm", "64MiB", "alert"),
            rule_for(&held, "held", "256MiB", "freeze"),
            am.url
        ),
        &[],
    );
    let hog = Hog::spawn(
        &held,
        &["--target", "400MiB", "--rate", "200MB/s", "--hold", "60"],
    );
    agent
        .expect_action(hog.pid, "freeze", Duration::from_secs(10))
        .await;

    let storm_load = sentinel_tests::Storm::start(&storm, 1);

    // Decisions go on while every delivery fails, and the breaker opens.
    let seq = |t: &str| metric(t, "sentinel_last_decision_seq").unwrap_or(0.0);
    let before = seq(&scrape(&agent));
    let text = wait_for("the breaker to open", Duration::from_secs(30), || {
        let t = scrape(&agent);
        (metric(&t, "sentinel_alert_breaker_opened_total").unwrap_or(0.0) >= 1.0).then_some(t)
    });
    assert!(
        metric(&text, "sentinel_alert_delivery_failures_total").unwrap() >= 3.0,
        "{text}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let text = scrape(&agent);
    storm_load.stop();
    let during = seq(&text) - before;
    assert!(
        during >= 10.0,
        "decisions went on while alerts failed: {during}\n{text}"
    );
    let queued = metric(&text, "sentinel_alert_queue_length").unwrap();
    assert!(queued >= 10.0, "alerts wait in the queue: {text}");
    assert_eq!(metric(&text, "sentinel_alerts_delivered_total"), Some(0.0));
    assert_eq!(metric(&text, "sentinel_alerts_dropped_total"), Some(0.0));
    // The journal has every one of them.
    let (_, out, _) = agent.cli(&["decisions", "--json", "--rule", "storm", "--limit", "10000"]);
    assert!(
        out.lines().count() as f64 >= during - 2.0,
        "{}",
        out.lines().count()
    );

    // Alertmanager back: the queue drains (the breaker half-opens and the
    // trial succeeds) and the frozen leaker's alert is there.
    am.restart();
    let text = wait_for("the queue to drain", Duration::from_secs(30), || {
        let t = scrape(&agent);
        (metric(&t, "sentinel_alert_queue_length") == Some(0.0)).then_some(t)
    });
    let delivered = metric(&text, "sentinel_alerts_delivered_total").unwrap();
    eprintln!(
        "while Alertmanager was down: {during} decisions, {queued} alerts queued; after: {delivered} delivered"
    );
    assert!(delivered >= queued, "{text}");
    assert_eq!(
        metric(&text, "sentinel_alert_breaker_state"),
        Some(0.0),
        "closed again"
    );
    let pid = hog.pid.to_string();
    wait_for(
        "the queued alert in Alertmanager",
        Duration::from_secs(20),
        || {
            am.active().into_iter().find(|a| {
                a["labels"]["alertname"] == "SentinelPreempted"
                    && a["labels"]["pid"] == pid.as_str()
            })
        },
    );
    wait_for(
        "Alertmanager to notify the queued alert",
        Duration::from_secs(20),
        || {
            sink.all()
                .iter()
                .any(|n| {
                    n["alerts"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x["labels"]["pid"] == pid.as_str()))
                })
                .then_some(())
        },
    );
    assert!(am.log_text().contains("Listening"), "{}", am.log_text());
}
