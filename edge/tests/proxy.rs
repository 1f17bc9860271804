//! The edge as a real process: TLS, h1/h2, routing, gRPC, errors, limits, admin.

mod common;

use std::time::Duration;

use common::{closed_port, metric_sum, EchoServer, Edge, EdgeOptions, GrpcServer};
use testkit::{reqwest, tonic, HttpVersion};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn echo_routes(echo: &EchoServer) -> String {
    format!(
        r#"
[clusters.echo]
addresses = ["{echo}"]

[[routes]]
id = "catch-all"
path_prefix = "/"
upstream = "echo"

[[routes]]
id = "records"
path_prefix = "/api/records"
strip_prefix = "/api"
upstream = "echo"
max_request_body_bytes = 1024

[[routes]]
id = "auth"
path_prefix = "/api/auth/"
strip_prefix = "/api/auth"
upstream = "echo"
"#,
        echo = echo.addr
    )
}

async fn json(resp: reqwest::Response) -> serde_json::Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn h1_and_h2_over_tls_reach_the_upstream_and_report_the_protocol() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&echo_routes(&echo)).await;
    for (version, expected) in [
        (HttpVersion::Http1, reqwest::Version::HTTP_11),
        (HttpVersion::Http2, reqwest::Version::HTTP_2),
    ] {
        let resp = edge
            .client(version)
            .get(edge.url("/api/records/42?sort=asc"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.version(), expected);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-upstream"], "echo");
        let body = json(resp).await;
        assert_eq!(body["path"], "/records/42", "prefix /api stripped");
        assert_eq!(body["query"], "sort=asc");
    }
    let (_, metrics) = edge.admin_get("/metrics").await;
    assert!(
        metric_sum(
            &metrics,
            "edge_requests_total",
            &["protocol=\"h1\"", "route=\"records\""]
        ) >= 1.0
    );
    assert!(
        metric_sum(
            &metrics,
            "edge_requests_total",
            &["protocol=\"h2\"", "route=\"records\""]
        ) >= 1.0
    );
    assert!(metric_sum(&metrics, "edge_tls_handshakes_total", &["alpn=\"h2\""]) >= 1.0);
    assert!(
        metric_sum(
            &metrics,
            "edge_tls_handshakes_total",
            &["alpn=\"http/1.1\""]
        ) >= 1.0
    );
}

#[tokio::test]
async fn most_specific_route_wins_and_strip_prefix_rewrites() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&echo_routes(&echo)).await;
    let client = edge.client(HttpVersion::Http2);
    for (path, upstream_path) in [
        ("/api/auth/login", "/login"),
        ("/api/records", "/records"),
        ("/api/recordsX", "/api/recordsX"),
        ("/other/thing", "/other/thing"),
    ] {
        let body = json(client.get(edge.url(path)).send().await.expect("request")).await;
        assert_eq!(body["path"], upstream_path, "for {path}");
    }
}

#[tokio::test]
async fn identity_headers_are_stripped_and_forwarding_headers_set() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&echo_routes(&echo)).await;
    let body = json(
        edge.client(HttpVersion::Http1)
            .get(edge.url("/api/records"))
            .header("x-user-id", "admin")
            .header("X-User-Email", "root@example.com")
            .header("x-user-assertion", "v1.0.forged")
            .header("x-forwarded-for", "203.0.113.9")
            .send()
            .await
            .expect("request"),
    )
    .await;
    let headers = body["headers"].as_object().expect("headers");
    for spoofed in ["x-user-id", "x-user-email", "x-user-assertion"] {
        assert!(
            !headers.contains_key(spoofed),
            "{spoofed} reached the upstream: {headers:?}"
        );
    }
    // The peer is not a trusted proxy: its X-Forwarded-For is replaced, not extended.
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "https");
    let request_id = headers["x-request-id"]
        .as_str()
        .expect("request id generated");
    assert!(request_id.len() >= 16, "{request_id}");
    assert!(headers.contains_key("traceparent"));
}

