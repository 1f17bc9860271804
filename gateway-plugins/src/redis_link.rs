//! The command connection to Redis, shared by revocation lookups and cluster rate limits.
//!
//! Requests must never wait on a dead Redis: while the link is down every command fails
//! at once (the caller applies its fail mode or falls back), and a supervisor task
//! reconnects in the background with backoff. A command that times out or hits an I/O
//! error marks the link down and wakes the supervisor.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::Notify;

use crate::config::RedisConfig;
use crate::metrics::{LogLimiter, PolicyMetrics};

/// How often the supervisor checks a live connection with PING.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RedisLinkError {
    #[error("Redis is not connected")]
    Down,
    #[error("Redis command timed out after {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

pub struct RedisLink {
    client: redis::Client,
    conn: ArcSwapOption<MultiplexedConnection>,
    pub(crate) namespace: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    wake: Notify,
    metrics: PolicyMetrics,
    log: LogLimiter,
}

impl RedisLink {
    pub(crate) fn new(config: &RedisConfig, metrics: PolicyMetrics) -> Result<Self, String> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| format!("invalid Redis URL: {e}"))?;
        metrics.redis_up.set(0);
        Ok(Self {
            client,
            conn: ArcSwapOption::empty(),
            namespace: config.namespace.clone(),
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
            wake: Notify::new(),
            metrics,
            log: LogLimiter::new(Duration::from_secs(10)),
        })
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    pub(crate) fn is_up(&self) -> bool {
        self.conn.load().is_some()
    }

    /// One connection attempt, bounded by `connect_timeout`.
    pub(crate) async fn connect_once(&self) -> Result<(), RedisLinkError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.command_timeout));
        let attempt = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let conn = tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .map_err(|_| RedisLinkError::Timeout(self.connect_timeout))??;
        self.conn.store(Some(Arc::new(conn)));
        self.metrics.redis_up.set(1);
        Ok(())
    }

    fn mark_down(&self) {
        if self.conn.swap(None).is_some() {
            self.metrics.redis_up.set(0);
            self.wake.notify_one();
        }
    }

    /// Runs `cmd`, failing fast when the link is down.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisLinkError> {
        let mut conn = self.connection()?;
        let result = tokio::time::timeout(self.command_timeout, cmd.query_async(&mut conn)).await;
        self.settle(result)
    }

    /// Runs a Lua script (EVALSHA, loading it on NOSCRIPT), failing fast when down.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisLinkError> {
        let mut conn = self.connection()?;
        let result =
            tokio::time::timeout(self.command_timeout, invocation.invoke_async(&mut conn)).await;
        self.settle(result)
    }

    fn connection(&self) -> Result<MultiplexedConnection, RedisLinkError> {
        self.conn
            .load()
            .as_deref()
            .cloned()
            .ok_or(RedisLinkError::Down)
    }

    fn settle<T>(
        &self,
        result: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, RedisLinkError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                if err.is_io_error()
                    || err.is_connection_dropped()
                    || err.is_connection_refusal()
                    || err.is_timeout()
                    || err.is_unrecoverable_error()
                {
                    self.mark_down();
                }
                Err(err.into())
            }
            Err(_) => {
                // A slow Redis counts as unreachable for this request; the supervisor's
                // PING decides whether the connection itself is still good.
                self.wake.notify_one();
                Err(RedisLinkError::Timeout(self.command_timeout))
            }
        }
    }

    /// Keeps the connection up: reconnects with backoff while down, PINGs while up.
    pub(crate) async fn supervise(self: Arc<Self>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            if self.is_up() {
                backoff = MIN_BACKOFF;
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(HEALTH_CHECK_INTERVAL) => {}
                }
                if self.is_up() {
                    let ping: Result<String, _> = self.query(&redis::cmd("PING")).await;
                    if ping.is_err() {
                        self.mark_down();
                    }
                }
                continue;
            }
            match self.connect_once().await {
                Ok(()) => {
                    tracing::info!("Redis connection established");
                }
                Err(err) => {
                    if let Some(suppressed) = self.log.allow() {
                        tracing::warn!(error = %err, suppressed, "Redis unreachable; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
