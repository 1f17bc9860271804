//! One proxy for every protocol: the same requests over HTTP/1.1, HTTP/2 and HTTP/3 get
//! the same status, JSON error code, `grpc-status`, access-log fields and metric labels
//! (the protocol aside). Every request goes through the one `HttpProxy<EdgeProxy>`, so a
//! difference here is a protocol adapter leaking into policy.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::{closed_port, jwt_plugin, metric_sum, EchoServer, Edge, EdgeOptions};
use perf::h3client::H3Connection;
use testkit::{reqwest, HttpVersion};

const PROTOCOLS: [&str; 3] = ["h1", "h2", "h3"];
const MIB: usize = 1024 * 1024;

struct Clients {
    h1: reqwest::Client,
    h2: reqwest::Client,
    h3: H3Connection,
}

/// A response reduced to what must match across protocols.
#[derive(Debug)]
struct Seen {
    status: u16,
    error_code: Option<String>,
    grpc_status: Option<String>,
    body_len: usize,
    json: Option<serde_json::Value>,
}

#[derive(Clone)]
struct Case {
    name: &'static str,
    method: &'static str,
    /// The protocol is appended as a last path segment, so log lines can be told apart.
    path: &'static str,
    headers: Vec<(String, String)>,
    body: Option<Body>,
    status: u16,
    error_code: Option<&'static str>,
    grpc_status: Option<&'static str>,
}

#[derive(Clone)]
enum Body {
    /// Sent with a content-length.
    Sized(Bytes),
    /// Sent in chunks without a content-length (h1 chunked; h2/h3 DATA frames).
    Streamed(usize, usize),
}

fn case(name: &'static str, method: &'static str, path: &'static str, status: u16) -> Case {
    Case {
        name,
        method,
        path,
        headers: Vec::new(),
        body: None,
        status,
        error_code: None,
        grpc_status: None,
    }
}

impl Case {
    fn code(mut self, code: &'static str) -> Self {
        self.error_code = Some(code);
        self
    }
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    fn body(mut self, body: Body) -> Self {
        self.body = Some(body);
        self
    }
    fn grpc(mut self, status: &'static str) -> Self {
        self.grpc_status = Some(status);
        self.header("content-type", "application/grpc")
            .header("te", "trailers")
    }
}

async fn start(echo: &EchoServer, keys: &std::path::Path) -> Edge {
    let body = format!(
        r#"
[limits]
max_request_headers = 40
max_request_body_bytes = 8388608

[clusters.echo]
addresses = ["{echo}"]

[clusters.slow]
addresses = ["{echo}"]
read_timeout = "300ms"

[clusters.down]
addresses = ["127.0.0.1:{closed}"]
required = false

[clusters.retry]
addresses = ["127.0.0.1:{closed2}", "{echo}"]
retries = 1
required = false

{jwt}

[[routes]]
id = "public"
path_prefix = "/api/public"
strip_prefix = "/api/public"
upstream = "echo"

[[routes]]
id = "small"
path_prefix = "/api/small"
upstream = "echo"
max_request_body_bytes = 1024

[[routes]]
id = "protected"
path_prefix = "/api/records"
upstream = "echo"
plugins.jwt = {{ mode = "required" }}

[[routes]]
id = "grpc-protected"
kind = "grpc"
path_prefix = "/grpc.health.v1.Health/"
upstream = "echo"
plugins.jwt = {{ mode = "required" }}

[[routes]]
id = "limited"
path_prefix = "/api/limited"
upstream = "echo"
plugins.rate_limits = [{{ key = "ip", requests = 1, per = "1m", burst = 0 }}]

[[routes]]
id = "down"
path_prefix = "/api/down"
upstream = "down"

[[routes]]
id = "slow"
path_prefix = "/api/slow"
strip_prefix = "/api"
upstream = "slow"

[[routes]]
id = "retry"
path_prefix = "/api/retry"
upstream = "retry"
"#,
        echo = echo.addr,
        closed = closed_port(),
        closed2 = closed_port(),
        jwt = jwt_plugin(keys),
    );
    Edge::start_with(EdgeOptions::new(body).with_http3()).await
}

