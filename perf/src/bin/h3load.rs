//! `h3load`: an HTTP/3 load generator on tokio-quiche's client (`perf::h3client`).
//!
//! N QUIC connections × M concurrent request streams each, for a fixed duration (`-D`) or a
//! fixed number of requests (`-n`), after an optional warm-up that is not counted. Every
//! response's status is checked against `--expect-status`; latency (request sent → response
//! read completely) goes into an HDR histogram. The summary is printed as text, JSON or one
//! CSV line.
//!
//! ```text
//! h3load -c 16 -m 10 -D 10 --warmup 2 --ca-file ca.crt https://localhost:8443/bench
//! ```

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use perf::h3client::{ClientOptions, H3Connection};
use quiche::h3::Header;
use serde::Serialize;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Csv,
}

#[derive(Debug, Parser)]
#[command(name = "h3load", about = "HTTP/3 load generator (tokio-quiche client)")]
struct Args {
    /// `https://host:port/path`; host is resolved (localhost → 127.0.0.1).
    url: String,
    /// QUIC connections (one UDP socket each).
    #[arg(short = 'c', long, default_value_t = 16)]
    connections: usize,
    /// Concurrent requests (streams) per connection.
    #[arg(short = 'm', long, default_value_t = 10)]
    streams: usize,
    /// Measured duration in seconds (after the warm-up).
    #[arg(short = 'D', long, conflicts_with = "requests")]
    duration: Option<f64>,
    /// Total measured requests instead of a duration.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Seconds of load before measuring starts (not counted).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// SNI and `:authority` (defaults to the URL's host).
    #[arg(long)]
    server_name: Option<String>,
    /// Verify the server against this CA (PEM). Without it, use --insecure.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Do not verify the server certificate (benchmarks on loopback only).
    #[arg(short = 'k', long)]
    insecure: bool,
    /// TLS key-exchange groups (BoringSSL syntax); `default` = BoringSSL's own list, which
    /// includes a post-quantum hybrid and makes the ClientHello span two packets.
    #[arg(long, default_value = "X25519:P-256")]
    groups: String,
    /// Write a qlog per connection into this directory.
    #[arg(long)]
    qlog_dir: Option<String>,
    /// Request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Extra request header `name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Request body read from this file.
    #[arg(short = 'd', long)]
    data: Option<PathBuf>,
    /// The status a successful response must have.
    #[arg(long, default_value_t = 200)]
    expect_status: u16,
    /// Give up on one request after this many seconds (counted as an error).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Runtime threads (1 = current-thread runtime; the suite pins the client to one CPU).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Output format of the summary (stdout).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Serialize)]
struct Latency {
    min: u64,
    mean: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

#[derive(Debug, Serialize)]
struct Summary {
    url: String,
    connections: usize,
    streams_per_connection: usize,
    connect_ms: f64,
    duration_s: f64,
    /// Requests that completed (any status) inside the measured window.
    completed: u64,
    /// Of them, with the expected status.
    succeeded: u64,
    /// Completed with another status.
    unexpected_status: u64,
    /// Failed without a response (reset, timeout, connection closed).
    errors: u64,
    rps: f64,
    latency_us: Latency,
    statuses: BTreeMap<u16, u64>,
    first_error: Option<String>,
}

struct Target {
    addr: SocketAddr,
    server_name: String,
    fields: Vec<Header>,
    body: Option<Bytes>,
}

fn parse_target(args: &Args) -> Result<Target> {
    let uri: http::Uri = args.url.parse().context("parsing the URL")?;
    if uri.scheme_str() != Some("https") {
        bail!("the URL must be https://");
    }
    let host = uri.host().ok_or_else(|| anyhow!("the URL has no host"))?;
    let port = uri.port_u16().unwrap_or(443);
    let host_for_lookup = if host == "localhost" {
        "127.0.0.1"
    } else {
        host.trim_start_matches('[').trim_end_matches(']')
    };
    let addr = (host_for_lookup, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow!("{host} does not resolve"))?;
    let server_name = args.server_name.clone().unwrap_or_else(|| host.to_string());
    let authority = if port == 443 {
        server_name.clone()
    } else {
        format!("{server_name}:{port}")
    };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut fields = vec![
        Header::new(b":method", args.method.as_bytes()),
        Header::new(b":scheme", b"https"),
        Header::new(b":authority", authority.as_bytes()),
        Header::new(b":path", path.as_bytes()),
        Header::new(b"user-agent", b"h3load"),
    ];
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| anyhow!("header {header:?} is not `name: value`"))?;
        fields.push(Header::new(
            name.trim().to_ascii_lowercase().as_bytes(),
            value.trim().as_bytes(),
        ));
    }
    let body = match &args.data {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            fields.push(Header::new(
                b"content-length",
                bytes.len().to_string().as_bytes(),
            ));
            Some(Bytes::from(bytes))
        }
        None => None,
    };
    Ok(Target {
        addr,
        server_name,
        fields,
        body,
    })
}