#[tokio::test]
async fn request_id_is_returned_to_the_client_and_kept_when_sane() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&echo_routes(&echo)).await;
    let resp = edge
        .client(HttpVersion::Http2)
        .get(edge.url("/x"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let body = json(resp).await;
    assert_eq!(body["headers"]["x-request-id"], "abc-123");
}

/// A blocking BoringSSL client pinned to one TLS version.
fn handshake(
    port: u16,
    version: boring::ssl::SslVersion,
    ca: &std::path::Path,
) -> Result<String, String> {
    use boring::ssl::{SslConnector, SslMethod};
    let mut builder = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    builder
        .set_min_proto_version(Some(version))
        .map_err(|e| e.to_string())?;
    builder
        .set_max_proto_version(Some(version))
        .map_err(|e| e.to_string())?;
    builder.set_ca_file(ca).map_err(|e| e.to_string())?;
    builder
        .set_alpn_protos(b"\x02h2\x08http/1.1")
        .map_err(|e| e.to_string())?;
    let connector = builder.build();
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let tls = connector
        .connect("localhost", stream)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{} {}",
        tls.ssl().version_str(),
        String::from_utf8_lossy(tls.ssl().selected_alpn_protocol().unwrap_or(b"none"))
    ))
}

#[tokio::test]
async fn tls_1_1_is_refused_and_tls_1_2_and_1_3_are_accepted() {
    use boring::ssl::SslVersion;
    let echo = EchoServer::start().await;
    let edge = Edge::start(&echo_routes(&echo)).await;
    let port = edge.https_port;
    let ca = edge.pki.ca_path();
    let results = tokio::task::spawn_blocking(move || {
        [SslVersion::TLS1_1, SslVersion::TLS1_2, SslVersion::TLS1_3]
            .map(|v| handshake(port, v, &ca))
    })
    .await
    .expect("join");
    assert!(
        results[0].is_err(),
        "TLS 1.1 must be refused: {:?}",
        results[0]
    );
    assert_eq!(results[1].as_deref(), Ok("TLSv1.2 h2"));
    assert_eq!(results[2].as_deref(), Ok("TLSv1.3 h2"));
    edge.wait_for_metric("protocol_version failure counted", |m| {
        metric_sum(
            m,
            "edge_tls_handshake_failures_total",
            &["reason=\"protocol_version\""],
        ) >= 1.0
    })
    .await;
    // The client's failure, said at info with its address; not an edge error.
    let logs = edge.process.logs();
    let refused = logs.lines().find(|l| l.contains("TLS handshake failed"));
    assert!(
        refused.is_some_and(|l| l.contains("INFO") && l.contains("127.0.0.1")),
        "{logs}"
    );
    assert!(!common::has_handshake_error_line(&logs), "{logs}");
}

#[tokio::test]
async fn plaintext_on_the_tls_port_fails_cleanly_and_the_edge_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = EchoServer::start().await;
    let edge = Edge::start(&echo_routes(&echo)).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", edge.https_port))
        .await
        .expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the edge must close a plaintext connection, not hang"
    );
    assert!(
        !String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"),
        "no HTTP answer on the TLS port"
    );
    let resp = edge
        .client(HttpVersion::Http1)
        .get(edge.url("/"))
        .send()
        .await
        .expect("still serving");
    assert_eq!(resp.status(), 200);
}

fn grpc_routes(grpc: &GrpcServer) -> String {
    format!(
        r#"
[clusters.grpc]
addresses = ["{grpc}"]
protocol = "h2c"
health_check = {{ kind = "grpc", interval = "200ms" }}

[clusters.grpc-down]
addresses = ["127.0.0.1:{closed}"]
protocol = "h2c"
required = false

[[routes]]
id = "health"
kind = "grpc"
path_prefix = "/grpc.health.v1.Health/"
upstream = "grpc"

[[routes]]
id = "down"
kind = "grpc"
path_prefix = "/down.Service/"
upstream = "grpc-down"
"#,
        grpc = grpc.addr,
        closed = closed_port()
    )
}

async fn grpc_client(edge: &Edge) -> HealthClient<testkit::tonic::transport::Channel> {
    let channel = testkit::grpc_tls_channel(edge.https_port, "localhost", &edge.pki.ca_cert_pem)
        .await
        .expect("channel");
    HealthClient::new(channel)
}

