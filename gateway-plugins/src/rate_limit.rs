//! Rate limits: GCRA (governor) per route and rule, keyed by client IP, user, or both.
//!
//! Semantics of a rule `requests` per `per` with `burst`: tokens replenish at
//! `requests / per`; the bucket holds `requests + burst`, so an idle client may send that
//! many at once and then `requests` per `per`. Over the limit → 429 with `Retry-After`
//! (seconds, rounded up) and `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset`
//! (draft-ietf-httpapi-ratelimit-headers; also sent on allowed responses).
//!
//! Memory is bounded per rule: idle keys (whose bucket is full again) are purged every
//! `purge_interval` (governor `retain_recent`), and at most `max_tracked_keys` keys are
//! tracked. Past the cap, *new* keys share one overflow bucket with the rule's own quota
//! (documented in `config.rs`): a flood of fresh addresses is limited as a group, while
//! keys already tracked keep their own buckets. Overflow is counted.
//!
//! IPv6 clients are keyed by their /64: one subscriber usually holds a whole /64, and
//! keying single addresses would let one client rotate through 2^64 buckets.
//!
//! Cluster scope: one quota across every edge sharing a Redis, kept by an atomic Lua GCRA
//! script on Redis time. To avoid a Redis round trip per request, an edge leases a small
//! batch of tokens (2 % of the bucket, at least 1) and serves them locally; a denial is
//! remembered until its retry time. Leased tokens are taken from the shared bucket, so
//! the cluster never admits more than the quota; the only error is leased tokens that
//! expire unused, at most `lease` per node (2 % per node, within ±10 % for up to five
//! nodes). Redis unreachable → the rule's local limiter answers (counted).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::Mutex;
use prometheus::IntCounter;
use sha2::{Digest, Sha256};

use crate::config::{RateLimitGlobalConfig, RateLimitKey, RateLimitRule, RateLimitScope};
use crate::metrics::PolicyMetrics;
use crate::redis_link::RedisLink;

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Share of the bucket an edge leases from Redis at a time (1/50 = 2 %).
const LEASE_DIVISOR: u32 = 50;
/// Leased tokens not used within this time are dropped (they were already counted).
const LEASE_TTL: Duration = Duration::from_secs(1);

/// What a bucket is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// An IPv4 address, or an IPv6 address masked to its /64.
    Ip(IpAddr),
    /// A token's `sub`.
    User(Arc<str>),
    /// The shared bucket of keys that arrived while the table was full.
    Overflow,
}

impl LimitKey {
    pub fn ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let masked = u128::from(v6) & !((1u128 << 64) - 1);
                LimitKey::Ip(IpAddr::V6(masked.into()))
            }
            v4 => LimitKey::Ip(v4),
        }
    }

    /// The key a rule uses for a request, if the rule applies to it.
    pub fn for_rule(key: RateLimitKey, client_ip: IpAddr, user: Option<&str>) -> Option<Self> {
        match (key, user) {
            (RateLimitKey::Ip, _) => Some(Self::ip(client_ip)),
            (RateLimitKey::User, Some(sub)) => Some(LimitKey::User(Arc::from(sub))),
            // Documented in config.rs: requests without identity are not limited by a
            // `user` rule.
            (RateLimitKey::User, None) => None,
            (RateLimitKey::UserOrIp, Some(sub)) => Some(LimitKey::User(Arc::from(sub))),
            (RateLimitKey::UserOrIp, None) => Some(Self::ip(client_ip)),
        }
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::Ip(IpAddr::V6(v6)) => write!(f, "ip:{v6}/64"),
            LimitKey::Ip(ip) => write!(f, "ip:{ip}"),
            LimitKey::User(sub) => write!(f, "user:{sub}"),
            LimitKey::Overflow => f.write_str("overflow"),
        }
    }
}

/// A governor state store with a cap on tracked keys: past the cap, unknown keys are
/// measured against [`LimitKey::Overflow`].
pub struct CappedStore {
    inner: DashMapStateStore<LimitKey>,
    /// Keys inserted since the last purge recount (approximate between purges: two
    /// threads racing to insert the same new key both count it).
    tracked: AtomicUsize,
    capacity: AtomicUsize,
    overflow: IntCounter,
}

impl CappedStore {
    fn new(capacity: usize, overflow: IntCounter) -> Self {
        Self {
            inner: DashMapStateStore::default(),
            tracked: AtomicUsize::new(0),
            capacity: AtomicUsize::new(capacity.max(1)),
            overflow,
        }
    }
}

