//! The cluster side of a rule: one quota across every edge sharing a Redis (leased GCRA).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::{LimitKey, LimitVerdict, RuleLimiter};
use crate::config::RateLimitRule;
use crate::redis_link::RedisLink;

/// Share of the bucket an edge leases from Redis at a time (1/50 = 2 %).
const LEASE_DIVISOR: u32 = 50;
/// Leased tokens not used within this time are dropped (they were already counted).
const LEASE_TTL: Duration = Duration::from_secs(1);

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
pub(super) struct ClusterState {
    /// `<ns>rl:<route>:<rule hash>:` without the namespace (added per link).
    key_stem: String,
    lease_size: u32,
    leases: DashMap<LimitKey, Lease>,
    max_leases: AtomicUsize,
}

impl ClusterState {
    pub(super) fn new(route: &str, rule: &RateLimitRule, capacity: u32, max_keys: usize) -> Self {
        Self {
            key_stem: format!("rl:{route}:{}:", rule_hash(rule)),
            lease_size: (capacity / LEASE_DIVISOR).max(1),
            leases: DashMap::new(),
            max_leases: AtomicUsize::new(max_keys.max(1)),
        }
    }

    /// Drops leases that are neither usable nor a remembered denial.
    pub(super) fn purge(&self) {
        let now_ms = crate::clock::monotonic_ms();
        self.leases
            .retain(|_, lease| lease.expires_ms > now_ms || lease.denied_until_ms > now_ms);
    }
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

impl RuleLimiter {
    /// `None` when Redis could not answer (the caller falls back to the local limiter).
    pub(super) async fn check_cluster(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RateLimitKey, RateLimitScope};
    use std::net::IpAddr;

    fn rule(requests: u32) -> RateLimitRule {
        RateLimitRule {
            key: RateLimitKey::Ip,
            requests,
            per: Duration::from_secs(60),
            burst: 0,
            scope: RateLimitScope::Cluster,
            budget: None,
        }
    }

    #[test]
    fn lease_is_two_percent_of_the_bucket_and_at_least_one() {
        assert_eq!(ClusterState::new("r", &rule(1000), 1000, 10).lease_size, 20);
        assert_eq!(ClusterState::new("r", &rule(10), 10, 10).lease_size, 1);
    }

    #[test]
    fn same_rule_same_redis_key_and_a_changed_rule_a_new_one() {
        let a = ClusterState::new("login", &rule(10), 10, 10);
        let b = ClusterState::new("login", &rule(10), 10, 10);
        let c = ClusterState::new("login", &rule(11), 11, 10);
        assert_eq!(a.key_stem, b.key_stem);
        assert_ne!(a.key_stem, c.key_stem);
        assert!(a.key_stem.starts_with("rl:login:"));
    }

    #[test]
    fn purge_keeps_live_leases_and_remembered_denials_only() {
        let state = ClusterState::new("r", &rule(10), 10, 10);
        let now = crate::clock::monotonic_ms();
        let key = |n: u8| LimitKey::ip(IpAddr::from([192, 0, 2, n]));
        let lease = |expires_ms, denied_until_ms| Lease {
            tokens: 1,
            expires_ms,
            denied_until_ms,
            shared_remaining: 0,
        };
        state.leases.insert(key(1), lease(now + 60_000, 0));
        state.leases.insert(key(2), lease(0, now + 60_000));
        state.leases.insert(key(3), lease(0, 0));
        state.purge();
        assert!(state.leases.contains_key(&key(1)));
        assert!(state.leases.contains_key(&key(2)));
        assert!(!state.leases.contains_key(&key(3)));
    }
}
