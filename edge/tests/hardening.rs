//! Slow and abusive clients, overload and the admin listener's access rules, against a real
//! edge with real TLS (rustls), h2 and HTTP/3 (aioquic) clients.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{EchoServer, Edge, ADMIN_TOKEN};
use testkit::{reqwest, HttpVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

/// Far longer than any deadline these tests configure (1 s): a bound, not a speed goal.
const GIVE_UP: Duration = Duration::from_secs(15);

fn config(echo: &EchoServer, limits: &str, cluster_extra: &str) -> String {
    format!(
        r#"
[limits]
{limits}

[clusters.echo]
addresses = ["{echo}"]
{cluster_extra}

[[routes]]
id = "catch-all"
path_prefix = "/"
upstream = "echo"
"#,
        echo = echo.addr
    )
}

/// The harness's own readiness probes are connections too: wait until the edge has let
/// go of them so a cap counts only this test's connections.
async fn wait_for_no_client_connections(edge: &Edge) {
    edge.wait_for_metric("no client connection open", |text| {
        common::metric_sum(text, "edge_client_connections_open", &[]) == 0.0
    })
    .await;
}

async fn tls(
    edge: &Edge,
    alpn: &[u8],
) -> std::io::Result<impl AsyncReadExt + AsyncWriteExt + Unpin> {
    testkit::tls_connect(&edge.pki.ca_cert_pem, edge.https_port, &[alpn])
        .await
        .map_err(std::io::Error::other)
}

/// Reads until the server closes; returns what it sent.
async fn read_to_close(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(GIVE_UP, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the edge kept the connection open; so far: {}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_header_sent_byte_by_byte_is_cut_off_at_the_header_deadline() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&config(&echo, r#"header_timeout = "1s""#, "")).await;
    let mut stream = tls(&edge, b"http/1.1").await.expect("tls");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    // One header byte per 200 ms for up to 8 s: every byte restarts Pingora's per-read
    // timeout, so only a deadline on the whole header ends this.
    let mut closed = false;
    for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        if stream.write_all(&[*byte]).await.is_err() || stream.flush().await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => panic!("unexpected answer: {}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    assert!(closed, "a trickled header kept its connection for 8 s");
    edge.wait_for_metric("header timeout counted", |text| {
        common::metric_sum(text, "edge_client_timeouts_total", &["phase=\"header\""]) == 1.0
    })
    .await;

    // A normal client on a fresh connection is unaffected.
    let client = edge.client(HttpVersion::Http1);
    let ok = client.get(edge.url("/")).send().await.expect("get");
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_connection_that_never_sends_its_preface_is_closed_at_the_header_deadline() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&config(&echo, r#"header_timeout = "1s""#, "")).await;
    // TLS with ALPN h2 completes; then the client preface never comes.
    let mut stream = tls(&edge, b"h2").await.expect("tls");
    // The server's own SETTINGS may arrive first; what matters is that the edge closes.
    read_to_close(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_tls_handshake_is_dropped() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&config(&echo, r#"handshake_timeout = "1s""#, "")).await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", edge.https_port))
        .await
        .expect("connect");
    // The first bytes of a TLS record header, and then nothing.
    tcp.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
    let rest = read_to_close(&mut tcp).await;
    assert!(rest.is_empty(), "{rest}");
    // Counted and said at info with the peer: the client's doing, not an edge error.
    edge.wait_for_metric("the timeout counted", |text| {
        common::metric_sum(
            text,
            "edge_tls_handshake_failures_total",
            &["reason=\"timeout\""],
        ) == 1.0
    })
    .await;
    let logs = edge.process.logs();
    let line = logs
        .lines()
        .find(|line| line.contains("TLS handshake timed out"))
        .unwrap_or_else(|| panic!("no line for the timeout: {logs}"));
    assert!(
        line.contains("INFO") && line.contains("127.0.0.1"),
        "{line}"
    );
    assert!(!common::has_handshake_error_line(&logs), "{logs}");
}

/// Health checks, port scans and clients that give up close connections before or during
/// the TLS handshake (counted as `client_closed`) or before their h2 preface: never an error
/// line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_during_the_tls_handshake_is_counted_not_logged_as_an_error() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&config(&echo, "", "")).await;
    let closed = |want: f64| {
        move |text: &str| {
            common::metric_sum(
                text,
                "edge_tls_handshake_failures_total",
                &["reason=\"client_closed\""],
            ) == want
        }
    };
    // The harness's TCP readiness probe (`Edge::start`) is the first such client.
    edge.wait_for_metric("the readiness probe counted", closed(1.0))
        .await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", edge.https_port));

    // Closed before sending anything, as a TCP health check does.
    drop(connect().await.expect("connect"));
    // Closed halfway through a ClientHello.
    let mut partial = connect().await.expect("connect");
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0xf0, 0x01, 0x00])
        .await
        .expect("write");
    drop(partial);
    // Reset (SO_LINGER 0) after a few bytes.
    let mut reset = connect().await.expect("connect");
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    reset.write_all(&[0x16, 0x03]).await.expect("write");
    drop(reset);

    edge.wait_for_metric("all three counted", closed(4.0)).await;
    // One step later: TLS with ALPN h2 completes, and the client leaves before its preface.
    drop(tls(&edge, b"h2").await.expect("tls"));
    // The connection's end (its log lines first) shows when the gauge is back at 0.
    wait_for_no_client_connections(&edge).await;
    let logs = edge.process.logs();
    assert!(!common::has_handshake_error_line(&logs), "{logs}");
    assert!(!logs.contains("Downstream handshake error"), "{logs}");

    // And the edge serves as before.
    let client = edge.client(HttpVersion::Http1);
    let ok = client.get(edge.url("/")).send().await.expect("get");
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_per_ip_cap_connections_are_refused_before_tls() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&config(&echo, "max_connections_per_ip = 2", "")).await;
    wait_for_no_client_connections(&edge).await;
    let first = tls(&edge, b"http/1.1").await.expect("first");
    let _second = tls(&edge, b"http/1.1").await.expect("second");
    let third = tls(&edge, b"http/1.1").await;
    assert!(
        third.is_err(),
        "a third connection from one address got TLS"
    );
    let refused = edge
        .counter(
            "edge_connections_limited_total",
            &["reason=\"refused_per_ip\"", "transport=\"tcp\""],
        )
        .await;
    assert_eq!(refused, 1.0);

    drop(first);
    testkit::eventually("a closed connection frees its place", GIVE_UP, || async {
        tls(&edge, b"http/1.1").await.is_ok()
    })
    .await
    .expect("place freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_global_cap_requests_get_503_with_retry_after_on_h1_and_h2() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&config(&echo, "max_connections = 1", "")).await;
    wait_for_no_client_connections(&edge).await;
    let _held = tls(&edge, b"http/1.1").await.expect("held");
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let response = edge
            .client(version)
            .get(edge.url("/"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 503, "{version:?}");
        assert_eq!(response.headers()["retry-after"], "1", "{version:?}");
        if version == HttpVersion::Http1 {
            assert_eq!(response.headers()["connection"], "close");
        }
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "overloaded", "{version:?}");
    }
    assert_eq!(echo.received.load(std::sync::atomic::Ordering::SeqCst), 0);
    let shed = edge
        .counter("edge_connections_limited_total", &["reason=\"shed\""])
        .await;
    // Each of the two clients' connections was shed (the 503s above); a client may open
    // one more when the shed connection closes under its answer (hyper retries a request
    // it cannot tell was processed), and that connection is shed too.
    assert!((2.0..=3.0).contains(&shed), "shed connections: {shed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_h1_body_gets_a_408() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&config(&echo, r#"client_read_timeout = "1s""#, "")).await;
    let mut stream = tls(&edge, b"http/1.1").await.expect("tls");
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n\
              Content-Length: 100\r\n\r\n0123456789",
        )
        .await
        .expect("write");
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_h2_body_gets_a_408() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&config(&echo, r#"client_read_timeout = "1s""#, "")).await;
    // One chunk, then a body that never continues nor ends.
    let chunks = tokio_stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789"))])
        .chain(tokio_stream::pending());
    let response = edge
        .client(HttpVersion::Http2)
        .post(edge.url("/upload"))
        .header("content-type", "text/plain")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("an answer, not a reset or a hang");
    assert_eq!(response.status(), 408);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "request_timeout");
    let counted = edge
        .counter("edge_client_timeouts_total", &["phase=\"body\""])
        .await;
    assert_eq!(counted, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_h3_body_gets_a_408() {
    let echo = EchoServer::start().await;
    let edge = Edge::start_with(
        common::EdgeOptions::new(config(&echo, r#"client_read_timeout = "1s""#, "")).with_http3(),
    )
    .await;
    let answer = common::aioquic(
        &edge,
        Some("stall"),
        "POST",
        "/upload",
        "10",
        &["content-type:text/plain", "content-length:100"],
    )
    .await;
    assert_eq!(answer["status"], 408, "{answer}");
    assert!(
        answer["body"]
            .as_str()
            .is_some_and(|b| b.contains("request_timeout")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h3_stream_reset_ends_the_request_without_waiting_for_the_upstream() {
    let echo = EchoServer::start().await;
    let edge = Edge::start_with(common::EdgeOptions::new(config(&echo, "", "")).with_http3()).await;
    // The upstream would answer in 120 s (past the wait below); the client resets after 1 s.
    let reset = common::aioquic(
        &edge,
        Some("reset-after:1"),
        "GET",
        "/slow/120000",
        "0",
        &[],
    )
    .await;
    assert_eq!(reset["reset"], true);
    assert_eq!(echo.received.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The request is over (recorded) while the upstream is still sleeping.
    edge.wait_for_metric("the reset request recorded", |text| {
        common::metric_sum(text, "edge_requests_total", &["protocol=\"h3\""]) == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_clusters_concurrency_limit_requests_get_503_at_once() {
    let echo = EchoServer::start().await;
    let edge = Edge::start_with(
        common::EdgeOptions::new(config(&echo, "", "max_concurrent_requests = 1")).with_http3(),
    )
    .await;
    let client = edge.client(HttpVersion::Http2);
    let slow = tokio::spawn({
        let client = client.clone();
        let url = edge.url("/slow/3000");
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    echo.wait_for_requests(1).await;
    let busy = client.get(edge.url("/")).send().await.expect("busy");
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "1");
    let body: serde_json::Value = busy.json().await.expect("json");
    assert_eq!(body["error"]["code"], "cluster_busy");
    // The same limit over h1 and h3 (one proxy path, one slot count).
    let h1 = edge
        .client(HttpVersion::Http1)
        .get(edge.url("/"))
        .send()
        .await
        .expect("h1");
    assert_eq!(h1.status(), 503);
    let h3 = edge.h3().await.get("/", &[]).await.expect("h3");
    assert_eq!(h3.status.as_u16(), 503);
    assert_eq!(h3.headers["retry-after"], "1");
    assert_eq!(echo.received.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(slow.await.expect("join").expect("slow"), 200);
    // The slot is free again.
    let after = client.get(edge.url("/")).send().await.expect("after");
    assert_eq!(after.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_refuses_rebinding_cross_site_and_tokenless_changes() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&config(&echo, "", "")).await;
    let client = reqwest::Client::new();
    let reload = edge.admin_url("/config/reload");
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.expect("admin request");
        let status = response.status().as_u16();
        let auth = response.headers().get("www-authenticate").cloned();
        let body: serde_json::Value = response.json().await.expect("json");
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
            auth,
        )
    };

    let (status, code, _) = send(
        client
            .get(edge.admin_url("/config"))
            .header("host", "evil.example"),
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "host_not_allowed"));

    let good = || {
        client
            .post(&reload)
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
    };
    let (status, code, _) = send(good().header("origin", "https://evil.example")).await;
    assert_eq!((status, code.as_str()), (403, "cross_origin_refused"));
    let (status, code, _) = send(
        client
            .post(&reload)
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "text/plain"),
    )
    .await;
    assert_eq!((status, code.as_str()), (415, "json_required"));
    let (status, code, auth) = send(
        client
            .post(&reload)
            .header("content-type", "application/json"),
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert!(auth.is_some(), "401 names the scheme");
    let (status, code, _) = send(
        client
            .post(&reload)
            .bearer_auth("not-the-token-not-the-token-not-the-token")
            .header("content-type", "application/json"),
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));

    let applied = good().send().await.expect("reload");
    assert_eq!(applied.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_grpc_routes_naming_one_budget_share_the_quota() {
    let echo = EchoServer::start().await;
    let grpc = common::GrpcServer::start().await;
    let edge = Edge::start(&format!(
        r#"
[clusters.echo]
addresses = ["{echo}"]

[clusters.grpc]
addresses = ["{grpc}"]
protocol = "h2c"

[[routes]]
id = "login-http"
path_prefix = "/login"
upstream = "echo"
plugins.rate_limits = [{{ key = "ip", requests = 1, per = "1h", budget = "login" }}]

[[routes]]
id = "login-grpc"
kind = "grpc"
path_prefix = "/grpc.health.v1.Health/"
upstream = "grpc"
plugins.rate_limits = [{{ key = "ip", requests = 1, per = "1h", budget = "login" }}]
"#,
        echo = echo.addr,
        grpc = grpc.addr
    ))
    .await;
    let first = edge
        .client(HttpVersion::Http2)
        .post(edge.url("/login"))
        .send()
        .await
        .expect("http");
    assert_eq!(first.status(), 200);

    let channel = testkit::grpc_tls_channel(edge.https_port, "localhost", &edge.pki.ca_cert_pem)
        .await
        .expect("channel");
    let refused = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect_err("the HTTP request used the budget's one token");
    assert_eq!(refused.code(), testkit::tonic::Code::ResourceExhausted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_add_their_security_headers_unless_the_upstream_set_them() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&format!(
        r#"
[clusters.echo]
addresses = ["{echo}"]

[[routes]]
id = "app"
path_prefix = "/"
upstream = "echo"
security_headers = "browser"

[[routes]]
id = "api"
path_prefix = "/api"
upstream = "echo"

[[routes]]
id = "raw"
path_prefix = "/raw"
upstream = "echo"
security_headers = "off"
"#,
        echo = echo.addr
    ))
    .await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let client = edge.client(version);
        let get = |path: &str| client.get(edge.url(path)).send();
        let page = get("/index.html").await.expect("page");
        let h = page.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{version:?}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
        assert_eq!(h["cross-origin-opener-policy"], "same-origin");
        let csp = h["content-security-policy"].to_str().expect("ascii");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");

        let own = get("/own-csp").await.expect("own");
        assert_eq!(
            own.headers()["content-security-policy"],
            "default-src 'none'"
        );

        let api = get("/api/records").await.expect("api");
        assert_eq!(api.headers()["x-content-type-options"], "nosniff");
        assert!(api.headers().get("content-security-policy").is_none());
        assert!(api.headers().get("x-frame-options").is_none());

        let raw = get("/raw").await.expect("raw");
        assert!(raw.headers().get("x-content-type-options").is_none());
    }
}

/// A client that goes away mid-request (h1: closes its connection; h2: resets its stream) is
/// routine at an edge: the request is still counted, but nothing is logged as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_mid_request_is_not_an_error_in_the_log() {
    let echo = EchoServer::start().await;
    let edge = Edge::start_with(common::EdgeOptions::new(config(&echo, "", ""))).await;

    // h1: the request is sent, then the connection closed while the upstream waits.
    let mut h1 = tls(&edge, b"http/1.1").await.expect("tls");
    h1.write_all(b"GET /slow/300 HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    echo.wait_for_requests(1).await;
    drop(h1);

    // h2: the client gives up on the stream (reqwest's timeout resets it).
    let client = edge.client(HttpVersion::Http2);
    let gave_up = client
        .get(edge.url("/slow/300"))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client was meant to give up");

    edge.wait_for_metric("both abandoned requests recorded", |text| {
        common::metric_sum(text, "edge_requests_total", &["route=\"catch-all\""]) == 2.0
    })
    .await;
    let logs = edge.process.logs();
    // The h2 reset is recorded as what it was, not as a bad request.
    let abandoned: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("\"target\":\"access\"") && line.contains("/slow/300"))
        .collect();
    assert_eq!(abandoned.len(), 2, "{logs}");
    assert!(
        abandoned.iter().all(|line| !line.contains("bad_request")),
        "{abandoned:#?}"
    );
    let errors: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("ERROR") && line.contains("Fail to proxy"))
        .collect();
    assert!(
        errors.is_empty(),
        "error lines for clients that left: {errors:#?}"
    );
}
