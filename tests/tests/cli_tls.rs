//! The TCP listener, as an operator meets it: served only with mutual TLS,
//! and the client certificate decides the role. This needs no root: the
//! agent runs without eBPF.

use std::process::Command;

use sentinel_tests::{
    Agent,
    certs::{issue, new_ca},
    cli::run,
    serial, tempdir,
};

#[test]
fn tcp_serves_only_mutual_tls_and_the_certificate_decides_the_role() {
    let _serial = serial();
    let pki = tempdir::Dir::new("pki");
    let d = pki.0.as_path();
    new_ca(d, "ca");
    new_ca(d, "rogue-ca");
    issue(
        d,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    let client = "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:";
    issue(d, "ca", "admin", &format!("{client}ops-admin.sentinel\n"));
    issue(d, "ca", "reader", &format!("{client}viewer.sentinel\n"));
    // Names itself an admin, but no configured CA signed it.
    issue(
        d,
        "rogue-ca",
        "rogue",
        &format!("{client}ops-admin.sentinel\n"),
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = |f: &str| d.join(f).display().to_string();
    let agent = Agent::start(
        "tls",
        &format!(
            "[api]\ntcp = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"\nadmin_names = [\"ops-admin.sentinel\"]\n",
            p("server.pem"),
            p("server.key"),
            p("ca.pem")
        ),
        &["--no-ebpf"],
    );
    let url = format!("https://127.0.0.1:{port}");
    let as_holder = |who: &str, args: &[&str]| {
        let (who_cert, who_key) = (p(&format!("{who}.pem")), p(&format!("{who}.key")));
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--socket",
            &url,
            "--tls-cert",
            &who_cert,
            "--tls-key",
            &who_key,
            "--tls-ca",
        ]);
        let ca = p("ca.pem");
        all.push(&ca);
        run(&all)
    };

    // Any certificate the CA signed reads.
    let (code, out, err) = as_holder("reader", &["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"mode\""), "{out}");

    // So does the Python client, given the same files.
    let script = format!(
        "from sentinel_client import Client\n\
         r = lambda f: open(f, 'rb').read()\n\
         with Client('127.0.0.1:{port}', tls=(r('{}'), r('{}'), r('{}'))) as c:\n    print('mode', c.status().mode)\n",
        p("reader.pem"),
        p("reader.key"),
        p("ca.pem")
    );
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sentinel/python/src");
    let out = Command::new("/usr/bin/python3")
        .env(
            "PYTHONPATH",
            format!("{}:{}", src.display(), sentinel_tests::pysuite::PYTHON_DEPS),
        )
        .args(["-c", &script])
        .output()
        .expect("python3");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("mode procfs-polling"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Only a listed name changes policy; the refusal says what it takes.
    let policy = d.join("policy.toml");
    std::fs::write(
        &policy,
        format!("[agent]\ndry_run = false\n{}", sentinel_tests::TEST_HOST),
    )
    .unwrap();
    let (code, _, err) = as_holder(
        "reader",
        &["policy", "apply", &policy.display().to_string()],
    );
    assert_ne!(code, Some(0));
    assert!(
        err.contains("ApplyPolicy refused to tls client sha256:"),
        "{err}"
    );
    assert!(err.contains("ops-admin.sentinel"), "{err}");
    assert!(agent.log_text().contains("refused: not an admin"));

    let (code, _, err) = as_holder("admin", &["policy", "apply", &policy.display().to_string()]);
    assert_eq!(code, Some(0), "{err}");
    let (_, out, _) = agent.cli(&["decisions", "--json", "--kind", "policy"]);
    assert!(
        out.contains("ApplyPolicy by tls client `ops-admin.sentinel` from 127.0.0.1:"),
        "the journal names the certificate holder: {out}"
    );

    // A certificate from another CA is refused in the handshake, whatever
    // name it carries.
    let (code, _, err) = as_holder("rogue", &["status"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("did not accept the client certificate"),
        "{err}"
    );

    // No client certificate, and plain HTTP/2, get nothing.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
        let ca = Certificate::from_pem(std::fs::read(d.join("ca.pem")).unwrap());
        let no_cert = Endpoint::from_shared(url.clone())
            .unwrap()
            .tls_config(ClientTlsConfig::new().ca_certificate(ca))
            .unwrap();
        let status = match no_cert.connect().await {
            Err(_) => true,
            Ok(ch) => sentinel_api::pb::sentinel_client::SentinelClient::new(ch)
                .get_status(sentinel_api::pb::GetStatusRequest::default())
                .await
                .is_err(),
        };
        assert!(status, "a client without a certificate was served");
        let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
        let served = match plain.connect().await {
            Err(_) => false,
            Ok(ch) => sentinel_api::pb::sentinel_client::SentinelClient::new(ch)
                .get_status(sentinel_api::pb::GetStatusRequest::default())
                .await
                .is_ok(),
        };
        assert!(!served, "plain HTTP/2 was served on the TLS port");
    });
    let (code, _, err) = run(&["status", "--socket", &format!("http://127.0.0.1:{port}")]);
    assert_ne!(code, Some(0));
    assert!(err.contains("use https://"), "{err}");

    // The Unix socket is served as before.
    let (ok, _, err) = agent.cli(&["status"]);
    assert!(ok, "{err}");
}
