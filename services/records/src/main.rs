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
use service_common::redis::{RedisError, RedisHandle};
use service_common::server::{shutdown_signal, ServiceBase, ServiceSpec};

use crate::cache::CacheSettings;
use crate::catalogue::Catalogue;
use crate::store::Store;

mod embedded {
    refinery::embed_migrations!("../../migrations/records");
}

const HISTORY_TABLE: &str = "refinery_history_records";
const SUBCOMMANDS: &[&str] = &["serve", "migrate"];

/// Session settings of every pooled connection: a runaway query cannot hold a connection
/// forever, and `<%` (word similarity) matches more fuzzily than pg_trgm's 0.6 default: at 0.4
/// a letter missing in each short word still matches ("aphx twn" shares 0.42 of its trigrams
/// with "aphex twin", "mils davs" 0.46 with "miles davis"). Exact and substring matches still
/// rank above every such fuzzy one.
///
/// `constraint_exclusion = off`: at its default (`partition`) the planner parses every CHECK
/// constraint of the partition a statement touches, on every statement, to see whether it
/// excludes the partition; ours (lengths, ranges) never do, and the partitions are pruned by
/// their hash bounds, which this setting does not affect. 6 % of a CRUD round at one client
/// (perf/README.md, "Records search at 1M rows").
const SESSION_OPTIONS: &str = "-c statement_timeout=5000 -c pg_trgm.word_similarity_threshold=0.4 \
     -c constraint_exclusion=off";

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

    #[command(flatten)]
    cache: CacheArgs,
}

/// The search/stats cache: a Redis of its own, never the shared `REDIS_URL` one.
#[derive(Debug, clap::Args)]
struct CacheArgs {
    /// Redis for cached search and stats answers, e.g. redis://127.0.0.1:56380. Give it a
    /// memory cap and `maxmemory-policy allkeys-lru`: the shared Redis (revocations, rate
    /// limits) runs `noeviction`, and a cache flood there would make logout fail. Unset (or
    /// empty): no cache, every answer comes from PostgreSQL.
    #[arg(long, env = "RECORDS_CACHE_REDIS_URL", hide_env_values = true)]
    cache_redis_url: Option<String>,

    /// Lifetime of cached search and stats answers (they are invalidated by every change
    /// anyway; this only bounds Redis memory).
    #[arg(long, env = "RECORDS_CACHE_TTL", default_value = "5m", value_parser = parse_duration)]
    cache_ttl: Duration,

    /// Largest answer stored in the cache, in KiB; larger ones are served but not cached
    /// (counted in `cache_writes_total{result="too_large"}`).
    #[arg(long, env = "RECORDS_CACHE_MAX_ENTRY_KIB", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=16_384))]
    cache_max_entry_kib: u32,
}

impl CacheArgs {
    /// The cache settings; `shared` is the service's `REDIS_URL` and namespace settings.
    fn settings(&self, shared: &SharedServeArgs) -> anyhow::Result<CacheSettings> {
        let url = self
            .cache_redis_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty());
        let redis = match url {
            None => {
                tracing::warn!(
                    "RECORDS_CACHE_REDIS_URL is not set: search and stats caching is off"
                );
                None
            }
            Some(url) => {
                if url == shared.redis_url.trim() {
                    tracing::warn!(
                        "RECORDS_CACHE_REDIS_URL is the shared REDIS_URL: a cache flood can fill \
                         the Redis that holds revocations; give the cache a Redis of its own"
                    );
                }
                let handle = RedisHandle::new(url, &shared.redis_namespace, shared.redis_timeout)
                    .map_err(|err| match err {
                    RedisError::Url(inner) => anyhow::anyhow!(
                        "invalid RECORDS_CACHE_REDIS_URL (--cache-redis-url): {inner}"
                    ),
                    other => other.into(),
                })?;
                Some(handle)
            }
        };
        Ok(CacheSettings {
            redis,
            ttl: self.cache_ttl,
            max_entry_bytes: usize::try_from(self.cache_max_entry_kib)
                .unwrap_or(usize::MAX)
                .saturating_mul(1024),
            lock_ttl: Duration::from_secs(2),
        })
    }
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
    let cache = args.cache.settings(&args.shared)?;
    // Reported in /readyz, but a replica without its cache still answers from PostgreSQL.
    base.readiness
        .add_optional_redis("cache", cache.redis.clone());
    let catalogue = Arc::new(Catalogue::new(
        Store::new(base.pool.clone()),
        &cache,
        Arc::clone(&base.metrics),
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
            "--identity-key-dir",
            "k",
        ])
        .expect("parse");
        let Command::Serve(args) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(args.http_addr.to_string(), "127.0.0.1:4002");
        assert_eq!(args.grpc_addr.to_string(), "127.0.0.1:50052");
        assert_eq!(args.cache.cache_max_entry_kib, 64);
    }

    /// `serve` with the required flags plus `extra`.
    fn serve_args(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut args = vec![
            "records",
            "--database-url",
            "postgres://x@h/db",
            "--identity-key-dir",
            "k",
        ];
        args.extend_from_slice(extra);
        match parse(&args)?.command {
            Command::Serve(args) => Ok(*args),
            Command::Migrate(_) => panic!("expected serve"),
        }
    }

    // A runtime: the Redis handle's connection manager is created inside one.
    #[tokio::test]
    async fn without_a_cache_url_the_cache_is_off_never_the_shared_redis() {
        if std::env::var_os("RECORDS_CACHE_REDIS_URL").is_none() {
            let args = serve_args(&[]).expect("parse");
            let settings = args.cache.settings(&args.shared).expect("settings");
            assert!(settings.redis.is_none(), "no cache URL means no cache");
        }
        let args = serve_args(&[
            "--cache-redis-url",
            "redis://127.0.0.1:56380",
            "--cache-max-entry-kib",
            "8",
        ])
        .expect("parse");
        let settings = args.cache.settings(&args.shared).expect("settings");
        assert!(settings.redis.is_some());
        assert_eq!(settings.max_entry_bytes, 8 * 1024);
        assert!(serve_args(&["--cache-max-entry-kib", "0"]).is_err());
        let args = serve_args(&["--cache-redis-url", "http://not-redis"]).expect("parse");
        let err = args.cache.settings(&args.shared).expect_err("bad URL");
        assert!(err.to_string().contains("RECORDS_CACHE_REDIS_URL"), "{err}");
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
            "--identity-key-dir",
            "k",
        ])
        .expect("parse");
        let Command::Serve(args) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(args.http_addr.port(), 1);
        if std::env::var_os("DATABASE_URL").is_none() {
            assert!(parse(&["records", "--identity-key-dir", "k"]).is_err());
        }
    }
}
