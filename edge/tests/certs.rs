//! Certificate hot-swap on both transports: rotation under load with certs-tool (leaf and
//! CA), and bad certificates rejected while the old ones keep serving.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{metric_sum, EchoServer, Edge, EdgeOptions};
use perf::h3client::H3Connection;
use testkit::HttpVersion;

struct Pki {
    _work: testkit::TempDir,
    tool: PathBuf,
    ca: PathBuf,
    certs: PathBuf,
}

impl Pki {
    fn new(layout: &str) -> Pki {
        let work = tempfile::tempdir().expect("dir");
        let pki = Pki {
            tool: testkit::workspace_bin("certs-tool").expect("certs-tool built"),
            ca: work.path().join("ca"),
            certs: work.path().join("certs"),
            _work: work,
        };
        pki.run(&["ca", "init", "--dir", pki.ca.to_str().expect("utf8")]);
        pki.run(&[
            "issue",
            "--ca",
            pki.ca.to_str().expect("utf8"),
            "--out",
            pki.certs.to_str().expect("utf8"),
            "--san",
            "localhost",
            "--san",
            "127.0.0.1",
            "--layout",
            layout,
        ]);
        pki
    }

    fn run(&self, args: &[&str]) {
        let output = Command::new(&self.tool)
            .args(args)
            .output()
            .expect("certs-tool");
        assert!(
            output.status.success(),
            "certs-tool {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn rotate(&self, new_ca: bool) {
        let mut args = vec![
            "rotate",
            "--ca",
            self.ca.to_str().expect("utf8"),
            "--out",
            self.certs.to_str().expect("utf8"),
        ];
        if new_ca {
            args.push("--new-ca");
        }
        self.run(&args);
    }

    fn cert(&self) -> PathBuf {
        self.certs.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.certs.join("tls.key")
    }

    /// The CA bundle clients are told to trust (old + new CA during a CA rotation).
    fn bundle(&self) -> PathBuf {
        self.certs.join("ca.crt")
    }

    fn leaf_serial(&self) -> String {
        let pem = std::fs::read(self.cert()).expect("read tls.crt");
        let chain = boring::x509::X509::stack_from_pem(&pem).expect("pem");
        serial_of(&chain[0])
    }
}

fn serial_of(cert: &boring::x509::X509Ref) -> String {
    let hex = cert
        .serial_number()
        .to_bn()
        .and_then(|bn| bn.to_hex_str().map(|s| s.to_string()))
        .expect("serial");
    normalize(&hex)
}

fn normalize(serial: &str) -> String {
    serial.trim_start_matches('0').to_ascii_lowercase()
}

/// Serial of the certificate a fresh TCP TLS handshake gets, verified against `bundle`.
fn tcp_handshake_serial(port: u16, bundle: &Path) -> Result<String, String> {
    use boring::ssl::{SslConnector, SslMethod};
    let mut builder = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    builder.set_ca_file(bundle).map_err(|e| e.to_string())?;
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let tls = builder
        .build()
        .connect("localhost", stream)
        .map_err(|e| e.to_string())?;
    let cert = tls.ssl().peer_certificate().ok_or("no peer certificate")?;
    Ok(serial_of(&cert))
}

async fn quic_handshake_serial(port: u16, bundle: &Path) -> Result<String, String> {
    let addr: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let conn = H3Connection::connect(addr, "localhost", Some(bundle))
        .await
        .map_err(|e| format!("{e:#}"))?;
    conn.peer_serial()
        .map(normalize)
        .ok_or_else(|| "no serial recorded".to_string())
}

/// Polls fresh handshakes on TCP and QUIC until both present `serial`.
async fn wait_until_served(edge: &Edge, pki: &Pki, serial: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let port = edge.https_port;
    loop {
        let bundle = pki.bundle();
        let tcp = tokio::task::spawn_blocking(move || tcp_handshake_serial(port, &bundle))
            .await
            .expect("join");
        let quic = quic_handshake_serial(port, &pki.bundle()).await;
        if tcp.as_deref() == Ok(serial) && quic.as_deref() == Ok(serial) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "new handshakes never presented serial {serial}: tcp {tcp:?}, quic {quic:?}\n{}",
            edge.process.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, what: &str, result: Result<u16, String>) {
        match result {
            Ok(200) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut errors) = self.errors.lock() {
                    errors.push(format!("{what}: {other:?}"));
                }
            }
        }
    }
}

