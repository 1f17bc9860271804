//! Redis: one multiplexed connection per process, namespaced keys, bounded waits.
//!
//! `ConnectionManager` reconnects by itself after Redis restarts; created lazily it also lets
//! a service start while Redis is down. Every command is additionally bounded by
//! `op_timeout`, so a request never waits on Redis longer than that, whatever the socket does.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid REDIS_URL: {0}")]
    Url(redis::RedisError),
    #[error("redis: {0}")]
    Command(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Clone)]
pub struct RedisHandle {
    manager: ConnectionManager,
    namespace: String,
    op_timeout: Duration,
}

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHandle")
            .field("namespace", &self.namespace)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisHandle {
    /// Validates the URL; does not connect (the first command does).
    pub fn new(url: &str, namespace: &str, op_timeout: Duration) -> Result<Self, RedisError> {
        let client = redis::Client::open(url).map_err(RedisError::Url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(Some(op_timeout))
            // Few quick retries per reconnect round: while Redis is down a command fails fast
            // instead of waiting out a long backoff; the next command starts a new round.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let manager =
            ConnectionManager::new_lazy_with_config(client, config).map_err(RedisError::Url)?;
        Ok(Self {
            manager,
            namespace: namespace.to_string(),
            op_timeout,
        })
    }

    /// `<namespace><suffix>`: every key and channel we touch goes through here.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.namespace)
    }

    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// Runs `op` on a clone of the shared connection, giving up after the op timeout.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.op_timeout, op(self.manager.clone())).await {
            Ok(result) => result.map_err(RedisError::Command),
            Err(_) => Err(RedisError::Timeout(self.op_timeout)),
        }
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        self.run(|mut conn| async move {
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            Ok(())
        })
        .await
    }
}
