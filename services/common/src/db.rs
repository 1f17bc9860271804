//! PostgreSQL: the connection pool and the migration runner.
//!
//! The pool never connects eagerly, so a service starts (and answers `/readyz` 503) while the
//! database is down; every checkout is bounded by a timeout and a broken connection is replaced
//! on the next checkout, so the service recovers by itself when PostgreSQL returns.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::DatabaseArgs;

/// Both services migrate the same database in dev; one lock key serialises them (and two
/// replicas of one service), which also keeps `CREATE EXTENSION IF NOT EXISTS` race-free.
const MIGRATION_LOCK_KEY: i64 = 0x7265_636f_7264_0001; // "record" + 1

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    Url(tokio_postgres::Error),
    #[error("cannot build the PostgreSQL pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(tokio_postgres::Error),
    #[error("timed out connecting to PostgreSQL after {0:?}")]
    ConnectTimeout(Duration),
    #[error("migration lock: {0}")]
    Lock(tokio_postgres::Error),
    #[error("migrations failed: {0}")]
    Migrate(#[from] refinery::Error),
}

/// Parses the URL and applies our connection defaults. `session_options` are extra
/// `-c name=value` settings for every connection (e.g. a statement timeout).
pub fn connection_config(
    url: &str,
    timeout: Duration,
    application_name: &str,
    session_options: &str,
) -> Result<tokio_postgres::Config, DbError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(DbError::Url)?;
    config.connect_timeout(timeout);
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    if !session_options.is_empty() {
        let options = match config.get_options() {
            Some(existing) if !existing.is_empty() => format!("{existing} {session_options}"),
            _ => session_options.to_string(),
        };
        config.options(&options);
    }
    Ok(config)
}

/// A lazily connecting pool; checkouts and connects give up after `args.db_timeout`.
pub fn create_pool(
    args: &DatabaseArgs,
    application_name: &str,
    session_options: &str,
) -> Result<Pool, DbError> {
    let config = connection_config(
        &args.database_url,
        args.db_timeout,
        application_name,
        session_options,
    )?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // `Fast` checks `is_closed()`: a connection whose socket died (PostgreSQL
            // restarted) is dropped and replaced instead of failing the next query.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(args.db_pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(args.db_timeout))
        .create_timeout(Some(args.db_timeout))
        .recycle_timeout(Some(args.db_timeout))
        .build()?;
    Ok(pool)
}

/// `SELECT 1` through the pool within `timeout`.
pub async fn ping(pool: &Pool, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Applies `runner`'s migrations, recording them in `history_table`, while holding a
/// PostgreSQL advisory lock so concurrent starters apply each migration exactly once.
pub async fn migrate(
    url: &str,
    timeout: Duration,
    history_table: &str,
    mut runner: refinery::Runner,
) -> Result<usize, DbError> {
    let config = connection_config(url, timeout, "migrate", "")?;
    let (mut client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
        .await
        .map_err(|_| DbError::ConnectTimeout(timeout))?
        .map_err(DbError::Connect)?;
    let connection = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "migration connection ended");
        }
    });
    // Session-level lock: released by the unlock below or, if we crash, when the
    // connection closes, so a dead replica never wedges the others.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(DbError::Lock)?;
    runner.set_migration_table_name(history_table);
    let outcome = runner.run_async(&mut client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    drop(client);
    let _ = connection.await;
    let report = outcome?;
    unlocked.map_err(DbError::Lock)?;
    Ok(report.applied_migrations().len())
}

/// Retries [`migrate`] until it succeeds (PostgreSQL may still be starting, or be down for a
/// while): the service keeps serving `/readyz` 503 meanwhile instead of exiting.
/// `attempts = None` retries forever.
pub async fn migrate_with_retry(
    url: &str,
    timeout: Duration,
    history_table: &str,
    runner: fn() -> refinery::Runner,
    attempts: Option<u32>,
) -> Result<usize, DbError> {
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match migrate(url, timeout, history_table, runner()).await {
            Ok(applied) => {
                tracing::info!(applied, history_table, "migrations up to date");
                return Ok(applied);
            }
            Err(err) if attempts.is_none_or(|max| attempt < max) => {
                tracing::warn!(error = %err, attempt, retry_in = ?delay, "migrations not applied yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_options_are_appended_to_url_options() {
        let config = connection_config(
            "postgres://u:p@127.0.0.1:5432/db?options=-c%20search_path%3Dx",
            Duration::from_secs(1),
            "records",
            "-c statement_timeout=5000",
        )
        .expect("valid url");
        assert_eq!(
            config.get_options(),
            Some("-c search_path=x -c statement_timeout=5000")
        );
        assert_eq!(config.get_application_name(), Some("records"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(1)));
    }

    #[test]
    fn bad_url_is_a_clear_error() {
        let err = connection_config("postgres://[::1", Duration::from_secs(1), "x", "")
            .expect_err("invalid");
        assert!(err.to_string().contains("invalid DATABASE_URL"), "{err}");
    }
}
