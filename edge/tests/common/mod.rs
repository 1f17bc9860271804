//! Harness for the edge's integration tests: a real `edge` process with a temp config
//! and a per-test CA, plus real upstreams (an HTTP/1.1 echo server and a tonic h2c gRPC
//! server) on free ports.

#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use testkit::{reqwest, ChildProcess, HttpVersion, LeafFiles, TempDir, TestPki};

pub mod platform;

pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The admin bearer token every harness edge is configured with (`admin.token_file`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";

/// A running edge.
pub struct Edge {
    pub dir: TempDir,
    pub pki: TestPki,
    pub leaf: LeafFiles,
    pub https_port: u16,
    pub http_port: u16,
    pub admin_port: u16,
    pub config_path: PathBuf,
    pub process: ChildProcess,
}

pub struct EdgeOptions {
    pub http3: bool,
    pub body: String,
    /// Extra lines for `[server]`.
    pub server_extra: String,
    /// Serve this certificate + key instead of the harness's own leaf.
    pub certificate: Option<(PathBuf, PathBuf)>,
    /// Listen on `[::1]` as well (same port), as the dev config does.
    pub ipv6_loopback: bool,
    /// `[server] grace_period` (how long an old process drains after an upgrade).
    pub grace_period: &'static str,
}

impl EdgeOptions {
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            http3: false,
            body: body.into(),
            server_extra: String::new(),
            certificate: None,
            ipv6_loopback: false,
            grace_period: "3s",
        }
    }

    pub fn with_ipv6_loopback(mut self) -> Self {
        self.ipv6_loopback = true;
        self
    }

    pub fn with_http3(mut self) -> Self {
        self.http3 = true;
        self
    }
}

struct Ports {
    https: u16,
    http: u16,
    admin: u16,
}

fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

fn render_config(
    dir: &std::path::Path,
    ports: &Ports,
    leaf: &LeafFiles,
    options: &EdgeOptions,
) -> String {
    let dir = dir.display();
    format!(
        r#"
[server]
threads = 1
pid_file = "{dir}/edge.pid"
upgrade_sock = "{dir}/upgrade.sock"
grace_period = "{grace_period}"
graceful_shutdown_timeout = "1s"
{server_extra}

[listeners.https]
address = "127.0.0.1:{https}"
extra_addresses = [{extra}]
http3 = {http3}

[listeners.http]
address = "127.0.0.1:{http}"

[admin]
address = "127.0.0.1:{admin}"
token_file = "{dir}/admin-token"

[tls.default]
cert = "{cert}"
key = "{key}"

[logging]
level = "info"
format = "json"

{body}
"#,
        server_extra = options.server_extra,
        grace_period = options.grace_period,
        https = ports.https,
        extra = if options.ipv6_loopback {
            format!("\"[::1]:{}\"", ports.https)
        } else {
            String::new()
        },
        http3 = options.http3,
        http = ports.http,
        admin = ports.admin,
        cert = options
            .certificate
            .as_ref()
            .map_or(leaf.cert.display(), |(cert, _)| cert.display()),
        key = options
            .certificate
            .as_ref()
            .map_or(leaf.key.display(), |(_, key)| key.display()),
        body = options.body,
    )
}

impl Edge {
    /// Starts an edge whose config is the harness's listeners + `body` (clusters, routes,
    /// plugins) and waits until its admin `/healthz` answers.
    pub async fn start(body: &str) -> Edge {
        Self::start_with(EdgeOptions::new(body)).await
    }