/// A client on one protocol: new connections (trusting the bundle published at that
/// moment, as a real client would) mixed with requests on reused ones.
fn spawn_client(
    protocol: &'static str,
    edge_port: u16,
    bundle: PathBuf,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let url = format!("https://localhost:{edge_port}/ping");
        while !stop.load(Ordering::Relaxed) {
            let ca = std::fs::read_to_string(&bundle).unwrap_or_default();
            match protocol {
                "h3" => {
                    let addr: SocketAddr = format!("127.0.0.1:{edge_port}").parse().expect("addr");
                    match H3Connection::connect(addr, "localhost", Some(&bundle)).await {
                        Ok(conn) => {
                            for _ in 0..5 {
                                let result = conn
                                    .get("/ping", &[])
                                    .await
                                    .map(|r| r.status.as_u16())
                                    .map_err(|e| format!("{e:#}"));
                                tally.record("h3", result);
                            }
                        }
                        Err(e) => tally.record("h3 connect", Err(format!("{e:#}"))),
                    }
                }
                _ => {
                    let version = if protocol == "h1" {
                        HttpVersion::Http1
                    } else {
                        HttpVersion::Http2
                    };
                    let client = match testkit::https_client(&ca, version) {
                        Ok(client) => client,
                        Err(e) => {
                            tally.record(protocol, Err(format!("client: {e}")));
                            continue;
                        }
                    };
                    for _ in 0..5 {
                        let result = client
                            .get(&url)
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                            .map_err(|e| format!("{e:?}"));
                        tally.record(protocol, result);
                    }
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_leaf_and_ca_under_load_fails_no_request_on_h1_h2_h3() {
    let pki = Pki::new("k8s");
    let echo = EchoServer::start().await;
    let mut options = EdgeOptions::new(format!(
        "[clusters.echo]\naddresses = [\"{}\"]\n\n[[routes]]\nid = \"all\"\nupstream = \"echo\"\n",
        echo.addr
    ))
    .with_http3();
    options.certificate = Some((pki.cert(), pki.key()));
    let edge = Edge::start_with(options).await;
    wait_until_served(&edge, &pki, &pki.leaf_serial()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<(&str, Arc<Tally>)> = ["h1", "h2", "h3"]
        .into_iter()
        .map(|p| (p, Arc::new(Tally::default())))
        .collect();
    let clients: Vec<_> = tallies
        .iter()
        .map(|(protocol, tally)| {
            spawn_client(
                protocol,
                edge.https_port,
                pki.bundle(),
                stop.clone(),
                tally.clone(),
            )
        })
        .collect();

    // 20 leaf rotations and 2 CA rotations, each confirmed on fresh handshakes.
    let mut serials = vec![pki.leaf_serial()];
    for round in 1..=22 {
        pki.rotate(round == 8 || round == 15);
        let serial = pki.leaf_serial();
        assert!(
            !serials.contains(&serial),
            "rotation {round} must change the serial"
        );
        wait_until_served(&edge, &pki, &serial).await;
        serials.push(serial);
    }

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
    for (protocol, tally) in &tallies {
        let ok = tally.ok.load(Ordering::Relaxed);
        let failed = tally.failed.load(Ordering::Relaxed);
        let errors = tally.errors.lock().expect("errors").clone();
        assert_eq!(
            failed, 0,
            "{protocol}: {failed} failed requests: {errors:?}"
        );
        assert!(ok >= 20, "{protocol}: only {ok} requests completed");
    }
    let metrics = edge.metrics().await;
    assert!(metric_sum(&metrics, "edge_cert_reloads_total", &["result=\"applied\""]) >= 22.0);
    assert!(
        metric_sum(
            &metrics,
            "edge_tls_handshakes_total",
            &["transport=\"quic\""]
        ) >= 22.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_mismatched_certificates_are_rejected_and_the_old_ones_keep_serving() {
    let pki = Pki::new("flat");
    let echo = EchoServer::start().await;
    let mut options = EdgeOptions::new(format!(
        "[clusters.echo]\naddresses = [\"{}\"]\n\n[[routes]]\nid = \"all\"\nupstream = \"echo\"\n",
        echo.addr
    ))
    .with_http3();
    options.certificate = Some((pki.cert(), pki.key()));
    let edge = Edge::start_with(options).await;
    let original = pki.leaf_serial();
    wait_until_served(&edge, &pki, &original).await;
    let good_cert = std::fs::read(pki.cert()).expect("cert");

    // Garbage in place of the certificate.
    std::fs::write(pki.cert(), b"-----BEGIN CERTIFICATE-----\nnot base64\n").expect("corrupt");
    edge.wait_for_metric("corrupt certificate rejected", |m| {
        metric_sum(m, "edge_cert_reloads_total", &["result=\"rejected\""]) >= 1.0
    })
    .await;
    let rejected = edge.admin_post("/certs/reload").await;
    assert_eq!(rejected.0, 422, "{}", rejected.1);
    assert!(
        rejected.1.contains("previous certificates keep serving"),
        "{}",
        rejected.1
    );

    // A valid certificate whose key is not the one on disk.
    let other = tempfile::tempdir().expect("dir");
    pki.run(&[
        "issue",
        "--ca",
        pki.ca.to_str().expect("utf8"),
        "--out",
        other.path().to_str().expect("utf8"),
        "--san",
        "localhost",
    ]);
    std::fs::copy(other.path().join("tls.crt"), pki.cert()).expect("swap cert only");
    let mismatch = edge.admin_post("/certs/reload").await;
    assert_eq!(mismatch.0, 422, "{}", mismatch.1);
    assert!(mismatch.1.contains("does not match"), "{}", mismatch.1);

    // Still serving the original, on both transports, and answering requests.
    std::fs::write(pki.cert(), &good_cert).expect("restore for the bundle check");
    let port = edge.https_port;
    let bundle = pki.bundle();
    let tcp = tokio::task::spawn_blocking(move || tcp_handshake_serial(port, &bundle))
        .await
        .expect("join");
    assert_eq!(tcp.as_deref(), Ok(original.as_str()));
    let ca = std::fs::read_to_string(pki.bundle()).expect("bundle");
    let resp = testkit::https_client(&ca, HttpVersion::Http2)
        .expect("client")
        .get(edge.url("/ping"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);

    // A proper rotation is then picked up.
    pki.rotate(false);
    let rotated = pki.leaf_serial();
    wait_until_served(&edge, &pki, &rotated).await;
    let (status, certs) = edge.admin_get("/certs").await;
    assert_eq!(status, 200);
    assert!(certs.to_ascii_lowercase().contains(&rotated), "{certs}");
}
