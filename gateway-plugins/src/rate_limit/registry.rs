//! The runtime's table of live rule limiters, so buckets survive config reloads.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::{RuleError, RuleLimiter};
use crate::config::{RateLimitGlobalConfig, RateLimitRule};
use crate::metrics::PolicyMetrics;

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

    /// Applies a committed `[plugins.rate_limit]`: the purge interval. (The key cap is
    /// passed to [`limiters_for`](Self::limiters_for) by the set a chain is built
    /// against, so building chains for a reload that is then rejected changes nothing
    /// here; existing buckets are kept as they are.)
    pub(crate) fn reconfigure(&self, config: &RateLimitGlobalConfig) {
        *self.config.lock() = config.clone();
    }

    /// The limiters of one route, in rule order: the live limiter of an unchanged rule, or
    /// a new one tracking at most `max_keys` keys. Only inserts (weakly) into the table;
    /// the limiters of running chains are never replaced or changed.
    pub(crate) fn limiters_for(
        &self,
        route: &str,
        rules: &[RateLimitRule],
        max_keys: usize,
    ) -> Result<Vec<Arc<RuleLimiter>>, RuleError> {
        let mut limiters = self.limiters.lock();
        let mut occurrences: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            // A shared budget's buckets belong to the budget, not to one route: every route
            // naming it gets the same limiter (and, cluster scope, the same Redis keys).
            let budget_owner = rule.budget.as_ref().map(|b| format!("budget:{b}"));
            let owner = budget_owner.as_deref().unwrap_or(route);
            let base = format!(
                "{owner}\u{0}{:?}\u{0}{}\u{0}{}\u{0}{}\u{0}{:?}",
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
                owner,
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
    use crate::config::{RateLimitKey, RateLimitScope};

    const MAX_KEYS: usize = 100;

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
        let first = registry
            .limiters_for("route", &rules, MAX_KEYS)
            .expect("rules");
        let again = registry
            .limiters_for("route", &rules, MAX_KEYS)
            .expect("rules");
        assert!(Arc::ptr_eq(&first[0], &again[0]));
        assert!(Arc::ptr_eq(&first[1], &again[1]));
        assert!(
            !Arc::ptr_eq(&first[0], &first[1]),
            "duplicates are separate buckets"
        );
        let changed = registry
            .limiters_for("route", &[rule(6, Duration::from_secs(1), 0)], MAX_KEYS)
            .expect("rules");
        assert!(!Arc::ptr_eq(&first[0], &changed[0]));
        let other_route = registry
            .limiters_for("other", &rules[..1], MAX_KEYS)
            .expect("rules");
        assert!(!Arc::ptr_eq(&first[0], &other_route[0]));
        drop((first, again, changed, other_route));
        registry.purge();
        assert!(registry.limiters.lock().is_empty());
    }

    #[test]
    fn routes_naming_one_budget_share_its_buckets() {
        let registry = LimiterRegistry::new(
            &RateLimitGlobalConfig::default(),
            PolicyMetrics::for_tests(),
        );
        let shared = RateLimitRule {
            budget: Some("login".into()),
            ..rule(1, Duration::from_secs(60), 0)
        };
        let http = registry
            .limiters_for("login-http", std::slice::from_ref(&shared), MAX_KEYS)
            .expect("rules");
        let grpc = registry
            .limiters_for("login-grpc", std::slice::from_ref(&shared), MAX_KEYS)
            .expect("rules");
        assert!(Arc::ptr_eq(&http[0], &grpc[0]));
        let own = registry
            .limiters_for(
                "login-grpc",
                &[rule(1, Duration::from_secs(60), 0)],
                MAX_KEYS,
            )
            .expect("rules");
        assert!(
            !Arc::ptr_eq(&http[0], &own[0]),
            "without a budget: per route"
        );
    }
}