#[tokio::test]
async fn grpc_unary_and_server_streaming_pass_through_with_status() {
    let grpc = GrpcServer::start().await;
    let edge = Edge::start(&grpc_routes(&grpc)).await;
    edge.wait_ready().await;
    let mut client = grpc_client(&edge).await;

    let serving = client
        .check(HealthCheckRequest {
            service: "test.Serving".into(),
        })
        .await
        .expect("unary call");
    assert_eq!(serving.into_inner().status, ServingStatus::Serving as i32);

    // A non-OK status travels in trailers from the upstream through the edge.
    let unknown = client
        .check(HealthCheckRequest {
            service: "no.Such".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), testkit::tonic::Code::NotFound);

    // Server streaming: the first message, then an update pushed by the server.
    let mut stream = client
        .watch(HealthCheckRequest {
            service: "test.Down".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("stream")
        .expect("first message");
    assert_eq!(first.status, ServingStatus::NotServing as i32);
    grpc.reporter
        .set_service_status("test.Down", tonic_health::ServingStatus::Serving)
        .await;
    let second = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("update in time")
        .expect("stream")
        .expect("second message");
    assert_eq!(second.status, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn grpc_errors_from_the_edge_are_grpc_shaped() {
    let grpc = GrpcServer::start().await;
    let edge = Edge::start(&grpc_routes(&grpc)).await;
    let channel = testkit::grpc_tls_channel(edge.https_port, "localhost", &edge.pki.ca_cert_pem)
        .await
        .expect("channel");
    let mut grpc_client = tonic::client::Grpc::new(channel);
    let call = |path: &'static str| {
        let mut client = grpc_client.clone();
        async move {
            client.ready().await.expect("ready");
            let codec = tonic_prost_codec();
            client
                .unary::<HealthCheckRequest, tonic_health::pb::HealthCheckResponse, _>(
                    tonic::Request::new(HealthCheckRequest::default()),
                    http::uri::PathAndQuery::from_static(path),
                    codec,
                )
                .await
        }
    };
    let unrouted = call("/nowhere.Service/Method").await.expect_err("no route");
    assert_eq!(unrouted.code(), tonic::Code::Unimplemented);
    let down = call("/down.Service/Method")
        .await
        .expect_err("upstream down");
    assert_eq!(down.code(), tonic::Code::Unavailable);
    grpc_client.ready().await.expect("still usable");
}

fn tonic_prost_codec(
) -> tonic_prost::ProstCodec<HealthCheckRequest, tonic_health::pb::HealthCheckResponse> {
    tonic_prost::ProstCodec::default()
}

#[tokio::test]
async fn upstream_down_gives_502_json_and_no_route_gives_404_json() {
    let edge = Edge::start(&format!(
        r#"
[clusters.down]
addresses = ["127.0.0.1:{closed}"]
required = false

[[routes]]
id = "down"
path_prefix = "/down"
upstream = "down"
"#,
        closed = closed_port()
    ))
    .await;
    let client = edge.client(HttpVersion::Http2);
    let resp = client
        .get(edge.url("/down/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = json(resp).await;
    assert_eq!(body["error"]["code"], "upstream_unreachable");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("down"));

    let resp = client
        .get(edge.url("/elsewhere"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 404);
    assert_eq!(json(resp).await["error"]["code"], "not_found");
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_backend() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&format!(
        r#"
[clusters.mixed]
addresses = ["127.0.0.1:{closed}", "{echo}"]
retries = 1
# Retries are under test: outlier ejection would take the dead backend out after 5 tries.
outlier_detection = {{ consecutive_failures = 0 }}

[[routes]]
id = "mixed"
path_prefix = "/"
upstream = "mixed"
"#,
        closed = closed_port(),
        echo = echo.addr
    ))
    .await;
    let client = edge.client(HttpVersion::Http1);
    for _ in 0..6 {
        let resp = client.get(edge.url("/x")).send().await.expect("request");
        assert_eq!(
            resp.status(),
            200,
            "GET must be retried on the healthy backend"
        );
    }
    // A POST is not idempotent: it is not replayed, so some fail.
    let mut failures = 0;
    for _ in 0..6 {
        let resp = client
            .post(edge.url("/x"))
            .body("x")
            .send()
            .await
            .expect("request");
        if resp.status() == 502 {
            failures += 1;
        }
    }
    assert!(
        failures > 0,
        "POSTs to the dead backend must not be retried"
    );
}

#[tokio::test]
async fn failing_health_checks_take_a_backend_out_and_readyz_follows() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&format!(
        r#"
[clusters.pair]
addresses = ["127.0.0.1:{closed}", "{echo}"]
retries = 0
health_check = {{ kind = "http", path = "/healthz", interval = "200ms" }}

[clusters.dead]
addresses = ["127.0.0.1:{closed}"]
health_check = {{ kind = "tcp", interval = "200ms" }}

[[routes]]
id = "pair"
path_prefix = "/"
upstream = "pair"

[[routes]]
id = "dead"
path_prefix = "/dead"
upstream = "dead"
"#,
        closed = closed_port(),
        echo = echo.addr
    ))
    .await;
    edge.wait_for_metric("dead backend marked unhealthy", |m| {
        metric_sum(m, "edge_upstream_backend_healthy", &["cluster=\"dead\""]) == 0.0
            && m.contains("edge_upstream_backend_healthy{backend=")
    })
    .await;
    let (status, body) = edge.admin_get("/readyz").await;
    assert_eq!(
        status, 503,
        "a required cluster with no healthy backend: {body}"
    );
    let client = edge.client(HttpVersion::Http1);
    for _ in 0..6 {
        // retries = 0: only health checking keeps requests off the dead backend.
        let resp = client.get(edge.url("/x")).send().await.expect("request");
        assert_eq!(resp.status(), 200);
    }
    let resp = client
        .get(edge.url("/dead/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 503);
    assert_eq!(json(resp).await["error"]["code"], "no_healthy_upstream");
    let health = json(
        client
            .get(edge.url("/api/healthz"))
            .send()
            .await
            .expect("healthz"),
    )
    .await;
    // Public: the verdict only; which clusters and backends exist is not the Internet's.
    assert_eq!(health, serde_json::json!({"status": "degraded"}));
    let (status, admin) = edge.admin_get("/healthz").await;
    assert_eq!(status, 200);
    let admin: serde_json::Value = serde_json::from_str(&admin).expect("admin JSON");
    assert_eq!(admin["status"], "degraded");
    assert_eq!(admin["clusters"]["dead"]["status"], "down");
    assert_eq!(admin["clusters"]["pair"]["healthyBackends"], 1);
}

#[tokio::test]
async fn header_and_body_limits_answer_431_and_413() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&format!(
        "[limits]\nmax_request_headers = 20\nmax_request_header_bytes = 4096\n{}",
        echo_routes(&echo)
    ))
    .await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let client = edge.client(version);
        let mut many = client.get(edge.url("/x"));
        for i in 0..30 {
            many = many.header(format!("x-filler-{i}"), "1");
        }
        let resp = many.send().await.expect("request");
        assert_eq!(resp.status(), 431, "{version:?}");
        assert_eq!(json(resp).await["error"]["code"], "headers_too_large");

        let resp = client
            .get(edge.url("/x"))
            .header("x-big", "a".repeat(5000))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 431, "{version:?}");

        // Declared length over the route's 1 KiB limit.
        let resp = client
            .post(edge.url("/api/records"))
            .body(vec![b'x'; 2048])
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 413, "{version:?}");
        assert_eq!(json(resp).await["error"]["code"], "payload_too_large");

        // Streamed without a length: counted as it arrives.
        let chunks =
            futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
        let resp = client
            .post(edge.url("/api/records"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 413, "{version:?} streamed");

        let resp = client
            .post(edge.url("/api/records"))
            .body(vec![b'x'; 512])
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{version:?} under the limit");
    }
}

