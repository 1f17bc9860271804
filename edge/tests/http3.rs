//! HTTP/3 end to end: a tokio-quiche client against the edge's QUIC listener, through the
//! same routes, policy and upstreams as h1/h2.

mod common;

use std::net::SocketAddr;

use common::{closed_port, jwt_plugin, metric_sum, EchoServer, Edge, EdgeOptions, H3Hold};
use perf::h3client::H3Connection;
use testkit::{reqwest, HttpVersion};

async fn start(echo: &EchoServer) -> Edge {
    let keys = tempfile::tempdir().expect("dir");
    let body = format!(
        r#"
[clusters.echo]
addresses = ["{echo}"]

[clusters.down]
addresses = ["127.0.0.1:{closed}"]
required = false

{jwt}

[[routes]]
id = "public"
path_prefix = "/api/public"
strip_prefix = "/api"
upstream = "echo"

[[routes]]
id = "protected"
path_prefix = "/api/records"
strip_prefix = "/api"
upstream = "echo"
plugins.jwt = {{ mode = "required" }}

[[routes]]
id = "limited"
path_prefix = "/api/limited"
upstream = "echo"
plugins.rate_limits = [{{ key = "ip", requests = 2, per = "1m", burst = 0 }}]

[[routes]]
id = "down"
path_prefix = "/api/down"
upstream = "down"

[[routes]]
id = "slow"
path_prefix = "/slow"
upstream = "echo"
"#,
        echo = echo.addr,
        closed = closed_port(),
        jwt = jwt_plugin(keys.path()),
    );
    let edge = Edge::start_with(EdgeOptions::new(body).with_http3()).await;
    // The key file must outlive start-up only; the edge loaded it.
    drop(keys);
    edge
}

async fn h3(edge: &Edge) -> H3Connection {
    let addr: SocketAddr = format!("127.0.0.1:{}", edge.https_port)
        .parse()
        .expect("addr");
    H3Connection::connect(addr, "localhost", Some(&edge.pki.ca_path()))
        .await
        .unwrap_or_else(|e| panic!("HTTP/3 connect failed: {e:#}\n{}", edge.process.logs()))
}

#[tokio::test]
async fn get_and_post_over_http3_reach_the_upstream() {
    let echo = EchoServer::start().await;
    let edge = start(&echo).await;
    let conn = h3(&edge).await;

    let get = conn
        .get("/api/public/item?x=1", &[("x-user-id", "spoofed")])
        .await
        .expect("GET");
    assert_eq!(get.status, 200);
    let body = get.json().expect("json");
    assert_eq!(body["method"], "GET");
    assert_eq!(body["path"], "/public/item");
    assert_eq!(body["query"], "x=1");
    assert!(
        body["headers"].get("x-user-id").is_none(),
        "identity header must be stripped"
    );
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    assert!(get.headers.contains_key("strict-transport-security"));
    assert!(
        !get.headers.contains_key("alt-svc"),
        "no alt-svc on h3 itself"
    );

    let payload = vec![b'z'; 100_000];
    let post = conn
        .post(
            "/api/public/upload",
            &[("content-type", "application/octet-stream")],
            payload,
        )
        .await
        .expect("POST");
    assert_eq!(post.status, 200);
    assert_eq!(post.json().expect("json")["bodyLength"], 100_000);

    // Several requests in parallel on one connection.
    let parallel = futures::future::join_all((0..20).map(|i| {
        let conn = conn.clone();
        async move { conn.get(&format!("/api/public/{i}"), &[]).await }
    }))
    .await;
    for (i, response) in parallel.into_iter().enumerate() {
        let response = response.expect("parallel GET");
        assert_eq!(
            response.json().expect("json")["path"],
            format!("/public/{i}")
        );
    }

    let metrics = edge.metrics().await;
    assert!(
        metric_sum(
            &metrics,
            "edge_requests_total",
            &["protocol=\"h3\"", "route=\"public\""]
        ) >= 22.0
    );
    assert!(metric_sum(&metrics, "edge_quic_connections_total", &[]) >= 1.0);
}

