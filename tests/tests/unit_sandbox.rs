//! The unit's sandbox, held to the standard earlyoom's outage set (issue
//! 19): the agent does its real work inside what deploy/sentinel.service
//! asks for, rebuilt by `sentinel_tests::sandbox` from the unit's own
//! lines: its capability bounding set, its mount protections, and its
//! system call filter (resolved as systemd would, and killing on any other
//! call, stricter than the unit's EPERM) with MemoryDenyWriteExecute=.
//! Inside it the agent loads and attaches its probes, says ready to
//! systemd, arms its PSI trigger, samples a GPU through an NVML library it
//! loads (the test's fake one), freezes with the kernel's freezer, kills
//! and releases a victim's memory, delivers alerts to a webhook and over
//! TLS with a client certificate to Alertmanager, serves the API (a
//! resume over TCP with mutual TLS) and metrics, reloads, and stops
//! cleanly; `sentinel thaw-all`, which the unit's ExecStopPost runs in the
//! same sandbox, then thaws what the stop kept frozen. The agent has no
//! network there (PrivateNetwork=yes, Unix sockets only): metrics, the TCP
//! API and alert delivery go through its relay, run in the relay unit's
//! own sandbox (no capabilities, not root).

use std::{
    os::unix::{fs::PermissionsExt, net::UnixDatagram, process::ExitStatusExt},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use sentinel_tests::{
    Agent, Hog, MIB, MemCgroup,
    certs::{issue, new_ca},
    cli,
    gpu::{Scenario, fake_nvml},
    observability::{Alertmanager, AmTls, WebhookSink, free_port, http_get, wait_for},
    privileged, rule_for,
    sandbox::{self, unit},
    sentinel_bin, serial_async, stdout_of, syscalls, tempdir, v1_freezer_mounted,
};

/// Whether `test` can run the sandbox here: as root (see `privileged`),
/// and on x86-64, whose numbers the filter is resolved with.
fn sandbox_runs_here(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    if !cfg!(target_arch = "x86_64") {
        eprintln!("SKIP: the filter is resolved with the kernel's x86-64 numbers");
        return false;
    }
    true
}

/// MemoryDenyWriteExecute= as the sandbox rebuilds it: a mapping both
/// writable and executable is refused, a writable one is not. Without
/// this the agent's run in the sandbox would show nothing about it.
#[test]
fn the_sandbox_refuses_memory_both_writable_and_executable() {
    if !sandbox_runs_here("the_sandbox_refuses_memory_both_writable_and_executable") {
        return;
    }
    assert_eq!(
        sandbox::setting(&unit(), "MemoryDenyWriteExecute").as_deref(),
        Some("yes")
    );
    let tmp = tempdir::Dir::new("wx");
    let mut python = Command::new("python3");
    python.args([
        "-c",
        "import mmap\n\
         mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE)\n\
         print('rw mapped')\n\
         try:\n\
         \x20   mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)\n\
         \x20   print('wx mapped')\n\
         except OSError as e:\n\
         \x20   print('wx refused', e.errno)\n",
    ]);
    let mut cmd = sandbox::launcher(python, &tmp.0, &[], true);
    let out = stdout_of(cmd.stdout(Stdio::piped()));
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("rw mapped\nwx refused {}\n", libc::EPERM)
    );
}

#[test]
fn the_allow_list_names_what_no_systemd_group_holds() {
    // process_mrelease is in no group at all (only @known): left out, it
    // is the call whose absence killed earlyoom.
    let names = syscalls::allowed_by_unit(&unit());
    for call in [
        "bpf",
        "perf_event_open",
        "process_mrelease",
        "pidfd_open",
        "pidfd_send_signal",
        "mlockall",
    ] {
        assert!(names.contains(call), "{call} is not allowed by the unit");
    }
    assert!(unit().contains("\nSystemCallErrorNumber=EPERM\n"));
}

