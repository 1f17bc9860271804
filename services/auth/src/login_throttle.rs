//! Per-account failed-login throttle, beside the edge's per-client-IP limit.
//!
//! After `limit` failed logins for one email within `window`, further attempts for that email
//! are refused — 429 + `Retry-After` (gRPC RESOURCE_EXHAUSTED) — before any database lookup or
//! argon2 work, for a back-off that starts at `backoff` and doubles with every further failure
//! up to `backoff_max`. A successful login clears the count. The email is what is throttled,
//! whether or not an account has it: an unknown email gets exactly the same answers, so the
//! throttle is no oracle for which accounts exist. HTTP and gRPC logins share one count.
//!
//! The state is shared by every replica in the main Redis: per email at most two small keys,
//! each with a TTL (`<ns>login-failures:<h>`, the count; `<ns>login-blocked:<h>`, the back-off),
//! where `h` is a SHA-256 of the lower-cased email (bounded key length, no addresses stored).
//! The count lives `window` after its first failure, or the back-off plus a window, so it stays
//! bounded even under a flood of distinct emails (whose rate the hashing cap bounds anyway).
//!
//! When Redis cannot be asked, the same rules run on an in-process table (bounded, per
//! replica) rather than failing open: an outage of Redis must not lift the throttle across
//! the cluster, and refusing every login (failing closed) would make Redis, which login does
//! not otherwise need, a hard dependency of it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, Registry};
use service_common::config::parse_duration;
use service_common::redis::RedisHandle;
use service_common::{ApiError, ApiResult};
use sha2::{Digest, Sha256};

/// Emails the in-process fallback tracks at most; when full, new emails go untracked rather
/// than pushing out the counts of emails under attack.
const LOCAL_CAPACITY: usize = 10_000;

/// Counts one failure and starts the back-off once the count reaches the limit. Returns the
/// back-off in ms (0 below the limit). The same rules as [`Policy::backoff_after`].
const FAILURE_SCRIPT: &str = r"
local failures = redis.call('INCR', KEYS[1])
local window = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], window) end
local limit = tonumber(ARGV[2])
if failures < limit then return 0 end
local block = tonumber(ARGV[3]) * 2 ^ math.min(failures - limit, 40)
block = math.floor(math.min(block, tonumber(ARGV[4])))
redis.call('SET', KEYS[2], '1', 'PX', block)
if redis.call('PTTL', KEYS[1]) < block + window then redis.call('PEXPIRE', KEYS[1], block + window) end
return block
";

#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LoginThrottleArgs {
    /// Failed logins for one email within the window after which its logins are throttled.
    #[arg(long = "login-failure-limit", env = "AUTH_LOGIN_FAILURE_LIMIT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub failure_limit: u32,
    /// How long failed logins are remembered, counted from the first one.
    #[arg(long = "login-failure-window", env = "AUTH_LOGIN_FAILURE_WINDOW", default_value = "15m",
          value_parser = parse_duration)]
    pub failure_window: Duration,
    /// First back-off once the limit is reached; doubled by every further failure.
    #[arg(long = "login-backoff", env = "AUTH_LOGIN_BACKOFF", default_value = "1s",
          value_parser = parse_duration)]
    pub backoff: Duration,
    /// Longest back-off.
    #[arg(long = "login-backoff-max", env = "AUTH_LOGIN_BACKOFF_MAX", default_value = "15m",
          value_parser = parse_duration)]
    pub backoff_max: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    #[error("{key} must be at least {min}")]
    TooSmall {
        key: &'static str,
        min: &'static str,
    },
    #[error("AUTH_LOGIN_BACKOFF_MAX (--login-backoff-max) must not be below AUTH_LOGIN_BACKOFF (--login-backoff)")]
    MaxBelowBackoff,
    #[error("login throttle metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The validated rules.
#[derive(Debug, Clone, Copy)]
struct Policy {
    limit: u32,
    window: Duration,
    backoff: Duration,
    backoff_max: Duration,
}

impl Policy {
    fn new(args: &LoginThrottleArgs) -> Result<Self, ThrottleError> {
        if args.failure_window < Duration::from_secs(1) {
            return Err(ThrottleError::TooSmall {
                key: "AUTH_LOGIN_FAILURE_WINDOW (--login-failure-window)",
                min: "1s",
            });
        }
        if args.backoff < Duration::from_millis(1) {
            return Err(ThrottleError::TooSmall {
                key: "AUTH_LOGIN_BACKOFF (--login-backoff)",
                min: "1ms",
            });
        }
        if args.backoff_max < args.backoff {
            return Err(ThrottleError::MaxBelowBackoff);
        }
        Ok(Self {
            limit: args.failure_limit.max(1),
            window: args.failure_window,
            backoff: args.backoff,
            backoff_max: args.backoff_max,
        })
    }

