//! Admission control: how long a Reserve takes when memory is free, and
//! how many Reserve/Release pairs a client gets through per second (each
//! grant and release is journalled durably).

use std::time::Instant;

use sentinel_tests::{Agent, MIB, pb};

pub async fn admission_bench(pairs: usize) {
    println!("## Admission control\n");
    let agent = Agent::start("bench-admission", "", &[]);
    let channel = sentinel_api::client::channel(&agent.socket).await.unwrap();
    let mut adm = pb::admission_client::AdmissionClient::new(channel);
    let holder = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let pid = holder.id();
    let mut grant_ms = Vec::with_capacity(pairs);
    let start = Instant::now();
    for _ in 0..pairs {
        let t = Instant::now();
        let r = adm
            .reserve(pb::ReserveRequest {
                bytes: 64 * MIB,
                pid,
                holder: "bench".into(),
                ..Default::default()
            })
            .await
            .expect("64 MiB is free on the host")
            .into_inner();
        grant_ms.push(t.elapsed().as_secs_f64() * 1e3);
        adm.release(pb::ReleaseRequest { id: r.id }).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let mut holder = holder;
    let _ = holder.kill();
    let _ = holder.wait();
    println!(
        "{pairs} Reserve/Release pairs of 64 MiB on the host, one client, over the Unix socket; every grant and release journalled (fsync) before it returns.\n"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| grant latency, memory free | p50 {:.2} ms, p99 {:.2} ms |",
        super::percentile(&mut grant_ms, 0.5),
        super::percentile(&mut grant_ms, 0.99)
    );
    println!("| Reserve/Release pairs | {:.0}/s |\n", pairs as f64 / secs);
}