#[tokio::test]
async fn plain_http_redirects_to_https_and_answers_healthz() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&echo_routes(&echo)).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = client
        .post(format!(
            "http://127.0.0.1:{}/api/records?x=1",
            edge.http_port
        ))
        .header("host", "record.local")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers()["location"],
        format!("https://record.local:{}/api/records?x=1", edge.https_port)
    );
    let resp = client
        .get(format!("http://127.0.0.1:{}/healthz", edge.http_port))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn tls_responses_carry_hsts_and_advertise_http3() {
    let echo = EchoServer::start().await;
    let edge = Edge::start_with(EdgeOptions::new(echo_routes(&echo)).with_http3()).await;
    let client = edge.client(HttpVersion::Http2);
    for path in ["/x", "/api/healthz", "/api/records/too-big-but-get"] {
        let resp = client.get(edge.url(path)).send().await.expect("request");
        assert_eq!(
            resp.headers()["strict-transport-security"],
            "max-age=31536000",
            "{path}"
        );
        assert_eq!(
            resp.headers()["alt-svc"],
            format!("h3=\":{}\"; ma=86400", edge.https_port),
            "{path}"
        );
    }
}

#[tokio::test]
async fn admin_serves_config_redacted_certs_and_reload() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&format!(
        "[plugins.redis]\nurl = \"redis://user:hunter2@127.0.0.1:{}\"\n{}",
        closed_port(),
        echo_routes(&echo)
    ))
    .await;
    let (status, config) = edge.admin_get("/config").await;
    assert_eq!(status, 200);
    assert!(!config.contains("hunter2"), "secret leaked: {config}");
    assert!(config.contains("redis://***@127.0.0.1:"), "{config}");

    let (status, certs) = edge.admin_get("/certs").await;
    assert_eq!(status, 200);
    let certs: serde_json::Value = serde_json::from_str(&certs).expect("json");
    let first = &certs["certificates"][0]["certificate"];
    assert!(first["sans"]
        .as_array()
        .expect("sans")
        .iter()
        .any(|s| s == "localhost"));
    assert!(first["cert_file"]
        .as_str()
        .expect("file")
        .ends_with("edge.crt"));

    let (status, reload) = edge.admin_post("/certs/reload").await;
    assert_eq!(status, 200, "{reload}");
    let reload: serde_json::Value = serde_json::from_str(&reload).expect("json");
    assert_eq!(reload["result"], "unchanged");

    let (status, _) = edge.admin_get("/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let echo = EchoServer::start().await;
    let mut edge = Edge::start(&echo_routes(&echo)).await;
    let client = edge.client(HttpVersion::Http1);
    let url = edge.url("/slow/1500/x");
    let in_flight = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    echo.wait_for_requests(1).await;
    edge.process.signal(libc::SIGTERM).expect("sigterm");
    let status = in_flight
        .await
        .expect("join")
        .expect("in-flight request completes");
    assert_eq!(status, 200);
    let code = tokio::task::block_in_place(|| edge.process.wait_exit(Duration::from_secs(20)))
        .expect("edge exits after draining");
    assert_eq!(code, Some(0), "{}", edge.process.logs());
}

