//! The binary's behaviour beside a running agent, as an operator meets it.
//! These need no root: an agent without privileges falls back to /proc
//! polling.

use std::process::Command;

use sentinel_tests::{Agent, cli::run, sentinel_bin, serial, tempdir};

#[test]
fn a_socket_held_by_a_live_agent_is_refused() {
    let _serial = serial();
    let agent = Agent::start("held", "", &[]);
    let dir = tempdir::Dir::new("held2");
    let cfg = dir.0.join("c.toml");
    std::fs::write(&cfg, sentinel_tests::TEST_HOST).unwrap();
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
        "[agent]\nsocket = \"{}\"\njournal = \"{}\"\n[metrics]\nenabled = false\n{}",
        sock.display(),
        dir.0.join("journal.redb").display(),
        sentinel_tests::TEST_HOST
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
            "{head}{one}[[rule]]\nname = \"b\"\nlimit = \"bogus\"\nmatch = {{ comm = \"x\" }}\n{}",
            sentinel_tests::TEST_HOST
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
        format!(
            "{head}{one}[[rule]]\nname = \"b\"\nlimit = \"2G\"\nmatch = {{ comm = \"x\" }}\n{}",
            sentinel_tests::TEST_HOST
        ),
    )
    .unwrap();
    hup();
    assert_eq!(rules_in_status(&agent), 2, "the new policy is in force");

    // Emptied, or deleted: refused, the two rules stay.
    std::fs::write(&cfg, &head).unwrap();
    hup();
    assert_eq!(rules_in_status(&agent), 2, "an emptied file drops nothing");
    std::fs::remove_file(&cfg).unwrap();
    hup();
    assert_eq!(rules_in_status(&agent), 2, "a deleted file drops nothing");
    let log = agent.log_text();
    assert!(log.contains("would drop every rule"), "{log}");
    assert!(log.contains("cannot read"), "{log}");
    // A key read only at start is kept, and the log says so.
    std::fs::write(
        &cfg,
        "[agent]\nsocket = \"/run/elsewhere.sock\"\nallow_empty_policy = true\n[host]\naction = \"alert\"\n",
    )
    .unwrap();
    hup();
    assert_eq!(rules_in_status(&agent), 0, "an empty policy on purpose");
    let log = agent.log_text();
    assert!(
        log.contains(
            "read only at start and keep their running values until a restart: agent.socket"
        ),
        "{log}"
    );
    let (ok, out, _) = agent.cli(&["policy", "show"]);
    assert!(ok);
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("# not in use until the agent restarts")
                && l.contains("agent.socket")),
        "{out}"
    );
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
            "[agent]\nsocket = \"{}\"\njournal = \"{}\"\n[metrics]\nenabled = false\n{}",
            sock.display(),
            dir.0.join("journal.redb").display(),
            sentinel_tests::TEST_HOST
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_clients_find_health_and_reflection() {
    let _serial = sentinel_tests::serial_async().await;
    let agent = Agent::start("generic", "", &["--no-ebpf"]);
    let channel = sentinel_api::client::channel(&agent.socket).await.unwrap();

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

    // And through the older v1alpha protocol, which older grpcurl asks for.
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest as AlphaRequest,
        server_reflection_client::ServerReflectionClient as AlphaClient,
        server_reflection_request::MessageRequest as AlphaMessage,
        server_reflection_response::MessageResponse as AlphaResponse,
    };
    let channel = sentinel_api::client::channel(&agent.socket).await.unwrap();
    let mut alpha = AlphaClient::new(channel);
    let req = AlphaRequest {
        host: String::new(),
        message_request: Some(AlphaMessage::ListServices(String::new())),
    };
    let mut stream = alpha
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("v1alpha reflection is served")
        .into_inner();
    let first = tokio_stream::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    let Some(AlphaResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("{first:?}");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "sentinel.v1.Sentinel"),
        "{list:?}"
    );

    // An agent with nothing to report says so, on stderr.
    let (ok, out, err) = agent.cli(&["decisions", "--kind", "kernel_oom_kill"]);
    assert!(ok && out.is_empty(), "{out}");
    assert!(err.contains("no decisions match"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_too_many_streams_get_precise_codes() {
    use sentinel_api::pb;
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

    // Streams are bounded per peer; a closed one frees its place at once.
    let mut open = Vec::new();
    for _ in 0..sentinel::api::MAX_WATCHERS_PER_PEER {
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
    assert!(
        e.message().contains("uid 0 has 8 decision streams open"),
        "{e}"
    );
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

    // A resume point beyond the last decision is refused, not a silent gap
    // (it used to skip every decision up to it).
    let last = c
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .last_decision_seq;
    drop(open);
    // The closed streams' places are freed when the server sees them go:
    // until then the answer is RESOURCE_EXHAUSTED, not the one under test.
    let mut e = None;
    for _ in 0..50 {
        let r = c
            .watch_decisions(pb::WatchDecisionsRequest {
                after_seq: Some(last + 3),
            })
            .await
            .unwrap_err();
        if r.code() != tonic::Code::ResourceExhausted {
            e = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let e = e.expect("the closed streams' places were freed");
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{e}");
    assert!(
        e.message().contains(&format!("resume from at most {last}")),
        "{e}"
    );
    assert!(
        c.watch_decisions(pb::WatchDecisionsRequest {
            after_seq: Some(last)
        })
        .await
        .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_are_filtered_sorted_paged_and_detailed() {
    use sentinel_api::pb;
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