/// The requests of one QUIC connection share one task in the edge: a request waiting on a
/// slow upstream must not hold up the others on its connection.
#[tokio::test]
async fn a_slow_request_does_not_hold_up_the_others_on_its_connection() {
    let echo = EchoServer::start().await;
    let edge = start(&echo).await;
    let conn = h3(&edge).await;
    // The upstream answers this one in 60 s, far past the test's own limit.
    let slow = conn.get("/slow/60000", &[]);
    tokio::pin!(slow);
    let fast = async {
        echo.wait_for_requests(1).await;
        conn.get("/api/public/fast", &[]).await
    };
    let fast = tokio::select! {
        biased;
        fast = fast => fast.expect("fast GET"),
        slow = &mut slow => panic!("the slow request finished first: {:?}", slow.map(|r| r.status)),
    };
    assert_eq!(fast.status, 200);
    assert_eq!(fast.json().expect("json")["path"], "/public/fast");
    // Both went to the upstream over the one connection; the slow one is still waiting.
    assert_eq!(echo.received.load(std::sync::atomic::Ordering::SeqCst), 2);
    let metrics = edge.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "edge_quic_connections_total", &[]),
        1.0
    );
}
#[tokio::test]
async fn http3_errors_and_policies_match_http2() {
    let echo = EchoServer::start().await;
    let edge = start(&echo).await;
    let conn = h3(&edge).await;
    let h2 = edge.client(HttpVersion::Http2);

    for (path, status, code) in [
        ("/api/records", 401, "token_missing"),
        ("/nowhere", 404, "not_found"),
        ("/api/down/x", 502, "upstream_unreachable"),
    ] {
        let over_h3 = conn.get(path, &[]).await.expect("h3 request");
        let over_h2 = h2.get(edge.url(path)).send().await.expect("h2 request");
        assert_eq!(over_h3.status.as_u16(), status, "h3 {path}");
        assert_eq!(over_h2.status().as_u16(), status, "h2 {path}");
        let h3_body = over_h3.json().expect("h3 json");
        let h2_body: serde_json::Value =
            serde_json::from_str(&over_h2.text().await.expect("body")).expect("h2 json");
        assert_eq!(h3_body["error"]["code"], code, "h3 {path}");
        assert_eq!(h3_body["error"]["code"], h2_body["error"]["code"], "{path}");
        if status == 401 {
            assert!(over_h3.headers["www-authenticate"]
                .to_str()
                .expect("ascii")
                .starts_with("Bearer"));
        }
    }
}

#[tokio::test]
async fn http3_shares_the_rate_limit_with_other_protocols() {
    let echo = EchoServer::start().await;
    let edge = start(&echo).await;
    let conn = h3(&edge).await;
    // Two requests allowed per minute per IP, counted across h3 and h2.
    assert_eq!(
        conn.get("/api/limited/a", &[]).await.expect("first").status,
        200
    );
    let second = edge
        .client(HttpVersion::Http2)
        .get(edge.url("/api/limited/b"))
        .send()
        .await
        .expect("second");
    assert_eq!(second.status(), 200);
    let third = conn.get("/api/limited/c", &[]).await.expect("third");
    assert_eq!(third.status, 429);
    assert_eq!(third.json().expect("json")["error"]["code"], "rate_limited");
    let retry_after: u64 = third.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
}

/// Runs `edge/tests/interop/h3_request.py` (aioquic) once; returns its JSON answer.
async fn aioquic(
    edge: &Edge,
    method: &str,
    path: &str,
    body: &str,
    headers: &[&str],
) -> serde_json::Value {
    common::aioquic(edge, None, method, path, body, headers).await
}

/// aioquic (PyPI), an HTTP/3 stack independent of quiche, through the same proxy path:
/// proxied GET and a 1 MiB upload, edge-made JSON errors, a gRPC answer without a token,
/// and a gRPC call to a real tonic backend whose trailers come back over HTTP/3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_gets_the_same_answers_as_our_client() {
    let echo = EchoServer::start().await;
    let grpc = common::GrpcServer::start().await;
    let keys = tempfile::tempdir().expect("dir");
    let body = format!(
        r#"
[clusters.echo]
addresses = ["{echo}"]

[clusters.grpc]
addresses = ["{grpc}"]
protocol = "h2c"

{jwt}

[[routes]]
id = "public"
path_prefix = "/api/public"
strip_prefix = "/api"
upstream = "echo"

[[routes]]
id = "protected"
path_prefix = "/api/records"
upstream = "echo"
plugins.jwt = {{ mode = "required" }}

[[routes]]
id = "health"
kind = "grpc"
path_prefix = "/grpc.health.v1.Health/"
upstream = "grpc"
"#,
        echo = echo.addr,
        grpc = grpc.addr,
        jwt = jwt_plugin(keys.path()),
    );
    let edge = Edge::start_with(EdgeOptions::new(body).with_http3()).await;

    let get = aioquic(&edge, "GET", "/api/public/item?x=1", "0", &[]).await;
    assert_eq!(get["status"], 200, "{get}");
    let echoed: serde_json::Value =
        serde_json::from_str(get["body"].as_str().expect("text")).expect("echo JSON");
    assert_eq!(echoed["path"], "/public/item");
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");

    let upload = aioquic(&edge, "POST", "/api/public/upload", "1048576", &[]).await;
    let echoed: serde_json::Value =
        serde_json::from_str(upload["body"].as_str().expect("text")).expect("echo JSON");
    assert_eq!(echoed["bodyLength"], 1 << 20);

    let missing = aioquic(&edge, "GET", "/api/records", "0", &[]).await;
    assert_eq!(missing["status"], 401);
    let error: serde_json::Value =
        serde_json::from_str(missing["body"].as_str().expect("text")).expect("error JSON");
    assert_eq!(error["error"]["code"], "token_missing");

    let nowhere = aioquic(&edge, "GET", "/nowhere", "0", &[]).await;
    assert_eq!(nowhere["status"], 404);

    // grpc.health.v1.HealthCheckRequest { service: "" } is an empty message: a 5-byte
    // gRPC frame of zeros. The answer's grpc-status travels in HTTP/3 trailers.
    let check = aioquic(
        &edge,
        "POST",
        "/grpc.health.v1.Health/Check",
        "hex:0000000000",
        &["content-type:application/grpc", "te:trailers"],
    )
    .await;
    assert_eq!(check["status"], 200, "{check}");
    assert_eq!(check["trailers"]["grpc-status"], "0", "{check}");
    assert!(
        check["body_length"].as_u64().expect("length") >= 5,
        "{check}"
    );
}

