//! Real Prometheus and Alertmanager (Debian's packages) started on
//! loopback for a test, a webhook sink that records what Alertmanager
//! notifies, and the plain HTTP the tests speak to all of them.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET url` as HTTP/1.0, so the reply is neither chunked nor kept alive:
/// (status, body), or None when nothing answers.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = TcpStream::connect(authority).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

pub fn get_json(url: &str) -> Option<Value> {
    let (status, body) = http_get(url)?;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// Polls `f` every 200 ms until it returns Some, or panics with `what`
/// after `within`.
pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One sample of a metric (the first whose line starts with `series`,
/// e.g. `sentinel_frozen_processes` or `sentinel_processes{level="warn"}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Records the JSON bodies POSTed to it (Alertmanager's webhook
/// notifications), answering 200 to each.
pub struct WebhookSink {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<Value>>>,
}

impl WebhookSink {
    pub fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = bodies.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || serve_posts(conn, &sink));
            }
        });
        Self { url, bodies }
    }

    pub fn all(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Reads requests on a kept-alive connection until it closes.
fn serve_posts(mut conn: TcpStream, sink: &Mutex<Vec<Value>>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        if let Ok(v) = serde_json::from_slice(&buf[end + 4..end + 4 + len]) {
            sink.lock().unwrap().push(v);
        }
        buf.drain(..end + 4 + len);
        if conn
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// A server process that is killed when dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

/// `url` answers 200 (a server's readiness endpoint).
fn answers(url: &str) -> bool {
    http_get(url).is_some_and(|(st, _)| st == 200)
}

impl Server {
    fn start(mut cmd: Command, log: PathBuf, ready: impl Fn() -> bool) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?} (installed by `cargo xtask test`): {e}"));
        let mut s = Self { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("{cmd:?} exited ({st}):\n{}", s.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "{cmd:?} not ready:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's Prometheus scraping one target every second and evaluating
/// `rules` every second.
pub struct Prometheus {
    server: Server,
    pub url: String,
}

impl Prometheus {
    pub fn start(dir: &Path, target: &str, rules: &Path) -> Self {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: sentinel\n    static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        let server = Server::start(cmd, dir.join("prometheus.log"), || answers(&ready));
        Self { server, url }
    }

    /// Alerts Prometheus holds now (`/api/v1/alerts`): (name, state, labels).
    pub fn alerts(&self) -> Vec<(String, String, Value)> {
        let v = get_json(&format!("{}/api/v1/alerts", self.url)).unwrap_or(Value::Null);
        v["data"]["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                            x["state"].as_str().unwrap_or("").to_string(),
                            x["labels"].clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of an instant query's first result.
    pub fn query(&self, expr: &str) -> Option<f64> {
        let q: String = expr
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let v = get_json(&format!("{}/api/v1/query?query={q}", self.url))?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    pub fn log_text(&self) -> String {
        self.server.log_text()
    }
}

/// Debian's Alertmanager, single node, notifying `webhook` within a second
/// of an alert (and of its resolution).
pub struct Alertmanager {
    server: Option<Server>,
    dir: PathBuf,
    tls: Option<AmTls>,
    pub port: u16,
    pub url: String,
}

/// Alertmanager served over TLS: its `--web.config.file`
/// (exporter-toolkit's, with `tls_server_config`) and what a client needs
/// to ask it whether it is ready (PEM files).
#[derive(Clone)]
pub struct AmTls {
    pub web_config: PathBuf,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl AmTls {
    /// HTTPS only, and a client must show a certificate signed by the CA
    /// in `dir`: ca.pem signed am.pem/am.key (Alertmanager's) and
    /// agent.pem/agent.key (the client's, which the readiness check shows).
    pub fn requiring_client_certificates(dir: &Path) -> Self {
        let path = dir.join("web.yml");
        std::fs::write(
            &path,
            format!(
                "tls_server_config:\n  cert_file: {d}/am.pem\n  key_file: {d}/am.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {d}/ca.pem\n",
                d = dir.display()
            ),
        )
        .unwrap();
        Self {
            web_config: path,
            ca: dir.join("ca.pem"),
            client_cert: dir.join("agent.pem"),
            client_key: dir.join("agent.key"),
        }
    }

    /// `/-/ready` answers 200 over TLS (curl, with the client certificate).
    fn ready(&self, url: &str) -> bool {
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--max-time", "2", "--cacert"])
            .arg(&self.ca)
            .arg("--cert")
            .arg(&self.client_cert)
            .arg("--key")
            .arg(&self.client_key)
            .arg(format!("{url}/-/ready"))
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Alertmanager {
    pub fn start(dir: &Path, webhook: &str) -> Self {
        Self::start_with(dir, webhook, None)
    }

    /// Served over TLS when `tls` is given (HTTPS only). Its own API then
    /// needs TLS too, so `active` does not work; watch the webhook instead.
    pub fn start_with(dir: &Path, webhook: &str, tls: Option<AmTls>) -> Self {
        let port = free_port();
        std::fs::write(
            dir.join("alertmanager.yml"),
            format!(
                "route:\n  receiver: sink\n  group_by: [alertname, pid]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: sink\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: true\n"
            ),
        )
        .unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut am = Self {
            server: None,
            dir: dir.to_path_buf(),
            tls,
            port,
            url: format!("{scheme}://127.0.0.1:{port}"),
        };
        am.restart();
        am
    }

    /// Starts it (again) on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new("prometheus-alertmanager");
        cmd.arg(format!(
            "--config.file={}",
            self.dir.join("alertmanager.yml").display()
        ))
        .arg(format!(
            "--storage.path={}",
            self.dir.join("am-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
        // Single node: no gossip port to collide with other tests.
        .arg("--cluster.listen-address=");
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--web.config.file={}", tls.web_config.display()));
        }
        let log = self.dir.join("alertmanager.log");
        let server = match self.tls.clone() {
            Some(tls) => {
                let url = self.url.clone();
                Server::start(cmd, log, move || tls.ready(&url))
            }
            None => {
                let ready = format!("{}/-/ready", self.url);
                Server::start(cmd, log, || answers(&ready))
            }
        };
        self.server = Some(server);
    }

    pub fn stop(&mut self) {
        self.server = None;
    }

    /// Active alerts (`/api/v2/alerts`), as Alertmanager's JSON.
    pub fn active(&self) -> Vec<Value> {
        get_json(&format!("{}/api/v2/alerts?active=true", self.url))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        self.server
            .as_ref()
            .map(|s| s.log_text())
            .unwrap_or_default()
    }
}
