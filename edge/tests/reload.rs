//! Hot reload (SIGHUP and file watch) and `edge check`.

mod common;

use std::process::Command;

use common::{metric_sum, EchoServer, Edge, EdgeOptions, SigningKey};
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

fn jwt_config(echo: &EchoServer, key: &SigningKey, issuer: &str) -> EdgeOptions {
    let mut options = EdgeOptions::new(format!(
        r#"
[clusters.echo]
addresses = ["{echo}"]

[plugins.jwt]
issuer = "{issuer}"
audience = "record-platform"
static_keys = [{{ kid = "k1", algorithm = "EdDSA", pem_file = "{key}" }}]

[[routes]]
id = "protected"
path_prefix = "/api"
upstream = "echo"
plugins.jwt = {{ mode = "required" }}
"#,
        echo = echo.addr,
        key = key.public_pem.display(),
    ));
    options.server_extra = "watch = false".into();
    options
}

/// The one-snapshot rule: a reload that changes the JWT issuer AND names a broken
/// certificate is rejected as a whole — the old issuer is still the one enforced — while
/// the same issuer change with a good certificate takes effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_reload_changes_no_policy_setting() {
    let echo = EchoServer::start().await;
    let keys = tempfile::tempdir().expect("dir");
    let key = SigningKey::new(keys.path());
    let edge = Edge::start_with(jwt_config(&echo, &key, "issuer-a")).await;
    let client = edge.client(HttpVersion::Http2);
    let status_with = |issuer: &'static str| {
        let client = client.clone();
        let url = edge.url("/api/x");
        let bearer = key.token(issuer, "00000000-0000-0000-0000-000000000001");
        async move {
            client
                .get(url)
                .bearer_auth(bearer)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status_with("issuer-a").await, 200);
    assert_eq!(status_with("issuer-b").await, 401);

    let broken_cert = edge.dir.path().join("broken.crt");
    std::fs::write(
        &broken_cert,
        "-----BEGIN CERTIFICATE-----\nnot a certificate\n",
    )
    .expect("write");
    let mut bad = jwt_config(&echo, &key, "issuer-b");
    bad.certificate = Some((broken_cert, edge.leaf.key.clone()));
    edge.write_config(&bad);
    edge.process.signal(libc::SIGHUP).expect("sighup");
    edge.wait_for_metric("rejected reload counted", |m| {
        metric_sum(m, "edge_config_reloads_total", &["result=\"rejected\""]) >= 1.0
    })
    .await;
    assert_eq!(
        status_with("issuer-a").await,
        200,
        "old issuer still enforced"
    );
    assert_eq!(status_with("issuer-b").await, 401, "new issuer not applied");

    edge.write_config(&jwt_config(&echo, &key, "issuer-b"));
    edge.process.signal(libc::SIGHUP).expect("sighup");
    edge.wait_for_metric("reload applied", |m| {
        metric_sum(m, "edge_config_reloads_total", &["result=\"applied\""]) >= 1.0
    })
    .await;
    assert_eq!(status_with("issuer-b").await, 200, "a valid reload applies");
    assert_eq!(status_with("issuer-a").await, 401);
}
