//! Redis cache for search and stats answers, with single-flight on misses.
//!
//! Keys embed the user's cache version (bumped with every mutation, see `store`), so an entry
//! is never stale; the TTL only bounds memory. Concurrent identical misses compute once:
//! in-process they share one future; across replicas a short `SET NX PX` lock makes the others
//! wait for the winner's entry (and compute themselves if it does not show up in time).
//! When Redis is unreachable every step degrades to "compute from PostgreSQL".

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use serde::de::DeserializeOwned;
use serde::Serialize;
use service_common::metrics::{CacheResult, Metrics};
use service_common::redis::RedisHandle;
use service_common::ApiResult;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Releases the lock only if we still own it (it may have expired and been re-taken).
const UNLOCK_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Trimmed, inner whitespace collapsed, lower-cased: queries that search the same thing
/// share an entry.
pub fn normalize_query(query: &str) -> String {
    query
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// `records:search:<user>:v<version>:<limit>:<sha256(normalized query)>` (hashed: bounded
/// key length whatever the query).
pub fn search_key(user: Uuid, version: i64, limit: u32, normalized_query: &str) -> String {
    let digest = hex::encode(Sha256::digest(normalized_query.as_bytes()));
    format!(
        "records:search:{}:v{version}:{limit}:{}",
        user.simple(),
        &digest[..32]
    )
}

pub fn stats_key(user: Uuid, version: i64) -> String {
    format!("records:stats:{}:v{version}", user.simple())
}

type Flight<T> = Shared<BoxFuture<'static, ApiResult<T>>>;

struct Inner<T> {
    name: &'static str,
    redis: RedisHandle,
    metrics: Arc<Metrics>,
    ttl: Duration,
    lock_ttl: Duration,
    flights: Mutex<HashMap<String, (u64, Flight<T>)>>,
    next_flight: std::sync::atomic::AtomicU64,
}

pub struct ResultCache<T> {
    inner: Arc<Inner<T>>,
}

impl<T> ResultCache<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    pub fn new(
        name: &'static str,
        redis: RedisHandle,
        metrics: Arc<Metrics>,
        ttl: Duration,
        lock_ttl: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name,
                redis,
                metrics,
                ttl,
                lock_ttl,
                flights: Mutex::new(HashMap::new()),
                next_flight: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// The cached value under `key` (without namespace), or `compute()`'s, stored for next time.
    pub async fn get_or_compute<F, Fut>(&self, key: String, compute: F) -> ApiResult<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ApiResult<T>> + Send + 'static,
    {
        let flight = {
            let mut flights = self
                .inner
                .flights
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((_, flight)) = flights.get(&key) {
                flight.clone()
            } else {
                let id = self
                    .inner
                    .next_flight
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let weak = Arc::downgrade(&self.inner);
                let inner = Arc::clone(&self.inner);
                let flight_key = key.clone();
                let flight = async move {
                    let result = inner.lookup(&flight_key, compute).await;
                    // Removed by whichever caller drives the flight to completion, so an
                    // abandoned-then-resumed flight still cleans up after itself.
                    forget(&weak, &flight_key, id);
                    result
                }
                .boxed()
                .shared();
                flights.insert(key, (id, flight.clone()));
                flight
            }
        };
        flight.await
    }
}

fn forget<T>(weak: &Weak<Inner<T>>, key: &str, id: u64) {
    if let Some(inner) = weak.upgrade() {
        let mut flights = inner
            .flights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if flights.get(key).is_some_and(|(current, _)| *current == id) {
            flights.remove(key);
        }
    }
}

enum Lookup<T> {
    Hit(T),
    Miss,
    Unavailable,
}

impl<T> Inner<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    async fn lookup<F, Fut>(&self, key: &str, compute: F) -> ApiResult<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ApiResult<T>>,
    {
        let full_key = self.redis.key(key);
        match self.get(&full_key).await {
            Lookup::Hit(value) => return Ok(self.hit(value)),
            Lookup::Unavailable => {
                self.metrics.cache_result(self.name, CacheResult::Error);
                return compute().await;
            }
            Lookup::Miss => {}
        }

        let lock_key = format!("{full_key}:lock");
        let token = Uuid::new_v4().to_string();
        let locked = self.try_lock(&lock_key, &token).await;
        if locked {
            // Double-check: the previous holder may have stored the entry and released the
            // lock between our GET and our SET NX.
            if let Lookup::Hit(value) = self.get(&full_key).await {
                self.unlock(&lock_key, &token).await;
                return Ok(self.hit(value));
            }
        } else {
            // Another replica is computing this entry: wait for it, briefly.
            let deadline = Instant::now() + self.lock_ttl;
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match self.get(&full_key).await {
                    Lookup::Hit(value) => return Ok(self.hit(value)),
                    Lookup::Unavailable => break,
                    Lookup::Miss => {}
                }
            }
        }
        // "miss" counts the answers computed from PostgreSQL here.
        self.metrics.cache_result(self.name, CacheResult::Miss);
        let computed = compute().await;
        if let Ok(value) = &computed {
            self.put(&full_key, value).await;
        }
        if locked {
            self.unlock(&lock_key, &token).await;
        }
        computed
    }

    fn hit(&self, value: T) -> T {
        self.metrics.cache_result(self.name, CacheResult::Hit);
        value
    }

    async fn get(&self, key: &str) -> Lookup<T> {
        let key = key.to_string();
        let fetched: Result<Option<String>, _> = self
            .redis
            .run(|mut conn| async move { redis::cmd("GET").arg(&key).query_async(&mut conn).await })
            .await;
        match fetched {
            Ok(Some(text)) => match serde_json::from_str(&text) {
                Ok(value) => Lookup::Hit(value),
                Err(err) => {
                    // A shape from another version of the service: recompute and overwrite.
                    tracing::warn!(error = %err, cache = self.name, "unreadable cache entry");
                    Lookup::Miss
                }
            },
            Ok(None) => Lookup::Miss,
            Err(err) => {
                tracing::debug!(error = %err, cache = self.name, "cache unavailable");
                Lookup::Unavailable
            }
        }
    }

    async fn put(&self, key: &str, value: &T) {
        let Ok(text) = serde_json::to_string(value) else {
            return;
        };
        let key = key.to_string();
        let ttl = self.ttl.as_secs().max(1);
        let stored: Result<(), _> = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(text)
                    .arg("EX")
                    .arg(ttl)
                    .query_async(&mut conn)
                    .await
            })
            .await;
        if let Err(err) = stored {
            tracing::debug!(error = %err, cache = self.name, "cache entry not stored");
        }
    }

    /// True if we hold the lock, and also when Redis cannot be asked (then nobody else can
    /// coordinate either, and the caller should just compute).
    async fn try_lock(&self, lock_key: &str, token: &str) -> bool {
        let (key, token) = (lock_key.to_string(), token.to_string());
        let millis = u64::try_from(self.lock_ttl.as_millis())
            .unwrap_or(2000)
            .max(1);
        let taken: Result<Option<String>, _> = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis)
                    .query_async(&mut conn)
                    .await
            })
            .await;
        match taken {
            Ok(reply) => reply.is_some(),
            Err(_) => true,
        }
    }

    async fn unlock(&self, lock_key: &str, token: &str) {
        let (key, token) = (lock_key.to_string(), token.to_string());
        let _: Result<i64, _> = self
            .redis
            .run(|mut conn| async move {
                redis::Script::new(UNLOCK_SCRIPT)
                    .key(&key)
                    .arg(&token)
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_that_mean_the_same_share_a_key() {
        let user = Uuid::new_v4();
        let key = |q: &str| search_key(user, 3, 20, &normalize_query(q));
        assert_eq!(key("Aphex Twin"), key("  aphex   TWIN "));
        assert_eq!(key("aphex\ttwin"), key("aphex twin"));
        assert_ne!(key("aphex twin"), key("aphextwin"));
    }

    #[test]
    fn keys_change_with_user_version_and_limit() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let q = normalize_query("autechre");
        let base = search_key(a, 1, 20, &q);
        assert_ne!(base, search_key(b, 1, 20, &q));
        assert_ne!(base, search_key(a, 2, 20, &q));
        assert_ne!(base, search_key(a, 1, 10, &q));
        assert_ne!(stats_key(a, 1), stats_key(a, 2));
        assert!(base.starts_with(&format!("records:search:{}:v1:20:", a.simple())));
    }

    #[test]
    fn key_length_is_bounded_whatever_the_query() {
        let long = "x".repeat(10_000);
        assert!(search_key(Uuid::new_v4(), i64::MAX, 100, &long).len() < 120);
    }
}
