//! The floor the edge is measured against (issue 13): a Pingora 0.9.1 proxy doing only what
//! every proxy in `perf/run.sh` does — TLS (BoringSSL, `TlsSettings::intermediate`, h2 by
//! ALPN), one HTTP/1.1 upstream, a keep-alive pool — and nothing of the edge's (no routing,
//! policy, metrics, access log, limits). Same cert, backend and CPU pinning as the peers, so
//! `edge ÷ bare-pingora` in one run tells the edge's own cost from Pingora's.

use std::net::SocketAddr;
use std::path::PathBuf;

use async_trait::async_trait;
use clap::Parser;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "A bare Pingora reverse proxy: the benchmark floor for the edge")]
struct Args {
    /// TLS listener (h1 and h2).
    #[arg(long)]
    listen: SocketAddr,
    /// The plain HTTP/1.1 backend.
    #[arg(long)]
    upstream: SocketAddr,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Idle upstream connections kept (the edge's `upstream_keepalive_pool_size` default).
    #[arg(long, default_value_t = 1024)]
    pool: usize,
    /// Pingora's `work_stealing`: `true` (its default) is one work-stealing runtime,
    /// `false` a single-threaded runtime per thread (what the edge runs with one thread).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    work_stealing: bool,
}

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> pingora_error::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads,
        upstream_keepalive_pool_size: args.pool,
        work_stealing: args.work_stealing,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(
        &server.configuration,
        Bare {
            upstream: args.upstream,
        },
    );
    let cert = args
        .cert
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("--cert is not UTF-8"))?;
    let key = args
        .key
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("--key is not UTF-8"))?;
    let mut tls = TlsSettings::intermediate(cert, key)
        .map_err(|e| anyhow::anyhow!("TLS settings from {cert} and {key}: {e}"))?;
    tls.enable_h2();
    proxy.add_tls_with_settings(&args.listen.to_string(), None, tls);
    server.add_service(proxy);
    server.run_forever();
}