    /// The back-off after the `failures`-th failure within a window, if it starts one.
    fn backoff_after(&self, failures: u32) -> Option<Duration> {
        let beyond = failures.checked_sub(self.limit)?;
        let factor = 2u32.saturating_pow(beyond.min(31));
        Some(self.backoff.saturating_mul(factor).min(self.backoff_max))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// `Retry-After` seconds for a back-off with `left` to run (rounded up: never early).
fn retry_after_secs(left: Duration) -> u64 {
    left.as_millis()
        .div_ceil(1000)
        .try_into()
        .unwrap_or(u64::MAX)
}

pub fn throttled(left: Duration) -> ApiError {
    ApiError::too_many_requests(
        "login_throttled",
        "too many failed logins for this email; retry later",
        retry_after_secs(left),
    )
}

pub struct LoginThrottle {
    redis: RedisHandle,
    policy: Policy,
    local: Mutex<LocalThrottle>,
    refused: IntCounter,
    fallbacks: IntCounter,
}

impl LoginThrottle {
    /// Registers `login_throttled_total` and `login_throttle_fallbacks_total` in `registry`.
    pub fn new(
        redis: RedisHandle,
        args: &LoginThrottleArgs,
        registry: &Registry,
    ) -> Result<Self, ThrottleError> {
        let policy = Policy::new(args)?;
        let refused = IntCounter::new(
            "login_throttled_total",
            "Logins refused (429) by the per-account failed-login throttle",
        )?;
        let fallbacks = IntCounter::new(
            "login_throttle_fallbacks_total",
            "Throttle steps done in-process because Redis could not be asked",
        )?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(fallbacks.clone()))?;
        Ok(Self {
            redis,
            policy,
            local: Mutex::new(LocalThrottle::default()),
            refused,
            fallbacks,
        })
    }

    fn keys(&self, email: &str) -> (String, String) {
        let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
        let digest = hex::encode(&digest[..16]);
        (
            self.redis.key(&format!("login-failures:{digest}")),
            self.redis.key(&format!("login-blocked:{digest}")),
        )
    }

    fn local(&self) -> std::sync::MutexGuard<'_, LocalThrottle> {
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A 429 while `email` is in back-off.
    pub async fn check(&self, email: &str) -> ApiResult<()> {
        let (counter, blocked) = self.keys(email);
        let key = blocked.clone();
        let left: Result<i64, _> = self
            .redis
            .run(
                |mut conn| async move { redis::cmd("PTTL").arg(&key).query_async(&mut conn).await },
            )
            .await;
        let left = match left {
            Ok(ms) => u64::try_from(ms).ok().map(Duration::from_millis),
            Err(err) => {
                tracing::debug!(error = %err, "login throttle: Redis unavailable, checking in-process");
                self.fallbacks.inc();
                self.local().blocked_for(&counter, Instant::now())
            }
        };
        match left.filter(|left| !left.is_zero()) {
            Some(left) => {
                self.refused.inc();
                tracing::info!(retry_after_ms = millis(left), "login throttled");
                Err(throttled(left))
            }
            None => Ok(()),
        }
    }

    pub async fn record_failure(&self, email: &str) {
        let (counter, blocked) = self.keys(email);
        let policy = self.policy;
        let (counter_key, blocked_key) = (counter.clone(), blocked);
        let counted: Result<u64, _> = self
            .redis
            .run(|mut conn| async move {
                redis::Script::new(FAILURE_SCRIPT)
                    .key(&counter_key)
                    .key(&blocked_key)
                    .arg(millis(policy.window))
                    .arg(policy.limit)
                    .arg(millis(policy.backoff))
                    .arg(millis(policy.backoff_max))
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
        match counted {
            Ok(0) => {}
            Ok(ms) => tracing::info!(backoff_ms = ms, "login back-off started"),
            Err(err) => {
                tracing::debug!(error = %err, "login throttle: Redis unavailable, counting in-process");
                self.fallbacks.inc();
                self.local()
                    .record_failure(&counter, Instant::now(), &self.policy);
            }
        }
    }

    pub async fn record_success(&self, email: &str) {
        let (counter, blocked) = self.keys(email);
        self.local().clear(&counter);
        let key = counter;
        let cleared: Result<(), _> = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("DEL")
                    .arg(&key)
                    .arg(&blocked)
                    .query_async(&mut conn)
                    .await
            })
            .await;
        if let Err(err) = cleared {
            // The count expires by itself; only the owner's own next failures come sooner.
            tracing::debug!(error = %err, "login throttle: count not cleared");
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct LocalEntry {
    failures: u32,
    forget_at: Instant,
    blocked_until: Option<Instant>,
}

/// The fallback: the Redis rules on a bounded in-process table.
#[derive(Debug, Default)]
struct LocalThrottle {
    entries: HashMap<String, LocalEntry>,
}

impl LocalThrottle {
    fn blocked_for(&mut self, key: &str, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        if entry.forget_at <= now {
            self.entries.remove(key);
            return None;
        }
        entry
            .blocked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    fn record_failure(&mut self, key: &str, now: Instant, policy: &Policy) {
        if !self.entries.contains_key(key) && self.entries.len() >= LOCAL_CAPACITY {
            self.entries.retain(|_, entry| entry.forget_at > now);
            if self.entries.len() >= LOCAL_CAPACITY {
                tracing::warn!("login throttle fallback table full; email not tracked");
                return;
            }
        }
        let entry = self
            .entries
            .entry(key.to_string())
            .and_modify(|entry| {
                if entry.forget_at <= now {
                    *entry = LocalEntry::fresh(now, policy);
                }
            })
            .or_insert_with(|| LocalEntry::fresh(now, policy));
        entry.failures = entry.failures.saturating_add(1);
        if let Some(block) = policy.backoff_after(entry.failures) {
            entry.blocked_until = Some(now + block);
            entry.forget_at = entry.forget_at.max(now + block + policy.window);
        }
    }

    fn clear(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

impl LocalEntry {
    fn fresh(now: Instant, policy: &Policy) -> Self {
        Self {
            failures: 0,
            forget_at: now + policy.window,
            blocked_until: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: u32) -> Policy {
        Policy::new(&LoginThrottleArgs {
            failure_limit: limit,
            failure_window: Duration::from_secs(60),
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
        })
        .expect("policy")
    }

    #[test]
    fn back_off_starts_at_the_limit_and_doubles_up_to_the_max() {
        let p = policy(3);
        let got: Vec<Option<u64>> = (1..=8)
            .map(|n| p.backoff_after(n).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            got,
            [
                None,
                None,
                Some(1),
                Some(2),
                Some(4),
                Some(8),
                Some(8),
                Some(8)
            ]
        );
        assert_eq!(
            p.backoff_after(u32::MAX),
            Some(Duration::from_secs(8)),
            "no overflow"
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(throttled(Duration::ZERO).retry_after, Some(1));
    }

    #[test]
    fn bad_settings_name_their_key() {
        let args = LoginThrottleArgs {
            failure_limit: 3,
            failure_window: Duration::from_secs(60),
            backoff: Duration::from_secs(10),
            backoff_max: Duration::from_secs(5),
        };
        let err = Policy::new(&args).expect_err("max below backoff");
        assert!(err.to_string().contains("AUTH_LOGIN_BACKOFF_MAX"), "{err}");
        let err = Policy::new(&LoginThrottleArgs {
            failure_window: Duration::ZERO,
            ..args
        })
        .expect_err("zero window");
        assert!(
            err.to_string().contains("AUTH_LOGIN_FAILURE_WINDOW"),
            "{err}"
        );
    }

    #[test]
    fn fallback_blocks_after_the_limit_grows_and_forgets_after_the_window() {
        let p = policy(2);
        let mut local = LocalThrottle::default();
        let t0 = Instant::now();
        local.record_failure("a", t0, &p);
        assert_eq!(local.blocked_for("a", t0), None, "below the limit");
        local.record_failure("a", t0, &p);
        assert_eq!(local.blocked_for("a", t0), Some(Duration::from_secs(1)));
        assert_eq!(
            local.blocked_for("b", t0),
            None,
            "other emails are unaffected"
        );
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(local.blocked_for("a", t1), None, "back-off over");
        local.record_failure("a", t1, &p);
        assert_eq!(
            local.blocked_for("a", t1),
            Some(Duration::from_secs(2)),
            "grown"
        );
        let later = t1 + Duration::from_secs(2 + 60);
        assert_eq!(local.blocked_for("a", later), None);
        assert!(local.entries.is_empty(), "forgotten after the window");
        local.record_failure("a", later, &p);
        assert_eq!(local.blocked_for("a", later), None, "counting anew");
        local.clear("a");
        assert!(local.entries.is_empty());
    }

    #[test]
    fn a_full_fallback_table_keeps_the_emails_it_tracks() {
        let p = policy(2);
        let mut local = LocalThrottle::default();
        let now = Instant::now();
        local.record_failure("victim", now, &p);
        for n in 0..LOCAL_CAPACITY {
            local.record_failure(&format!("flood-{n}"), now, &p);
        }
        assert_eq!(local.entries.len(), LOCAL_CAPACITY);
        local.record_failure("victim", now, &p);
        assert!(
            local.blocked_for("victim", now).is_some(),
            "a flood of other emails did not flush the victim's count"
        );
    }
}
