//! The binary's behaviour on bad input, as an operator meets it. These need
//! no root: an agent without privileges falls back to /proc polling.

use std::process::Command;

use sentinel_tests::{Agent, sentinel_bin, serial, tempdir};

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(sentinel_bin()).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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
}

#[test]
fn missing_config_file_is_named() {
    let (code, _, err) = run(&["run", "--config", "/nonexistent/sentinel.toml"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("/nonexistent/sentinel.toml") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn client_without_an_agent_says_how_to_start_one() {
    for cmd in ["status", "top", "decisions"] {
        let (code, out, err) = run(&[cmd, "--socket", "/nonexistent/sentinel.sock"]);
        assert_eq!(code, Some(1));
        assert!(out.is_empty());
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains("no Sentinel agent is listening") && err.contains("sentinel run"),
            "{err}"
        );
    }
}

#[test]
fn a_socket_held_by_a_live_agent_is_refused() {
    let _serial = serial();
    let agent = Agent::start("held", "", &[]);
    let dir = tempdir::Dir::new("held2");
    let cfg = dir.0.join("c.toml");
    std::fs::write(&cfg, "").unwrap();
    let (code, _, err) = run(&[
        "run",
        "--config",
        &cfg.display().to_string(),
        "--socket",
        &agent.socket,
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("held by a running agent"), "{err}");
    // The first agent is unharmed.
    let (ok, out, _) = agent.cli(&["status"]);
    assert!(ok && out.contains("sentinel"), "{out}");
}

#[test]
fn a_stale_socket_from_a_crash_is_replaced() {
    let _serial = serial();
    let dir = tempdir::Dir::new("stale");
    let sock = dir.0.join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap()); // leaves the file
    assert!(sock.exists());
    let cfg = format!(
        "[agent]\nsocket = \"{}\"\njournal = \"{}\"\n[metrics]\nenabled = false\n",
        sock.display(),
        dir.0.join("journal.redb").display()
    );
    let agent = Agent::start("stale", "", &[]);
    drop(agent);
    let cfg_path = dir.0.join("c.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut child = Command::new(sentinel_bin())
        .args([
            "run",
            "--no-ebpf",
            "--config",
            &cfg_path.display().to_string(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "agent did not take over the stale socket");
}

fn rules_in_status(agent: &Agent) -> u64 {
    let (ok, out, err) = agent.cli(&["status", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v["rules"].as_u64().unwrap()
}

#[test]
fn sighup_reload_refuses_a_bad_policy_and_keeps_the_running_one() {
    let _serial = serial();
    let one = "[[rule]]\nname = \"a\"\nlimit = \"1G\"\nmatch = { comm = \"^no-such-process$\" }\n";
    let agent = Agent::start("reload", one, &[]);
    assert_eq!(rules_in_status(&agent), 1);
    let cfg = agent.dir.0.join("sentinel.toml");
    let head = format!("[agent]\nsocket = \"{}\"\n", agent.socket);
    let hup = || {
        // SAFETY: our own child.
        unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) };
        std::thread::sleep(std::time::Duration::from_millis(300));
    };

    std::fs::write(
        &cfg,
        format!(
            "{head}{one}[[rule]]\nname = \"b\"\nlimit = \"bogus\"\nmatch = {{ comm = \"x\" }}\n"
        ),
    )
    .unwrap();
    hup();
    assert_eq!(rules_in_status(&agent), 1, "the old policy stays");
    let log = agent.log_text();
    assert!(
        log.contains("reload refused") && log.contains("rule[1].limit"),
        "{log}"
    );

    std::fs::write(
        &cfg,
        format!("{head}{one}[[rule]]\nname = \"b\"\nlimit = \"2G\"\nmatch = {{ comm = \"x\" }}\n"),
    )
    .unwrap();
    hup();
    assert_eq!(rules_in_status(&agent), 2, "the new policy is in force");
}

#[test]
fn without_privileges_the_agent_polls_proc_and_says_why() {
    let _serial = serial();
    // As root, drop to nobody so eBPF cannot load; otherwise we already lack it.
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    let dir = tempdir::Dir::new("unpriv");
    let sock = dir.0.join("s.sock");
    let cfg = dir.0.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nsocket = \"{}\"\njournal = \"{}\"\n[metrics]\nenabled = false\n",
            sock.display(),
            dir.0.join("journal.redb").display()
        ),
    )
    .unwrap();
    if as_root {
        // SAFETY: chown/chmod of our own temp files.
        let p = std::ffi::CString::new(dir.0.display().to_string()).unwrap();
        unsafe { libc::chown(p.as_ptr(), 65534, 65534) };
        let c = std::ffi::CString::new(cfg.display().to_string()).unwrap();
        unsafe { libc::chmod(c.as_ptr(), 0o644) };
    }
    let mut cmd = Command::new(sentinel_bin());
    cmd.args(["run", "--config", &cfg.display().to_string()])
        .stderr(std::fs::File::create(dir.0.join("log")).unwrap());
    if as_root {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    let mut child = cmd.spawn().unwrap();
    let mut status = None;
    for _ in 0..100 {
        let (code, out, _) = run(&["status", "--json", "--socket", &sock.display().to_string()]);
        if code == Some(0) {
            status = Some(serde_json::from_str::<serde_json::Value>(out.trim()).unwrap());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.0.join("log")).unwrap_or_default();
    let s = status.unwrap_or_else(|| panic!("agent did not come up\n{log}"));
    assert_eq!(s["mode"], "procfs-polling", "{s}");
    let why = s["degraded_reason"].as_str().unwrap();
    assert!(why.contains("CAP_BPF") && why.contains("root"), "{why}");
    assert!(log.contains("falling back to /proc polling"), "{log}");
}

#[test]
fn replay_runs_the_scenario_table() {
    let (code, out, err) = run(&["replay", "--scenarios"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let n = sentinel::sim::scenarios::all().len();
    assert!(
        out.contains(&format!("victim accuracy: {n} of {n} scenarios")),
        "{out}"
    );
}

#[test]
fn replay_of_a_trace_file_names_the_grower() {
    let dir = tempdir::Dir::new("replay");
    let sc = sentinel::sim::scenarios::linear_leak_beside_steady();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_clients_find_health_and_reflection() {
    let _serial = sentinel_tests::serial_async().await;
    let agent = Agent::start("generic", "", &["--no-ebpf"]);
    let channel = sentinel::api::client::channel(&agent.socket).await.unwrap();

    // grpc.health.v1: the service and the server are SERVING.
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let mut health = HealthClient::new(channel.clone());
    for service in ["sentinel.v1.Sentinel", ""] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }

    // Server reflection lists the API without the proto file.
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let first = tokio_stream::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("{first:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"sentinel.v1.Sentinel".to_string()),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_too_many_streams_get_precise_codes() {
    use sentinel::api::pb;
    let _serial = sentinel_tests::serial_async().await;
    let agent = Agent::start("limits", "", &["--no-ebpf"]);
    let mut c = agent.client().await;
    let code = |r: Result<tonic::Response<pb::Decision>, tonic::Status>| r.unwrap_err().code();
    assert_eq!(
        code(c.resume(pb::ProcessRef { pid: 0 }).await),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        code(c.resume(pb::ProcessRef { pid: u32::MAX }).await),
        tonic::Code::NotFound
    );
    let own = std::process::id();
    assert_eq!(
        code(c.resume(pb::ProcessRef { pid: own }).await),
        tonic::Code::FailedPrecondition,
        "a running process cannot be resumed"
    );
    let e = c
        .list_decisions(pb::ListDecisionsRequest {
            after_seq: 0,
            limit: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("limit"), "{e}");
    let v = c
        .validate_policy(pb::PolicyText {
            toml: "[agent]\nstep = \"1\"\n".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!v.valid && v.error.contains("agent.step"), "{v:?}");

    // Streams are bounded; a closed one frees its place at once.
    let mut open = Vec::new();
    for _ in 0..sentinel::api::MAX_WATCHERS {
        open.push(
            c.watch_decisions(pb::WatchDecisionsRequest { after_seq: None })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let e = c
        .watch_decisions(pb::WatchDecisionsRequest { after_seq: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    drop(open.pop());
    let mut ok = false;
    for _ in 0..50 {
        if c.watch_decisions(pb::WatchDecisionsRequest { after_seq: None })
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ok, "a closed stream's place was not freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_are_filtered_sorted_paged_and_detailed() {
    use sentinel::api::pb;
    let _serial = sentinel_tests::serial_async().await;
    let agent = Agent::start("listing", "", &["--no-ebpf"]);
    let mut c = agent.client().await;
    let list = |sort: &str, comm: &str, token: String| pb::ListProcessesRequest {
        limit: 7,
        sort: sort.into(),
        comm: comm.into(),
        page_token: token,
        ..Default::default()
    };
    // Paging by pid walks every process once, in order.
    let mut pids = Vec::new();
    let mut token = String::new();
    let mut total = None;
    loop {
        let r = c
            .list_processes(list("pid", "", token))
            .await
            .unwrap()
            .into_inner();
        assert!(r.processes.len() <= 7);
        assert_eq!(*total.get_or_insert(r.total), r.total);
        pids.extend(r.processes.iter().map(|p| p.pid));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert!(pids.windows(2).all(|w| w[0] < w[1]), "{pids:?}");
    assert!(pids.len() as u64 >= total.unwrap().min(7));
    let own = std::process::id();
    assert!(pids.contains(&own), "the test itself is tracked");

    // Filtered by command name.
    let comm = std::fs::read_to_string(format!("/proc/{own}/comm")).unwrap();
    let r = c
        .list_processes(list("charged", comm.trim(), String::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(r.processes.iter().all(|p| p.comm.contains(comm.trim())));
    assert!(r.processes.iter().any(|p| p.pid == own));
    assert!(
        r.processes
            .windows(2)
            .all(|w| w[0].charged_bytes >= w[1].charged_bytes)
    );

    // Bad arguments are named.
    let e = c
        .list_processes(list("size", "", String::new()))
        .await
        .unwrap_err();
    assert!(
        e.code() == tonic::Code::InvalidArgument && e.message().starts_with("sort:"),
        "{e}"
    );
    let e = c
        .list_processes(list("pid", "", "x".into()))
        .await
        .unwrap_err();
    assert!(
        e.code() == tonic::Code::InvalidArgument && e.message().contains("page_token"),
        "{e}"
    );

    // One process in detail: its samples, newest last.
    let d = c
        .get_process(pb::ProcessRef { pid: own })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.process.unwrap().pid, own);
    assert!(!d.samples.is_empty());
    assert!(
        d.samples
            .windows(2)
            .all(|w| w[0].seconds_ago >= w[1].seconds_ago)
    );
    assert_eq!(d.seconds_to_limit, None, "no rule governs it");
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

/// Runs openssl in `dir`, failing the test with its output.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed by `cargo xtask setup`");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new P-256 key, unencrypted, for `openssl req`.
const EC_KEY: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A certificate `name`.pem/.key signed by `ca`, with `ext` (subjectAltName
/// and extended key usage).
fn issue(dir: &std::path::Path, ca: &str, name: &str, ext: &str) {
    let (key, csr, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).unwrap();
    let subject = format!("/CN={name}");
    openssl(
        dir,
        &[
            &["req"][..],
            EC_KEY,
            &["-keyout", &key, "-out", &csr, "-subj", &subject],
        ]
        .concat(),
    );
    let (ca_pem, ca_key, pem) = (
        format!("{ca}.pem"),
        format!("{ca}.key"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &extfile,
        ],
    );
}

fn new_ca(dir: &std::path::Path, name: &str) {
    let (key, pem, subject) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={name}"),
    );
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            EC_KEY,
            &[
                "-keyout",
                &key,
                "-out",
                &pem,
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
}

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

    // Only a listed name changes policy; the refusal says what it takes.
    let policy = d.join("policy.toml");
    std::fs::write(&policy, "[agent]\ndry_run = false\n").unwrap();
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
            Ok(ch) => sentinel::api::pb::sentinel_client::SentinelClient::new(ch)
                .get_status(sentinel::api::pb::GetStatusRequest::default())
                .await
                .is_err(),
        };
        assert!(status, "a client without a certificate was served");
        let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
        let served = match plain.connect().await {
            Err(_) => false,
            Ok(ch) => sentinel::api::pb::sentinel_client::SentinelClient::new(ch)
                .get_status(sentinel::api::pb::GetStatusRequest::default())
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