/// Certificates for servers on 127.0.0.1 that require a client's: ca.pem
/// signed am.pem (the agent's TCP API and Alertmanager both serve it) and
/// agent.pem (ops-admin.sentinel: the agent's to Alertmanager, and the
/// CLI's, as an admin, to the agent).
fn pki(dir: &Path) {
    new_ca(dir, "ca");
    issue(
        dir,
        "ca",
        "am",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    issue(
        dir,
        "ca",
        "agent",
        "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:ops-admin.sentinel\n",
    );
}

/// Rules for `held` (freeze) and `ended` (straight to the top of its
/// ladder: SIGTERM, ignored, then SIGKILL and process_mrelease), a TCP API
/// with mutual TLS on `port`, alerts to `webhook` and over TLS to
/// Alertmanager at `am`, and the GPU library.
fn sandbox_config(
    held: &MemCgroup,
    ended: &MemCgroup,
    d: &Path,
    port: u16,
    webhook: &str,
    am: &str,
) -> String {
    let d = d.display();
    format!(
        "{}{}\n[metrics]\nlisten = \"127.0.0.1:{}\"\n[api]\ntcp = \"127.0.0.1:{port}\"\ntls_cert = \"{d}/am.pem\"\ntls_key = \"{d}/am.key\"\ntls_client_ca = \"{d}/ca.pem\"\nadmin_names = [\"ops-admin.sentinel\"]\n\
         [alerting]\nwebhooks = [\"{webhook}\"]\nalertmanagers = [\"{am}\"]\nmin_firing = \"1s\"\n\
         [alerting.tls]\nca_file = \"{d}/ca.pem\"\ncert_file = \"{d}/agent.pem\"\nkey_file = \"{d}/agent.key\"\n\
         [gpu]\nlibrary = \"{}\"\ninterval = \"50ms\"\n",
        rule_for(held, "held", "128MiB", "freeze"),
        rule_for(ended, "ended", "128MiB", "kill").replacen(
            "[rule.match]",
            "levels = { preempt = 0.9, kill = 0.9 }\n[rule.match]",
            1
        ),
        free_port(),
        fake_nvml().display()
    )
}

/// Whether Alertmanager passed on an alert about `pid` to `sink`.
fn notified(sink: &WebhookSink, pid: u32) -> bool {
    let pid = pid.to_string();
    sink.all().iter().any(|n| {
        n["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["labels"]["pid"] == pid.as_str()))
    })
}

/// The agent's start inside the sandbox, as systemd runs it: it must say
/// ready on the notify socket, have every probe attached, its PSI trigger
/// armed, the GPU sampled and, where there is one, the kernel's v1
/// freezer in use (the issue names the freezer among what the sandbox
/// must keep).
async fn start_in_sandbox(dir: &Path, cfg: &str, gpu: &Scenario, relay: &Path) -> Agent {
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    // As systemd's own socket: anyone may send.
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let notify_env = notify_path.display().to_string();
    let agent = Agent::start_with(
        "scfilter",
        cfg,
        &["--relay", relay.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", &notify_env),
            ("WATCHDOG_USEC", "400000"),
            ("FAKE_NVML_SCENARIO", gpu.path.to_str().unwrap()),
        ],
        |inner| sandbox::launcher(inner, dir, &[], false),
    );
    let mut buf = [0u8; 4096];
    let n = notify.recv(&mut buf).expect("READY=1 on the notify socket");
    assert!(buf[..n].starts_with(b"READY=1"));

    let s = agent
        .status_when(Duration::from_secs(5), |s| !s.gpus.is_empty())
        .await;
    assert_eq!(s.gpus.len(), 1, "{s:?}");
    assert_eq!(s.mode, "ebpf", "{s:?}");
    assert!(s.degraded_reason.is_empty(), "{s:?}");
    let log = agent.log_text();
    if Path::new("/proc/pressure/memory").exists() {
        assert!(log.contains("memory PSI trigger armed"), "{log}");
    }
    if v1_freezer_mounted() {
        assert!(
            log.contains("freezes use the kernel's cgroup v1 freezer"),
            "{log}"
        );
    }
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_does_its_real_work_in_the_units_sandbox() {
    if !sandbox_runs_here("the_agent_does_its_real_work_in_the_units_sandbox") {
        return;
    }
    let _serial = serial_async().await;
    let tmp = tempdir::Dir::new("scfilter");
    let d = tmp.0.as_path();
    pki(d);
    let held = MemCgroup::new("scheld", 512 * MIB);
    let ended = MemCgroup::new("scended", 512 * MIB);
    let sink = WebhookSink::start();
    let am_sink = WebhookSink::start();
    let am = Alertmanager::start_with(
        d,
        &am_sink.url,
        Some(AmTls::requiring_client_certificates(d)),
    );
    let gpu = Scenario::new(d);
    gpu.write(&format!("device 0 total {} name Fake T4\n", 16u64 << 30));
    let port = free_port();
    let cfg = sandbox_config(&held, &ended, d, port, &sink.url, &am.url);
    let relay_dir = d.join("relay");
    std::fs::create_dir(&relay_dir).unwrap();
    // The relay's runtime directory is its own (DynamicUser=, played by
    // nobody): the agent reaches its socket as root.
    std::os::unix::fs::chown(&relay_dir, Some(65534), Some(65534)).unwrap();
    let relay_socket = relay_dir.join("relay.sock");
    let mut agent = start_in_sandbox(d, &cfg, &gpu, &relay_socket).await;
    let mut relay = Relay::start_in_sandbox(&agent, &relay_dir, &relay_socket);

    let grow = ["--target", "200MiB", "--rate", "200MB/s", "--hold", "60"];
    let frozen = Hog::spawn(&held, &grow);
    agent
        .expect_action(frozen.pid, "freeze", Duration::from_secs(10))
        .await;
    assert!(frozen.frozen());
    // Not SIGSTOP instead: a freezer the sandbox refused falls back to
    // it, and a SIGCONT would undo it.
    assert!(!agent.log_text().contains("freezing with SIGSTOP"));
    let mut killed = Hog::spawn(
        &ended,
        &[
            "--target",
            "200MiB",
            "--rate",
            "100MB/s",
            "--hold",
            "60",
            "--ignore-term",
        ],
    );
    agent
        .expect_action(killed.pid, "terminate", Duration::from_secs(10))
        .await;
    agent
        .expect_action(killed.pid, "kill", Duration::from_secs(10))
        .await;
    assert!(killed.wait_exit(Duration::from_secs(5)).is_some());

    wait_for("alerts at the webhook", Duration::from_secs(20), || {
        (sink.all().len() >= 2).then_some(())
    });
    wait_for(
        "Alertmanager, over TLS, to pass an alert on",
        Duration::from_secs(30),
        || notified(&am_sink, frozen.pid).then_some(()),
    );
    let (code, text) = http_get(&agent.metrics_url()).expect("metrics answer");
    assert!(code == 200 && text.contains("sentinel_preemptions_total"));
    assert!(
        agent.log_text().contains("relayed=true"),
        "the agent's metrics are the relay's: {}",
        agent.log_text()
    );

    // SAFETY: our own child.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) };
    wait_for("the reload", Duration::from_secs(10), || {
        agent.log_text().contains("config reloaded").then_some(())
    });
    resume_over_tls(d, port, frozen.pid);
    assert!(!frozen.frozen());

    // Frozen when the agent stops: kept frozen by the stop, then thawed by
    // `sentinel thaw-all`, which the unit's ExecStopPost runs in the same
    // sandbox when the agent is disabled.
    let left = Hog::spawn(&held, &grow);
    agent
        .expect_action(left.pid, "freeze", Duration::from_secs(10))
        .await;
    stop_cleanly(&mut agent);
    relay.stop_cleanly();
    assert!(left.frozen());
    let config = agent.dir.0.join("sentinel.toml");
    let mut thaw = Command::new(sentinel_bin());
    thaw.arg("thaw-all")
        .arg("--config")
        .arg(&config)
        .args(["--why", "the agent was disabled"]);
    let mut thaw = sandbox::launcher(thaw, d, &[], false);
    let out = stdout_of(thaw.stdout(Stdio::piped()));
    assert!(!left.frozen(), "{}", String::from_utf8_lossy(&out));
}

/// `sentinel relay` for `agent` (its config), in the relay unit's sandbox,
/// listening at `socket` in `dir` (nobody's).
struct Relay {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Relay {
    fn start_in_sandbox(agent: &Agent, dir: &Path, socket: &Path) -> Self {
        let mut inner = Command::new(sentinel_bin());
        inner
            .arg("relay")
            .arg("--config")
            .arg(agent.dir.0.join("sentinel.toml"))
            .arg("--listen")
            .arg(socket)
            .env("SENTINEL_LOG", "info,sentinel=debug");
        let mut cmd = sandbox::launcher_for(&sandbox::relay_unit(), inner, dir, &[], false);
        let log = dir.join("relay.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd.stderr(out).spawn().expect("spawn the relay");
        let relay = Self { child, log };
        wait_for(
            "the agent to take the relay's connections",
            Duration::from_secs(10),
            || {
                relay
                    .log_text()
                    .contains("the agent takes the accepted connections")
                    .then_some(())
            },
        );
        relay
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running (a call outside its filter would have killed it),
    /// then SIGTERM: it exits 0.
    fn stop_cleanly(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the relay died:\n{}",
            self.log_text()
        );
        // SAFETY: our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let st = self.child.wait().unwrap();
        assert!(st.success(), "{st}\n{}", self.log_text());
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sentinel resume PID` by an admin over the TCP API on `port`, with
/// mutual TLS (the certificates of `pki`).
fn resume_over_tls(d: &Path, port: u16, pid: u32) {
    let p = |f: &str| d.join(f).display().to_string();
    let url = format!("https://127.0.0.1:{port}");
    let (code, out, err) = cli::run(&[
        "resume",
        &pid.to_string(),
        "--socket",
        &url,
        "--tls-cert",
        &p("agent.pem"),
        "--tls-key",
        &p("agent.key"),
        "--tls-ca",
        &p("ca.pem"),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
}

/// SIGTERM: the agent exits 0, killed by no signal (a call outside the
/// filter would be SIGSYS), and no process_mrelease was refused (released,
/// or the victim already gone by itself: ESRCH).
fn stop_cleanly(agent: &mut Agent) {
    agent.stop();
    let st = agent.child.wait().unwrap();
    let log = agent.log_text();
    assert_eq!(
        st.signal(),
        None,
        "killed by a signal (SIGSYS is 31):\n{log}"
    );
    assert!(st.success(), "{st}\n{log}");
    assert!(
        !log.contains("process_mrelease: Operation not permitted"),
        "{log}"
    );
}

/// earlyoom's outage, under the unit's own EPERM mode: a filter without
/// process_mrelease. The agent starts and says at once, in status, which
/// call is refused and what that costs, instead of finding out at its
/// first kill. Its GPU library here asks for an executable stack, which
/// MemoryDenyWriteExecute= refuses: status names the setting to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_refuses_process_mrelease_is_reported_at_start() {
    if !sandbox_runs_here("a_filter_that_refuses_process_mrelease_is_reported_at_start") {
        return;
    }
    let _serial = serial_async().await;
    let tmp = tempdir::Dir::new("scerrno");
    let source = tmp.0.join("execstack.c");
    std::fs::write(&source, "int nvmlInit_v2(void) { return 0; }\n").unwrap();
    let library = tmp.0.join("libexecstack-nvml.so");
    stdout_of(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-Wl,-z,execstack", "-o"])
            .arg(&library)
            .arg(&source),
    );
    let cfg = format!("[gpu]\nlibrary = \"{}\"\n", library.display());
    let relay = tmp.0.join("no-relay.sock");
    let args = ["--no-ebpf", "--relay", relay.to_str().unwrap()];
    let agent = Agent::start_with("scerrno", &cfg, &args, &[], |inner| {
        sandbox::launcher(inner, &tmp.0, &["process_mrelease"], true)
    });
    let s = agent
        .status_when(Duration::from_secs(5), |s| !s.gpu_unavailable.is_empty())
        .await;
    assert!(
        s.gpu_unavailable
            .contains("MemoryDenyWriteExecute=yes refuses"),
        "{s:?}"
    );
    assert!(
        s.degraded_reason
            .contains("process_mrelease is refused (Operation not permitted"),
        "{s:?}"
    );
    assert!(!s.degraded_reason.contains("pidfd_open"), "{s:?}");
}
