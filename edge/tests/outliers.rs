//! Circuit breaking against real backends: passive outlier ejection (one that answers 500
//! to everything, and the echo server) and the pending-connection limit (one that stops
//! accepting).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{EchoServer, Edge};
use testkit::HttpVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP/1.1 backend that answers `500` to every request (keep-alive), counting them.
struct FailingServer {
    addr: std::net::SocketAddr,
    received: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FailingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FailingServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut chunk).await {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // GETs only: every header block ends one request.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            counter.fetch_add(1, Ordering::SeqCst);
                            let reply =
                                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n";
                            if stream.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }
}

fn config(addresses: &[String], outlier: &str) -> String {
    format!(
        r#"
[clusters.app]
addresses = {addresses:?}
outlier_detection = {{ {outlier} }}

[[routes]]
id = "app"
path_prefix = "/"
upstream = "app"
"#
    )
}

async fn statuses(edge: &Edge, count: usize) -> Vec<u16> {
    let client = edge.client(HttpVersion::Http1);
    let mut out = Vec::new();
    for _ in 0..count {
        let response = client.get(edge.url("/ping")).send().await.expect("request");
        out.push(response.status().as_u16());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failing_in_a_row_is_ejected_then_probed_back_and_ejected_longer() {
    let echo = EchoServer::start().await;
    let failing = FailingServer::start().await;
    let edge = Edge::start(&config(
        &[echo.addr.to_string(), failing.addr.to_string()],
        r#"consecutive_failures = 2, base_ejection = "1s", max_ejection = "1m""#,
    ))
    .await;
    edge.wait_ready().await;

    let seen = statuses(&edge, 12).await;
    assert_eq!(
        seen.iter().filter(|s| **s == 500).count(),
        2,
        "two failures in a row eject it: {seen:?}"
    );
    assert_eq!(failing.received.load(Ordering::SeqCst), 2);
    assert_eq!(
        edge.counter("edge_upstream_ejections_total", &["cluster=\"app\""])
            .await,
        1.0
    );
    let (_, health) = edge.admin_get("/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&health).expect("json");
    assert_eq!(health["clusters"]["app"]["ejectedBackends"], 1, "{health}");

    // After the 1 s ejection it gets traffic again; one more failure ejects it for 2 s.
    testkit::eventually(
        "the ejected backend is probed again",
        Duration::from_secs(20),
        || async {
            statuses(&edge, 1).await;
            failing.received.load(Ordering::SeqCst) >= 3
        },
    )
    .await
    .expect("probe");
    assert_eq!(
        failing.received.load(Ordering::SeqCst),
        3,
        "one probe, not two"
    );
    assert_eq!(
        edge.counter("edge_upstream_ejections_total", &["cluster=\"app\""])
            .await,
        2.0
    );
    assert!(statuses(&edge, 6).await.iter().all(|s| *s == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_backend_is_never_ejected() {
    let failing = FailingServer::start().await;
    let edge = Edge::start(&config(
        &[failing.addr.to_string()],
        r#"consecutive_failures = 2"#,
    ))
    .await;
    let seen = statuses(&edge, 6).await;
    assert!(
        seen.iter().all(|s| *s == 500),
        "answered by it, not refused: {seen:?}"
    );
    assert_eq!(failing.received.load(Ordering::SeqCst), 6);
    assert_eq!(
        edge.counter("edge_upstream_ejections_total", &[]).await,
        0.0
    );
}

/// A backend that stops accepting: its accept queue (backlog 0) is filled by the test, after
/// which the kernel drops further SYNs and connects to it hang until the edge's
/// `connect_timeout` (the fault a live server cannot be asked for on demand).
struct Unaccepting {
    addr: std::net::SocketAddr,
    _listener: tokio::net::TcpListener,
    _queued: Vec<tokio::net::TcpStream>,
}

impl Unaccepting {
    async fn start() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let mut queued = Vec::new();
        for _ in 0..8 {
            match tokio::time::timeout(
                Duration::from_millis(300),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(stream)) => queued.push(stream),
                // The queue is full: this connect hangs, as the edge's will.
                Err(_) => {
                    return Self {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    }
                }
                Ok(Err(err)) => panic!("filling the accept queue: {err}"),
            }
        }
        panic!("the accept queue never filled");
    }
}

async fn cluster_health(edge: &Edge) -> serde_json::Value {
    let (status, body) = edge.admin_get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("json");
    health["clusters"]["hole"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_connections_are_capped_and_the_rest_get_503_at_once() {
    let hole = Unaccepting::start().await;
    let edge = Edge::start_with(
        common::EdgeOptions::new(format!(
            r#"
[clusters.hole]
addresses = ["{}"]
connect_timeout = "3s"
max_pending_connections = 2

[[routes]]
id = "hole"
path_prefix = "/"
upstream = "hole"
"#,
            hole.addr
        ))
        .with_http3(),
    )
    .await;
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let client = edge.client(HttpVersion::Http1);
            let url = edge.url("/stuck");
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cluster_health(&edge).await["pendingConnections"] != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            edge.process.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cluster_health(&edge).await["breakerOpen"], true);

    let refused = edge
        .client(HttpVersion::Http2)
        .get(edge.url("/more"))
        .send()
        .await
        .expect("refused");
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "cluster_busy");
    let h3 = edge.h3().await.get("/more", &[]).await.expect("h3");
    assert_eq!(h3.status.as_u16(), 503, "the same breaker for HTTP/3");
    assert_eq!(
        edge.counter("edge_upstream_errors_total", &["kind=\"cluster_pending\""])
            .await,
        2.0
    );

    // The waiting ones fail at the connect timeout; the breaker closes behind them.
    for request in waiting {
        let status = request.await.expect("join").expect("answer");
        assert!(status == 502 || status == 504, "{status}");
    }
    let health = cluster_health(&edge).await;
    assert_eq!(health["pendingConnections"], 0, "{health}");
    assert_eq!(health["breakerOpen"], false, "{health}");
}