impl StateStore for CappedStore {
    type Key = LimitKey;

    fn measure_and_replace<T, F, E>(&self, key: &Self::Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if *key == LimitKey::Overflow || self.inner.contains_key(key) {
            return self.inner.measure_and_replace(key, f);
        }
        if self.tracked.load(Ordering::Relaxed) >= self.capacity.load(Ordering::Relaxed) {
            self.overflow.inc();
            return self.inner.measure_and_replace(&LimitKey::Overflow, f);
        }
        self.tracked.fetch_add(1, Ordering::Relaxed);
        self.inner.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<LimitKey> for CappedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.inner.retain_recent(drop_below);
        let overflow = usize::from(self.inner.contains_key(&LimitKey::Overflow));
        self.tracked
            .store(self.inner.len() - overflow, Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.inner.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

type KeyedLimiter = RateLimiter<LimitKey, CappedStore, DefaultClock, StateInformationMiddleware>;

/// One rule's decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitVerdict {
    Allowed {
        limit: u32,
        remaining: u32,
        /// Seconds until the bucket is full again.
        reset: u64,
    },
    Limited {
        limit: u32,
        retry_after: Duration,
    },
}

impl LimitVerdict {
    /// Orders verdicts by how restrictive they are, to report the tightest rule.
    fn tightness(&self) -> (u8, u64) {
        match self {
            LimitVerdict::Limited { retry_after, .. } => (1, retry_after.as_millis() as u64),
            LimitVerdict::Allowed { remaining, .. } => (0, u64::MAX - u64::from(*remaining)),
        }
    }

    /// Of two verdicts for the same request, the one to report.
    pub fn tighter(self, other: Option<LimitVerdict>) -> LimitVerdict {
        match other {
            Some(other) if other.tightness() > self.tightness() => other,
            _ => self,
        }
    }

    /// `Retry-After` in whole seconds, rounded up (RFC 9110 §10.2.3), at least 1.
    pub fn retry_after_secs(retry_after: Duration) -> u64 {
        retry_after.as_nanos().div_ceil(1_000_000_000).max(1) as u64
    }

    /// The `RateLimit-*` headers.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let (limit, remaining, reset) = match *self {
            LimitVerdict::Allowed {
                limit,
                remaining,
                reset,
            } => (limit, remaining, reset),
            LimitVerdict::Limited { limit, retry_after } => {
                (limit, 0, Self::retry_after_secs(retry_after))
            }
        };
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(remaining));
        headers.insert(RATELIMIT_RESET, HeaderValue::from(reset));
    }
}

/// A cluster lease of one key on one node.
#[derive(Debug, Clone, Copy)]
struct Lease {
    tokens: u32,
    /// Monotonic ms until which the leased tokens may be used.
    expires_ms: u64,
    /// Monotonic ms until which Redis said no (0 = not denied).
    denied_until_ms: u64,
    /// Tokens left in the shared bucket when the lease was taken.
    shared_remaining: u32,
}

/// The cluster side of a rule.
struct ClusterState {
    /// `<ns>rl:<route>:<rule hash>:` without the namespace (added per link).
    key_stem: String,
    lease_size: u32,
    leases: DashMap<LimitKey, Lease>,
    max_leases: AtomicUsize,
}

/// Atomic GCRA on Redis time. KEYS[1] bucket; ARGV emission interval (µs), capacity,
/// tokens wanted. Returns {granted, retry_after_us, remaining}. The state is the
/// theoretical arrival time (µs); the key expires when the bucket would be full again.
const CLUSTER_GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tau = interval * capacity
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local available = math.floor((now + tau - tat) / interval)
if available > capacity then available = capacity end
local take = math.min(want, available)
if take < 1 then
  return {0, tat + interval - tau - now, 0}
end
tat = tat + take * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {take, 0, math.floor((now + tau - tat) / interval)}
"#;

fn cluster_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(CLUSTER_GCRA))
}

