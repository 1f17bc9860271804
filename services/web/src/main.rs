//! `web`: serves the collectors' web app (plain HTML, CSS and JavaScript from
//! `--assets-dir`) for the edge's `/` route. The app talks to the public API on the same
//! origin (`/api/...` through the edge); this service knows nothing of the API.

mod assets;
mod http;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use service_common::config::parse_duration;
use service_common::metrics::{observe_http, Metrics};
use service_common::server::{bind, serve_http, shutdown_signal};

use crate::assets::AssetCatalog;

/// The checkout's `services/web/assets`: what `make up` and the tests serve. Images set
/// `WEB_ASSETS_DIR`.
const DEFAULT_ASSETS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets");

#[derive(Debug, Parser)]
#[command(
    name = "web",
    version,
    about = "The collectors' web app of the Record Platform (static files)"
)]
struct Cli {
    /// Address to serve HTTP on (the edge's `web` cluster points here).
    #[arg(long, env = "WEB_LISTEN_ADDR", default_value = "127.0.0.1:4003")]
    listen: SocketAddr,

    /// Directory holding `index.html` and the assets it references as `/assets/<name>`.
    /// Read once at start; a restart serves changed files.
    #[arg(long, env = "WEB_ASSETS_DIR", default_value = DEFAULT_ASSETS_DIR)]
    assets_dir: PathBuf,

    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    shutdown_grace: Duration,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let _telemetry = service_common::telemetry::init("web");
    let catalog = AssetCatalog::load(&cli.assets_dir)
        .with_context(|| format!("--assets-dir / WEB_ASSETS_DIR {}", cli.assets_dir.display()))?;
    tracing::info!(
        dir = %cli.assets_dir.display(),
        bytes = catalog.total_bytes(),
        assets = ?catalog.names(),
        "assets loaded"
    );
    // Metrics only feed the access log's span and request id here: the edge's catch-all
    // route forwards every path to this service, so a `/metrics` here would be public.
    // The edge's own metrics (route="web") count the app's requests.
    let metrics = Arc::new(Metrics::new("web").context("metrics")?);
    let router = http::router(Arc::new(catalog))
        .layer(axum::middleware::from_fn_with_state(metrics, observe_http));
    let shutdown = shutdown_signal()?;
    let listener = bind(cli.listen).await?;
    serve_http(listener, router, shutdown, cli.shutdown_grace).await?;
    Ok(())
}
