//! `records`: a collector's catalogue (CRUD, search, stats), over HTTP/JSON and gRPC.
//!
//! Subcommands: `serve` (default) and `migrate`. Flags and their environment fallbacks are
//! listed in docs/contracts.md ("Service command lines").

mod cache;
mod catalogue;
mod cursor;
mod grpc;
mod http;
mod model;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use record_proto::records::records_service_server::RecordsServiceServer;
use service_common::config::{
    parse_duration, with_default_subcommand, DatabaseArgs, SharedServeArgs,
};
use service_common::server::{shutdown_signal, ServiceBase, ServiceSpec};

use crate::catalogue::Catalogue;
use crate::store::Store;

mod embedded {
    refinery::embed_migrations!("../../migrations/records");
}

const HISTORY_TABLE: &str = "refinery_history_records";
const SUBCOMMANDS: &[&str] = &["serve", "migrate"];

/// Session settings of every pooled connection: a runaway query cannot hold a connection
/// forever, and `<%` (word similarity) matches a little more fuzzily than pg_trgm's 0.6
/// default so one-letter typos in short words still match.
const SESSION_OPTIONS: &str = "-c statement_timeout=5000 -c pg_trgm.word_similarity_threshold=0.5";

#[derive(Debug, Parser)]
#[command(
    name = "records",
    version,
    about = "The record catalogue of the Record Platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP and gRPC (the default).
    Serve(Box<ServeArgs>),
    /// Apply the records migrations and exit.
    Migrate(DatabaseArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[arg(long, env = "RECORDS_HTTP_ADDR", default_value = "127.0.0.1:4002")]
    http_addr: SocketAddr,

    #[arg(long, env = "RECORDS_GRPC_ADDR", default_value = "127.0.0.1:50052")]
    grpc_addr: SocketAddr,

    #[command(flatten)]
    db: DatabaseArgs,

    #[command(flatten)]
    shared: SharedServeArgs,

    /// Lifetime of cached search and stats answers (they are invalidated by every change
    /// anyway; this only bounds Redis memory).
    #[arg(long, env = "RECORDS_CACHE_TTL", default_value = "5m", value_parser = parse_duration)]
    cache_ttl: Duration,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_from(with_default_subcommand(
        std::env::args_os().collect(),
        SUBCOMMANDS,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Logs, and span export when OTEL_EXPORTER_OTLP_ENDPOINT is set (on this runtime).
    let mut telemetry = {
        let _entered = runtime.enter();
        service_common::telemetry::init("records")
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Migrate(db) => migrate(&db).await,
        }
    });
    {
        let _entered = runtime.enter();
        telemetry.shutdown();
    }
    if let Err(err) = &result {
        tracing::error!(error = format!("{err:#}"), "records failed");
    }
    result
}

async fn migrate(db: &DatabaseArgs) -> anyhow::Result<()> {
    let applied = service_common::db::migrate_with_retry(
        &db.database_url,
        db.db_timeout,
        HISTORY_TABLE,
        embedded::migrations::runner,
        Some(15),
    )
    .await
    .context("records migrations")?;
    println!("records: {applied} migration(s) applied");
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let base = ServiceBase::new("records", &args.db, &args.shared, SESSION_OPTIONS)?;
    let catalogue = Arc::new(Catalogue::new(
        Store::new(base.pool.clone()),
        base.redis.clone(),
        Arc::clone(&base.metrics),
        args.cache_ttl,
    ));
    let shutdown = shutdown_signal()?;
    let router = http::router(http::AppState {
        catalogue: Arc::clone(&catalogue),
        gate: Arc::clone(&base.gate),
    });
    let grpc_service = RecordsServiceServer::new(grpc::RecordsGrpc {
        catalogue,
        gate: Arc::clone(&base.gate),
        metrics: Arc::clone(&base.metrics),
    });
    let spec = ServiceSpec {
        http_addr: args.http_addr,
        grpc_addr: args.grpc_addr,
        router,
        grpc: Box::new(move |routes| routes.add_service(grpc_service)),
        grpc_service_names: &["records.RecordsService"],
        descriptor_set: record_proto::FILE_DESCRIPTOR_SET,
        migrations: embedded::migrations::runner,
        history_table: HISTORY_TABLE,
    };
    base.run(spec, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args = args.iter().map(std::ffi::OsString::from).collect();
        Cli::try_parse_from(with_default_subcommand(args, SUBCOMMANDS))
    }

    #[test]
    fn serve_is_the_default_with_contract_defaults() {
        let cli = parse(&[
            "records",
            "--database-url",
            "postgres://x@h/db",
            "--identity-key-file",
            "k",
        ])
        .expect("parse");
        let Command::Serve(args) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(args.http_addr.to_string(), "127.0.0.1:4002");
        assert_eq!(args.grpc_addr.to_string(), "127.0.0.1:50052");
    }

    #[test]
    fn flags_win_and_database_url_is_required() {
        let cli = parse(&[
            "records",
            "serve",
            "--http-addr",
            "127.0.0.1:1",
            "--database-url",
            "postgres://x@h/db",
            "--identity-key-file",
            "k",
        ])
        .expect("parse");
        let Command::Serve(args) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(args.http_addr.port(), 1);
        if std::env::var_os("DATABASE_URL").is_none() {
            assert!(parse(&["records", "--identity-key-file", "k"]).is_err());
        }
    }
}
