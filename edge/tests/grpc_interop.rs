//! gRPC interop with an independent client: grpcio (PyPI, gRPC C-core) calls through the
//! edge over TLS + h2. Edge-made answers must be proper trailers-only responses — ONE
//! HEADERS frame with END_STREAM (gRPC over HTTP/2) — or C-core reports
//! `UNKNOWN: Stream removed` instead of the status the edge meant.
//!
//! The client lives in `.dev/tools/interop/venv`, installed by `scripts/interop-tools.sh`
//! (which `make test` runs).

mod common;

use common::{closed_port, jwt_plugin, tool_python, Edge, GrpcServer};

/// Calls each path once with grpcio; returns (code, details) per path. Async: the
/// upstream gRPC server runs on this test's runtime and must keep serving meanwhile.
async fn grpcio_calls(edge: &Edge, paths: &[&str]) -> Vec<(String, String)> {
    let script = testkit::workspace_root().join("edge/tests/interop/grpc_call.py");
    let ca = edge.pki.ca_path();
    let target = format!("127.0.0.1:{}", edge.https_port);
    let output = tokio::process::Command::new(tool_python("interop"))
        .arg(&script)
        .arg(&target)
        .arg(&ca)
        .arg("localhost")
        .args(paths)
        .output()
        .await
        .expect("run grpc_call.py");
    assert!(
        output.status.success(),
        "grpc_call.py failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        edge.process.logs()
    );
    let results: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("grpc_call.py prints JSON");
    results
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap_or_default().to_string(),
                r["details"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn grpcio_reads_the_status_of_every_edge_made_grpc_answer() {
    let grpc = GrpcServer::start().await;
    let keys = tempfile::tempdir().expect("dir");
    let body = format!(
        r#"
[clusters.grpc]
addresses = ["{grpc}"]
protocol = "h2c"

[clusters.grpc-down]
addresses = ["127.0.0.1:{closed}"]
protocol = "h2c"
required = false

{jwt}

[[routes]]
id = "protected"
kind = "grpc"
path_prefix = "/grpc.health.v1.Health/"
upstream = "grpc"
plugins.jwt = {{ mode = "required" }}

[[routes]]
id = "limited"
kind = "grpc"
path_prefix = "/limited.Service/"
upstream = "grpc"
plugins.rate_limits = [{{ key = "ip", requests = 1, per = "1m", burst = 0 }}]

[[routes]]
id = "down"
kind = "grpc"
path_prefix = "/down.Service/"
upstream = "grpc-down"
"#,
        grpc = grpc.addr,
        closed = closed_port(),
        jwt = jwt_plugin(keys.path()),
    );
    let edge = Edge::start(&body).await;

    let results = grpcio_calls(
        &edge,
        &[
            "/grpc.health.v1.Health/Check",
            // The first call is let through: the upstream's own UNIMPLEMENTED comes back.
            "/limited.Service/Call",
            "/limited.Service/Call",
            "/down.Service/Call",
            "/nowhere.Service/Call",
        ],
    )
    .await;
    let codes: Vec<&str> = results.iter().map(|(code, _)| code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "UNAUTHENTICATED",
            "UNIMPLEMENTED",
            "RESOURCE_EXHAUSTED",
            "UNAVAILABLE",
            "UNIMPLEMENTED",
        ],
        "grpcio saw {results:?}"
    );
    for (code, details) in &results {
        assert!(
            !details.contains("Stream removed"),
            "{code}: C-core did not read a trailers-only response: {details}"
        );
    }
    assert!(
        results[0].1.to_lowercase().contains("token"),
        "the edge's grpc-message reaches the client: {:?}",
        results[0]
    );
}
