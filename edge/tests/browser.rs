//! The collectors' web app in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven by Selenium from `.dev/tools/browser/venv`, both installed by
//! `make test`) through a test edge over HTTPS, in front of real auth, records and web
//! processes on a test database. The journey itself is `browser/collector_journey.py`; the
//! route under test is the `web` route of `edge/config/dev.toml`, CSP included.
//!
//! The browser trusts exactly the test edge's leaf (`--ignore-certificate-errors-spki-list`
//! with its SPKI hash). On failure the test keeps a temp directory holding a screenshot, the
//! page source and the browser console, and prints its path.

mod common;

use std::time::Duration;

use common::platform::{dev_config_route, shipped_route, Platform, WebService};
use common::{tool_python, Edge};
use testkit::{reqwest, HttpVersion};

/// The whole journey (a dozen page views, ~40 API calls) on a loaded 2-core machine.
const JOURNEY_TIMEOUT: Duration = Duration::from_secs(300);

/// base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: what Chromium's
/// `--ignore-certificate-errors-spki-list` takes.
fn spki_hash(cert_pem: &str) -> String {
    let cert = boring::x509::X509::from_pem(cert_pem.as_bytes()).expect("leaf PEM");
    let spki = cert
        .public_key()
        .and_then(|key| key.public_key_to_der())
        .expect("SPKI");
    let digest = boring::hash::hash(boring::hash::MessageDigest::sha256(), &spki).expect("sha256");
    boring::base64::encode_block(&digest)
}

/// auth, records and web behind an edge with the dev config's `web` route, HTTP/3 on.
async fn start() -> (Platform, WebService, Edge) {
    let platform = Platform::start(None).await;
    let web = WebService::start().await;
    let edge = platform.edge(&web.edge_config(), true).await;
    (platform, web, edge)
}

