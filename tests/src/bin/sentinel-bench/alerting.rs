//! Alert delivery must never slow a decision. The same stream of short
//! leakers (dry-run, so nothing is signalled) runs under an agent with no
//! receiver, with a healthy one, with one that refuses connections (its
//! breaker opens) and with one that accepts and never answers (every
//! delivery waits out its timeout). For each: the time from a leaker's
//! start to its first decision in the journal.

use std::time::Duration;

use sentinel_tests::{
    Agent, MIB, MemCgroup, memhog_bin,
    observability::{WebhookSink, free_port, http_get, metric},
    rule_for,
};

/// Accepts connections and never answers.
fn blackhole() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            held.push(c);
        }
    });
    url
}

async fn latencies(label: &str, receivers: &str, leakers: usize) -> (Vec<f64>, String) {
    let cg = MemCgroup::new("bench-alert", 256 * MIB);
    let agent = Agent::start(
        "bench-alert",
        &format!(
            "{}\n[alerting]\n{receivers}\nmin_firing = \"0s\"\ntimeout = \"2s\"\n",
            rule_for(&cg, "r", "64MiB", "kill")
        ),
        &["--dry-run"],
    );
    let mut stream = agent.watch(None).await;
    let mut out = Vec::with_capacity(leakers);
    for _ in 0..leakers {
        let mut cmd = std::process::Command::new(memhog_bin());
        cmd.args(["--target", "60MiB", "--rate", "max", "--hold", "0.05"])
            .stdout(std::process::Stdio::null());
        cg.contain(&mut cmd);
        let t0 = sentinel_tests::unix_ms();
        let mut child = cmd.spawn().unwrap();
        let pid = child.id();
        if let Some(d) =
            sentinel_tests::next_decision(&mut stream, Duration::from_secs(5), |d| d.pid == pid)
                .await
        {
            out.push(d.time_unix_ms as f64 - t0);
        }
        let _ = child.wait();
    }
    let text = http_get(&agent.metrics_url())
        .map(|r| r.1)
        .unwrap_or_default();
    let delivery = format!(
        "delivered {:.0}, failed requests {:.0}, breaker opened {:.0}",
        metric(&text, "sentinel_alerts_delivered_total").unwrap_or(0.0),
        metric(&text, "sentinel_alert_delivery_failures_total").unwrap_or(0.0),
        metric(&text, "sentinel_alert_breaker_opened_total").unwrap_or(0.0),
    );
    eprintln!("{label}: {} decisions", out.len());
    (out, delivery)
}

pub async fn alerting(leakers: usize) {
    println!("## Decisions with alert delivery up, down and hanging\n");
    println!(
        "{leakers} leakers (60 MiB at full speed under a 64 MiB rule, dry-run), one at a time; time from spawning each to its first decision.\n"
    );
    let sink = WebhookSink::start();
    let hole = blackhole();
    let cases = [
        ("no receiver", String::new()),
        (
            "webhook answering 200",
            format!("webhooks = [\"{}\"]", sink.url),
        ),
        (
            "Alertmanager refusing connections",
            format!("alertmanagers = [\"http://127.0.0.1:{}\"]", free_port()),
        ),
        (
            "receiver that never answers",
            format!("webhooks = [\"{hole}\"]"),
        ),
    ];
    // Rounds in alternating order (ABCD DCBA ...), so drift over the run
    // falls on every case alike.
    let rounds = 4;
    let mut results: Vec<(Vec<f64>, String)> = vec![(Vec::new(), String::new()); cases.len()];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..cases.len()).collect()
        } else {
            (0..cases.len()).rev().collect()
        };
        for i in order {
            let (label, receivers) = &cases[i];
            let (v, delivery) = latencies(label, receivers, leakers / rounds).await;
            results[i].0.extend(v);
            results[i].1 = delivery;
        }
    }
    println!(
        "| receiver | decisions | p50 ms | p99 ms | p50 / no receiver | delivery (last round) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut base = None;
    for ((label, _), (mut v, delivery)) in cases.iter().zip(results) {
        if v.is_empty() {
            println!("| {label} | 0 | | | | {delivery} |");
            continue;
        }
        let p50 = super::percentile(&mut v, 0.5);
        let p99 = super::percentile(&mut v, 0.99);
        let b = *base.get_or_insert(p50);
        println!(
            "| {label} | {} | {p50:.1} | {p99:.1} | {:.2} | {delivery} |",
            v.len(),
            p50 / b
        );
    }
    println!();
}
