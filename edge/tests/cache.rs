//! The micro-cache on the one proxy path: hits on h1, h2 and h3 from one store, the
//! origin's Cache-Control respected, Authorization bypassed unless keyed per user,
//! concurrent misses coalesced, stale copies served while revalidating and when the origin
//! is down, purges, compression of cached objects, and the metrics.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{EchoServer, Edge, EdgeOptions, SigningKey};
use http::HeaderMap;
use testkit::HttpVersion;

const ISSUER: &str = "record-platform";

fn config(echo: &std::net::SocketAddr, extra: &str) -> EdgeOptions {
    EdgeOptions::new(format!(
        r#"
[clusters.echo]
addresses = ["{echo}"]

[[routes]]
id = "cached"
path_prefix = "/"
upstream = "echo"
cache = {{ ttl = "60s" }}

[[routes]]
id = "short"
path_prefix = "/short"
strip_prefix = "/short"
upstream = "echo"
cache = {{ ttl = "1s", stale_while_revalidate = "30s", stale_if_error = "0s" }}

[[routes]]
id = "fallback"
path_prefix = "/fallback"
strip_prefix = "/fallback"
upstream = "echo"
cache = {{ ttl = "1s", stale_while_revalidate = "0s", stale_if_error = "60s" }}

[[routes]]
id = "packed"
path_prefix = "/packed"
strip_prefix = "/packed"
upstream = "echo"
cache = {{}}
compression = {{ min_size = 256 }}

[[routes]]
id = "plain"
path_prefix = "/plain"
strip_prefix = "/plain"
upstream = "echo"
{extra}
"#
    ))
    .with_http3()
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn cache_status(&self) -> &str {
        self.headers
            .get("x-cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    }
}

async fn get(edge: &Edge, version: HttpVersion, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = edge.client(version).get(edge.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    Reply {
        status,
        headers,
        body,
    }
}

async fn get_h3(edge: &Edge, path: &str) -> Reply {
    let response = edge.h3().await.get(path, &[]).await.expect("h3");
    Reply {
        status: response.status.as_u16(),
        headers: response.headers.clone(),
        body: String::from_utf8_lossy(&response.body).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_serves_h1_h2_and_h3_and_the_origin_is_asked_once() {
    let echo = EchoServer::start().await;
    let edge = Edge::start_with(config(&echo.addr, "")).await;
    let first = get(&edge, HttpVersion::Http1, "/origin/a?x=1&y=2", &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.cache_status(), "MISS");
    let asked = echo.received.load(Ordering::SeqCst);
    // Same object, whatever the protocol and the order of the query parameters.
    let h2 = get(&edge, HttpVersion::Http2, "/origin/a?y=2&x=1", &[]).await;
    let h3 = get_h3(&edge, "/origin/a?x=1&y=2").await;
    let h1 = get(&edge, HttpVersion::Http1, "/origin/a?x=1&y=2", &[]).await;
    for (protocol, reply) in [("h2", &h2), ("h3", &h3), ("h1", &h1)] {
        assert_eq!(reply.status, 200, "{protocol}");
        assert_eq!(reply.cache_status(), "HIT", "{protocol}");
        assert_eq!(reply.body, first.body, "{protocol}: the stored copy");
        // Per-response headers are added to hits too, not frozen into the object.
        assert!(reply.headers.contains_key("x-request-id"), "{protocol}");
    }
    assert_eq!(echo.received.load(Ordering::SeqCst), asked);
    // Another query is another object; a route without `cache` says nothing.
    let other = get(&edge, HttpVersion::Http2, "/origin/a?x=2", &[]).await;
    assert_eq!(other.cache_status(), "MISS");
    assert_ne!(other.body, first.body);
    let plain = get(&edge, HttpVersion::Http2, "/plain/origin/a", &[]).await;
    assert!(!plain.headers.contains_key("x-cache-status"));
    let text = edge.metrics().await;
    assert_eq!(
        common::metric_sum(
            &text,
            "edge_cache_responses_total",
            &["route=\"cached\"", "status=\"HIT\""]
        ),
        3.0
    );
    assert!(common::metric_sum(&text, "edge_cache_stored_objects", &[]) >= 2.0);
    assert!(common::metric_sum(&text, "edge_cache_hit_bytes_total", &[]) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_decides_what_is_kept() {
    let echo = EchoServer::start().await;
    let edge = Edge::start_with(config(&echo.addr, "")).await;
    for (case, path) in [
        ("no-store", "/origin/ns?cc=no-store"),
        ("private", "/origin/pr?cc=private%2C%20max-age%3D60"),
        ("set-cookie", "/origin/ck?cookie=1"),
        ("vary *", "/origin/vs?vary=*"),
        ("500", "/origin/err?status=500"),
    ] {
        let before = echo.received.load(Ordering::SeqCst);
        let one = get(&edge, HttpVersion::Http2, path, &[]).await;
        let two = get(&edge, HttpVersion::Http2, path, &[]).await;
        assert_eq!(two.cache_status(), "MISS", "{case}");
        assert_ne!(one.body, two.body, "{case}: asked the origin again");
        assert_eq!(echo.received.load(Ordering::SeqCst), before + 2, "{case}");
    }
    // Vary: the stored copy is per value of the named request header.
    let path = "/origin/lang?vary=accept-language";
    let en = get(
        &edge,
        HttpVersion::Http2,
        path,
        &[("accept-language", "en")],
    )
    .await;
    let de = get(
        &edge,
        HttpVersion::Http2,
        path,
        &[("accept-language", "de")],
    )
    .await;
    let en_again = get(
        &edge,
        HttpVersion::Http2,
        path,
        &[("accept-language", "en")],
    )
    .await;
    assert_eq!(de.cache_status(), "MISS");
    assert_ne!(de.body, en.body);
    assert_eq!(en_again.cache_status(), "HIT");
    assert_eq!(en_again.body, en.body);
    // A POST is never looked up.
    let post = edge
        .client(HttpVersion::Http2)
        .post(edge.url("/origin/a"))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(post.headers()["x-cache-status"], "BYPASS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_bypasses_the_cache_unless_the_route_keys_it_per_user() {
    let echo = EchoServer::start().await;
    let keys = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::new(keys.path());
    let jwt = format!(
        "[plugins.jwt]\nissuer = \"{ISSUER}\"\naudience = \"record-platform\"\n\
         static_keys = [{{ kid = \"k1\", algorithm = \"EdDSA\", pem_file = \"{}\" }}]\n",
        key.public_pem.display()
    );
    let extra = format!(
        r#"
[[routes]]
id = "mine"
path_prefix = "/mine"
strip_prefix = "/mine"
upstream = "echo"
cache = {{ per_user = true }}
plugins.jwt = {{ mode = "required" }}

{jwt}"#
    );
    let edge = Edge::start_with(config(&echo.addr, &extra)).await;
    // A shared route: a request with credentials is neither served from nor stored in it.
    let public = get(&edge, HttpVersion::Http2, "/origin/p", &[]).await;
    let with_auth = get(
        &edge,
        HttpVersion::Http2,
        "/origin/p",
        &[("authorization", "Bearer whatever")],
    )
    .await;
    assert_eq!(with_auth.cache_status(), "BYPASS");
    assert_ne!(with_auth.body, public.body);

    let alice = format!("Bearer {}", key.token(ISSUER, "alice"));
    let bob = format!("Bearer {}", key.token(ISSUER, "bob"));
    let a1 = get(
        &edge,
        HttpVersion::Http2,
        "/mine/origin/m",
        &[("authorization", &alice)],
    )
    .await;
    let a2 = get(
        &edge,
        HttpVersion::Http1,
        "/mine/origin/m",
        &[("authorization", &alice)],
    )
    .await;
    let b1 = get(
        &edge,
        HttpVersion::Http2,
        "/mine/origin/m",
        &[("authorization", &bob)],
    )
    .await;
    assert_eq!((a1.status, a2.status, b1.status), (200, 200, 200));
    assert_eq!(a1.cache_status(), "MISS");
    assert_eq!(a2.cache_status(), "HIT");
    assert_eq!(a2.body, a1.body);
    assert_eq!(
        b1.cache_status(),
        "MISS",
        "another user never gets alice's copy"
    );
    assert_ne!(b1.body, a1.body);
    // The policy still runs before the cache: no token, no copy.
    let anonymous = get(&edge, HttpVersion::Http2, "/mine/origin/m", &[]).await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_origin_request() {
    let echo = EchoServer::start().await;
    let edge = Edge::start_with(config(&echo.addr, "")).await;
    let before = echo.received.load(Ordering::SeqCst);
    let mut requests = Vec::new();
    for i in 0..12 {
        let version = if i % 2 == 0 {
            HttpVersion::Http1
        } else {
            HttpVersion::Http2
        };
        let client = edge.client(version);
        let url = edge.url("/slow/400/origin/burst");
        requests.push(tokio::spawn(async move {
            let response = client.get(url).send().await.expect("request");
            let status = response.headers()["x-cache-status"]
                .to_str()
                .expect("ascii")
                .to_string();
            (status, response.text().await.expect("body"))
        }));
    }
    let mut bodies = std::collections::BTreeSet::new();
    let mut misses = 0;
    for request in requests {
        let (status, body) = request.await.expect("task");
        misses += usize::from(status == "MISS");
        bodies.insert(body);
    }
    assert_eq!(echo.received.load(Ordering::SeqCst) - before, 1);
    assert_eq!(misses, 1);
    assert_eq!(bodies.len(), 1, "every client got the one response");
}

/// Polls until the route's stored copy has expired (the freshness is the test subject:
/// nothing to wait on but the clock).
async fn until_status(edge: &Edge, path: &str, wanted: &str) -> Reply {
    until_status_via(edge, Some(HttpVersion::Http2), path, wanted).await
}

/// [`until_status`] over h1/h2 (`Some`) or h3 (`None`).
async fn until_status_via(
    edge: &Edge,
    version: Option<HttpVersion>,
    path: &str,
    wanted: &str,
) -> Reply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = match version {
            Some(version) => get(edge, version, path, &[]).await,
            None => get_h3(edge, path).await,
        };
        if reply.cache_status() == wanted {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never {wanted} (last {})",
            reply.cache_status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_copies_are_served_while_revalidating_and_while_the_origin_is_down() {
    let echo = EchoServer::start().await;
    let edge = Edge::start_with(config(&echo.addr, "")).await;
    let first = get(&edge, HttpVersion::Http2, "/short/origin/s", &[]).await;
    assert_eq!(first.cache_status(), "MISS");
    let stale = until_status(&edge, "/short/origin/s", "STALE").await;
    assert_eq!(stale.body, first.body, "the stale copy, at once");
    // The refresh happened in the background: the next answer is the new object.
    let refreshed = until_status(&edge, "/short/origin/s", "HIT").await;
    assert_ne!(refreshed.body, first.body);
    // The same over HTTP/3 (the refresh is a subrequest built from the h3 stream).
    let stale = until_status_via(&edge, None, "/short/origin/s", "STALE").await;
    assert_eq!(stale.body, refreshed.body);
    let again = until_status_via(&edge, None, "/short/origin/s", "HIT").await;
    assert_ne!(again.body, refreshed.body);

    let kept = get(&edge, HttpVersion::Http2, "/fallback/origin/f", &[]).await;
    assert_eq!(kept.cache_status(), "MISS");
    echo.failing.store(true, Ordering::SeqCst);
    let stale = until_status(&edge, "/fallback/origin/f", "STALE").await;
    assert_eq!(
        stale.status, 200,
        "stale-if-error instead of the origin's 503"
    );
    assert_eq!(stale.body, kept.body);
    let uncached = get(&edge, HttpVersion::Http2, "/fallback/origin/never", &[]).await;
    assert_eq!(uncached.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_object_is_compressed_for_each_client_and_purges_drop_it() {
    let echo = EchoServer::start().await;
    let edge = Edge::start_with(config(&echo.addr, "")).await;
    let path = "/packed/origin/big?size=20000";
    let identity = get(&edge, HttpVersion::Http2, path, &[]).await;
    assert_eq!(identity.cache_status(), "MISS");
    assert_eq!(identity.body.len(), 20_000);
    assert!(!identity.headers.contains_key("content-encoding"));
    for encoding in ["gzip", "br", "zstd"] {
        let response = edge
            .client(HttpVersion::Http2)
            .get(edge.url(path))
            .header("accept-encoding", encoding)
            .send()
            .await
            .expect("request");
        assert_eq!(response.headers()["x-cache-status"], "HIT", "{encoding}");
        assert_eq!(response.headers()["content-encoding"], encoding);
        let packed = response.bytes().await.expect("body");
        assert!(packed.len() < 2_000, "{encoding}: {} bytes", packed.len());
    }

    // Purge by exact path (every query), then by prefix.
    let cached = get(&edge, HttpVersion::Http1, "/origin/keep", &[]).await;
    let (status, body) = edge
        .admin_post_json("/cache/purge", r#"{"path": "/packed/origin/big"}"#)
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"purged":1}"#));
    assert_eq!(
        get(&edge, HttpVersion::Http2, path, &[])
            .await
            .cache_status(),
        "MISS"
    );
    let (status, body) = edge
        .admin_post_json("/cache/purge", r#"{"prefix": "/origin/"}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    let after = get(&edge, HttpVersion::Http1, "/origin/keep", &[]).await;
    assert_eq!(after.cache_status(), "MISS");
    assert_ne!(after.body, cached.body);
    let (status, body) = edge
        .admin_post_json("/cache/purge", r#"{"path": "relative"}"#)
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = edge.admin_post_json("/cache/purge", "{").await;
    assert_eq!(status, 400);
    assert!(edge.counter("edge_cache_purged_total", &[]).await >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_stays_under_its_size_and_large_objects_pass_through() {
    let echo = EchoServer::start().await;
    let edge = Edge::start_with(config(&echo.addr, "[cache]\nmax_bytes = 3000000\n")).await;
    // Over the default 1 MiB object cap: served, never stored.
    for _ in 0..2 {
        let big = get(&edge, HttpVersion::Http2, "/origin/huge?size=1100000", &[]).await;
        assert_eq!(big.body.len(), 1_100_000);
        assert_eq!(big.cache_status(), "MISS");
    }
    // 20 objects of 250 kB into 3 MB: the least recently used go.
    for i in 0..20 {
        get(
            &edge,
            HttpVersion::Http2,
            &format!("/origin/fill{i}?size=250000"),
            &[],
        )
        .await;
    }
    edge.wait_for_metric("evictions", |text| {
        common::metric_sum(text, "edge_cache_evictions_total", &[]) >= 8.0
    })
    .await;
    let stored = edge.counter("edge_cache_stored_bytes", &[]).await;
    assert!(stored <= 3_000_000.0 + 260_000.0, "{stored}");
    assert_eq!(
        get(&edge, HttpVersion::Http2, "/origin/fill19?size=250000", &[])
            .await
            .cache_status(),
        "HIT",
        "the newest stays"
    );
    assert_eq!(
        get(&edge, HttpVersion::Http2, "/origin/fill0?size=250000", &[])
            .await
            .cache_status(),
        "MISS",
        "the oldest went"
    );
}