    pub async fn start_with(options: EdgeOptions) -> Edge {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::new().expect("pki");
        let leaf = pki
            .issue("edge", &["localhost", "127.0.0.1", "record.local"])
            .expect("leaf");
        let ports = Ports {
            https: testkit::free_tcp_udp_port(),
            http: testkit::free_tcp_port(),
            admin: testkit::free_tcp_port(),
        };
        let config_path = dir.path().join("edge.toml");
        std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).expect("admin token");
        write_atomically(
            &config_path,
            &render_config(dir.path(), &ports, &leaf, &options),
        );
        let process = ChildProcess::spawn(
            "edge",
            std::path::Path::new(env!("CARGO_BIN_EXE_edge")),
            &["--config", config_path.to_str().expect("utf8 path")],
            &[("RUST_LOG", "info")],
        )
        .expect("spawn edge");
        let edge = Edge {
            dir,
            pki,
            leaf,
            https_port: ports.https,
            http_port: ports.http,
            admin_port: ports.admin,
            config_path,
            process,
        };
        let admin_healthz = edge.admin_url("/healthz");
        if let Err(e) = edge
            .process
            .wait_for_http_ok(&admin_healthz, READY_TIMEOUT)
            .await
        {
            panic!("edge did not start: {e:#}");
        }
        // Pingora starts each service on its own runtime: the admin listener can answer
        // before the HTTPS listener, or the plain-HTTP redirect one, accepts (a loaded CI
        // machine refused a connection to the redirect listener right after start).
        for (what, port) in [("HTTPS", edge.https_port), ("plain-HTTP", edge.http_port)] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if let Err(e) = edge.process.wait_for_tcp(addr, READY_TIMEOUT).await {
                panic!("{what} listener not up: {e:#}\n{}", edge.process.logs());
            }
        }
        edge
    }

    /// (Re)writes the config file (the edge reloads on SIGHUP or by watching it).
    pub fn write_config(&self, options: &EdgeOptions) {
        let ports = Ports {
            https: self.https_port,
            http: self.http_port,
            admin: self.admin_port,
        };
        write_atomically(
            &self.config_path,
            &render_config(self.dir.path(), &ports, &self.leaf, options),
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https_port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// An HTTP/3 connection (the suite's quiche client) to this edge, trusting its CA.
    pub async fn h3(&self) -> perf::h3client::H3Connection {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.https_port));
        perf::h3client::H3Connection::connect(addr, "localhost", Some(&self.pki.ca_path()))
            .await
            .expect("h3 connect")
    }

    pub fn client(&self, version: HttpVersion) -> reqwest::Client {
        testkit::https_client(&self.pki.ca_cert_pem, version).expect("client")
    }

    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::get(self.admin_url(path))
            .await
            .expect("admin request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("admin body"))
    }

    /// An admin `POST` as an operator sends it: bearer token, JSON content type.
    pub async fn admin_post(&self, path: &str) -> (u16, String) {
        self.admin_post_json(path, "").await
    }

    /// [`Edge::admin_post`] with a JSON body.
    pub async fn admin_post_json(&self, path: &str, body: &str) -> (u16, String) {
        let resp = reqwest::Client::new()
            .post(self.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("admin request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("admin body"))
    }

    pub async fn metrics(&self) -> String {
        self.admin_get("/metrics").await.1
    }

    /// Sum of a counter's samples whose label set contains every `labels` entry.
    pub async fn counter(&self, name: &str, labels: &[&str]) -> f64 {
        metric_sum(&self.metrics().await, name, labels)
    }

    /// Waits until admin `/readyz` says ready (every required cluster healthy).
    pub async fn wait_ready(&self) {
        if let Err(e) = self
            .process
            .wait_for_http_ok(&self.admin_url("/readyz"), READY_TIMEOUT)
            .await
        {
            panic!("edge not ready: {e:#}\n{}", self.process.logs());
        }
    }

    /// Polls until `check` is true for the metrics text.
    pub async fn wait_for_metric(&self, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if check(&self.metrics().await) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "metric condition '{what}' never held\n{}",
                    self.process.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether the edge logged a failed TLS handshake as an error (it must not: such failures are
/// the client's, counted in `edge_tls_handshake_failures_total`).
pub fn has_handshake_error_line(logs: &str) -> bool {
    logs.lines()
        .any(|line| line.contains("ERROR") && line.to_ascii_lowercase().contains("handshake"))
}

pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.split(['{', ' ']).next() == Some(name) && labels.iter().all(|l| line.contains(l))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An HTTP/1.1 upstream that echoes what it received as JSON. Paths:
/// `/slow/<ms>/...` waits before answering; `/status/<code>` answers that status;
/// `/bytes/<n>` answers `n` bytes of `b`; `/text/<n>` `n` bytes of text/plain; `/range` a
/// 206 with content-range; `/own-csp` sets its own content-security-policy; `/origin` a
/// cacheable answer (see [`origin`]).
pub struct EchoServer {
    pub addr: SocketAddr,
    /// Requests that reached the server (counted before any `/slow` wait).
    pub received: Arc<AtomicUsize>,
    /// While set, every request is answered `503` (an origin failing on command).
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fail = failing.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                let fail = fail.clone();
                static CONN: AtomicUsize = AtomicUsize::new(0);
                let conn = CONN.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let failing = fail.load(Ordering::SeqCst);
                        async move {
                            if failing {
                                return Ok(hyper::Response::builder()
                                    .status(503)
                                    .body(Full::new(Bytes::from_static(b"down")))
                                    .unwrap());
                            }
                            echo(request).await
                        }
                    });
                    if let Err(err) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        // In the test's output when it fails: a malformed request from
                        // the edge shows up here (hyper answers it 400 by itself).
                        eprintln!("echo server: connection {conn}: {err:?}");
                    }
                });
            }
        });
        Self {
            addr,
            received,
            failing,
            task,
        }
    }

    /// Waits until at least `count` requests have reached the server.
    pub async fn wait_for_requests(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while self.received.load(Ordering::SeqCst) < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "upstream never saw {count} requests"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn echo(
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let mut segments = path.trim_start_matches('/').split('/');
    match segments.next() {
        Some("slow") => {
            let ms: u64 = segments.next().and_then(|s| s.parse().ok()).unwrap_or(100);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if segments.next() == Some("origin") {
                return Ok(origin(&parts, &path));
            }
        }
        Some("bytes") => {
            let n: usize = segments.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            return Ok(hyper::Response::builder()
                .header("content-type", "application/octet-stream")
                .body(Full::new(Bytes::from(vec![b'b'; n])))
                .unwrap());
        }
        Some("text") => {
            let n: usize = segments.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let text: String = "vinyl record ".repeat(n / 13 + 1)[..n].to_string();
            return Ok(hyper::Response::builder()
                .header("content-type", "text/plain; charset=utf-8")
                .body(Full::new(Bytes::from(text)))
                .unwrap());
        }
        Some("range") => {
            return Ok(hyper::Response::builder()
                .status(206)
                .header("content-type", "text/plain")
                .header("content-range", "bytes 0-4095/8192")
                .body(Full::new(Bytes::from(vec![b'r'; 4096])))
                .unwrap());
        }
        Some("own-csp") => {
            return Ok(hyper::Response::builder()
                .header("content-security-policy", "default-src 'none'")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap());
        }
        Some("origin") => return Ok(origin(&parts, &path)),
        Some("status") => {
            let code: u16 = segments.next().and_then(|s| s.parse().ok()).unwrap_or(500);
            return Ok(hyper::Response::builder()
                .status(code)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap());
        }
        _ => {}
    }
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::from(v.to_str().unwrap_or("<binary>")),
            )
        })
        .collect();
    let reply = serde_json::json!({
        "method": parts.method.as_str(),
        "path": path,
        "query": parts.uri.query(),
        "headers": headers,
        "bodyLength": body.len(),
    });
    Ok(hyper::Response::builder()
        .header("content-type", "application/json")
        .header("x-upstream", "echo")
        .body(Full::new(Bytes::from(reply.to_string())))
        .unwrap())
}

