//! The identity assertion is bound to one request: captured on the edge-to-service hop and
//! replayed on another path, with another method or at another service, it is refused
//! (401 / UNAUTHENTICATED), while the request it was made for still works.
//!
//! To capture what the edge sends, "tap" routes forward to an echo server instead of a
//! service but name the service as their `identity_audience`: the edge then mints exactly
//! the assertion that request would carry to that service, and the echo server hands it to
//! the test, as an eavesdropper on the hop would see it.

mod common;

use common::platform::{body, login, Platform};
use common::EchoServer;
use record_proto::auth::auth_service_client::AuthServiceClient;
use record_proto::auth::MeRequest;
use record_proto::records::records_service_client::RecordsServiceClient;
use record_proto::records::{ListRecordsRequest, StatsRequest};
use serde_json::{json, Value};
use testkit::{reqwest, tonic, HttpVersion};

const IDENTITY_HEADERS: [&str; 4] = [
    "x-user-id",
    "x-user-email",
    "x-user-jti",
    "x-user-assertion",
];

fn tap_routes(echo_port: u16) -> String {
    format!(
        r#"
[clusters.tap-records]
addresses = ["127.0.0.1:{echo_port}"]
identity_audience = "records"

[clusters.tap-auth]
addresses = ["127.0.0.1:{echo_port}"]
identity_audience = "auth"

[[routes]]
id = "tap-records"
path_prefix = "/tap/records"
strip_prefix = "/tap"
upstream = "tap-records"
plugins.jwt = {{ mode = "required" }}

[[routes]]
id = "tap-records-me"
path_prefix = "/tap/me"
strip_prefix = "/tap"
upstream = "tap-records"
plugins.jwt = {{ mode = "required" }}

[[routes]]
id = "tap-auth"
path_prefix = "/tap-auth/me"
strip_prefix = "/tap-auth"
upstream = "tap-auth"
plugins.jwt = {{ mode = "required" }}

[[routes]]
id = "tap-records-grpc"
kind = "grpc"
path_prefix = "/tap/records.RecordsService/"
strip_prefix = "/tap"
upstream = "tap-records"
plugins.jwt = {{ mode = "required" }}
"#
    )
}

/// What the echo server received for `request`: its path, query and identity headers.
async fn capture(request: reqwest::RequestBuilder) -> (Value, Vec<(&'static str, String)>) {
    let (status, echoed) = body(request.send().await.expect("tap request")).await;
    assert_eq!(status, 200, "{echoed}");
    let headers = IDENTITY_HEADERS
        .iter()
        .map(|name| {
            let value = echoed["headers"][*name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} missing from {echoed}"));
            (*name, value.to_string())
        })
        .collect();
    (echoed, headers)
}

fn replay(
    request: reqwest::RequestBuilder,
    captured: &[(&'static str, String)],
) -> reqwest::RequestBuilder {
    captured.iter().fold(request, |request, (name, value)| {
        request.header(*name, value)
    })
}

fn grpc_replay<T>(message: T, captured: &[(&'static str, String)]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (name, value) in captured {
        request
            .metadata_mut()
            .insert(*name, value.parse().expect("metadata value"));
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_assertion_opens_only_the_request_it_was_made_for() {
    let platform = Platform::start(None).await;
    let echo = EchoServer::start().await;
    let edge = platform.edge(&tap_routes(echo.addr.port()), false).await;
    let client = edge.client(HttpVersion::Http2);
    let bearer = format!("Bearer {}", login(&edge, &client).await);
    let direct = reqwest::Client::new();
    let records = |path: &str| platform.records.url(path);
    let auth = |path: &str| platform.auth.url(path);

    // GET /records?limit=5 as records receives it (the edge strips /tap).
    let (echoed, list) = capture(
        client
            .get(edge.url("/tap/records?limit=5"))
            .header("authorization", &bearer),
    )
    .await;
    assert_eq!(
        (echoed["path"].as_str(), echoed["query"].as_str()),
        (Some("/records"), Some("limit=5")),
        "{echoed}"
    );
    let replayed = |request| replay(request, &list);
    let status = |response: reqwest::Response| response.status().as_u16();
    // The request it was made for works...
    let original = replayed(direct.get(records("/records?limit=5")))
        .send()
        .await
        .expect("original");
    assert_eq!(status(original), 200);
    // ...and nothing else: another path, another query, another method.
    for (what, request) in [
        (
            "another path",
            replayed(direct.get(records("/records/stats"))),
        ),
        (
            "another query",
            replayed(direct.get(records("/records?limit=500"))),
        ),
        ("no query", replayed(direct.get(records("/records")))),
        (
            "another method",
            replayed(direct.post(records("/records?limit=5")))
                .json(&json!({"artist": "A", "name": "B", "format": "LP"})),
        ),
    ] {
        let response = request.send().await.expect(what);
        assert_eq!(status(response), 401, "{what}");
    }

    // Another service: GET /me signed for records, replayed at auth, is refused; the same
    // request signed for auth works.
    for (tap, expected) in [("/tap/me", 401), ("/tap-auth/me", 200)] {
        let (_, me) = capture(client.get(edge.url(tap)).header("authorization", &bearer)).await;
        let response = replay(direct.get(auth("/me")), &me)
            .send()
            .await
            .expect("me at auth");
        assert_eq!(
            status(response),
            expected,
            "GET /me at auth signed via {tap}"
        );
    }

    // gRPC: the assertion for records.RecordsService/List opens List only.
    let (echoed, grpc_list) = capture(
        client
            .post(edge.url("/tap/records.RecordsService/List"))
            .header("authorization", &bearer)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Vec::new()),
    )
    .await;
    assert_eq!(echoed["path"], "/records.RecordsService/List", "{echoed}");
    let mut records_grpc =
        RecordsServiceClient::new(platform.records.channel().await.expect("records gRPC"));
    records_grpc
        .list(grpc_replay(ListRecordsRequest::default(), &grpc_list))
        .await
        .expect("the call the assertion was made for");
    let code = records_grpc
        .stats(grpc_replay(StatsRequest {}, &grpc_list))
        .await
        .expect_err("another method")
        .code();
    assert_eq!(code, tonic::Code::Unauthenticated, "another gRPC method");
    let channel = platform.auth.channel().await.expect("auth gRPC");
    let code = AuthServiceClient::new(channel)
        .me(grpc_replay(MeRequest {}, &grpc_list))
        .await
        .expect_err("another service")
        .code();
    assert_eq!(code, tonic::Code::Unauthenticated, "another gRPC service");
}