/// Runs the collector's journey in Chromium against `edge`; panics with the script's output
/// and the path of the kept artifacts (screenshot, page source, console) on failure.
async fn run_journey(edge: &Edge, web: &WebService, quic: bool) -> serde_json::Value {
    let artifacts = tempfile::Builder::new()
        .prefix("web-browser-")
        .tempdir()
        .expect("artifacts dir");
    let script = testkit::workspace_root().join("edge/tests/browser/collector_journey.py");
    let mut command = tokio::process::Command::new(tool_python("browser"));
    command
        .arg(&script)
        .arg("--base-url")
        .arg(edge.url(""))
        .arg("--spki")
        .arg(spki_hash(&edge.leaf.cert_pem))
        .arg("--artifacts")
        .arg(artifacts.path())
        .kill_on_drop(true);
    if quic {
        command.arg("--quic");
    }
    let outcome = tokio::time::timeout(JOURNEY_TIMEOUT, command.output()).await;
    let (success, stdout, stderr) = match outcome {
        Ok(output) => {
            let output = output.expect("run collector_journey.py");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
        Err(_) => (
            false,
            String::new(),
            format!("timed out after {JOURNEY_TIMEOUT:?}"),
        ),
    };
    if !success {
        let kept = artifacts.keep();
        panic!(
            "the browser journey failed{}: {stdout}\n--- script stderr ---\n{stderr}\n\
             --- screenshot, page source and console kept in {} ---\n\
             --- edge log (tail) ---\n{}\n--- web log (tail) ---\n{}",
            if quic { " over HTTP/3" } else { "" },
            kept.display(),
            tail(&edge.process.logs(), 40),
            tail(&web.process.logs(), 20),
        );
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|_| panic!("the script's last line is JSON: {stdout}"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The edge's access-log records (method, path, protocol) of the requests it proxied.
fn access_records(edge: &Edge) -> Vec<(String, String, String)> {
    edge.process
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["target"] == "access")
        .map(|record| {
            let field = |name: &str| record[name].as_str().unwrap_or_default().to_string();
            (field("method"), field("path"), field("protocol"))
        })
        .collect()
}

/// Every request the browser made went over `protocol`, and they include the page, an
/// asset and each kind of API call the journey makes.
fn assert_browser_requests_used(edge: &Edge, protocol: &str) {
    let records = access_records(edge);
    let other: Vec<_> = records.iter().filter(|(_, _, p)| p != protocol).collect();
    assert!(
        other.is_empty(),
        "requests not over {protocol}: {other:?}\nall: {records:?}"
    );
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/assets/app."),
        ("POST", "/api/auth/register"),
        ("POST", "/api/auth/login"),
        ("GET", "/api/auth/me"),
        ("POST", "/api/records"),
        ("GET", "/api/records/stats"),
        ("GET", "/api/records/search"),
        ("GET", "/api/records/"),
        ("PUT", "/api/records/"),
        ("DELETE", "/api/records/"),
        ("POST", "/api/auth/logout"),
    ] {
        assert!(
            records.iter().any(|(m, p, _)| m == method
                && (p == path || (path.ends_with(['/', '.']) && p.starts_with(path)))),
            "no {method} {path}… over {protocol} in the access log: {records:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_uses_the_web_app_in_chromium_over_https() {
    let (_platform, web, edge) = start().await;
    let result = run_journey(&edge, &web, false).await;
    assert_eq!(result["ok"], true, "{result}");
    // Chromium on TCP negotiates h2 (ALPN); QUIC was turned off for this run.
    assert_browser_requests_used(&edge, "h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_uses_the_web_app_in_chromium_over_http3() {
    let (_platform, web, edge) = start().await;
    let result = run_journey(&edge, &web, true).await;
    assert_eq!(result["ok"], true, "{result}");
    // Forced onto QUIC from the first request: the page, its assets and every API call.
    assert_browser_requests_used(&edge, "h3");
}

/// What a browser gets for the app through the edge before any script runs: the dev
/// config's browser headers and CSP, a revalidated page, immutable fingerprinted assets,
/// compression, and the page for app paths but JSON 404s for everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_serves_the_app_with_browser_headers_caching_and_compression() {
    let (_platform, _web, edge) = start().await;
    let client = edge.client(HttpVersion::Http2);
    let get = |path: &str, headers: &[(&'static str, &str)]| {
        let mut request = client.get(edge.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let csp = dev_config_route("web")["content_security_policy"]
        .as_str()
        .expect("the dev config's web route sets a CSP")
        .to_string();

    let page = get("/", &[("accept", "text/html")]).await.expect("page");
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-security-policy"), csp);
    assert_eq!(header(&page, "x-frame-options"), "DENY");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let etag = header(&page, "etag");
    assert!(!etag.is_empty(), "the page has an ETag");
    let html = page.text().await.expect("html");
    let script = html
        .split('"')
        .find(|part| part.starts_with("/assets/app.") && part.ends_with(".js"))
        .unwrap_or_else(|| panic!("no fingerprinted app.js in the page: {html}"))
        .to_string();

    let revalidated = get("/", &[("if-none-match", &etag)])
        .await
        .expect("page again");
    assert_eq!(
        revalidated.status(),
        304,
        "an unchanged page is not sent again"
    );

    let asset = get(&script, &[("accept-encoding", "gzip")])
        .await
        .expect("asset");
    assert_eq!(asset.status(), 200);
    assert_eq!(
        header(&asset, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        header(&asset, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        header(&asset, "content-encoding"),
        "gzip",
        "compressed by the edge"
    );
    assert_eq!(header(&asset, "x-cache-status"), "MISS", "the first fetch");
    assert_eq!(
        header(&revalidated, "x-cache-status"),
        "REVALIDATED",
        "the no-cache page is kept and checked with the web service"
    );

    // Every asset of the page: once fetched, it comes from the edge's memory, compressed for
    // each client; the note quotes the totals printed here.
    let (mut raw, mut brotli, mut gzip) = (0usize, 0usize, 0usize);
    let assets: Vec<&str> = html
        .split('"')
        .filter(|part| part.starts_with("/assets/"))
        .collect();
    for path in &assets {
        let plain = get(path, &[("accept-encoding", "identity")])
            .await
            .expect("asset");
        let first = header(&plain, "x-cache-status");
        assert!(first == "MISS" || first == "HIT", "{path}: {first}");
        raw += plain.bytes().await.expect("body").len();
        for (coding, total) in [("br", &mut brotli), ("gzip", &mut gzip)] {
            let packed = get(path, &[("accept-encoding", coding)])
                .await
                .expect("asset");
            assert_eq!(header(&packed, "x-cache-status"), "HIT", "{path} {coding}");
            let encoded = header(&packed, "content-encoding");
            let body = packed.bytes().await.expect("body").len();
            // Files under the route's min_size (512 B) go as they are.
            assert!(
                encoded == coding || body < 512,
                "{path} {coding}: {encoded}"
            );
            *total += body;
        }
    }
    println!(
        "web app assets through the edge cache: {} files, {raw} B raw, {brotli} B br ({:.2}x), \
         {gzip} B gzip ({:.2}x), every one a HIT",
        assets.len(),
        raw as f64 / brotli as f64,
        raw as f64 / gzip as f64
    );
    assert!(brotli * 2 < raw && gzip * 2 < raw, "{raw} {brotli} {gzip}");

    // A client-side path of the app, navigated to (or reloaded): the page.
    let deep = get("/records/new", &[("accept", "text/html,*/*;q=0.8")])
        .await
        .expect("deep link");
    assert_eq!(deep.status(), 200);
    assert_eq!(header(&deep, "etag"), etag);
    // The same path fetched by a script, an unknown asset, an unrouted API path: JSON 404.
    for (path, accept) in [
        ("/records/new", "application/json"),
        ("/assets/app.0000000000000000.js", "text/html"),
        ("/api/nope", "text/html"),
        ("/metrics", "*/*"),
    ] {
        let response = get(path, &[("accept", accept)]).await.expect("request");
        assert_eq!(response.status(), 404, "{path}");
        let body: serde_json::Value = response.json().await.expect("JSON error");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
}

/// Kubernetes runs the same `web` route as `make up` (the browser tests prove the dev one).
#[test]
fn the_k8s_edge_config_routes_the_web_app_like_the_dev_config() {
    let k8s = shipped_route("k8s/base/edge/edge.toml", "web");
    assert_eq!(k8s, dev_config_route("web"));
}
