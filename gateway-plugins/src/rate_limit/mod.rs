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

mod cluster;
mod key;
mod local;
mod registry;

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

pub use key::LimitKey;
pub use local::{CappedStore, RuleError, RuleLimiter};
pub(crate) use registry::LimiterRegistry;

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
