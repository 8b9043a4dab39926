//! What operators deploy beside the agent, checked against the real
//! thing: the Kubernetes manifests against the API's own schemas
//! (kubernetes-validate, which bundles them, installed by the test setup),
//! and every Grafana panel's query against a scrape of a running agent.

use std::{collections::BTreeSet, path::PathBuf, process::Command, time::Duration};

use sentinel_tests::{
    Agent,
    gpu::{Scenario, fake_nvml},
    observability::{WebhookSink, http_get},
    privileged,
    pysuite::PYTHON_DEPS,
    serial_async, tempdir,
};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// `kubernetes-validate --strict` of `files` against Kubernetes `version`;
/// None where the validator is not installed (outside CI).
fn validate(version: &str, files: &[PathBuf]) -> Option<(bool, String)> {
    let out = Command::new("/usr/bin/python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", version])
        .args(files)
        .env("PYTHONPATH", PYTHON_DEPS)
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("No module named kubernetes_validate") {
        assert!(
            std::env::var_os("CI").is_none(),
            "kubernetes-validate is missing, and CI is set (`cargo xtask test` installs it)"
        );
        eprintln!("SKIP: kubernetes-validate is not installed");
        return None;
    }
    Some((out.status.success(), text))
}

#[test]
fn the_kubernetes_manifests_pass_the_api_schemas() {
    let files: Vec<PathBuf> = ["daemonset.yaml", "service.yaml"]
        .iter()
        .map(|f| repo(&format!("deploy/kubernetes/{f}")))
        .collect();
    // The oldest Kubernetes still supported upstream, and the newest the
    // validator knows.
    for version in ["1.32.0", "1.37.0"] {
        let Some((ok, report)) = validate(version, &files) else {
            return;
        };
        assert!(ok, "Kubernetes {version}:\n{report}");
        for resource in [
            "namespace/sentinel",
            "serviceaccount/sentinel",
            "configmap/sentinel-config",
            "daemonset/sentinel",
            "service/sentinel-metrics",
        ] {
            assert!(
                report.contains(&format!("passed for resource {resource}")),
                "{resource} was not validated against {version}:\n{report}"
            );
        }
    }
    // The validator does catch a field the API does not have.
    let dir = tempdir::Dir::new("k8s-schema");
    let broken = dir.0.join("daemonset.yaml");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(
        &broken,
        text.replace("imagePullPolicy:", "imagePullPolicyy:"),
    )
    .unwrap();
    let (ok, report) = validate("1.37.0", &[broken]).unwrap();
    assert!(!ok, "a misspelled field passed:\n{report}");
}

/// Every metric name the dashboard's queries use.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = repo("deploy/grafana/sentinel-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .flat_map(|expr| metric_names(&expr))
        .collect()
}

/// Metric names in a PromQL expression: the identifiers that start
/// `sentinel_` or `process_` (labels and functions never do).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        let word_len = rest[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - at);
        let word = &rest[at..at + word_len];
        if word.starts_with("sentinel_") || word.starts_with("process_") {
            out.push(word.to_string());
        }
        rest = &rest[at + word_len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_names_a_metric_the_agent_exports() {
    if !privileged("every_dashboard_query_names_a_metric") {
        return;
    }
    let _serial = serial_async().await;
    let wanted = dashboard_metrics();
    assert!(wanted.len() > 30, "{wanted:?}");
    // A GPU (the fake NVML) and an alert receiver, so that the per-device
    // and per-receiver families exist, as on a host with both.
    let dir = tempdir::Dir::new("dashboard-gpu");
    let scn = Scenario::new(&dir.0);
    scn.write("device 0 total 17179869184 name Fake T4\n");
    let sink = WebhookSink::start();
    let agent = Agent::start_env(
        "dashboard",
        &format!(
            "[gpu]\nlibrary = \"{}\"\ninterval = \"50ms\"\n[alerting]\nwebhooks = [\"{}\"]\n",
            fake_nvml().display(),
            sink.url
        ),
        &[],
        &[("FAKE_NVML_SCENARIO", scn.path.to_str().unwrap())],
    );
    let url = agent.metrics_url();
    let mut missing = wanted.clone();
    for _ in 0..50 {
        let (_, scrape) = http_get(&url).expect("scrape");
        let exported: BTreeSet<&str> = scrape
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        missing = wanted
            .iter()
            .filter(|m| !exported.contains(m.as_str()))
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the agent does not export: {missing:?}"
    );
}
