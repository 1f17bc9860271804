//! The whole platform through the edge: real auth and records processes on a test
//! database, real Redis, the policy chain (JWT via the auth JWKS, revocation, rate
//! limits, signed identity) on h1, h2, h3 and gRPC.

mod common;

use std::time::{Duration, Instant};

use common::platform::{body, login, Platform};
use record_proto::records::records_service_client::RecordsServiceClient;
use record_proto::records::{CreateRecordRequest, ListRecordsRequest, RecordFields};
use serde_json::json;
use testkit::{reqwest, tonic, HttpVersion, OtlpCollector, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_records_work_over_h1_h2_h3_and_grpc() {
    let platform = Platform::start(None).await;
    let edge = platform.edge("", true).await;
    let h2 = edge.client(HttpVersion::Http2);
    let token = login(&edge, &h2).await;
    let bearer = format!("Bearer {token}");

    // Create over h1, as the original platform's curl example does.
    let (status, created) = body(
        edge.client(HttpVersion::Http1)
            .post(edge.url("/api/records"))
            .header("authorization", &bearer)
            .json(&json!({"artist": "Aphex Twin", "name": "SAW 85-92", "format": "LP"}))
            .send()
            .await
            .expect("create"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();

    // Read it back over h2 (and the identity the service saw is the token's user).
    let (status, me) = body(
        h2.get(edge.url("/api/auth/me"))
            .header("authorization", &bearer)
            .send()
            .await
            .expect("me"),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(created["userId"], me["id"], "{created} vs {me}");

    // Search over h3.
    let h3 = edge.h3().await;
    let found = h3
        .get("/api/records/search?q=aphex", &[("authorization", &bearer)])
        .await
        .expect("h3 search");
    assert_eq!(found.status, 200, "{:?}", found.json());
    assert!(
        found.body.windows(id.len()).any(|w| w == id.as_bytes()),
        "search finds the record"
    );

    // gRPC with the token as metadata, over TLS through the edge.
    let channel = testkit::grpc_tls_channel(edge.https_port, "localhost", &edge.pki.ca_cert_pem)
        .await
        .expect("channel");
    let mut grpc = RecordsServiceClient::new(channel);
    let mut request = tonic::Request::new(CreateRecordRequest {
        fields: Some(RecordFields {
            artist: Some("Boards of Canada".into()),
            name: Some("Geogaddi".into()),
            format: Some("LP".into()),
            ..Default::default()
        }),
    });
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().expect("metadata"));
    let record = grpc
        .create(request)
        .await
        .expect("grpc create")
        .into_inner();
    assert_eq!(record.user_id, created["userId"].as_str().expect("user id"));

    // gRPC without a token never reaches the service.
    let denied = grpc
        .list(ListRecordsRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
}

/// The services' ops endpoints (`/metrics`, `/readyz`, `/healthz`) stay on their internal
/// ports: through the edge they are not routed, whatever the path spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_ops_endpoints_are_not_reachable_through_the_edge() {
    let platform = Platform::start(None).await;
    let edge = platform.edge("", false).await;
    let client = edge.client(HttpVersion::Http1);
    for path in [
        "/api/auth/metrics",
        "/api/auth/readyz",
        "/api/auth/healthz",
        "/api/metrics",
    ] {
        let (status, reply) = body(client.get(edge.url(path)).send().await.expect("request")).await;
        assert_eq!(status, 404, "{path}: {reply}");
        assert_eq!(reply["error"]["code"], "not_found", "{path}");
    }
    // Dot segments sent as they are (curl --path-as-is; reqwest would normalise them) must
    // not climb out of a routed prefix into a service's ops router.
    for path in [
        "/api/records/../metrics",
        "/api/auth/login/../metrics",
        "/api/records/%2e%2e/metrics",
    ] {
        let output = tokio::process::Command::new("curl")
            .args([
                "-s",
                "--path-as-is",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--cacert",
            ])
            .arg(edge.pki.ca_path())
            .arg(edge.url(path))
            .output()
            .await
            .expect("curl");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let (reply, code) = stdout.rsplit_once('\n').expect("status line");
        assert!(
            !reply.contains("# TYPE") && !reply.contains("_total"),
            "{path} reached a metrics endpoint: {reply}"
        );
        assert_ne!(code, "200", "{path}: {reply}");
    }
    // The public API is still routed.
    let (status, _) = body(
        client
            .post(edge.url("/api/auth/register"))
            .json(&serde_json::json!({"email": "ops-check@example.com", "password": "correct horse battery"}))
            .send()
            .await
            .expect("register"),
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_services() {
    let platform = Platform::start(None).await;
    let edge = platform.edge("", false).await;
    let client = edge.client(HttpVersion::Http2);

    // Without a token: the edge answers 401 itself.
    let (status, reply) = body(
        client
            .get(edge.url("/api/records"))
            .header("x-user-id", "00000000-0000-4000-8000-000000000001")
            .header("x-user-assertion", "v2.test-1.9999999999.forged")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["error"]["code"], "token_missing");

    // With a valid token for Alice plus Bob's id spoofed: the request acts as Alice.
    let alice = login(&edge, &client).await;
    let bob = login(&edge, &client).await;
    let (_, bob_me) = body(
        client
            .get(edge.url("/api/auth/me"))
            .header("authorization", format!("Bearer {bob}"))
            .send()
            .await
            .expect("me"),
    )
    .await;
    let (status, alice_me) = body(
        client
            .get(edge.url("/api/auth/me"))
            .header("authorization", format!("Bearer {alice}"))
            .header("x-user-id", bob_me["id"].as_str().expect("bob id"))
            .send()
            .await
            .expect("me"),
    )
    .await;
    assert_eq!(status, 200);
    assert_ne!(
        alice_me["id"], bob_me["id"],
        "the spoofed header was ignored"
    );

    // Straight to the service without the edge: no assertion, 401.
    let direct = reqwest::Client::new()
        .get(platform.records.url("/records"))
        .header("x-user-id", bob_me["id"].as_str().expect("bob id"))
        .send()
        .await
        .expect("direct");
    assert_eq!(direct.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_is_enforced_by_another_edge_promptly() {
    let platform = Platform::start(None).await;
    let edge_a = platform.edge("", false).await;
    let edge_b = platform.edge("", false).await;
    let client_a = edge_a.client(HttpVersion::Http2);
    let client_b = edge_b.client(HttpVersion::Http2);
    let token = login(&edge_a, &client_a).await;
    let bearer = format!("Bearer {token}");
    // Both edges have seen the token live (their negative caches now hold its jti).
    for (edge, client) in [(&edge_a, &client_a), (&edge_b, &client_b)] {
        let resp = client
            .get(edge.url("/api/records"))
            .header("authorization", &bearer)
            .send()
            .await
            .expect("list");
        assert_eq!(resp.status(), 200);
    }
    let logout = client_a
        .post(edge_a.url("/api/auth/logout"))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 204);
    let logged_out = Instant::now();
    // The negative cache would keep the token valid for minutes: only the revocation
    // broadcast can make edge B refuse it this fast.
    loop {
        let (status, reply) = body(
            client_b
                .get(edge_b.url("/api/records"))
                .header("authorization", &bearer)
                .send()
                .await
                .expect("list"),
        )
        .await;
        if status == 401 {
            assert_eq!(reply["error"]["code"], "token_revoked", "{reply}");
            break;
        }
        assert!(
            logged_out.elapsed() < Duration::from_secs(2),
            "edge B still accepts a revoked token after {:?}",
            logged_out.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "revocation seen by the second edge after {:?}",
        logged_out.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_share_one_cluster_quota() {
    let platform = Platform::start(None).await;
    let quota = r#"
[[routes]]
id = "quota"
path_prefix = "/api/auth/.well-known/"
strip_prefix = "/api/auth"
upstream = "auth"
plugins.rate_limits = [{ key = "ip", requests = 40, per = "1h", burst = 0, scope = "cluster" }]
"#;
    let edge_a = platform.edge(quota, false).await;
    let edge_b = platform.edge(quota, false).await;
    let mut admitted = 0;
    let mut limited = 0;
    for round in 0..60 {
        let edge = if round % 2 == 0 { &edge_a } else { &edge_b };
        let resp = edge
            .client(HttpVersion::Http1)
            .get(edge.url("/api/auth/.well-known/jwks.json"))
            .send()
            .await
            .expect("request");
        match resp.status().as_u16() {
            200 => admitted += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(admitted + limited, 60);
    // One quota of 40 for both edges, within ±10 %.
    assert!(
        (36..=44).contains(&admitted),
        "admitted {admitted} of a shared quota of 40"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_follows_fail_mode_and_the_edge_recovers() {
    let mut redis = RedisServer::start().await.expect("private redis");
    let platform = Platform::start(Some(redis.url())).await;
    let open_route = r#"
[[routes]]
id = "records-open"
path_prefix = "/api/records/_ping"
strip_prefix = "/api"
upstream = "records"
plugins.jwt = { mode = "required", revocation_fail_mode = "open" }
"#;
    let edge = platform.edge(open_route, false).await;
    let client = edge.client(HttpVersion::Http2);
    let token = login(&edge, &client).await;
    let bearer = format!("Bearer {token}");
    let get = |path: &'static str| {
        let client = client.clone();
        let url = edge.url(path);
        let bearer = bearer.clone();
        async move {
            body(
                client
                    .get(url)
                    .header("authorization", bearer)
                    .send()
                    .await
                    .expect("request"),
            )
            .await
        }
    };
    assert_eq!(get("/api/records").await.0, 200);

    redis.stop();
    // Fail closed on the default route, open on the other, and the edge stays up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, reply) = get("/api/records").await;
        if status == 503 {
            assert_eq!(reply["error"]["code"], "revocation_unavailable", "{reply}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never failed closed: {status} {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get("/api/records/_ping").await.0,
        200,
        "fail-open route keeps serving"
    );
    let health = edge
        .client(HttpVersion::Http1)
        .get(edge.url("/api/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);

    redis.restart().await.expect("redis back");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if get("/api/records").await.0 == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edge never recovered after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = edge.metrics().await;
    assert!(
        common::metric_sum(&metrics, "edge_revocation_redis_errors_total", &[]) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_links_the_caller_the_edge_the_service_and_postgres() {
    let collector = OtlpCollector::start().await.expect("collector");
    let endpoint = collector.endpoint();
    let platform = Platform::start_with_env(
        None,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_TRACES_SAMPLER_ARG", "1.0"),
        ],
    )
    .await;
    let edge = platform
        .edge(
            &format!("[tracing]\notlp_endpoint = \"{endpoint}\"\n"),
            false,
        )
        .await;
    let client = edge.client(HttpVersion::Http2);
    let token = login(&edge, &client).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let resp = client
        .get(edge.url("/api/records"))
        .header("authorization", format!("Bearer {token}"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await
        .expect("list");
    assert_eq!(resp.status(), 200);

    let in_trace = |spans: &[testkit::CollectedSpan], service: &str| {
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id && s.service == service)
            .cloned()
            .collect::<Vec<_>>()
    };
    let spans = collector
        .wait_for(Duration::from_secs(30), |spans| {
            !in_trace(spans, "edge").is_empty()
                && in_trace(spans, "records")
                    .iter()
                    .any(|s| s.name == "postgres")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", edge.process.logs()));
    let edge_span = in_trace(&spans, "edge").remove(0);
    assert_eq!(
        edge_span.parent_span_id, caller_span,
        "the edge continues the caller's trace"
    );
    let records_spans = in_trace(&spans, "records");
    let request_span = records_spans
        .iter()
        .find(|s| s.parent_span_id == edge_span.span_id)
        .unwrap_or_else(|| panic!("no records span under the edge span: {records_spans:#?}"));
    let db_span = records_spans
        .iter()
        .find(|s| s.name == "postgres")
        .expect("postgres span");
    // The PostgreSQL span sits inside the request span (directly or through a handler span).
    let mut parent = db_span.parent_span_id.clone();
    let mut hops = 0;
    while parent != request_span.span_id {
        parent = records_spans
            .iter()
            .find(|s| s.span_id == parent)
            .map(|s| s.parent_span_id.clone())
            .unwrap_or_else(|| {
                panic!("postgres span is not under the request span: {records_spans:#?}")
            });
        hops += 1;
        assert!(hops < 10, "span chain too deep");
    }
}
