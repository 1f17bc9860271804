//! `perf-tool`: the small tools the perf suite needs.
//!
//! - `jwt`: an Ed25519 key pair (public PEM for `[plugins.jwt] static_keys`) and a
//!   long-lived EdDSA token (iss/aud `record-platform`, sub, jti, exp).
//! - `idle`: opens N TLS keep-alive connections (one request each), holds them and reports
//!   the RSS growth of the given processes per connection.
//! - `handshake`: a new TLS connection per request (HTTP/1.1, `connection: close`), with TLS
//!   session resumption on or off; connections/s, latency, the share actually resumed.
//! - `grpc-check`: a few gRPC unary calls over h2+TLS, checking status 200, the reply message
//!   and the `grpc-status: 0` trailer (h2load cannot see trailers).
//! - `latency`: percentiles from h2load `--log-file` or pgbench `-l` logs.
//! - `grpc-frame`: writes a raw gRPC request frame, for `h2load -d`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(name = "perf-tool", about = "Small tools of the perf suite")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogKind {
    /// h2load --log-file: `start_us<TAB>status<TAB>duration_us`.
    H2load,
    /// pgbench -l: `client tx latency_us script epoch_s epoch_us [lag]`.
    Pgbench,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make an Ed25519 key pair and mint a token signed with it.
    Jwt {
        /// Output directory (private.pem, public.pem, token).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "perf-k1")]
        kid: String,
        #[arg(long, default_value = "record-platform")]
        issuer: String,
        #[arg(long, default_value = "record-platform")]
        audience: String,
        #[arg(long, default_value = "00000000-0000-4000-8000-000000000001")]
        sub: String,
        /// Token lifetime in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// Hold N idle TLS keep-alive connections; report RSS per connection of --pid.
    Idle {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "localhost")]
        server_name: String,
        #[arg(long)]
        ca_file: PathBuf,
        #[arg(short = 'n', long)]
        connections: usize,
        /// Request sent once on each connection before it goes idle.
        #[arg(long, default_value = "/bench")]
        path: String,
        /// Processes whose RSS is summed (the proxy's workers).
        #[arg(long = "pid", required = true)]
        pids: Vec<u32>,
        /// Seconds to hold the connections after the last one is open.
        #[arg(long, default_value_t = 3.0)]
        hold: f64,
        /// Connections opened at once.
        #[arg(long, default_value_t = 64)]
        parallel: usize,
    },
    /// A new TLS connection for every request.
    Handshake {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "localhost")]
        server_name: String,
        #[arg(long)]
        ca_file: PathBuf,
        #[arg(long, default_value = "/bench")]
        path: String,
        /// TLS session resumption (tickets / session ids).
        #[arg(long, value_enum)]
        resume: OnOff,
        /// Concurrent connection loops.
        #[arg(short = 'c', long, default_value_t = 16)]
        concurrency: usize,
        /// Measured seconds.
        #[arg(short = 'D', long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds of unmeasured load first (fills the session cache).
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// Verify gRPC unary calls (status, message, grpc-status trailer) over h2 + TLS.
    GrpcCheck {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "localhost")]
        server_name: String,
        #[arg(long)]
        ca_file: PathBuf,
        #[arg(long, default_value = "/bench.Bench/Unary")]
        path: String,
        #[arg(short = 'n', long, default_value_t = 5)]
        calls: usize,
        /// Extra header `name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
    },
    /// Latency percentiles (µs) and status counts from load-generator logs.
    Latency {
        #[arg(long, value_enum)]
        kind: LogKind,
        files: Vec<PathBuf>,
    },
    /// Write a raw gRPC request frame (5-byte header + a small message) for `h2load -d`.
    GrpcFrame { out: PathBuf },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Jwt {
            dir,
            kid,
            issuer,
            audience,
            sub,
            days,
        } => jwt(&dir, &kid, &issuer, &audience, &sub, days),
        Command::Idle {
            addr,
            server_name,
            ca_file,
            connections,
            path,
            pids,
            hold,
            parallel,
        } => runtime.block_on(idle(IdleArgs {
            addr,
            server_name,
            ca_file,
            connections,
            path,
            pids,
            hold,
            parallel,
        })),
        Command::Handshake {
            addr,
            server_name,
            ca_file,
            path,
            resume,
            concurrency,
            duration,
            warmup,
        } => runtime.block_on(handshake(HandshakeArgs {
            addr,
            server_name,
            ca_file,
            path,
            resume: resume == OnOff::On,
            concurrency,
            duration,
            warmup,
        })),
        Command::GrpcCheck {
            addr,
            server_name,
            ca_file,
            path,
            calls,
            headers,
        } => runtime.block_on(grpc_check(
            addr,
            &server_name,
            &ca_file,
            &path,
            calls,
            &headers,
        )),
        Command::Latency { kind, files } => latency(kind, &files),
        Command::GrpcFrame { out } => {
            // Field 1 (string) = "perf": 0x0a 0x04 'p' 'e' 'r' 'f'.
            let message = [0x0a, 0x04, b'p', b'e', b'r', b'f'];
            let mut frame = vec![0u8];
            frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
            frame.extend_from_slice(&message);
            std::fs::write(&out, frame).with_context(|| format!("writing {}", out.display()))
        }
    }
}

