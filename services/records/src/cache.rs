//! Redis cache for search and stats answers, with single-flight on misses.
//!
//! The cache lives in a Redis of its own (`--cache-redis-url`, `allkeys-lru` with a memory
//! cap), never in the shared one that holds revocations and cluster rate limits: that one runs
//! `noeviction`, and a user hammering distinct searches could fill it until logout fails.
//! Without a cache URL the cache is off and every answer comes from PostgreSQL. Answers larger
//! than the entry-size cap are served but not stored.
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
use service_common::metrics::{CacheResult, CacheWrite, Metrics};
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

/// `records:search:<user>:v<version>:<sha256(normalized query)>` (hashed: bounded key length
/// whatever the query). No `limit`: the entry holds the largest page and each request takes
/// its prefix, so varying `limit` cannot multiply entries.
pub fn search_key(user: Uuid, version: i64, normalized_query: &str) -> String {
    let digest = hex::encode(Sha256::digest(normalized_query.as_bytes()));
    format!(
        "records:search:{}:v{version}:{}",
        user.simple(),
        &digest[..32]
    )
}

pub fn stats_key(user: Uuid, version: i64) -> String {
    format!("records:stats:{}:v{version}", user.simple())
}

type Flight<T> = Shared<BoxFuture<'static, ApiResult<T>>>;

/// Where and how the answers are cached.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// The cache's own Redis; `None` turns caching off.
    pub redis: Option<RedisHandle>,
    pub ttl: Duration,
    /// Serialized answers larger than this are served but not stored.
    pub max_entry_bytes: usize,
    /// How long a replica waits for another one computing the same entry.
    pub lock_ttl: Duration,
}

struct Inner<T> {
    name: &'static str,
    redis: Option<RedisHandle>,
    metrics: Arc<Metrics>,
    ttl: Duration,
    max_entry_bytes: usize,
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
    pub fn new(name: &'static str, settings: &CacheSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                name,
                redis: settings.redis.clone(),
                metrics,
                ttl: settings.ttl,
                max_entry_bytes: settings.max_entry_bytes,
                lock_ttl: settings.lock_ttl,
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
        let Some(redis) = &self.redis else {
            // Caching is off: in-process single-flight still merges identical requests.
            return compute().await;
        };
        let full_key = redis.key(key);
        match self.get(redis, &full_key).await {
            Lookup::Hit(value) => return Ok(self.hit(value)),
            Lookup::Unavailable => {
                self.metrics.cache_result(self.name, CacheResult::Error);
                return compute().await;
            }
            Lookup::Miss => {}
        }

        let lock_key = format!("{full_key}:lock");
        let token = Uuid::new_v4().to_string();
        let locked = self.try_lock(redis, &lock_key, &token).await;
        if locked {
            // Double-check: the previous holder may have stored the entry and released the
            // lock between our GET and our SET NX.
            if let Lookup::Hit(value) = self.get(redis, &full_key).await {
                self.unlock(redis, &lock_key, &token).await;
                return Ok(self.hit(value));
            }
        } else {
            // Another replica is computing this entry: wait for it, briefly.
            let deadline = Instant::now() + self.lock_ttl;
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match self.get(redis, &full_key).await {
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
            self.put(redis, &full_key, value).await;
        }
        if locked {
            self.unlock(redis, &lock_key, &token).await;
        }
        computed
    }

    fn hit(&self, value: T) -> T {
        self.metrics.cache_result(self.name, CacheResult::Hit);
        value
    }

    async fn get(&self, redis: &RedisHandle, key: &str) -> Lookup<T> {
        let key = key.to_string();
        let fetched: Result<Option<String>, _> = redis
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

    async fn put(&self, redis: &RedisHandle, key: &str, value: &T) {
        let Ok(text) = serde_json::to_string(value) else {
            return;
        };
        if text.len() > self.max_entry_bytes {
            // One huge answer would push many small ones out of the LRU cache.
            tracing::debug!(
                bytes = text.len(),
                cap = self.max_entry_bytes,
                cache = self.name,
                "answer too large to cache"
            );
            self.metrics.cache_write(self.name, CacheWrite::TooLarge);
            return;
        }
        let key = key.to_string();
        let ttl = self.ttl.as_secs().max(1);
        let stored: Result<(), _> = redis
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
        match stored {
            Ok(()) => self.metrics.cache_write(self.name, CacheWrite::Stored),
            Err(err) => {
                tracing::debug!(error = %err, cache = self.name, "cache entry not stored");
                self.metrics.cache_write(self.name, CacheWrite::Error);
            }
        }
    }

    /// True if we hold the lock, and also when Redis cannot be asked (then nobody else can
    /// coordinate either, and the caller should just compute).
    async fn try_lock(&self, redis: &RedisHandle, lock_key: &str, token: &str) -> bool {
        let (key, token) = (lock_key.to_string(), token.to_string());
        let millis = u64::try_from(self.lock_ttl.as_millis())
            .unwrap_or(2000)
            .max(1);
        let taken: Result<Option<String>, _> = redis
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

    async fn unlock(&self, redis: &RedisHandle, lock_key: &str, token: &str) {
        let (key, token) = (lock_key.to_string(), token.to_string());
        let _: Result<i64, _> = redis
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
        let key = |q: &str| search_key(user, 3, &normalize_query(q));
        assert_eq!(key("Aphex Twin"), key("  aphex   TWIN "));
        assert_eq!(key("aphex\ttwin"), key("aphex twin"));
        assert_ne!(key("aphex twin"), key("aphextwin"));
    }

    #[test]
    fn keys_change_with_user_and_version_only() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let q = normalize_query("autechre");
        let base = search_key(a, 1, &q);
        assert_ne!(base, search_key(b, 1, &q));
        assert_ne!(base, search_key(a, 2, &q));
        assert_ne!(stats_key(a, 1), stats_key(a, 2));
        let digest = base
            .strip_prefix(&format!("records:search:{}:v1:", a.simple()))
            .expect("prefix");
        assert_eq!(
            digest.len(),
            32,
            "no limit between version and digest: {base}"
        );
    }

    #[test]
    fn key_length_is_bounded_whatever_the_query() {
        let long = "x".repeat(10_000);
        assert!(search_key(Uuid::new_v4(), i64::MAX, &long).len() < 120);
    }
}