async fn send(clients: &Clients, edge: &Edge, protocol: &str, case: &Case) -> Seen {
    let path = format!("{}/{protocol}", case.path);
    let (status, headers, body) = if protocol == "h3" {
        let mut request = http::Request::builder().method(case.method).uri(&path);
        for (name, value) in &case.headers {
            request = request.header(name, value);
        }
        let body = match &case.body {
            Some(Body::Sized(bytes)) => {
                request = request.header("content-length", bytes.len());
                bytes.clone()
            }
            // The h3 client sends a body without a content-length in DATA frames.
            Some(Body::Streamed(chunks, size)) => Bytes::from(vec![b's'; chunks * size]),
            None => Bytes::new(),
        };
        let response = clients
            .h3
            .send(request.body(body).expect("request"))
            .await
            .unwrap_or_else(|e| panic!("{}: h3: {e:#}\n{}", case.name, edge.process.logs()));
        (response.status.as_u16(), response.headers, response.body)
    } else {
        let client = if protocol == "h1" {
            &clients.h1
        } else {
            &clients.h2
        };
        let method = http::Method::from_bytes(case.method.as_bytes()).expect("method");
        let mut request = client.request(method, edge.url(&path));
        for (name, value) in &case.headers {
            request = request.header(name, value);
        }
        request = match &case.body {
            Some(Body::Sized(bytes)) => request.body(bytes.clone()),
            Some(Body::Streamed(chunks, size)) => {
                let size = *size;
                let parts = (0..*chunks).map(move |_| Ok::<_, std::io::Error>(vec![b's'; size]));
                request.body(reqwest::Body::wrap_stream(futures::stream::iter(parts)))
            }
            None => request,
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {protocol}: {e:#}", case.name));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("body");
        (status, headers, body)
    };
    let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    Seen {
        status,
        error_code: json
            .as_ref()
            .and_then(|j| j["error"]["code"].as_str())
            .map(str::to_owned),
        grpc_status: headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body_len: body.len(),
        json,
    }
}

/// The access-log record of the request with this exact path.
fn access_record(logs: &str, path: &str) -> serde_json::Value {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|record| record["target"] == "access" && record["path"] == path)
        .unwrap_or_else(|| panic!("no access-log line for {path}"))
}

/// Access-log fields that must not depend on the protocol.
const SAME_FIELDS: [&str; 7] = [
    "route",
    "cluster",
    "status",
    "grpc_status",
    "answered_by",
    "error",
    "method",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_requests_get_the_same_answers_over_h1_h2_and_h3() {
    let echo = EchoServer::start().await;
    let keys = tempfile::tempdir().expect("dir");
    let edge = start(&echo, keys.path()).await;
    let addr: SocketAddr = format!("127.0.0.1:{}", edge.https_port)
        .parse()
        .expect("addr");
    let clients = Clients {
        h1: edge.client(HttpVersion::Http1),
        h2: edge.client(HttpVersion::Http2),
        h3: H3Connection::connect(addr, "localhost", Some(&edge.pki.ca_path()))
            .await
            .expect("h3 connect"),
    };
    // One request per minute per IP: spend it, so every protocol then sees 429.
    let spent = clients
        .h1
        .get(edge.url("/api/limited/warm-up"))
        .send()
        .await
        .expect("warm-up");
    assert_eq!(spent.status(), 200);

    let many_headers: Vec<(String, String)> = (0..50)
        .map(|i| (format!("x-filler-{i}"), "1".to_string()))
        .collect();
    let mut too_many =
        case("headers_too_large", "GET", "/api/public/x", 431).code("headers_too_large");
    too_many.headers = many_headers;
    let cases = vec![
        case("proxied", "GET", "/api/public/item", 200),
        case("no_route", "GET", "/nowhere", 404).code("not_found"),
        case("token_missing", "GET", "/api/records", 401).code("token_missing"),
        case("token_invalid", "GET", "/api/records", 401)
            .code("malformed_token")
            .header("authorization", "Bearer not.a.jwt"),
        case("rate_limited", "GET", "/api/limited", 429).code("rate_limited"),
        case(
            "payload_too_large_declared",
            "POST",
            "/api/small/upload",
            413,
        )
        .code("payload_too_large")
        .body(Body::Sized(Bytes::from(vec![b'x'; 2048]))),
        case(
            "payload_too_large_streamed",
            "POST",
            "/api/small/upload",
            413,
        )
        .code("payload_too_large")
        .body(Body::Streamed(8, 512)),
        too_many,
        case("backend_down", "GET", "/api/down", 502).code("upstream_unreachable"),
        case("backend_too_slow", "GET", "/api/slow/3000", 504).code("upstream_timeout"),
        case("connect_retry_to_second_backend", "GET", "/api/retry", 200),
        case(
            "grpc_without_token",
            "POST",
            "/grpc.health.v1.Health/Check",
            200,
        )
        .grpc("16")
        .body(Body::Sized(Bytes::from_static(&[0, 0, 0, 0, 0]))),
        case("large_request_body", "POST", "/api/public/upload", 200)
            .body(Body::Streamed(48, 64 * 1024)),
        case(
            "large_response_body",
            "GET",
            "/api/public/bytes/3145728",
            200,
        ),
    ];

    for case in &cases {
        let mut seen = Vec::new();
        for protocol in PROTOCOLS {
            // The retry case: round robin may start on either backend; go around twice
            // so one attempt certainly starts on the closed one.
            let rounds = if case.name == "connect_retry_to_second_backend" {
                2
            } else {
                1
            };
            let mut last = None;
            for _ in 0..rounds {
                last = Some(send(&clients, &edge, protocol, case).await);
            }
            let got = last.expect("sent");
            assert_eq!(
                got.status, case.status,
                "{}: {protocol}: {got:?}",
                case.name
            );
            assert_eq!(
                got.error_code.as_deref(),
                case.error_code,
                "{}: {protocol}: {got:?}",
                case.name
            );
            assert_eq!(
                got.grpc_status.as_deref(),
                case.grpc_status,
                "{}: {protocol}",
                case.name
            );
            seen.push((protocol, got));
        }
        match case.name {
            "large_request_body" => {
                for (protocol, got) in &seen {
                    let json = got.json.as_ref().expect("echo JSON");
                    assert_eq!(json["bodyLength"], 3 * MIB, "{protocol}");
                }
            }
            "large_response_body" => {
                for (protocol, got) in &seen {
                    assert_eq!(got.body_len, 3 * MIB, "{protocol}");
                }
            }
            _ => {}
        }
    }

    // The request record: the same fields for the same case, whatever the protocol.
    let logs = edge.process.logs();
    for case in &cases {
        let records: Vec<serde_json::Value> = PROTOCOLS
            .iter()
            .map(|p| access_record(&logs, &format!("{}/{p}", case.path)))
            .collect();
        for (record, protocol) in records.iter().zip(PROTOCOLS) {
            assert_eq!(record["protocol"], protocol, "{}", case.name);
        }
        for field in SAME_FIELDS {
            assert_eq!(
                records[0][field], records[1][field],
                "{}: access-log {field} h1 vs h2",
                case.name
            );
            assert_eq!(
                records[0][field], records[2][field],
                "{}: access-log {field} h1 vs h3",
                case.name
            );
        }
        if case.name == "large_request_body" {
            for record in &records {
                assert_eq!(record["request_bytes"], 3 * MIB, "{}", case.name);
            }
        }
    }

    // Metrics: the same labels, one series per protocol.
    let metrics = edge.metrics().await;
    for (route, status) in [
        ("public", "2xx"),
        ("protected", "4xx"),
        ("limited", "4xx"),
        ("small", "4xx"),
        ("down", "5xx"),
        ("slow", "5xx"),
        ("retry", "2xx"),
        ("-", "4xx"),
    ] {
        for protocol in PROTOCOLS {
            let labels = [
                format!("route=\"{route}\""),
                format!("status=\"{status}\""),
                format!("protocol=\"{protocol}\""),
            ];
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            assert!(
                metric_sum(&metrics, "edge_requests_total", &labels) >= 1.0,
                "edge_requests_total{{{}}} missing",
                labels.join(",")
            );
        }
    }
    // Bodies of every protocol are measured (HTTP/3 used to record none): per protocol
    // the large upload and the streamed body cut off at 413.
    assert!(
        metric_sum(&metrics, "edge_request_body_bytes_count", &[]) >= 2.0 * 3.0,
        "request body sizes recorded for every protocol"
    );
    assert!(
        metric_sum(
            &metrics,
            "edge_upstream_errors_total",
            &["kind=\"connect\""]
        ) >= 3.0,
        "a connect failure per protocol was retried"
    );
}

/// curl, an independent client, gets the 413 JSON over HTTP/2 as HTTP/1.1 does (not a
/// stream reset, curl exit 92), for a declared and for a streamed body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_413_json_over_h1_and_h2() {
    let echo = EchoServer::start().await;
    let keys = tempfile::tempdir().expect("dir");
    let edge = start(&echo, keys.path()).await;
    let payload = edge.dir.path().join("payload.bin");
    std::fs::write(&payload, vec![b'p'; 64 * 1024]).expect("payload");
    for version in ["--http1.1", "--http2"] {
        for (how, extra) in [
            ("declared", vec![]),
            ("chunked", vec!["-H", "transfer-encoding: chunked"]),
        ] {
            if version == "--http2" && how == "chunked" {
                // HTTP/2 has no chunked coding; curl then streams DATA frames without a
                // content-length only when reading stdin.
                continue;
            }
            let output = tokio::process::Command::new("curl")
                .args(["-sS", version, "--cacert"])
                .arg(edge.pki.ca_path())
                .args(["-o", "-", "-w", "\n%{http_code}", "--data-binary"])
                .arg(format!("@{}", payload.display()))
                .args(extra)
                .arg(edge.url("/api/small/upload/curl"))
                .output()
                .await
                .expect("run curl");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{version} {how}: curl failed ({:?}): {}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            );
            let (body, code) = stdout.rsplit_once('\n').expect("status line");
            assert_eq!(code, "413", "{version} {how}: {stdout}");
            let json: serde_json::Value = serde_json::from_str(body).expect("JSON body");
            assert_eq!(
                json["error"]["code"], "payload_too_large",
                "{version} {how}"
            );
        }
    }
    // HTTP/2 without a content-length: the body comes from stdin.
    let mut child = tokio::process::Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(edge.pki.ca_path())
        .args(["-o", "-", "-w", "\n%{http_code}", "-T", "-", "-X", "POST"])
        .arg(edge.url("/api/small/upload/curl-stdin"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn curl");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        // Ignore write errors: the edge may answer (and curl stop reading) early.
        let _ = stdin.write_all(&vec![b'q'; 64 * 1024]).await;
    }
    let output = child.wait_with_output().await.expect("curl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "--http2 stdin: curl failed ({:?}): {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.ends_with("\n413"), "--http2 stdin: {stdout}");
}