/// Browsers try `localhost` as `::1` first: with `extra_addresses = ["[::1]:<port>"]` (the dev
/// config) the same port answers there over TCP (h2) and UDP (h3).
#[tokio::test]
async fn the_ipv6_loopback_is_served_over_tcp_and_quic_on_the_same_port() {
    let echo = EchoServer::start().await;
    let body = format!(
        "[clusters.echo]\naddresses = [\"{}\"]\n\n[[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"echo\"\n",
        echo.addr
    );
    let edge = Edge::start_with(EdgeOptions::new(body).with_http3().with_ipv6_loopback()).await;
    let v6: SocketAddr = format!("[::1]:{}", edge.https_port).parse().expect("addr");
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .resolve("localhost", v6)
        .http2_prior_knowledge();
    for ca in reqwest::Certificate::from_pem_bundle(edge.pki.ca_cert_pem.as_bytes()).expect("ca") {
        builder = builder.add_root_certificate(ca);
    }
    let client = builder.build().expect("client");
    let response = client
        .get(edge.url("/over-v6"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("h2 to {v6}: {e}\n{}", edge.process.logs()));
    assert_eq!(response.status(), 200);
    let echoed: serde_json::Value = response.json().await.expect("json");
    assert_eq!(echoed["path"], "/over-v6");

    let h3 = H3Connection::connect(v6, "localhost", Some(&edge.pki.ca_path()))
        .await
        .unwrap_or_else(|e| panic!("h3 to {v6}: {e:#}\n{}", edge.process.logs()));
    let response = h3.get("/over-v6", &[]).await.expect("h3 request");
    assert_eq!(response.status, 200);
}

/// RFC 9000 §9: a client whose address changes — a NAT rebinding (same connection ID) or
/// an active migration (a new connection ID) — keeps its connection; aioquic moves to a
/// new UDP port mid-connection while it sends a request every 50 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_moves_to_a_new_port_keeps_its_connection() {
    let echo = EchoServer::start().await;
    let edge = start(&echo).await;
    let moves: [(&str, &[(&str, &str)]); 2] = [
        ("NAT rebinding", &[("H3_REBIND_AT", "1")]),
        (
            "active migration",
            &[("H3_REBIND_AT", "1"), ("H3_REBIND_NEW_CID", "1")],
        ),
    ];
    for (what, env) in moves {
        let hold = H3Hold::start(&edge, "/api/public/moving", 3.0, 0.05, env).await;
        let report = hold.report().await;
        assert_eq!(report["failed"], serde_json::json!([]), "{what}: {report}");
        assert_eq!(
            report["terminated"],
            serde_json::Value::Null,
            "{what}: {report}"
        );
        let ports = report["ports"].as_array().cloned().unwrap_or_default();
        assert!(ports.len() == 2 && ports[0] != ports[1], "{what}: {report}");
        assert!(
            report["ok_after_rebind"].as_u64().unwrap_or(0) > 0,
            "{what}: requests flowed on the new path: {report}"
        );
    }
    let migrated = edge
        .counter("edge_quic_path_events_total", &["event=\"peer_migrated\""])
        .await;
    assert!(
        migrated >= 2.0,
        "both moves were seen as migrations: {migrated}"
    );
}
