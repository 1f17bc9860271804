//! Safe 0-RTT (RFC 8470) end to end, with aioquic resuming a session and sending its
//! request in early data (`edge/tests/interop/h3_early_data.py`): which early requests
//! are served, the `425 Too Early` the others get and their retry after the handshake,
//! `Early-Data: 1` to the origin, a replayed flight refused, and tickets that do not cross
//! processes.

mod common;

use std::sync::atomic::Ordering;

use common::{metric_sum, EchoServer, Edge, EdgeOptions};

/// An edge that accepts 0-RTT, with one route that serves early data and one that does not.
async fn start(echo: &EchoServer) -> Edge {
    let body = format!(
        r#"
[http3]
enable_0rtt = true

[clusters.echo]
addresses = ["{echo}"]

[[routes]]
id = "early"
path_prefix = "/early"
upstream = "echo"
early_data = true

[[routes]]
id = "late"
path_prefix = "/late"
upstream = "echo"
"#,
        echo = echo.addr,
    );
    Edge::start_with(EdgeOptions::new(body).with_http3()).await
}

/// Runs `h3_early_data.py` against `edge`; returns its JSON report.
async fn resume_with_early_data(
    edge: &Edge,
    method: &str,
    path: &str,
    env: &[(&str, String)],
) -> serde_json::Value {
    let root = testkit::workspace_root();
    let output = tokio::process::Command::new(common::tool_python("interop"))
        .arg(root.join("edge/tests/interop/h3_early_data.py"))
        .args(["127.0.0.1", &edge.https_port.to_string()])
        .arg(edge.pki.ca_path())
        .args([
            "localhost",
            method,
            path,
            if method == "POST" { "64" } else { "0" },
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .expect("run h3_early_data.py");
    assert!(
        output.status.success(),
        "h3_early_data.py {method} {path}: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        edge.process.logs()
    );
    serde_json::from_slice(&output.stdout).expect("h3_early_data.py prints JSON")
}

/// The origin's echo of one answer in the report (`early` or `retry`).
fn echoed(report: &serde_json::Value, which: &str) -> serde_json::Value {
    let body = report[which]["body"]
        .as_str()
        .unwrap_or_else(|| panic!("{which}: {report}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{which} is not the echo ({e}): {report}"))
}

fn early_data_count(metrics: &str, outcome: &str) -> f64 {
    metric_sum(
        metrics,
        "edge_quic_early_data_total",
        &[&format!("outcome=\"{outcome}\"")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_on_an_early_data_route_is_served_in_0rtt_with_early_data_1_upstream() {
    let echo = EchoServer::start().await;
    let edge = start(&echo).await;

    let report = resume_with_early_data(&edge, "GET", "/early/item", &[]).await;
    assert_eq!(report["session_resumed"], true, "{report}");
    assert_eq!(report["early_data_accepted"], true, "{report}");
    assert_eq!(report["early"]["status"], 200, "{report}");
    let origin = echoed(&report, "early");
    assert_eq!(origin["path"], "/early/item");
    // The client sent `early-data: client`; the edge replaced it with its own word.
    assert_eq!(origin["headers"]["early-data"], "1", "{origin}");
    assert_eq!(echo.received.load(Ordering::SeqCst), 1);

    let metrics = edge.metrics().await;
    assert_eq!(early_data_count(&metrics, "accepted"), 1.0, "{metrics}");
    assert!(
        edge.process.logs().contains("\"early_data\":\"accepted\""),
        "the access log marks the request\n{}",
        edge.process.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_in_early_data_gets_425_and_is_served_once_after_the_handshake() {
    let echo = EchoServer::start().await;
    let edge = start(&echo).await;

    let report = resume_with_early_data(&edge, "POST", "/early/orders", &[]).await;
    assert_eq!(report["early_data_accepted"], true, "{report}");
    assert_eq!(report["early"]["status"], 425, "{report}");
    let error: serde_json::Value =
        serde_json::from_str(report["early"]["body"].as_str().expect("text")).expect("JSON");
    assert_eq!(error["error"]["code"], "too_early", "{error}");

    assert_eq!(report["retry"]["status"], 200, "{report}");
    let origin = echoed(&report, "retry");
    assert_eq!(origin["method"], "POST");
    assert_eq!(origin["bodyLength"], 64);
    assert!(
        origin["headers"].get("early-data").is_none(),
        "a request after the handshake carries no Early-Data, whatever the client sent: {origin}"
    );
    assert_eq!(
        echo.received.load(Ordering::SeqCst),
        1,
        "the origin saw it once"
    );
    assert_eq!(early_data_count(&edge.metrics().await, "too_early"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_in_early_data_on_a_route_without_early_data_gets_425() {
    let echo = EchoServer::start().await;
    let edge = start(&echo).await;

    let report = resume_with_early_data(&edge, "GET", "/late/item", &[]).await;
    assert_eq!(report["early_data_accepted"], true, "{report}");
    assert_eq!(report["early"]["status"], 425, "{report}");
    assert_eq!(report["retry"]["status"], 200, "{report}");
    let origin = echoed(&report, "retry");
    assert!(origin["headers"].get("early-data").is_none(), "{origin}");
    assert_eq!(echo.received.load(Ordering::SeqCst), 1);
    assert_eq!(early_data_count(&edge.metrics().await, "too_early"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_0rtt_flight_is_refused() {
    let echo = EchoServer::start().await;
    let edge = start(&echo).await;

    // The genuine connection's early GET is served; then its datagrams are sent again,
    // verbatim, from another socket.
    let report =
        resume_with_early_data(&edge, "GET", "/early/once", &[("H3_MODE", "replay".into())]).await;
    assert_eq!(report["early"]["status"], 200, "{report}");
    assert_eq!(
        echoed(&report, "early")["headers"]["early-data"],
        "1",
        "{report}"
    );
    assert!(report["replayed_datagrams"].as_u64() >= Some(2), "{report}");

    // The replay is decided when its early request reaches the proxy; wait for that (or
    // for the origin to see the request a second time, which is the failure).
    let deadline = tokio::time::Instant::now() + common::READY_TIMEOUT;
    loop {
        let replayed = early_data_count(&edge.metrics().await, "replayed");
        if replayed >= 1.0 || echo.received.load(Ordering::SeqCst) > 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replay was never decided\n{}",
            edge.process.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        echo.received.load(Ordering::SeqCst),
        1,
        "the origin must see the early request once, not once per replay"
    );
    let metrics = edge.metrics().await;
    assert_eq!(early_data_count(&metrics, "replayed"), 1.0, "{metrics}");
    assert_eq!(early_data_count(&metrics, "accepted"), 1.0, "{metrics}");
}

/// Why the replay record need not be shared with an upgrade's successor: a session ticket
/// one edge process issued cannot be resumed by another (each QUIC SSL context draws its
/// own ticket key), so the other process accepts no 0-RTT from it and serves the request
/// after a full handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_from_another_edge_process_gets_no_0rtt() {
    let echo = EchoServer::start().await;
    let issuer = start(&echo).await;
    let other = start(&echo).await;

    let resume_at = format!("{}:{}", other.https_port, other.pki.ca_path().display());
    let report = resume_with_early_data(
        &issuer,
        "GET",
        "/early/item",
        &[("H3_RESUME_AT", resume_at)],
    )
    .await;
    assert_eq!(report["session_resumed"], false, "{report}");
    assert_eq!(report["early_data_accepted"], false, "{report}");
    assert_eq!(report["early"]["status"], 200, "{report}");
    let origin = echoed(&report, "early");
    assert!(origin["headers"].get("early-data").is_none(), "{origin}");
    assert_eq!(
        early_data_count(&other.metrics().await, "accepted"),
        0.0,
        "nothing reached the other process in early data"
    );
}