// ---------------------------------------------------------------- jwt

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

fn jwt(dir: &Path, kid: &str, issuer: &str, audience: &str, sub: &str, days: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let private = key.serialize_pem();
    write_private(&dir.join("private.pem"), private.as_bytes())?;
    std::fs::write(dir.join("public.pem"), key.public_key_pem())?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = Claims {
        iss: issuer,
        aud: audience,
        sub,
        jti: uuid::Uuid::new_v4().to_string(),
        iat: now,
        exp: now + days * 86_400,
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.to_string());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_pem(private.as_bytes())?,
    )?;
    write_private(&dir.join("token"), token.as_bytes())?;
    println!("{}", dir.join("token").display());
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

// ---------------------------------------------------------------- TLS client

fn client_config(
    ca_file: &Path,
    alpn: &[&[u8]],
    resume: bool,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("reading {}", ca_file.display()))?
    {
        roots.add(cert?)?;
    }
    let mut provider = rustls::crypto::ring::default_provider();
    // TLS 1.3 AES-128-GCM, as every other client of the suite is configured.
    provider.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = if resume {
        rustls::client::Resumption::in_memory_sessions(1024)
    } else {
        rustls::client::Resumption::disabled()
    };
    Ok(Arc::new(config))
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect_tls(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    server_name: &ServerName<'static>,
) -> Result<TlsStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(connector.connect(server_name.clone(), tcp).await?)
}

/// Reads one HTTP/1.1 response (headers + content-length body); returns the status.
async fn read_response(stream: &mut TlsStream, buf: &mut Vec<u8>) -> Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the response headers");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > 64 * 1024 {
            bail!("response headers too large");
        }
    };
    let head = std::str::from_utf8(&buf[..header_end]).context("response head is not UTF-8")?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line"))?;
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .ok_or_else(|| anyhow!("response without content-length"))?;
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed inside the body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

// ---------------------------------------------------------------- idle

struct IdleArgs {
    addr: SocketAddr,
    server_name: String,
    ca_file: PathBuf,
    connections: usize,
    path: String,
    pids: Vec<u32>,
    hold: f64,
    parallel: usize,
}

fn rss_kib(pids: &[u32]) -> Result<u64> {
    let mut total = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("process {pid} is gone"))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .ok_or_else(|| anyhow!("no VmRSS for {pid}"))?;
        total += line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("bad VmRSS line {line:?}"))?;
    }
    Ok(total)
}

#[derive(Serialize)]
struct IdleReport {
    connections: usize,
    failed: usize,
    rss_before_kib: u64,
    rss_after_kib: u64,
    bytes_per_connection: f64,
    open_seconds: f64,
    first_error: Option<String>,
}

