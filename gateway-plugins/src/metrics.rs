//! Prometheus metrics of the policy chain.
//!
//! Everything is registered in the registry the edge hands to
//! [`PolicyRuntime::new`](crate::PolicyRuntime::new), never in the process-global default
//! registry: several runtimes (tests, "two edge nodes" in one process) must not collide.
//! Every name starts with `edge_`.
//!
//! Hot-path counters are resolved to their labelled child once (when a chain is built or
//! the runtime starts) so a request pays an atomic increment, not a label-map lookup.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Every reason code a JWT rejection can carry (the JSON `error.code`).
pub const JWT_REJECTION_REASONS: &[&str] = &[
    "token_missing",
    "token_expired",
    "token_not_yet_valid",
    "bad_signature",
    "unknown_kid",
    "algorithm_not_allowed",
    "bad_issuer",
    "bad_audience",
    "malformed_token",
    "token_revoked",
];

/// All collectors of one [`PolicyRuntime`](crate::PolicyRuntime).
#[derive(Clone)]
pub struct PolicyMetrics {
    /// `edge_jwt_rejections_total{reason}`: requests refused with 401, by reason code.
    pub jwt_rejections: IntCounterVec,
    /// `edge_jwt_verifications_total{result}`: `verified` (signature checked), `cache_hit`,
    /// `failed`.
    pub jwt_verifications: IntCounterVec,
    /// `edge_jwks_fetches_total{result}`: `ok`, `error`.
    pub jwks_fetches: IntCounterVec,
    /// `edge_jwt_keys`: verification keys loaded (JWKS + static).
    pub jwt_keys: IntGauge,
    /// `edge_jwt_cache_entries`: verified tokens remembered.
    pub jwt_cache_entries: IntGauge,
    /// `edge_revocation_checks_total{source,result}`: source `local` (revoked set),
    /// `negative_cache`, `redis`, `memory`; result `revoked`, `live`, `error`.
    pub revocation_checks: IntCounterVec,
    /// `edge_revocation_redis_errors_total`: revocation lookups that could not reach Redis
    /// (the route's fail mode decided).
    pub revocation_redis_errors: IntCounter,
    /// `edge_revocation_fail_mode_total{mode}`: requests decided by a fail mode
    /// (`closed` = refused with 503, `open` = accepted unchecked).
    pub revocation_fail_mode: IntCounterVec,
    /// `edge_revocation_messages_total{result}`: pub/sub messages, `applied` or `invalid`.
    pub revocation_messages: IntCounterVec,
    /// `edge_revocation_resyncs_total`: subscriptions (re-)established; each drops the
    /// negative cache because messages may have been missed.
    pub revocation_resyncs: IntCounter,
    /// `edge_revocation_subscribed`: 1 while the revocation channel subscription is live.
    pub revocation_subscribed: IntGauge,
    /// `edge_revocation_revoked_entries`: revoked jtis held locally.
    pub revocation_revoked_entries: IntGauge,
    /// `edge_revocation_negative_entries`: jtis remembered as live.
    pub revocation_negative_entries: IntGauge,
    /// `edge_redis_up`: 1 while the command connection to Redis is established.
    pub redis_up: IntGauge,
    /// `edge_ratelimit_decisions_total{route,result}`: `allowed`, `limited`.
    pub ratelimit_decisions: IntCounterVec,
    /// `edge_ratelimit_redis_fallbacks_total`: cluster-scope checks answered by the local
    /// limiter because Redis was unreachable.
    pub ratelimit_redis_fallbacks: IntCounter,
    /// `edge_ratelimit_overflow_total{route}`: checks of new keys that found the rule's
    /// key table full and were counted in the shared overflow bucket.
    pub ratelimit_overflow: IntCounterVec,
    /// `edge_ratelimit_tracked_keys{route}`: keys held by the route's limiters (after the
    /// last purge).
    pub ratelimit_tracked_keys: IntGaugeVec,
}