/// The limiter of one rule on one route. Lives in the runtime's registry so its buckets
/// survive config reloads that leave the rule unchanged.
pub struct RuleLimiter {
    rule: RateLimitRule,
    route: String,
    capacity: u32,
    interval: Duration,
    local: KeyedLimiter,
    cluster: Option<ClusterState>,
    allowed: IntCounter,
    limited: IntCounter,
    fallbacks: IntCounter,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RuleError {
    pub path: String,
    pub message: String,
}

impl RuleLimiter {
    fn new(
        route: &str,
        index: usize,
        rule: &RateLimitRule,
        max_keys: usize,
        metrics: &PolicyMetrics,
    ) -> Result<Self, RuleError> {
        let err = |field: &str, message: &str| RuleError {
            path: format!("rate_limits[{index}].{field}"),
            message: message.into(),
        };
        let requests =
            NonZeroU32::new(rule.requests).ok_or_else(|| err("requests", "must be at least 1"))?;
        let capacity = rule
            .requests
            .checked_add(rule.burst)
            .and_then(NonZeroU32::new)
            .ok_or_else(|| err("burst", "requests + burst is too large"))?;
        let interval = rule.per / requests.get();
        let quota = Quota::with_period(interval)
            .ok_or_else(|| err("per", "too short for that many requests (under 1 ns each)"))?
            .allow_burst(capacity);
        let store = CappedStore::new(
            max_keys,
            metrics.ratelimit_overflow.with_label_values(&[route]),
        );
        let local: KeyedLimiter = RateLimiter::new(quota, store, DefaultClock::default());
        let cluster = (rule.scope == RateLimitScope::Cluster).then(|| ClusterState {
            key_stem: format!("rl:{route}:{}:", rule_hash(rule)),
            lease_size: (capacity.get() / LEASE_DIVISOR).max(1),
            leases: DashMap::new(),
            max_leases: AtomicUsize::new(max_keys.max(1)),
        });
        Ok(Self {
            rule: rule.clone(),
            route: route.to_string(),
            capacity: capacity.get(),
            interval,
            local,
            cluster,
            allowed: metrics
                .ratelimit_decisions
                .with_label_values(&[route, "allowed"]),
            limited: metrics
                .ratelimit_decisions
                .with_label_values(&[route, "limited"]),
            fallbacks: metrics.ratelimit_redis_fallbacks.clone(),
        })
    }

    /// A limiter outside any runtime (benchmarks, tools). Chains get theirs from the
    /// runtime's registry so buckets survive reloads.
    pub fn standalone(
        route: &str,
        rule: &RateLimitRule,
        max_keys: usize,
        metrics: &PolicyMetrics,
    ) -> Result<Self, RuleError> {
        Self::new(route, 0, rule, max_keys, metrics)
    }

    pub fn rule(&self) -> &RateLimitRule {
        &self.rule
    }

    pub fn route(&self) -> &str {
        &self.route
    }

    /// Keys currently tracked by the local limiter.
    pub fn tracked_keys(&self) -> usize {
        self.local.len()
    }

    /// Checks and counts one request. `redis` is the runtime's link when configured.
    pub async fn check(&self, key: &LimitKey, redis: Option<&RedisLink>) -> LimitVerdict {
        let verdict = match (&self.cluster, redis) {
            (Some(cluster), Some(link)) => match self.check_cluster(cluster, key, link).await {
                Some(verdict) => verdict,
                None => {
                    self.fallbacks.inc();
                    self.check_local(key)
                }
            },
            (Some(_), None) => {
                self.fallbacks.inc();
                self.check_local(key)
            }
            (None, _) => self.check_local(key),
        };
        match verdict {
            LimitVerdict::Allowed { .. } => self.allowed.inc(),
            LimitVerdict::Limited { .. } => self.limited.inc(),
        }
        verdict
    }

