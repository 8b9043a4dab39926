//! Alerts to an `https://` Alertmanager (issue 19): Debian's Alertmanager
//! served with TLS and a client certificate required, as a cluster's
//! monitoring stack often is. The agent trusts only the CA it is given and
//! proves itself with its own certificate; with the wrong CA, or without a
//! certificate, nothing is delivered and the log says why.

use std::time::Duration;

use sentinel_tests::{
    Agent, Hog, MIB, MemCgroup,
    certs::{issue, new_ca},
    observability::{Alertmanager, AmTls, WebhookSink, wait_for},
    privileged, rule_for, serial_async, tempdir,
};

/// An agent alerting `am` with `tls` as its `[alerting.tls]` table (and
/// `envs`), and a process over its rule's limit: the alert the agent
/// tries to deliver.
fn agent_with_an_alert(
    name: &str,
    cg: &MemCgroup,
    am: &str,
    tls: &str,
    envs: &[(&str, &str)],
) -> (Agent, Hog) {
    let agent = Agent::start_env(
        name,
        &format!(
            "{}\n[alerting]\nalertmanagers = [\"{am}\"]\nmin_firing = \"1s\"\nbreaker_open = \"1s\"\n[alerting.tls]\n{tls}",
            rule_for(cg, "over-tls", "64MiB", "alert"),
        ),
        &[],
        envs,
    );
    let hog = Hog::spawn(cg, &["--target", "100MiB", "--rate", "max", "--hold", "30"]);
    (agent, hog)
}

/// Whether Alertmanager passed on an alert about `pid` to the sink.
fn notified(sink: &WebhookSink, pid: u32) -> bool {
    let pid = pid.to_string();
    sink.all().iter().any(|n| {
        n["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["labels"]["pid"] == pid.as_str() && x["labels"]["rule"] == "over-tls")
        })
    })
}

/// The agent's log once it says a delivery failed.
fn failed_delivery(agent: &Agent) -> String {
    wait_for("a failed delivery", Duration::from_secs(20), || {
        let log = agent.log_text();
        log.contains("alert delivery failed").then_some(log)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_an_alertmanager_that_requires_tls_and_a_client_certificate() {
    if !privileged("alerts_reach_an_alertmanager_that_requires_tls") {
        return;
    }
    let _serial = serial_async().await;
    let tmp = tempdir::Dir::new("amtls");
    let d = &tmp.0;
    new_ca(d, "ca");
    new_ca(d, "other-ca");
    issue(
        d,
        "ca",
        "am",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    issue(d, "ca", "agent", "extendedKeyUsage=clientAuth\n");
    let sink = WebhookSink::start();
    let am = Alertmanager::start_with(d, &sink.url, Some(AmTls::requiring_client_certificates(d)));
    assert!(am.url.starts_with("https://127.0.0.1:"), "{}", am.url);
    let cg = MemCgroup::new("amtls", 256 * MIB);
    let dir = d.display();

    // Trusting the right CA and showing its certificate: delivered, and
    // Alertmanager notifies its receiver.
    let (agent, hog) = agent_with_an_alert(
        "amtls",
        &cg,
        &am.url,
        &format!(
            "ca_file = \"{dir}/ca.pem\"\ncert_file = \"{dir}/agent.pem\"\nkey_file = \"{dir}/agent.key\"\n"
        ),
        &[],
    );
    wait_for(
        "Alertmanager to pass the alert on",
        Duration::from_secs(30),
        || notified(&sink, hog.pid).then_some(()),
    );
    assert!(
        !agent.log_text().contains("alert delivery failed"),
        "{}",
        agent.log_text()
    );
    drop((hog, agent));

    // A CA that did not sign Alertmanager's certificate: refused by the
    // agent before anything is sent, though the system bundle it would
    // read otherwise (SSL_CERT_FILE) holds the right one: ca_file alone is
    // trusted.
    let right_ca = format!("{dir}/ca.pem");
    let (agent, hog) = agent_with_an_alert(
        "amtls-ca",
        &cg,
        &am.url,
        &format!(
            "ca_file = \"{dir}/other-ca.pem\"\ncert_file = \"{dir}/agent.pem\"\nkey_file = \"{dir}/agent.key\"\n"
        ),
        &[("SSL_CERT_FILE", &right_ca)],
    );
    let log = failed_delivery(&agent);
    assert!(
        log.contains("TLS with 127.0.0.1")
            && log.contains("UnknownIssuer")
            && log.contains("alerting.tls.ca_file"),
        "{log}"
    );
    let untrusted = hog.pid;
    drop((hog, agent));

    // No client certificate: Alertmanager refuses the agent.
    let (agent, hog) = agent_with_an_alert(
        "amtls-anon",
        &cg,
        &am.url,
        &format!("ca_file = \"{dir}/ca.pem\"\n"),
        &[],
    );
    let log = failed_delivery(&agent);
    assert!(
        log.contains("received fatal alert") && log.contains("wants one: alerting.tls.cert_file"),
        "{log}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!notified(&sink, untrusted) && !notified(&sink, hog.pid));
}

/// A missing or unreadable TLS file stops the agent at start, naming the
/// key and the file, instead of failing every alert later.
#[test]
fn a_bad_tls_file_stops_the_agent_at_start_naming_key_and_path() {
    let tmp = tempdir::Dir::new("amtls-bad");
    let missing = tmp.0.join("nope.pem");
    let cfg = tmp.0.join("sentinel.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\njournal = \"{}\"\n[metrics]\nenabled = false\n[alerting]\nwebhooks = [\"https://127.0.0.1:1/hook\"]\n[alerting.tls]\nca_file = \"{}\"\n",
            tmp.0.join("journal.redb").display(),
            missing.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(sentinel_tests::sentinel_bin())
        .args(["run", "--no-ebpf", "--config"])
        .arg(&cfg)
        .arg("--socket")
        .arg(tmp.0.join("s.sock"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // An agent that started anyway would run on: stopped here, and failed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent started with a missing alerting.tls.ca_file");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "alerting.tls.ca_file {}: cannot read",
            missing.display()
        )),
        "{err}"
    );
}