/// `/origin/...?<options>`: a cacheable text answer whose first line is a number unique to
/// this response (`object <n>`), so a test tells a stored copy from a fresh one. Options:
/// `cc=` a Cache-Control value, `vary=` a Vary value, `cookie=1` a Set-Cookie, `status=`,
/// `size=` the body length (text/plain), `ms=` is handled by the caller's `/slow` prefix.
fn origin(parts: &http::request::Parts, path: &str) -> hyper::Response<Full<Bytes>> {
    static OBJECTS: AtomicUsize = AtomicUsize::new(0);
    let object = OBJECTS.fetch_add(1, Ordering::SeqCst);
    let options: std::collections::HashMap<String, String> = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let v = v
                .replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%20", " ");
            (k.to_string(), v)
        })
        .collect();
    let mut body = format!("object {object} for {path}\n");
    let size: usize = options
        .get("size")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    while body.len() < size {
        body.push_str("vinyl record ");
    }
    body.truncate(size.max(body.find('\n').map_or(0, |i| i + 1)));
    let mut response = hyper::Response::builder()
        .status(
            options
                .get("status")
                .and_then(|s| s.parse::<u16>().ok())
                .unwrap_or(200),
        )
        .header("content-type", "text/plain; charset=utf-8");
    if let Some(cc) = options.get("cc") {
        response = response.header("cache-control", cc.as_str());
    }
    if let Some(vary) = options.get("vary") {
        response = response.header("vary", vary.as_str());
    }
    if options.contains_key("cookie") {
        response = response.header("set-cookie", "session=abc; Secure; HttpOnly");
    }
    response.body(Full::new(Bytes::from(body))).unwrap()
}