impl PolicyMetrics {
    /// Creates and registers every collector.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            jwt_rejections: IntCounterVec::new(
                Opts::new(
                    "edge_jwt_rejections_total",
                    "Requests refused because of their token, by reason",
                ),
                &["reason"],
            )?,
            jwt_verifications: IntCounterVec::new(
                Opts::new(
                    "edge_jwt_verifications_total",
                    "Token checks: verified (signature), cache_hit, failed",
                ),
                &["result"],
            )?,
            jwks_fetches: IntCounterVec::new(
                Opts::new("edge_jwks_fetches_total", "JWKS fetches by result"),
                &["result"],
            )?,
            jwt_keys: IntGauge::new("edge_jwt_keys", "JWT verification keys loaded")?,
            jwt_cache_entries: IntGauge::new(
                "edge_jwt_cache_entries",
                "Verified tokens held in the cache",
            )?,
            revocation_checks: IntCounterVec::new(
                Opts::new(
                    "edge_revocation_checks_total",
                    "Revocation checks by source and result",
                ),
                &["source", "result"],
            )?,
            revocation_redis_errors: IntCounter::new(
                "edge_revocation_redis_errors_total",
                "Revocation lookups that could not reach Redis",
            )?,
            revocation_fail_mode: IntCounterVec::new(
                Opts::new(
                    "edge_revocation_fail_mode_total",
                    "Requests decided by the revocation fail mode while Redis was unreachable",
                ),
                &["mode"],
            )?,
            revocation_messages: IntCounterVec::new(
                Opts::new(
                    "edge_revocation_messages_total",
                    "Revocation pub/sub messages by result",
                ),
                &["result"],
            )?,
            revocation_resyncs: IntCounter::new(
                "edge_revocation_resyncs_total",
                "Revocation subscriptions established (negative cache dropped each time)",
            )?,
            revocation_subscribed: IntGauge::new(
                "edge_revocation_subscribed",
                "1 while the revocation channel subscription is live",
            )?,
            revocation_revoked_entries: IntGauge::new(
                "edge_revocation_revoked_entries",
                "Revoked jtis held locally",
            )?,
            revocation_negative_entries: IntGauge::new(
                "edge_revocation_negative_entries",
                "jtis remembered as not revoked",
            )?,
            redis_up: IntGauge::new("edge_redis_up", "1 while the Redis connection is up")?,
            ratelimit_decisions: IntCounterVec::new(
                Opts::new(
                    "edge_ratelimit_decisions_total",
                    "Rate-limit decisions by route and result",
                ),
                &["route", "result"],
            )?,
            ratelimit_redis_fallbacks: IntCounter::new(
                "edge_ratelimit_redis_fallbacks_total",
                "Cluster rate-limit checks answered locally because Redis was unreachable",
            )?,
            ratelimit_overflow: IntCounterVec::new(
                Opts::new(
                    "edge_ratelimit_overflow_total",
                    "New rate-limit keys counted in the shared overflow bucket (key table full)",
                ),
                &["route"],
            )?,
            ratelimit_tracked_keys: IntGaugeVec::new(
                Opts::new(
                    "edge_ratelimit_tracked_keys",
                    "Keys tracked by a route's rate limiters",
                ),
                &["route"],
            )?,
        };
        registry.register(Box::new(metrics.jwt_rejections.clone()))?;
        registry.register(Box::new(metrics.jwt_verifications.clone()))?;
        registry.register(Box::new(metrics.jwks_fetches.clone()))?;
        registry.register(Box::new(metrics.jwt_keys.clone()))?;
        registry.register(Box::new(metrics.jwt_cache_entries.clone()))?;
        registry.register(Box::new(metrics.revocation_checks.clone()))?;
        registry.register(Box::new(metrics.revocation_redis_errors.clone()))?;
        registry.register(Box::new(metrics.revocation_fail_mode.clone()))?;
        registry.register(Box::new(metrics.revocation_messages.clone()))?;
        registry.register(Box::new(metrics.revocation_resyncs.clone()))?;
        registry.register(Box::new(metrics.revocation_subscribed.clone()))?;
        registry.register(Box::new(metrics.revocation_revoked_entries.clone()))?;
        registry.register(Box::new(metrics.revocation_negative_entries.clone()))?;
        registry.register(Box::new(metrics.redis_up.clone()))?;
        registry.register(Box::new(metrics.ratelimit_decisions.clone()))?;
        registry.register(Box::new(metrics.ratelimit_redis_fallbacks.clone()))?;
        registry.register(Box::new(metrics.ratelimit_overflow.clone()))?;
        registry.register(Box::new(metrics.ratelimit_tracked_keys.clone()))?;
        // Reason series exist from the start, so dashboards and alerts see zeros rather
        // than absent series.
        for reason in JWT_REJECTION_REASONS {
            metrics.jwt_rejections.with_label_values(&[*reason]);
        }
        Ok(metrics)
    }

    /// A private registry's metrics, for unit tests of single plugins.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        match Self::register(&Registry::new()) {
            Ok(metrics) => metrics,
            Err(err) => panic!("a fresh registry accepts every metric: {err}"),
        }
    }
}

/// Logs at most once per interval and says how many messages it held back, so an outage
/// that fails every request does not flood the log.
pub(crate) struct LogLimiter {
    interval_ms: u64,
    last_ms: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogLimiter {
    pub(crate) const fn new(interval: std::time::Duration) -> Self {
        Self {
            interval_ms: interval.as_millis() as u64,
            last_ms: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(suppressed_since_last)` when the caller should log now.
    pub(crate) fn allow(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let now = crate::clock::monotonic_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.interval_ms {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last_ms
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_runtimes_can_register_in_separate_registries() {
        let a = Registry::new();
        let b = Registry::new();
        PolicyMetrics::register(&a).expect("first registry");
        PolicyMetrics::register(&b).expect("second registry");
        let names: Vec<String> = a.gather().iter().map(|f| f.name().to_string()).collect();
        assert!(names.iter().all(|n| n.starts_with("edge_")), "{names:?}");
        assert!(names.contains(&"edge_jwt_rejections_total".to_string()));
    }

    #[test]
    fn registering_twice_in_one_registry_is_an_error() {
        let registry = Registry::new();
        PolicyMetrics::register(&registry).expect("first");
        assert!(PolicyMetrics::register(&registry).is_err());
    }

    #[test]
    fn log_limiter_lets_one_message_through_per_interval() {
        let limiter = LogLimiter::new(std::time::Duration::from_secs(3600));
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), None);
        assert_eq!(limiter.allow(), None);
    }
}
