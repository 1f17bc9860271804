//! Hot reload (SIGHUP and file watch) and `edge check`.

mod common;

use std::process::Command;

use common::{metric_sum, EchoServer, Edge, EdgeOptions};
use testkit::HttpVersion;

fn routes(echo: &EchoServer, extra: &str) -> String {
    format!(
        r#"
[clusters.echo]
addresses = ["{echo}"]

[[routes]]
id = "main"
path_prefix = "/main"
upstream = "echo"

[[routes]]
id = "slow"
path_prefix = "/slow"
upstream = "echo"
{extra}
"#,
        echo = echo.addr
    )
}

const BROKEN_ROUTE: &str = r#"
[[routes]]
id = "added"
path_prefix = "/api/added"
upstream = "ecoh"
"#;

const NEW_ROUTE: &str = r#"
[[routes]]
id = "added"
path_prefix = "/api/added"
strip_prefix = "/api"
upstream = "echo"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_rejected_on_sighup_while_traffic_keeps_flowing() {
    let echo = EchoServer::start().await;
    let mut options = EdgeOptions::new(routes(&echo, ""));
    options.server_extra = "watch = false".into();
    let edge = Edge::start_with(options).await;
    let client = edge.client(HttpVersion::Http2);

    // A request in flight across both reloads: the upstream holds it for 3 s.
    let slow_client = client.clone();
    let slow_url = edge.url("/slow/3000/x");
    let in_flight =
        tokio::spawn(async move { slow_client.get(slow_url).send().await.map(|r| r.status()) });
    echo.wait_for_requests(1).await;

    let mut broken = EdgeOptions::new(routes(&echo, BROKEN_ROUTE));
    broken.server_extra = "watch = false".into();
    edge.write_config(&broken);
    edge.process.signal(libc::SIGHUP).expect("sighup");
    edge.wait_for_metric("rejected reload counted", |m| {
        metric_sum(m, "edge_config_reloads_total", &["result=\"rejected\""]) >= 1.0
    })
    .await;
    assert!(
        edge.process.logs().contains("unknown cluster 'ecoh'"),
        "the log names the problem"
    );
    assert_eq!(
        client
            .get(edge.url("/main/x"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
    assert_eq!(
        client
            .get(edge.url("/api/added"))
            .send()
            .await
            .expect("request")
            .status(),
        404
    );
    assert_eq!(
        metric_sum(&edge.metrics().await, "edge_config_version", &[]),
        1.0
    );

    let mut fixed = EdgeOptions::new(routes(&echo, NEW_ROUTE));
    fixed.server_extra = "watch = false".into();
    edge.write_config(&fixed);
    edge.process.signal(libc::SIGHUP).expect("sighup");
    edge.wait_for_metric("applied reload", |m| {
        metric_sum(m, "edge_config_version", &[]) == 2.0
    })
    .await;
    let added = client
        .get(edge.url("/api/added/1"))
        .send()
        .await
        .expect("request");
    assert_eq!(added.status(), 200);
    let body: serde_json::Value =
        serde_json::from_str(&added.text().await.expect("body")).expect("json");
    assert_eq!(body["path"], "/added/1");

    // Accepted under config version 1, it completes after two reloads.
    assert_eq!(
        in_flight.await.expect("join").expect("in-flight request"),
        200
    );
}

#[tokio::test]
async fn editing_the_config_file_reloads_it() {
    let echo = EchoServer::start().await;
    let edge = Edge::start(&routes(&echo, "")).await;
    let client = edge.client(HttpVersion::Http1);
    assert_eq!(
        client
            .get(edge.url("/api/added"))
            .send()
            .await
            .expect("request")
            .status(),
        404
    );
    edge.write_config(&EdgeOptions::new(routes(&echo, NEW_ROUTE)));
    edge.wait_for_metric("watcher reload", |m| {
        metric_sum(m, "edge_config_version", &[]) == 2.0
    })
    .await;
    assert_eq!(
        client
            .get(edge.url("/api/added"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
}

fn edge_check(config: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bad-edge.toml");
    std::fs::write(&path, config).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run edge check");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn edge_check_reports_file_line_and_key_of_a_typo() {
    let (code, _, stderr) = edge_check(
        r#"[clusters.records]
addresses = ["127.0.0.1:4002"]

[[routes]]
id = "records"
path_prefix = "/api/records"
upstream = "recrods"
"#,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("bad-edge.toml:7: routes[0].upstream: unknown cluster 'recrods' (did you mean 'records'?)"),
        "{stderr}"
    );
}

#[test]
fn edge_check_prints_the_effective_config_with_secrets_redacted() {
    let (code, stdout, stderr) = edge_check(
        r#"[clusters.records]
addresses = ["127.0.0.1:4002"]

[plugins.redis]
url = "redis://edge:s3cr3t@127.0.0.1:6379"

[[routes]]
id = "records"
upstream = "records"
"#,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("[listeners.https]"), "{stdout}");
    assert!(
        stdout.contains("max_request_headers = 100"),
        "defaults are printed: {stdout}"
    );
    assert!(!stdout.contains("s3cr3t"), "{stdout}");
}