/// What one request loop saw.
struct Tally {
    histogram: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Result<Self> {
        Ok(Self {
            histogram: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            statuses: BTreeMap::new(),
            errors: 0,
            first_error: None,
        })
    }
}

struct Shared {
    /// Set when the measured window starts (µs since `epoch`); 0 until then.
    measure_from_us: AtomicU64,
    stop: AtomicBool,
    /// Requests still to start in `-n` mode.
    remaining: Option<AtomicU64>,
    epoch: Instant,
}

async fn request_loop(
    conn: H3Connection,
    target: Arc<Target>,
    shared: Arc<Shared>,
    timeout: Duration,
) -> Result<Tally> {
    let mut tally = Tally::new()?;
    while !shared.stop.load(Ordering::Relaxed) {
        let measure_from = shared.measure_from_us.load(Ordering::Relaxed);
        let start = Instant::now();
        let counted = measure_from != 0
            && start.duration_since(shared.epoch).as_micros() as u64 >= measure_from;
        if counted {
            if let Some(remaining) = &shared.remaining {
                let claimed = remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                if claimed.is_err() {
                    break;
                }
            }
        }
        let result = tokio::time::timeout(
            timeout,
            conn.send_fields(target.fields.clone(), target.body.clone()),
        )
        .await;
        if !counted {
            if let Ok(Err(e)) | Err(e) = result.map_err(anyhow::Error::from) {
                // Warm-up failures still matter: a dead connection would spin here.
                tally.first_error.get_or_insert_with(|| format!("{e:#}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            continue;
        }
        let elapsed = start.elapsed().as_micros() as u64;
        match result {
            Ok(Ok(response)) => {
                *tally.statuses.entry(response.status.as_u16()).or_default() += 1;
                tally.histogram.saturating_record(elapsed.max(1));
            }
            Ok(Err(e)) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(_) => {
                tally.errors += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| format!("request timed out after {timeout:?}"));
            }
        }
    }
    Ok(tally)
}

async fn run(args: Args) -> Result<Summary> {
    if args.duration.is_none() && args.requests.is_none() {
        bail!("give -D SECONDS or -n REQUESTS");
    }
    if args.ca_file.is_none() && !args.insecure {
        bail!("give --ca-file CA.pem, or --insecure to skip verification");
    }
    if args.connections == 0 || args.streams == 0 {
        bail!("-c and -m must be at least 1");
    }
    let target = Arc::new(parse_target(&args)?);
    let options = ClientOptions {
        groups: (args.groups != "default").then(|| args.groups.clone()),
        qlog_dir: args.qlog_dir.clone(),
        ..ClientOptions::default()
    };
    // One handshake after the other: simpler to diagnose, and a few milliseconds per
    // connection do not matter here.
    let connect_start = Instant::now();
    let mut connections = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let conn = H3Connection::connect_with(
            target.addr,
            &target.server_name,
            args.ca_file.as_deref(),
            &options,
        )
        .await
        .with_context(|| format!("connection {} of {}", i + 1, args.connections))?;
        connections.push(conn);
    }
    let connect_ms = connect_start.elapsed().as_secs_f64() * 1000.0;

    let shared = Arc::new(Shared {
        measure_from_us: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        remaining: args.requests.map(AtomicU64::new),
        epoch: Instant::now(),
    });
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut loops = Vec::new();
    for conn in &connections {
        for _ in 0..args.streams {
            loops.push(tokio::spawn(request_loop(
                conn.clone(),
                target.clone(),
                shared.clone(),
                timeout,
            )));
        }
    }
    if args.warmup > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    }
    let measure_start = Instant::now();
    shared.measure_from_us.store(
        (measure_start.duration_since(shared.epoch).as_micros() as u64).max(1),
        Ordering::Relaxed,
    );
    if let Some(seconds) = args.duration {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        shared.stop.store(true, Ordering::Relaxed);
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut statuses = BTreeMap::new();
    let mut errors = 0;
    let mut first_error = None;
    for handle in loops {
        let tally = handle.await??;
        histogram.add(&tally.histogram)?;
        for (status, n) in tally.statuses {
            *statuses.entry(status).or_default() += n;
        }
        errors += tally.errors;
        if first_error.is_none() {
            first_error = tally.first_error;
        }
    }
    // In -D mode the window is the fixed duration (requests in flight at its end finish and
    // count, as in h2load); in -n mode it ends with the last response.
    let duration_s = match args.duration {
        Some(seconds) => seconds,
        None => measure_start.elapsed().as_secs_f64(),
    };
    let completed: u64 = statuses.values().sum();
    let succeeded = statuses.get(&args.expect_status).copied().unwrap_or(0);
    let latency = if histogram.is_empty() {
        Latency {
            min: 0,
            mean: 0.0,
            p50: 0,
            p90: 0,
            p99: 0,
            p999: 0,
            max: 0,
        }
    } else {
        Latency {
            min: histogram.min(),
            mean: histogram.mean(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    };
    Ok(Summary {
        url: args.url.clone(),
        connections: args.connections,
        streams_per_connection: args.streams,
        connect_ms,
        duration_s,
        completed,
        succeeded,
        unexpected_status: completed - succeeded,
        errors,
        rps: completed as f64 / duration_s.max(1e-9),
        latency_us: latency,
        statuses,
        first_error,
    })
}

fn print(summary: &Summary, format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(summary)?),
        Format::Csv => {
            println!("url,connections,streams,duration_s,completed,succeeded,unexpected_status,errors,rps,p50_us,p90_us,p99_us,p999_us,max_us");
            let l = &summary.latency_us;
            println!(
                "{},{},{},{:.3},{},{},{},{},{:.1},{},{},{},{},{}",
                summary.url,
                summary.connections,
                summary.streams_per_connection,
                summary.duration_s,
                summary.completed,
                summary.succeeded,
                summary.unexpected_status,
                summary.errors,
                summary.rps,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max
            );
        }
        Format::Text => {
            let l = &summary.latency_us;
            println!(
                "h3load {}: {} connections x {} streams, connected in {:.1} ms",
                summary.url,
                summary.connections,
                summary.streams_per_connection,
                summary.connect_ms
            );
            println!(
                "finished in {:.2} s, {:.1} req/s; {} completed, {} with status as expected, {} other status, {} errors",
                summary.duration_s,
                summary.rps,
                summary.completed,
                summary.succeeded,
                summary.unexpected_status,
                summary.errors
            );
            println!(
                "latency µs: min {} mean {:.0} p50 {} p90 {} p99 {} p99.9 {} max {}",
                l.min, l.mean, l.p50, l.p90, l.p99, l.p999, l.max
            );
            println!("statuses: {:?}", summary.statuses);
            if let Some(e) = &summary.first_error {
                println!("first error: {e}");
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let format = args.format;
    let summary = runtime.block_on(run(args))?;
    print(&summary, format)?;
    if summary.completed == 0 {
        bail!(
            "no request completed{}",
            summary
                .first_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
