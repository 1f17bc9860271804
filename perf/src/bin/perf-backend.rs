//! `perf-backend`: the fixed, tiny, fast backend every proxy (and "direct") is measured
//! against.
//!
//! - `GET` (any path) → `200 ok\n`.
//! - `POST` with `content-type: application/grpc*` → one small gRPC message and the trailer
//!   `grpc-status: 0` (unary; the request message is read and ignored).
//! - any other `POST`/`PUT` → the body is read, `200 ok\n`.
//!
//! - `GET /__count` → the number of requests served so far (not counting itself): lets a load
//!   generator's request count be checked against what actually reached the backend.
//!
//! It speaks HTTP/1.1 and h2c (prior knowledge) on `--listen`, and with `--tls-listen` the same
//! over TLS (ALPN h2 and http/1.1), so a load generator can hit it "direct" with the same
//! certificate the proxies serve. One thread by default: the benchmark pins it to one CPU.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(
    name = "perf-backend",
    about = "Fixed HTTP/1.1 + h2c (+TLS) backend for the perf suite"
)]
struct Args {
    /// Plain-text listener: HTTP/1.1 and h2c with prior knowledge.
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
    /// Optional TLS listener (h2 and http/1.1 by ALPN) for the "direct" measurements.
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for --tls-listen.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// PEM private key for --tls-listen.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Runtime threads (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// The gRPC response: a 5-byte frame header and a tiny protobuf message (`1: "ok"`).
const GRPC_REPLY: &[u8] = &[0, 0, 0, 0, 4, 0x0a, 0x02, b'o', b'k'];

/// A body of one data frame followed by trailers (gRPC needs trailers).
struct TrailersBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for TrailersBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

type Body = Either<Full<Bytes>, TrailersBody>;

/// Requests served (all of them but `/__count`).
static SERVED: AtomicU64 = AtomicU64::new(0);

fn ok_text() -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from_static(b"ok\n"))));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    response
}

async fn handle(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        if request.uri().path() == "/__count" {
            let count = SERVED.load(Ordering::Relaxed);
            return Ok(Response::new(Either::Left(Full::new(Bytes::from(
                format!("{count}\n"),
            )))));
        }
        SERVED.fetch_add(1, Ordering::Relaxed);
        return Ok(ok_text());
    }
    SERVED.fetch_add(1, Ordering::Relaxed);
    let is_grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    // Read the request body whole (its size is not checked: this is a benchmark backend).
    if request.into_body().collect().await.is_err() {
        let mut response = ok_text();
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    }
    if !is_grpc {
        return Ok(ok_text());
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut response = Response::new(Either::Right(TrailersBody {
        data: Some(Bytes::from_static(GRPC_REPLY)),
        trailers: Some(trailers),
    }));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    Ok(response)
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<tokio_rustls::TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve_plain(listener: TcpListener, builder: auto::Builder<TokioExecutor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let _ = builder
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}

async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    builder: auto::Builder<TokioExecutor>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let _ = builder
                .serve_connection(TokioIo::new(tls), service_fn(handle))
                .await;
        });
    }
}

async fn run(args: Args) -> Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(1000)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20);
    builder.http1().keep_alive(true);
    let plain = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let mut tasks = vec![tokio::spawn(serve_plain(plain, builder.clone()))];
    if let Some(addr) = args.tls_listen {
        let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
            anyhow::bail!("--tls-listen needs --cert and --key");
        };
        let acceptor = tls_acceptor(cert, key)?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tasks.push(tokio::spawn(serve_tls(listener, acceptor, builder.clone())));
    }
    eprintln!(
        "perf-backend: listening on {} (h1, h2c){}",
        args.listen,
        args.tls_listen
            .map(|a| format!(" and {a} (TLS: h2, http/1.1)"))
            .unwrap_or_default()
    );
    for task in tasks {
        task.await?;
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
    runtime.block_on(run(args))
}
