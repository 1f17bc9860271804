//! `auth`: accounts, logins (JWT issue) and logouts (revocation), over HTTP/JSON and gRPC.
//!
//! Subcommands: `serve` (default), `migrate`, `rotate-key`. Flags and their environment
//! fallbacks are listed in docs/contracts.md ("Service command lines").

mod accounts;
mod grpc;
mod http;
mod keys;
mod login_throttle;
mod password;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use record_proto::auth::auth_service_server::AuthServiceServer;
use service_common::config::{
    parse_duration, with_default_subcommand, DatabaseArgs, SharedServeArgs,
};
use service_common::server::{shutdown_signal, ServiceBase, ServiceSpec};

use crate::accounts::{Accounts, TokenPolicy};
use crate::keys::{KeyAlg, KeySet};
use crate::login_throttle::{LoginThrottle, LoginThrottleArgs};
use crate::password::{Argon2Args, PasswordHasher};

mod embedded {
    refinery::embed_migrations!("../../migrations/auth");
}

const HISTORY_TABLE: &str = "refinery_history_auth";
const DEFAULT_KEY_DIR: &str = ".dev/auth-keys";
const SUBCOMMANDS: &[&str] = &["serve", "migrate", "rotate-key"];

#[derive(Debug, Parser)]
#[command(
    name = "auth",
    version,
    about = "Accounts and JWT issuing for the Record Platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP and gRPC (the default).
    Serve(Box<ServeArgs>),
    /// Apply the auth migrations and exit.
    Migrate(DatabaseArgs),
    /// Make the current signing key the previous one and generate a new current key.
    /// Running services pick it up on SIGHUP (or restart).
    RotateKey(KeyArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct KeyArgs {
    /// Directory of the JWT signing keys (current.pem, previous.pem); created if missing.
    #[arg(long, env = "AUTH_KEY_DIR", default_value = DEFAULT_KEY_DIR)]
    key_dir: PathBuf,

    /// Signing algorithm for newly generated keys.
    #[arg(long, env = "AUTH_JWT_ALG", value_enum, default_value = "EdDSA")]
    jwt_alg: KeyAlg,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[arg(long, env = "AUTH_HTTP_ADDR", default_value = "127.0.0.1:4001")]
    http_addr: SocketAddr,

    #[arg(long, env = "AUTH_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,

    #[command(flatten)]
    db: DatabaseArgs,

    #[command(flatten)]
    shared: SharedServeArgs,

    #[command(flatten)]
    keys: KeyArgs,

    /// `iss` claim of issued tokens.
    #[arg(long, env = "AUTH_JWT_ISSUER", default_value = "record-platform")]
    jwt_issuer: String,

    /// `aud` claim of issued tokens.
    #[arg(long, env = "AUTH_JWT_AUDIENCE", default_value = "record-platform")]
    jwt_audience: String,

    /// Token lifetime (`exp` - `iat`).
    #[arg(long, env = "AUTH_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    token_ttl: Duration,

    #[command(flatten)]
    argon2: Argon2Args,

    #[command(flatten)]
    login_throttle: LoginThrottleArgs,
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
        service_common::telemetry::init("auth")
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Migrate(db) => migrate(&db).await,
            Command::RotateKey(args) => rotate_key(&args),
        }
    });
    {
        let _entered = runtime.enter();
        telemetry.shutdown();
    }
    if let Err(err) = &result {
        tracing::error!(error = format!("{err:#}"), "auth failed");
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
    .context("auth migrations")?;
    println!("auth: {applied} migration(s) applied");
    Ok(())
}

