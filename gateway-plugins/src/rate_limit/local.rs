//! The local side of a rule: a governor GCRA limiter over a key table with a cap.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use prometheus::IntCounter;

use super::cluster::ClusterState;
use super::{LimitKey, LimitVerdict};
use crate::config::{RateLimitRule, RateLimitScope};
use crate::metrics::PolicyMetrics;
use crate::redis_link::RedisLink;

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

/// The limiter of one rule on one route. Lives in the runtime's registry so its buckets
/// survive config reloads that leave the rule unchanged.
pub struct RuleLimiter {
    rule: RateLimitRule,
    route: String,
    pub(super) capacity: u32,
    pub(super) interval: Duration,
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
    pub(super) fn new(
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
        let cluster = (rule.scope == RateLimitScope::Cluster)
            .then(|| ClusterState::new(route, rule, capacity.get(), max_keys));
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
    pub(super) fn reset_secs(&self, remaining: u32) -> u64 {
        let missing = self.capacity.saturating_sub(remaining);
        (self.interval * missing).as_nanos().div_ceil(1_000_000_000) as u64
    }
    /// Drops idle keys and stale leases; returns the keys still tracked.
    pub fn purge(&self) -> usize {
        self.local.retain_recent();
        self.local.shrink_to_fit();
        if let Some(cluster) = &self.cluster {
            cluster.purge();
        }
        self.local.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimitKey;
    use crate::rate_limit::{RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET};
    use http::HeaderMap;
    use std::net::IpAddr;

    fn rule(requests: u32, per: Duration, burst: u32) -> RateLimitRule {
        RateLimitRule {
            key: RateLimitKey::Ip,
            requests,
            per,
            burst,
            scope: RateLimitScope::Local,
            budget: None,
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