#[tokio::test]
async fn grpc_web_over_http1_is_bridged_to_grpc() {
    let grpc = GrpcServer::start().await;
    let edge = Edge::start(&grpc_routes(&grpc)).await;
    edge.wait_ready().await;
    // HealthCheckRequest { service: "test.Serving" } in a gRPC frame.
    let service = b"test.Serving";
    let mut frame = vec![0u8];
    frame.extend_from_slice(&((service.len() + 2) as u32).to_be_bytes());
    frame.push(0x0a);
    frame.push(service.len() as u8);
    frame.extend_from_slice(service);
    let resp = edge
        .client(HttpVersion::Http1)
        .post(edge.url("/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame)
        .send()
        .await
        .expect("grpc-web request");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        content_type.starts_with("application/grpc-web"),
        "{content_type}"
    );
    let body = resp.bytes().await.expect("body");
    // First frame: the message, status SERVING (field 1 = 1).
    assert_eq!(body[0], 0, "data frame first");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    assert_eq!(&body[5..5 + len], &[0x08, 0x01]);
    // Then the trailers frame (flag 0x80) carrying grpc-status 0.
    let trailers = &body[5 + len..];
    assert_eq!(trailers[0], 0x80, "trailer frame");
    let text = String::from_utf8_lossy(&trailers[5..]).to_ascii_lowercase();
    assert!(text.contains("grpc-status:0"), "{text}");
}

/// An h2 body that ends with an empty DATA frame (END_STREAM) — what hyper, and so reqwest,
/// send after a streamed body — must not leave bytes behind on the pooled HTTP/1.1
/// upstream connection: the next request on it used to meet a stray chunked terminator
/// and a 400 from the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_ending_in_an_empty_h2_frame_leaves_the_upstream_connection_clean() {
    let echo = std::sync::Arc::new(EchoServer::start().await);
    let edge = Edge::start(&format!(
        "[limits]\nmax_request_body_bytes = 8388608\n{}",
        echo_routes(&echo)
    ))
    .await;
    let h2 = edge.client(HttpVersion::Http2);
    let h1 = edge.client(HttpVersion::Http1);
    for round in 0..5 {
        // The last chunk goes out first; the end of the stream (an empty DATA frame with
        // END_STREAM) only once the upstream has the request, so the edge reads it alone.
        let gate = echo.clone();
        let seen = echo.received.load(std::sync::atomic::Ordering::SeqCst);
        let body = futures::stream::unfold(0, move |step| {
            let gate = gate.clone();
            async move {
                match step {
                    0..48 => Some((Ok::<_, std::io::Error>(vec![b'e'; 64 * 1024]), step + 1)),
                    _ => {
                        gate.wait_for_requests(seen + 1).await;
                        None
                    }
                }
            }
        });
        let streamed = h2
            .post(edge.url("/upload/streamed"))
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .expect("streamed POST");
        assert_eq!(streamed.status(), 200, "round {round}");
        assert_eq!(
            json(streamed).await["bodyLength"],
            48 * 64 * 1024,
            "round {round}"
        );
        // The next request reuses the upstream connection (the pool hands back the last).
        let next = h1
            .post(edge.url("/upload/next"))
            .body(vec![b'n'; 300])
            .send()
            .await
            .expect("next POST");
        assert_eq!(
            next.status(),
            200,
            "round {round}: the upstream saw garbage first"
        );
        assert_eq!(json(next).await["bodyLength"], 300);
    }
}