fn rotate_key(args: &KeyArgs) -> anyhow::Result<()> {
    let keys = KeySet::rotate(&args.key_dir, args.jwt_alg).context("rotate-key")?;
    println!(
        "auth: new signing key {} ({}) in {}; previous key {} stays published. Send SIGHUP to running auth processes (or restart them).",
        keys.current.kid,
        keys.current.alg.name(),
        args.key_dir.display(),
        keys.previous.as_ref().map_or("(none)", |k| k.kid.as_str()),
    );
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let keys =
        KeySet::load_or_create(&args.keys.key_dir, args.keys.jwt_alg).context("signing keys")?;
    tracing::info!(kid = %keys.current.kid, alg = keys.current.alg.name(), "signing key loaded");
    let base = ServiceBase::new("auth", &args.db, &args.shared, "-c statement_timeout=5000")?;
    let hasher =
        PasswordHasher::new(&args.argon2, base.metrics.registry()).context("argon2 parameters")?;
    let throttle = LoginThrottle::new(
        base.redis.clone(),
        &args.login_throttle,
        base.metrics.registry(),
    )
    .context("login throttle")?;
    let accounts = Arc::new(Accounts::new(
        base.pool.clone(),
        base.redis.clone(),
        hasher,
        throttle,
        keys,
        TokenPolicy {
            issuer: args.jwt_issuer.clone(),
            audience: args.jwt_audience.clone(),
            ttl: args.token_ttl,
        },
    ));
    let shutdown = shutdown_signal()?;
    spawn_key_reloader(Arc::clone(&accounts), args.keys.key_dir.clone());
    spawn_token_pruner(Arc::clone(&accounts));

    let router = http::router(http::AppState {
        accounts: Arc::clone(&accounts),
        gate: Arc::clone(&base.gate),
    });
    let grpc_service = AuthServiceServer::new(grpc::AuthGrpc {
        accounts,
        gate: Arc::clone(&base.gate),
        metrics: Arc::clone(&base.metrics),
    });
    let spec = ServiceSpec {
        http_addr: args.http_addr,
        grpc_addr: args.grpc_addr,
        router,
        grpc: Box::new(move |routes| routes.add_service(grpc_service)),
        grpc_service_names: &["auth.AuthService"],
        descriptor_set: record_proto::FILE_DESCRIPTOR_SET,
        migrations: embedded::migrations::runner,
        history_table: HISTORY_TABLE,
    };
    base.run(spec, shutdown).await?;
    Ok(())
}

/// SIGHUP re-reads the key directory (after `auth rotate-key`); a bad directory is logged
/// and the keys in use stay.
fn spawn_key_reloader(accounts: Arc<Accounts>, dir: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; key rotation needs a restart");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reload_keys(&accounts, &dir);
        }
    });
}

fn reload_keys(accounts: &Accounts, dir: &Path) {
    match KeySet::load(dir) {
        Ok(keys) => {
            tracing::info!(
                kid = %keys.current.kid,
                previous = keys.previous.as_ref().map(|k| k.kid.as_str()),
                "signing keys reloaded"
            );
            accounts.replace_keys(keys);
        }
        Err(err) => tracing::error!(error = %err, "key reload failed; keeping the current keys"),
    }
}

fn spawn_token_pruner(accounts: Arc<Accounts>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match accounts.prune_expired_tokens().await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "expired token records pruned"),
                Err(err) => tracing::debug!(error = %err, "token pruning skipped"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args = args.iter().map(std::ffi::OsString::from).collect();
        Cli::try_parse_from(with_default_subcommand(args, SUBCOMMANDS))
    }

    #[test]
    fn serve_is_the_default_and_has_contract_defaults() {
        let cli = parse(&[
            "auth",
            "--database-url",
            "postgres://x@h/db",
            "--identity-key-dir",
            "k",
        ])
        .expect("parse");
        let Command::Serve(args) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(args.http_addr.to_string(), "127.0.0.1:4001");
        assert_eq!(args.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(args.shared.redis_url, "redis://127.0.0.1:56379");
        assert_eq!(args.shared.redis_namespace, "");
        assert_eq!(args.keys.jwt_alg, KeyAlg::EdDsa);
        assert_eq!(args.jwt_issuer, "record-platform");
        assert_eq!(args.jwt_audience, "record-platform");
        assert_eq!(args.token_ttl, Duration::from_secs(900));
        assert_eq!(args.argon2.memory_kib, 19_456);
        assert_eq!(args.argon2.max_concurrent, 8);
        assert_eq!(args.argon2.max_queued, 32);
        assert_eq!(args.login_throttle.failure_limit, 10);
        assert_eq!(args.login_throttle.failure_window, Duration::from_secs(900));
        assert_eq!(args.login_throttle.backoff, Duration::from_secs(1));
        assert_eq!(args.login_throttle.backoff_max, Duration::from_secs(900));
    }

    #[test]
    fn rotate_key_takes_a_key_dir_and_algorithm() {
        let cli = parse(&[
            "auth",
            "rotate-key",
            "--key-dir",
            "/tmp/k",
            "--jwt-alg",
            "ES256",
        ])
        .expect("parse");
        let Command::RotateKey(args) = cli.command else {
            panic!("expected rotate-key");
        };
        assert_eq!(args.key_dir, PathBuf::from("/tmp/k"));
        assert_eq!(args.jwt_alg, KeyAlg::Es256);
        assert!(parse(&["auth", "rotate-key", "--jwt-alg", "HS256"]).is_err());
    }

    #[test]
    fn migrate_needs_only_the_database() {
        let cli =
            parse(&["auth", "migrate", "--database-url", "postgres://x@h/db"]).expect("parse");
        assert!(matches!(cli.command, Command::Migrate(_)));
    }
}