async fn idle(args: IdleArgs) -> Result<()> {
    let config = client_config(&args.ca_file, &[b"http/1.1"], false)?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let server_name = ServerName::try_from(args.server_name.clone())?;
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: perf-tool-idle\r\n\r\n",
        args.path, args.server_name
    );
    // Settle, then the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(&args.pids)?;
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.parallel.max(1)));
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let permit = semaphore.clone().acquire_owned().await?;
        let connector = connector.clone();
        let server_name = server_name.clone();
        let request = request.clone();
        let addr = args.addr;
        tasks.push(tokio::spawn(async move {
            let result = async {
                let mut stream = connect_tls(&connector, addr, &server_name).await?;
                stream.write_all(request.as_bytes()).await?;
                let mut buf = Vec::new();
                let status = read_response(&mut stream, &mut buf).await?;
                if !(200..300).contains(&status) {
                    bail!("status {status}");
                }
                Ok::<_, anyhow::Error>(stream)
            }
            .await;
            drop(permit);
            result
        }));
    }
    let mut held = Vec::with_capacity(args.connections);
    let mut failed = 0;
    let mut first_error = None;
    for task in tasks {
        match task.await? {
            Ok(stream) => held.push(stream),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let open_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let rss_after = rss_kib(&args.pids)?;
    let report = IdleReport {
        connections: held.len(),
        failed,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        bytes_per_connection: (rss_after as f64 - rss_before as f64) * 1024.0
            / (held.len().max(1) as f64),
        open_seconds,
        first_error,
    };
    println!("{}", serde_json::to_string(&report)?);
    drop(held);
    Ok(())
}

// ---------------------------------------------------------------- handshake

struct HandshakeArgs {
    addr: SocketAddr,
    server_name: String,
    ca_file: PathBuf,
    path: String,
    resume: bool,
    concurrency: usize,
    duration: f64,
    warmup: f64,
}

#[derive(Serialize)]
struct HandshakeReport {
    resume: bool,
    concurrency: usize,
    duration_s: f64,
    completed: u64,
    succeeded: u64,
    errors: u64,
    resumed: u64,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    statuses: BTreeMap<u16, u64>,
    first_error: Option<String>,
}

struct LoopTally {
    histogram: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    resumed: u64,
    first_error: Option<String>,
}

async fn handshake(args: HandshakeArgs) -> Result<()> {
    let config = client_config(&args.ca_file, &[b"http/1.1"], args.resume)?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let server_name = ServerName::try_from(args.server_name.clone())?;
    let request = Arc::new(format!(
        "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: perf-tool-handshake\r\nconnection: close\r\n\r\n",
        args.path, args.server_name
    ));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let request = request.clone();
        let measuring = measuring.clone();
        let stop = stop.clone();
        let addr = args.addr;
        loops.push(tokio::spawn(async move {
            let mut tally = LoopTally {
                histogram: Histogram::new_with_bounds(1, 60_000_000, 3)?,
                statuses: BTreeMap::new(),
                errors: 0,
                resumed: 0,
                first_error: None,
            };
            let mut buf = Vec::with_capacity(1024);
            while !stop.load(Ordering::Relaxed) {
                let counted = measuring.load(Ordering::Relaxed);
                let start = Instant::now();
                let result = async {
                    let mut stream = connect_tls(&connector, addr, &server_name).await?;
                    let resumed =
                        stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                    stream.write_all(request.as_bytes()).await?;
                    let status = read_response(&mut stream, &mut buf).await?;
                    let _ = stream.shutdown().await;
                    Ok::<_, anyhow::Error>((status, resumed))
                }
                .await;
                if !counted {
                    continue;
                }
                match result {
                    Ok((status, resumed)) => {
                        tally
                            .histogram
                            .saturating_record(start.elapsed().as_micros() as u64);
                        *tally.statuses.entry(status).or_default() += 1;
                        tally.resumed += u64::from(resumed);
                    }
                    Err(e) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            Ok::<_, anyhow::Error>(tally)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    stop.store(true, Ordering::Relaxed);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut statuses = BTreeMap::new();
    let (mut errors, mut resumed) = (0, 0);
    let mut first_error = None;
    for handle in loops {
        let tally = handle.await??;
        histogram.add(&tally.histogram)?;
        for (status, n) in tally.statuses {
            *statuses.entry(status).or_default() += n;
        }
        errors += tally.errors;
        resumed += tally.resumed;
        if first_error.is_none() {
            first_error = tally.first_error;
        }
    }
    let completed: u64 = statuses.values().sum();
    let succeeded = statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let report = HandshakeReport {
        resume: args.resume,
        concurrency: args.concurrency,
        duration_s: args.duration,
        completed,
        succeeded,
        errors,
        resumed,
        rps: completed as f64 / args.duration,
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
        statuses,
        first_error,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

// ---------------------------------------------------------------- grpc-check

#[derive(Serialize)]
struct GrpcReport {
    calls: usize,
    ok: usize,
    failures: Vec<String>,
}

async fn grpc_check(
    addr: SocketAddr,
    server_name: &str,
    ca_file: &Path,
    path: &str,
    calls: usize,
    headers: &[String],
) -> Result<()> {
    let config = client_config(ca_file, &[b"h2"], false)?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from(server_name.to_string())?;
    let stream = connect_tls(&connector, addr, &name).await?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        bail!("the server did not negotiate h2");
    }
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let message = [0u8, 0, 0, 0, 6, 0x0a, 0x04, b'p', b'e', b'r', b'f'];
    let mut report = GrpcReport {
        calls,
        ok: 0,
        failures: Vec::new(),
    };
    for _ in 0..calls {
        let mut builder = http::Request::post(format!("https://{server_name}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for header in headers {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| anyhow!("header {header:?} is not `name: value`"))?;
            builder = builder.header(name.trim(), value.trim());
        }
        let request = builder.body(Full::new(Bytes::copy_from_slice(&message)))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let collected = response.into_body().collect().await?;
        let grpc_status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = collected.to_bytes();
        let good = status == http::StatusCode::OK
            && grpc_status.as_deref() == Some("0")
            && body.len() >= 5
            && body[0] == 0;
        if good {
            report.ok += 1;
        } else {
            report.failures.push(format!(
                "status {status}, grpc-status {grpc_status:?}, {} body bytes",
                body.len()
            ));
        }
    }
    println!("{}", serde_json::to_string(&report)?);
    if report.ok != calls {
        bail!("{} of {calls} gRPC calls failed", calls - report.ok);
    }
    Ok(())
}

// ---------------------------------------------------------------- latency

#[derive(Serialize)]
struct LatencyReport {
    count: u64,
    p50_us: u64,
    p95_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    mean_us: f64,
    statuses: BTreeMap<String, u64>,
}

fn latency(kind: LogKind, files: &[PathBuf]) -> Result<()> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut statuses = BTreeMap::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (latency, status) = match kind {
                LogKind::H2load if fields.len() >= 3 => (fields[2], fields[1].to_string()),
                // pgbench: a failed transaction logs "failed" (or "skipped") as its latency.
                LogKind::Pgbench if fields.len() >= 3 => (fields[2], "tx".to_string()),
                _ => continue,
            };
            match latency.parse::<u64>() {
                Ok(us) => {
                    histogram.saturating_record(us.max(1));
                    *statuses.entry(status).or_default() += 1;
                }
                Err(_) => *statuses.entry(latency.to_string()).or_default() += 1,
            }
        }
    }
    let q = |p: f64| {
        if histogram.is_empty() {
            0
        } else {
            histogram.value_at_quantile(p)
        }
    };
    let report = LatencyReport {
        count: histogram.len(),
        p50_us: q(0.5),
        p95_us: q(0.95),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: histogram.max(),
        mean_us: if histogram.is_empty() {
            0.0
        } else {
            histogram.mean()
        },
        statuses,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