    fn check_local(&self, key: &LimitKey) -> LimitVerdict {
        match self.local.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                LimitVerdict::Allowed {
                    limit: self.capacity,
                    remaining,
                    reset: self.reset_secs(remaining),
                }
            }
            Err(not_until) => LimitVerdict::Limited {
                limit: self.capacity,
                retry_after: not_until.wait_time_from(self.local.clock().now()),
            },
        }
    }

    /// Seconds until a bucket with `remaining` tokens is full again.
    fn reset_secs(&self, remaining: u32) -> u64 {
        let missing = self.capacity.saturating_sub(remaining);
        (self.interval * missing).as_nanos().div_ceil(1_000_000_000) as u64
    }

    /// `None` when Redis could not answer (the caller falls back to the local limiter).
    async fn check_cluster(
        &self,
        cluster: &ClusterState,
        key: &LimitKey,
        link: &RedisLink,
    ) -> Option<LimitVerdict> {
        let now_ms = crate::clock::monotonic_ms();
        if let Some(mut lease) = cluster.leases.get_mut(key) {
            if lease.denied_until_ms > now_ms {
                return Some(LimitVerdict::Limited {
                    limit: self.capacity,
                    retry_after: Duration::from_millis(lease.denied_until_ms - now_ms),
                });
            }
            if lease.tokens > 0 && lease.expires_ms > now_ms {
                lease.tokens -= 1;
                let remaining = lease.shared_remaining + lease.tokens;
                return Some(LimitVerdict::Allowed {
                    limit: self.capacity,
                    remaining,
                    reset: self.reset_secs(remaining),
                });
            }
        }
        let redis_key = format!("{}{}{}", link.namespace, cluster.key_stem, key);
        let interval_us = (self.interval.as_micros() as u64).max(1);
        let mut invocation = cluster_script().prepare_invoke();
        invocation
            .key(redis_key)
            .arg(interval_us)
            .arg(self.capacity)
            .arg(cluster.lease_size);
        let (granted, retry_us, remaining): (u32, u64, u32) =
            link.invoke(&invocation).await.ok()?;
        let now_ms = crate::clock::monotonic_ms();
        let lease = if granted == 0 {
            Lease {
                tokens: 0,
                expires_ms: 0,
                denied_until_ms: now_ms + retry_us.div_ceil(1000).max(1),
                shared_remaining: 0,
            }
        } else {
            Lease {
                tokens: granted - 1,
                expires_ms: now_ms + LEASE_TTL.as_millis() as u64,
                denied_until_ms: 0,
                shared_remaining: remaining,
            }
        };
        if cluster.leases.contains_key(key)
            || cluster.leases.len() < cluster.max_leases.load(Ordering::Relaxed)
        {
            cluster.leases.insert(key.clone(), lease);
        }
        Some(if granted == 0 {
            LimitVerdict::Limited {
                limit: self.capacity,
                retry_after: Duration::from_micros(retry_us.max(1)),
            }
        } else {
            let remaining = remaining + lease.tokens;
            LimitVerdict::Allowed {
                limit: self.capacity,
                remaining,
                reset: self.reset_secs(remaining),
            }
        })
    }

    /// Drops idle keys and stale leases; returns the keys still tracked.
    pub fn purge(&self) -> usize {
        self.local.retain_recent();
        self.local.shrink_to_fit();
        if let Some(cluster) = &self.cluster {
            let now_ms = crate::clock::monotonic_ms();
            cluster
                .leases
                .retain(|_, lease| lease.expires_ms > now_ms || lease.denied_until_ms > now_ms);
        }
        self.local.len()
    }
}

