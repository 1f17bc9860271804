//! HTTP/3 across graceful upgrades: the QUIC socket is handed over with the TCP
//! listeners and packets are steered to the process that serves their connection, so a
//! QUIC connection opened before an upgrade keeps working after two of them.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{edge_upgrade, EchoServer, Edge, EdgeOptions, H3Hold};

/// Requests on one held connection (or on fresh ones) counted while upgrades happen.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, what: &str, outcome: Result<u16, String>) {
        match outcome {
            Ok(200) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(status) => self.fail(format!("{what}: status {status}")),
            Err(err) => self.fail(format!("{what}: {err}")),
        }
    }

    fn fail(&self, failure: String) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.push(failure);
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// `edge upgrade` on `edge`'s config; returns the PID now serving.
async fn upgrade(edge: &Edge) -> i32 {
    let (ok, out) = edge_upgrade(edge, &["--timeout", "60"]).await;
    assert!(ok, "edge upgrade failed: {out}\n{}", edge.process.logs());
    let pid = std::fs::read_to_string(edge.dir.path().join("edge.pid")).expect("pid file");
    pid.trim().parse().expect("pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quic_connections_survive_two_upgrades_without_a_failed_request() {
    let echo = EchoServer::start().await;
    let mut options = EdgeOptions::new(format!(
        "[clusters.echo]\naddresses = [\"{}\"]\n\n[[routes]]\nid = \"all\"\nupstream = \"echo\"\n",
        echo.addr
    ))
    .with_http3();
    // The first process must outlive the test: its connection is served to the end.
    options.grace_period = "60s";
    let edge = Edge::start_with(options).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], edge.https_port));
    let stop = Arc::new(AtomicBool::new(false));

    // The suite's quiche client: ONE connection, a request every 50 ms.
    let held = Arc::new(Tally::default());
    let held_task = {
        let (connection, held, stop) = (edge.h3().await, held.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let outcome = connection.get("/held", &[]).await;
                held.record(
                    "held quiche connection",
                    outcome
                        .map(|r| r.status.as_u16())
                        .map_err(|e| format!("{e:#}")),
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // New connections throughout: each request on a fresh QUIC connection.
    let fresh = Arc::new(Tally::default());
    let fresh_task = {
        let (fresh, stop, ca) = (fresh.clone(), stop.clone(), edge.pki.ca_path());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let outcome =
                    match perf::h3client::H3Connection::connect(addr, "localhost", Some(&ca)).await
                    {
                        Ok(connection) => connection
                            .get("/fresh", &[])
                            .await
                            .map(|r| r.status.as_u16()),
                        Err(err) => Err(err),
                    };
                fresh.record(
                    "new quiche connection",
                    outcome.map_err(|e| format!("{e:#}")),
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // aioquic, an independent QUIC stack, holds its own connection the same way.
    let aioquic = H3Hold::start(&edge, "/held-aioquic", 15.0, 0.05, &[]).await;
    testkit::eventually(
        "the held connection answers",
        Duration::from_secs(10),
        || async { held.ok() > 0 },
    )
    .await
    .expect("the held connection serves before the upgrades");

    let first_pid = upgrade(&edge).await;
    let after_first = held.ok();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second_pid = upgrade(&edge).await;
    assert_ne!(first_pid, second_pid);
    let after_second = held.ok();

    let report = aioquic.report().await;
    stop.store(true, Ordering::Relaxed);
    held_task.await.expect("held task");
    fresh_task.await.expect("fresh task");
    let steered = edge
        .counter("edge_quic_handoff_packets_total", &["route=\"to_older\""])
        .await;
    for pid in [first_pid, second_pid] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }

    assert_eq!(
        held.failures(),
        Vec::<String>::new(),
        "the held quiche connection failed requests"
    );
    assert!(
        held.ok() > after_second && after_second > after_first,
        "the held connection served after each upgrade ({after_first}, {after_second}, {})",
        held.ok()
    );
    assert_eq!(report["failed"], serde_json::json!([]), "aioquic: {report}");
    assert_eq!(
        report["terminated"],
        serde_json::Value::Null,
        "aioquic: {report}"
    );
    assert!(report["ok"].as_u64().unwrap_or(0) > 0, "aioquic: {report}");
    assert_eq!(
        fresh.failures(),
        Vec::<String>::new(),
        "new connections failed"
    );
    assert!(fresh.ok() > 0);
    // The newest process read packets of the first one's connections and sent them on.
    assert!(steered > 0.0, "no packet was steered to an older process");
}
