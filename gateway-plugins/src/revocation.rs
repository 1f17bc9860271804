//! Is this token's `jti` revoked (logged out)?
//!
//! Source of truth: Redis key `<ns>revoked:<jti>`, written by auth on logout together with
//! `PUBLISH <ns><channel> {"jti","exp"}` (docs/contracts.md). Each edge keeps:
//! - a local **revoked set** (jti → exp), filled from the channel and from lookups, so a
//!   logout is enforced on every node as fast as pub/sub delivers it (sub-millisecond on a
//!   LAN) and a revoked token costs no Redis round trip;
//! - a bounded **negative cache** (jti known live), so Redis is asked once per token, not
//!   once per request. It is trusted only while the subscription is live and only for
//!   entries made in the current subscription "generation": when the subscription drops,
//!   revocations may be missed, so the generation moves on and the cache is discarded;
//!   after resubscribing every live token is checked against Redis once more (resync).
//!
//! The revoked set is always consulted first, so a pub/sub message that overtakes a
//! concurrent lookup still wins.
//!
//! Without Redis the revoked set *is* the store (one node); [`RevocationCache::revoke`]
//! feeds it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures::StreamExt;
use prometheus::IntCounter;
use serde::Deserialize;

use crate::config::RevocationConfig;
use crate::metrics::{LogLimiter, PolicyMetrics};
use crate::redis_link::{RedisLink, RedisLinkError};

/// The answer for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationStatus {
    Live,
    Revoked,
    /// Redis could not be asked; the route's fail mode decides.
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("cannot record the revocation in Redis: {0}")]
    Redis(#[from] RedisLinkError),
}

/// The pub/sub payload.
#[derive(Debug, Deserialize)]
struct RevocationMessage {
    jti: String,
    exp: u64,
}

struct NegativeEntry {
    /// Unix milliseconds until which "live" is trusted.
    until_ms: u64,
    generation: u64,
}

enum Store {
    Memory,
    Redis {
        link: Arc<RedisLink>,
        /// `<ns>revoked:`
        key_prefix: String,
        /// `<ns><channel>`
        channel: String,
    },
}

/// Pre-resolved `edge_revocation_checks_total` children (hot path: no label lookups).
struct CheckCounters {
    local_revoked: IntCounter,
    negative_live: IntCounter,
    redis_live: IntCounter,
    redis_revoked: IntCounter,
    redis_error: IntCounter,
    memory_live: IntCounter,
}