/// A short, stable id of a rule's parameters: nodes with the same rule share Redis
/// buckets, and a changed rule starts fresh ones.
fn rule_hash(rule: &RateLimitRule) -> String {
    let text = format!(
        "{:?}|{}|{}|{}|{:?}",
        rule.key,
        rule.requests,
        rule.per.as_nanos(),
        rule.burst,
        rule.scope
    );
    let digest = Sha256::digest(text.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Every live rule limiter, keyed by route, rule and occurrence, so `build_chain` for an
/// unchanged rule returns the same buckets after a reload. Entries are weak: a rule that
/// no chain uses any more is dropped with its last chain.
pub(crate) struct LimiterRegistry {
    limiters: Mutex<HashMap<String, Weak<RuleLimiter>>>,
    config: Mutex<RateLimitGlobalConfig>,
    metrics: PolicyMetrics,
}

impl LimiterRegistry {
    pub(crate) fn new(config: &RateLimitGlobalConfig, metrics: PolicyMetrics) -> Self {
        Self {
            limiters: Mutex::new(HashMap::new()),
            config: Mutex::new(config.clone()),
            metrics,
        }
    }

    pub(crate) fn purge_interval(&self) -> Duration {
        self.config.lock().purge_interval
    }

    /// Applies a changed `[plugins.rate_limit]`. The key cap applies to limiters created
    /// from now on (existing buckets are kept as they are).
    pub(crate) fn reconfigure(&self, config: &RateLimitGlobalConfig) {
        *self.config.lock() = config.clone();
    }

    /// The limiters of one route, in rule order.
    pub(crate) fn limiters_for(
        &self,
        route: &str,
        rules: &[RateLimitRule],
    ) -> Result<Vec<Arc<RuleLimiter>>, RuleError> {
        let max_keys = self.config.lock().max_tracked_keys;
        let mut limiters = self.limiters.lock();
        let mut occurrences: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let base = format!(
                "{route}\u{0}{:?}\u{0}{}\u{0}{}\u{0}{}\u{0}{:?}",
                rule.key,
                rule.requests,
                rule.per.as_nanos(),
                rule.burst,
                rule.scope
            );
            // Two identical rules on one route stay two buckets.
            let nth = occurrences.entry(base.clone()).or_insert(0);
            let id = format!("{base}\u{0}{nth}");
            *nth += 1;
            if let Some(existing) = limiters.get(&id).and_then(Weak::upgrade) {
                out.push(existing);
                continue;
            }
            let limiter = Arc::new(RuleLimiter::new(
                route,
                index,
                rule,
                max_keys,
                &self.metrics,
            )?);
            limiters.insert(id, Arc::downgrade(&limiter));
            out.push(limiter);
        }
        Ok(out)
    }

    /// Purges idle keys of every live limiter, forgets dropped ones, updates the gauges.
    pub(crate) fn purge(&self) {
        let live: Vec<Arc<RuleLimiter>> = {
            let mut limiters = self.limiters.lock();
            limiters.retain(|_, weak| weak.strong_count() > 0);
            limiters.values().filter_map(Weak::upgrade).collect()
        };
        let mut per_route: HashMap<&str, usize> = HashMap::new();
        for limiter in &live {
            *per_route.entry(limiter.route()).or_insert(0) += limiter.purge();
        }
        self.metrics.ratelimit_tracked_keys.reset();
        for (route, keys) in per_route {
            self.metrics
                .ratelimit_tracked_keys
                .with_label_values(&[route])
                .set(keys as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(requests: u32, per: Duration, burst: u32) -> RateLimitRule {
        RateLimitRule {
            key: RateLimitKey::Ip,
            requests,
            per,
            burst,
            scope: RateLimitScope::Local,
        }
    }

    fn limiter(rule: &RateLimitRule, max_keys: usize) -> RuleLimiter {
        RuleLimiter::new("r", 0, rule, max_keys, &PolicyMetrics::for_tests()).expect("valid rule")
    }

    fn ip(n: u8) -> LimitKey {
        LimitKey::ip(IpAddr::from([198, 51, 100, n]))
    }

    #[tokio::test]
    async fn limit_with_burst_then_retry_after_rounded_up() {
        // 2 per minute + 3 burst: five at once, then one every 30 s.
        let limiter = limiter(&rule(2, Duration::from_secs(60), 3), 100);
        let mut remaining = Vec::new();
        for _ in 0..5 {
            match limiter.check(&ip(1), None).await {
                LimitVerdict::Allowed {
                    remaining: r,
                    limit,
                    ..
                } => {
                    assert_eq!(limit, 5);
                    remaining.push(r);
                }
                other => panic!("expected allowed, got {other:?}"),
            }
        }
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
        let LimitVerdict::Limited { retry_after, .. } = limiter.check(&ip(1), None).await else {
            panic!("sixth request must be limited");
        };
        assert!(retry_after > Duration::from_secs(29) && retry_after <= Duration::from_secs(30));
        assert_eq!(LimitVerdict::retry_after_secs(retry_after), 30);
        // Another client is unaffected.
        assert!(matches!(
            limiter.check(&ip(2), None).await,
            LimitVerdict::Allowed { .. }
        ));
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        assert_eq!(LimitVerdict::retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(
            LimitVerdict::retry_after_secs(Duration::from_millis(1001)),
            2
        );
        assert_eq!(LimitVerdict::retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(LimitVerdict::retry_after_secs(Duration::ZERO), 1);
    }

    #[tokio::test]
    async fn headers_report_limit_remaining_and_reset() {
        let limiter = limiter(&rule(10, Duration::from_secs(10), 0), 100);
        let verdict = limiter.check(&ip(1), None).await;
        let mut headers = HeaderMap::new();
        verdict.write_headers(&mut headers);
        assert_eq!(headers[RATELIMIT_LIMIT], "10");
        assert_eq!(headers[RATELIMIT_REMAINING], "9");
        assert_eq!(headers[RATELIMIT_RESET], "1");
    }

    #[tokio::test]
    async fn idle_keys_are_purged() {
        // 1000 per second: a key's bucket is full again 1 ms after its last request.
        let limiter = limiter(&rule(1000, Duration::from_secs(1), 0), 100);
        for n in 0..10 {
            limiter.check(&ip(n), None).await;
        }
        assert_eq!(limiter.tracked_keys(), 10);
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while limiter.purge() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "idle keys were never purged"
            );
            tokio::task::yield_now().await;
        }
        // A busy key is kept: its bucket is far from full.
        let slow = limiter_with_busy_key().await;
        assert_eq!(slow.purge(), 1);
    }

    async fn limiter_with_busy_key() -> RuleLimiter {
        let limiter = limiter(&rule(1, Duration::from_secs(3600), 0), 100);
        limiter.check(&ip(1), None).await;
        limiter
    }

    #[tokio::test]
    async fn past_the_key_cap_new_keys_share_the_overflow_bucket() {
        let metrics = PolicyMetrics::for_tests();
        let limiter = RuleLimiter::new("r", 0, &rule(2, Duration::from_secs(3600), 0), 3, &metrics)
            .expect("rule");
        for n in 0..3 {
            assert!(matches!(
                limiter.check(&ip(n), None).await,
                LimitVerdict::Allowed { .. }
            ));
        }
        // Table full: two brand-new clients together get one bucket of two.
        assert!(matches!(
            limiter.check(&ip(10), None).await,
            LimitVerdict::Allowed { .. }
        ));
        assert!(matches!(
            limiter.check(&ip(11), None).await,
            LimitVerdict::Allowed { .. }
        ));
        assert!(matches!(
            limiter.check(&ip(12), None).await,
            LimitVerdict::Limited { .. }
        ));
        // Tracked keys keep their own buckets.
        assert!(matches!(
            limiter.check(&ip(0), None).await,
            LimitVerdict::Allowed { .. }
        ));
        assert_eq!(
            limiter.tracked_keys(),
            4,
            "three keys plus the overflow bucket"
        );
        assert_eq!(
            metrics.ratelimit_overflow.with_label_values(&["r"]).get(),
            3
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(LimitKey::ip(a), LimitKey::ip(b));
        assert_ne!(LimitKey::ip(a), LimitKey::ip(c));
        assert_eq!(LimitKey::ip(a).to_string(), "ip:2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(
            LimitKey::ip(mapped),
            LimitKey::ip("192.0.2.1".parse().expect("ip"))
        );
    }

    #[test]
    fn rule_keys_follow_identity() {
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(LimitKey::for_rule(RateLimitKey::User, ip, None), None);
        assert_eq!(
            LimitKey::for_rule(RateLimitKey::UserOrIp, ip, None),
            Some(LimitKey::ip(ip))
        );
        assert_eq!(
            LimitKey::for_rule(RateLimitKey::UserOrIp, ip, Some("u1")),
            Some(LimitKey::User(Arc::from("u1")))
        );
    }

    #[test]
    fn registry_returns_the_same_buckets_for_an_unchanged_rule() {
        let registry = LimiterRegistry::new(
            &RateLimitGlobalConfig::default(),
            PolicyMetrics::for_tests(),
        );
        let rules = [
            rule(5, Duration::from_secs(1), 0),
            rule(5, Duration::from_secs(1), 0),
        ];
        let first = registry.limiters_for("route", &rules).expect("rules");
        let again = registry.limiters_for("route", &rules).expect("rules");
        assert!(Arc::ptr_eq(&first[0], &again[0]));
        assert!(Arc::ptr_eq(&first[1], &again[1]));
        assert!(
            !Arc::ptr_eq(&first[0], &first[1]),
            "duplicates are separate buckets"
        );
        let changed = registry
            .limiters_for("route", &[rule(6, Duration::from_secs(1), 0)])
            .expect("rules");
        assert!(!Arc::ptr_eq(&first[0], &changed[0]));
        let other_route = registry.limiters_for("other", &rules[..1]).expect("rules");
        assert!(!Arc::ptr_eq(&first[0], &other_route[0]));
        drop((first, again, changed, other_route));
        registry.purge();
        assert!(registry.limiters.lock().is_empty());
    }

    #[test]
    fn impossible_quotas_are_config_errors() {
        let err = RuleLimiter::new(
            "r",
            2,
            &rule(10, Duration::from_nanos(5), 0),
            10,
            &PolicyMetrics::for_tests(),
        )
        .err()
        .expect("sub-nanosecond interval");
        assert_eq!(err.path, "rate_limits[2].per");
    }
}