/// A tonic h2c server with `grpc.health.v1.Health` (unary `Check`, server-streaming
/// `Watch`): "" and "test.Serving" are SERVING, "test.Down" is NOT_SERVING.
pub struct GrpcServer {
    pub addr: SocketAddr,
    pub reporter: tonic_health::server::HealthReporter,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcServer {
    pub async fn start() -> Self {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("test.Serving", tonic_health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("test.Down", tonic_health::ServingStatus::NotServing)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let task = tokio::spawn(async move {
            let _ = testkit::tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Self {
            addr,
            reporter,
            task,
        }
    }
}

/// A `[plugins.jwt]` table (issuer and audience `record-platform`) whose only key is a
/// fresh Ed25519 public key written to `dir`; nothing can sign for it, so only the "no
/// token" / "bad token" paths are exercised.
pub fn jwt_plugin(dir: &std::path::Path) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519 key");
    let path = dir.join("jwt-public.pem");
    std::fs::write(&path, key.public_key_pem()).expect("write key");
    format!(
        "[plugins.jwt]\nissuer = \"record-platform\"\naudience = \"record-platform\"\n\
         static_keys = [{{ kid = \"k1\", algorithm = \"EdDSA\", pem_file = \"{}\" }}]\n",
        path.display()
    )
}

/// An Ed25519 key pair: the edge verifies with the public PEM (`kid` `k1`), the test signs.
pub struct SigningKey {
    encoding: jsonwebtoken::EncodingKey,
    pub public_pem: std::path::PathBuf,
}

impl SigningKey {
    pub fn new(dir: &std::path::Path) -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519 key");
        let public_pem = dir.join("jwt-public.pem");
        std::fs::write(&public_pem, key.public_key_pem()).expect("write key");
        let encoding =
            jsonwebtoken::EncodingKey::from_ed_pem(key.serialize_pem().as_bytes()).expect("pkcs8");
        Self {
            encoding,
            public_pem,
        }
    }

    /// A token for `sub`, audience `record-platform`, valid for ten minutes.
    pub fn token(&self, issuer: &str, sub: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let claims = serde_json::json!({
            "sub": sub,
            "email": format!("{sub}@example.com"),
            "jti": format!("jti-{issuer}-{sub}"),
            "iss": issuer,
            "aud": "record-platform",
            "iat": now,
            "exp": now + 600,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("sign")
    }
}

/// A TCP port with nothing listening (connections are refused).
pub fn closed_port() -> u16 {
    testkit::free_tcp_port()
}

/// Runs `edge upgrade` with `extra` arguments; its output goes to a file, since the successor
/// it starts inherits (and keeps open) the command's stdout and stderr.
pub async fn edge_upgrade(edge: &Edge, extra: &[&str]) -> (bool, String) {
    let log = edge.dir.path().join("upgrade-command.log");
    let file = std::fs::File::create(&log).expect("log file");
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_edge"))
        .args([
            "--config",
            edge.config_path.to_str().expect("utf8"),
            "upgrade",
        ])
        .args(extra)
        .stdout(file.try_clone().expect("clone"))
        .stderr(file)
        .status()
        .await
        .expect("run edge upgrade");
    (
        status.success(),
        std::fs::read_to_string(&log).expect("read log"),
    )
}

/// `edge/tests/interop/h3_hold.py` (aioquic): one HTTP/3 connection held for `seconds`,
/// a GET on it every `interval` seconds; `env` sets its `H3_REBIND_*` options.
pub struct H3Hold {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    _process: tokio::process::Child,
}

impl H3Hold {
    /// Starts it and waits until its connection is up.
    pub async fn start(
        edge: &Edge,
        path: &str,
        seconds: f64,
        interval: f64,
        env: &[(&str, &str)],
    ) -> H3Hold {
        use tokio::io::AsyncBufReadExt;
        let mut process = tokio::process::Command::new(tool_python("interop"))
            .arg(testkit::workspace_root().join("edge/tests/interop/h3_hold.py"))
            .args(["127.0.0.1", &edge.https_port.to_string()])
            .arg(edge.pki.ca_path())
            .args([
                "localhost",
                path,
                &seconds.to_string(),
                &interval.to_string(),
            ])
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run h3_hold.py");
        let stdout = process.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        assert!(
            matches!(&first, Ok(Ok(Some(line))) if line == "connected"),
            "aioquic did not connect: {first:?}\n{}",
            edge.process.logs()
        );
        H3Hold {
            lines,
            _process: process,
        }
    }

    /// Its final JSON report (it ends on its own after `seconds`).
    pub async fn report(mut self) -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("h3_hold.py finishes")
            .expect("read h3_hold.py")
            .expect("h3_hold.py prints its report");
        serde_json::from_str(&line).expect("h3_hold.py prints JSON")
    }
}

/// The Python of `.dev/tools/<venv>/venv` (`interop`: grpcio, aioquic; `browser`: selenium),
/// which `scripts/interop-tools.sh` installs (make test runs it).
pub fn tool_python(venv: &str) -> PathBuf {
    let python = testkit::workspace_root().join(format!(".dev/tools/{venv}/venv/bin/python"));
    assert!(
        python.exists(),
        "{} missing: run scripts/interop-tools.sh (make test does)",
        python.display()
    );
    python
}

/// Runs `edge/tests/interop/h3_request.py` (aioquic, an HTTP/3 stack independent of quiche)
/// once against `edge`; `mode` is its `H3_MODE` (`stall`, `reset-after:<s>`). Returns the
/// JSON it prints.
pub async fn aioquic(
    edge: &Edge,
    mode: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
    headers: &[&str],
) -> serde_json::Value {
    let root = testkit::workspace_root();
    let output = tokio::process::Command::new(tool_python("interop"))
        .arg(root.join("edge/tests/interop/h3_request.py"))
        .args(["127.0.0.1", &edge.https_port.to_string()])
        .arg(edge.pki.ca_path())
        .args(["localhost", method, path, body])
        .args(headers)
        .env("H3_MODE", mode.unwrap_or(""))
        .output()
        .await
        .expect("run h3_request.py");
    assert!(
        output.status.success(),
        "aioquic {method} {path}: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        edge.process.logs()
    );
    serde_json::from_slice(&output.stdout).expect("h3_request.py prints JSON")
}