pub struct RevocationCache {
    revoked: DashMap<String, u64>,
    revoked_len: AtomicUsize,
    revoked_capacity: usize,
    negative: DashMap<String, NegativeEntry>,
    negative_len: AtomicUsize,
    negative_capacity: usize,
    negative_ttl_ms: u64,
    store: Store,
    subscribed: AtomicBool,
    generation: AtomicU64,
    metrics: PolicyMetrics,
    counters: CheckCounters,
    log: LogLimiter,
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RevocationCache {
    /// The single-node store (no Redis).
    pub fn in_memory(config: &RevocationConfig, metrics: PolicyMetrics) -> Self {
        Self::build(config, Store::Memory, metrics)
    }

    pub(crate) fn with_redis(
        config: &RevocationConfig,
        link: Arc<RedisLink>,
        metrics: PolicyMetrics,
    ) -> Self {
        let key_prefix = format!("{}revoked:", link.namespace);
        let channel = format!("{}{}", link.namespace, config.channel);
        Self::build(
            config,
            Store::Redis {
                link,
                key_prefix,
                channel,
            },
            metrics,
        )
    }

    fn build(config: &RevocationConfig, store: Store, metrics: PolicyMetrics) -> Self {
        let check = |source: &str, result: &str| {
            metrics
                .revocation_checks
                .with_label_values(&[source, result])
        };
        let counters = CheckCounters {
            local_revoked: check("local", "revoked"),
            negative_live: check("negative_cache", "live"),
            redis_live: check("redis", "live"),
            redis_revoked: check("redis", "revoked"),
            redis_error: check("redis", "error"),
            memory_live: check("memory", "live"),
        };
        metrics.revocation_subscribed.set(0);
        Self {
            revoked: DashMap::new(),
            revoked_len: AtomicUsize::new(0),
            revoked_capacity: config.revoked_cache_size.max(1),
            negative: DashMap::new(),
            negative_len: AtomicUsize::new(0),
            negative_capacity: config.negative_cache_size,
            negative_ttl_ms: config.negative_cache_ttl.as_millis() as u64,
            store,
            subscribed: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            metrics,
            counters,
            log: LogLimiter::new(Duration::from_secs(10)),
        }
    }

    pub fn uses_redis(&self) -> bool {
        matches!(self.store, Store::Redis { .. })
    }

    /// True while the revocation channel subscription is live (always false in memory).
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    pub fn revoked_entries(&self) -> usize {
        self.revoked_len.load(Ordering::Relaxed)
    }

    pub fn negative_entries(&self) -> usize {
        self.negative_len.load(Ordering::Relaxed)
    }

    /// Checks one token. `exp` bounds how long any answer about it is kept.
    pub async fn check(&self, jti: &str, exp: u64) -> RevocationStatus {
        if self.revoked.contains_key(jti) {
            self.counters.local_revoked.inc();
            return RevocationStatus::Revoked;
        }
        let Store::Redis {
            link, key_prefix, ..
        } = &self.store
        else {
            self.counters.memory_live.inc();
            return RevocationStatus::Live;
        };
        let generation = self.generation.load(Ordering::Acquire);
        let now_ms = unix_now_ms();
        if self.subscribed.load(Ordering::Acquire) {
            if let Some(entry) = self.negative.get(jti) {
                if entry.generation == generation && entry.until_ms > now_ms {
                    self.counters.negative_live.inc();
                    return RevocationStatus::Live;
                }
            }
            // A revocation message may have landed between the first look and the
            // negative lookup: `insert_revoked` adds to the revoked set before it removes
            // the negative entry, so a miss caused by that removal finds the jti here and
            // costs no Redis round trip.
            if self.revoked.contains_key(jti) {
                self.counters.local_revoked.inc();
                return RevocationStatus::Revoked;
            }
        }
        let key = format!("{key_prefix}{jti}");
        match link.query::<bool>(redis::cmd("EXISTS").arg(&key)).await {
            Ok(true) => {
                self.counters.redis_revoked.inc();
                self.insert_revoked(jti, exp);
                RevocationStatus::Revoked
            }
            Ok(false) => {
                self.counters.redis_live.inc();
                // Only remember "live" if no resubscription happened since we asked:
                // an answer from before a gap in the subscription proves nothing now.
                if self.subscribed.load(Ordering::Acquire)
                    && self.generation.load(Ordering::Acquire) == generation
                {
                    let until_ms = (now_ms + self.negative_ttl_ms).min(exp.saturating_mul(1000));
                    self.insert_negative(jti, until_ms, generation);
                }
                RevocationStatus::Live
            }
            Err(err) => {
                self.counters.redis_error.inc();
                self.metrics.revocation_redis_errors.inc();
                if let Some(suppressed) = self.log.allow() {
                    tracing::warn!(error = %err, suppressed, "revocation lookup failed; applying the route's fail mode");
                }
                RevocationStatus::Unavailable
            }
        }
    }

    /// Revokes a token: in Redis (SET with expiry + PUBLISH, exactly as auth does) or in
    /// the in-process store. Also applied locally at once.
    pub async fn revoke(&self, jti: &str, exp: u64) -> Result<(), RevocationError> {
        if let Store::Redis {
            link,
            key_prefix,
            channel,
        } = &self.store
        {
            let ttl = exp.saturating_sub(crate::clock::unix_now()).max(1);
            link.query::<()>(
                redis::cmd("SET")
                    .arg(format!("{key_prefix}{jti}"))
                    .arg(1)
                    .arg("EX")
                    .arg(ttl),
            )
            .await?;
            let payload = serde_json::json!({"jti": jti, "exp": exp}).to_string();
            link.query::<i64>(redis::cmd("PUBLISH").arg(channel).arg(payload))
                .await?;
        }
        self.insert_revoked(jti, exp);
        Ok(())
    }

    /// Applies one pub/sub payload.
    pub(crate) fn apply_message(&self, payload: &[u8]) {
        match serde_json::from_slice::<RevocationMessage>(payload) {
            Ok(message) if !message.jti.is_empty() => {
                self.insert_revoked(&message.jti, message.exp);
                self.metrics
                    .revocation_messages
                    .with_label_values(&["applied"])
                    .inc();
            }
            _ => {
                self.metrics
                    .revocation_messages
                    .with_label_values(&["invalid"])
                    .inc();
                if let Some(suppressed) = self.log.allow() {
                    tracing::warn!(suppressed, "ignoring a malformed revocation message");
                }
            }
        }
    }

    fn insert_revoked(&self, jti: &str, exp: u64) {
        if self.revoked_len.load(Ordering::Relaxed) >= self.revoked_capacity
            && !self.revoked.contains_key(jti)
        {
            self.make_room_in_revoked();
        }
        if self.revoked.insert(jti.to_string(), exp).is_none() {
            self.revoked_len.fetch_add(1, Ordering::Relaxed);
        }
        // Removed only after the insert above: a concurrent `check` that misses the
        // negative entry then finds the jti in the revoked set (see `check`).
        if self.negative.remove(jti).is_some() {
            self.negative_len.fetch_sub(1, Ordering::Relaxed);
        }
        self.metrics
            .revocation_revoked_entries
            .set(self.revoked_entries() as i64);
    }

    /// Full revoked set: drop expired entries; if that is not enough, drop the entries
    /// that expire soonest. With Redis an evicted jti is simply looked up again (it is not
    /// in the negative cache: revoking removed it there). In memory this forgets a
    /// revocation early, which is why the cap should exceed the logouts expected within
    /// one token lifetime.
    fn make_room_in_revoked(&self) {
        let now = crate::clock::unix_now();
        self.revoked.retain(|_, exp| *exp >= now);
        let len = self.revoked.len();
        if len >= self.revoked_capacity {
            let mut by_exp: Vec<(u64, String)> = self
                .revoked
                .iter()
                .map(|e| (*e.value(), e.key().clone()))
                .collect();
            by_exp.sort_unstable();
            let excess = len + 1 - self.revoked_capacity;
            let evict = excess.max(self.revoked_capacity / 10).min(by_exp.len());
            for (_, jti) in by_exp.into_iter().take(evict) {
                self.revoked.remove(&jti);
            }
            if matches!(self.store, Store::Memory) {
                tracing::warn!(evicted = evict, "in-process revoked set is full; forgetting the revocations that expire soonest");
            }
        }
        self.revoked_len
            .store(self.revoked.len(), Ordering::Relaxed);
    }

    fn insert_negative(&self, jti: &str, until_ms: u64, generation: u64) {
        if self.negative_capacity == 0 {
            return;
        }
        if self.negative_len.load(Ordering::Relaxed) >= self.negative_capacity {
            // It is only a cache: dropping it costs one Redis lookup per live token.
            let now_ms = unix_now_ms();
            let current = self.generation.load(Ordering::Acquire);
            self.negative
                .retain(|_, e| e.until_ms > now_ms && e.generation == current);
            if self.negative.len() >= self.negative_capacity {
                self.negative.clear();
            }
            self.negative_len
                .store(self.negative.len(), Ordering::Relaxed);
        }
        if self
            .negative
            .insert(
                jti.to_string(),
                NegativeEntry {
                    until_ms,
                    generation,
                },
            )
            .is_none()
        {
            self.negative_len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks the subscription lost or (re)established. Either way the negative cache is
    /// discarded: on loss because messages may be missed from now on, on
    /// (re)subscription because messages may have been missed before it.
    fn set_subscribed(&self, subscribed: bool) {
        self.subscribed.store(false, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.negative.clear();
        self.negative_len.store(0, Ordering::Relaxed);
        if subscribed {
            self.subscribed.store(true, Ordering::Release);
            self.metrics.revocation_resyncs.inc();
        }
        self.metrics
            .revocation_subscribed
            .set(i64::from(subscribed));
        self.metrics.revocation_negative_entries.set(0);
    }

    /// Drops expired entries; the runtime calls this periodically.
    pub fn sweep(&self) {
        let now = crate::clock::unix_now();
        if matches!(self.store, Store::Redis { .. }) || self.revoked_len.load(Ordering::Relaxed) > 0
        {
            self.revoked.retain(|_, exp| *exp >= now);
            self.revoked_len
                .store(self.revoked.len(), Ordering::Relaxed);
        }
        let now_ms = unix_now_ms();
        let current = self.generation.load(Ordering::Acquire);
        self.negative
            .retain(|_, e| e.until_ms > now_ms && e.generation == current);
        self.negative_len
            .store(self.negative.len(), Ordering::Relaxed);
        self.metrics
            .revocation_revoked_entries
            .set(self.revoked_entries() as i64);
        self.metrics
            .revocation_negative_entries
            .set(self.negative_entries() as i64);
    }

    /// One subscription attempt: connects, subscribes and returns the message stream once
    /// the subscription is confirmed (bounded by the connect timeout).
    async fn subscribe_once(
        link: &RedisLink,
        channel: &str,
    ) -> Result<(redis::aio::PubSubSink, redis::aio::PubSubStream), RedisLinkError> {
        let attempt = async {
            let pubsub = link.client().get_async_pubsub().await?;
            let (mut sink, stream) = pubsub.split();
            sink.subscribe(channel).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        Ok(tokio::time::timeout(link.connect_timeout, attempt)
            .await
            .map_err(|_| RedisLinkError::Timeout(link.connect_timeout))??)
    }

    /// Subscribes once (for start-up, so a healthy Redis means a live subscription when
    /// the runtime is handed out), then keeps the subscription alive forever.
    pub(crate) async fn start_subscription(
        self: &Arc<Self>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let Store::Redis { link, channel, .. } = &self.store else {
            return None;
        };
        let first = Self::subscribe_once(link, channel).await;
        if first.is_ok() {
            // Marked here, not in the task, so the runtime is live when handed out.
            self.set_subscribed(true);
        }
        let cache = Arc::clone(self);
        Some(tokio::spawn(
            async move { cache.subscription_loop(first).await },
        ))
    }

    async fn subscription_loop(
        self: Arc<Self>,
        mut attempt: Result<(redis::aio::PubSubSink, redis::aio::PubSubStream), RedisLinkError>,
    ) {
        let Store::Redis { link, channel, .. } = &self.store else {
            return;
        };
        let mut backoff = Duration::from_millis(50);
        let mut marked = self.is_subscribed();
        loop {
            match attempt {
                Ok((mut sink, mut stream)) => {
                    backoff = Duration::from_millis(50);
                    if !std::mem::take(&mut marked) {
                        self.set_subscribed(true);
                    }
                    tracing::info!(channel = %channel, "subscribed to revocations");
                    let mut health = tokio::time::interval(Duration::from_secs(1));
                    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    health.tick().await;
                    loop {
                        tokio::select! {
                            message = stream.next() => match message {
                                Some(message) => self.apply_message(message.get_payload_bytes()),
                                None => break,
                            },
                            _ = health.tick() => {
                                // A silently dead connection (no FIN/RST) would otherwise
                                // look subscribed forever.
                                let ping = tokio::time::timeout(
                                    link.connect_timeout.max(Duration::from_millis(500)),
                                    sink.ping::<redis::Value>(),
                                ).await;
                                if !matches!(ping, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                    self.set_subscribed(false);
                    if let Some(suppressed) = self.log.allow() {
                        tracing::warn!(
                            suppressed,
                            "revocation subscription lost; negative cache dropped, resubscribing"
                        );
                    }
                }
                Err(err) => {
                    if let Some(suppressed) = self.log.allow() {
                        tracing::warn!(error = %err, suppressed, "cannot subscribe to revocations; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
            attempt = Self::subscribe_once(link, channel).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> RevocationCache {
        RevocationCache::in_memory(&RevocationConfig::default(), PolicyMetrics::for_tests())
    }

    /// A revocation message applied while a check of the same jti is in flight must be
    /// answered from the local sets, never by a Redis lookup (the link here is down, so
    /// any fall-through would show as an error and an `Unavailable` answer).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_landing_during_a_check_is_answered_locally() {
        let redis = crate::config::RedisConfig {
            url: "redis://127.0.0.1:1".into(),
            namespace: String::new(),
            connect_timeout: Duration::from_millis(50),
            command_timeout: Duration::from_millis(50),
        };
        let metrics = PolicyMetrics::for_tests();
        let link = Arc::new(RedisLink::new(&redis, metrics.clone()).expect("link"));
        let cache = Arc::new(RevocationCache::with_redis(
            &RevocationConfig::default(),
            link,
            metrics,
        ));
        cache.set_subscribed(true);
        let exp = crate::clock::unix_now() + 600;
        let jtis: Vec<String> = (0..3000).map(|i| format!("jti-{i}")).collect();
        for jti in &jtis {
            cache.insert_negative(
                jti,
                unix_now_ms() + 600_000,
                cache.generation.load(Ordering::Acquire),
            );
        }
        let applier = {
            let cache = Arc::clone(&cache);
            let jtis = jtis.clone();
            std::thread::spawn(move || {
                for jti in &jtis {
                    cache.apply_message(format!(r#"{{"jti":"{jti}","exp":{exp}}}"#).as_bytes());
                }
            })
        };
        for jti in &jtis {
            loop {
                match cache.check(jti, exp).await {
                    RevocationStatus::Live => continue,
                    RevocationStatus::Revoked => break,
                    RevocationStatus::Unavailable => panic!("{jti} fell through to Redis"),
                }
            }
        }
        applier.join().expect("applier");
        assert_eq!(cache.counters.redis_error.get(), 0);
    }

    #[tokio::test]
    async fn memory_store_revokes_and_answers_locally() {
        let cache = memory();
        let exp = crate::clock::unix_now() + 600;
        assert_eq!(cache.check("a", exp).await, RevocationStatus::Live);
        cache.revoke("a", exp).await.expect("memory revoke");
        assert_eq!(cache.check("a", exp).await, RevocationStatus::Revoked);
        assert_eq!(cache.check("b", exp).await, RevocationStatus::Live);
    }

    #[tokio::test]
    async fn channel_messages_are_applied_and_garbage_is_counted() {
        let cache = memory();
        let exp = crate::clock::unix_now() + 600;
        cache.apply_message(format!(r#"{{"jti":"x","exp":{exp}}}"#).as_bytes());
        cache.apply_message(b"not json");
        assert_eq!(cache.check("x", exp).await, RevocationStatus::Revoked);
        let messages = |r: &str| {
            cache
                .metrics
                .revocation_messages
                .with_label_values(&[r])
                .get()
        };
        assert_eq!(messages("applied"), 1);
        assert_eq!(messages("invalid"), 1);
    }

    #[tokio::test]
    async fn expired_revocations_are_swept() {
        let cache = memory();
        cache
            .revoke("old", crate::clock::unix_now() - 10)
            .await
            .expect("revoke");
        cache
            .revoke("new", crate::clock::unix_now() + 600)
            .await
            .expect("revoke");
        cache.sweep();
        assert_eq!(cache.revoked_entries(), 1);
    }

    #[tokio::test]
    async fn revoked_set_is_bounded_and_keeps_the_longest_lived() {
        let config = RevocationConfig {
            revoked_cache_size: 10,
            ..RevocationConfig::default()
        };
        let cache = RevocationCache::in_memory(&config, PolicyMetrics::for_tests());
        let now = crate::clock::unix_now();
        for i in 0..25u64 {
            cache
                .revoke(&format!("j{i}"), now + 100 + i)
                .await
                .expect("revoke");
        }
        assert!(cache.revoked_entries() <= 10, "{}", cache.revoked_entries());
        assert_eq!(
            cache.check("j24", now + 124).await,
            RevocationStatus::Revoked
        );
    }
}
