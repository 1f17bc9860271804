//! Steps 3 and 6: rate limits. IP-keyed rules run before JWT (the flood guard that keeps
//! bogus tokens from buying signature checks); user and user-or-IP rules run after it,
//! keyed by the verified `sub`.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::{ChainState, StepOutcome};
use crate::error_shape::{error_response, ErrorKind};
use crate::policy_set::PolicySet;
use crate::rate_limit::{LimitKey, LimitVerdict, RuleLimiter};
use crate::RequestContext;

/// Some of a route's rules. Every rule is checked (and counted); the tightest verdict of
/// the whole chain so far is the one reported in the `RateLimit-*` headers.
pub(crate) struct RateLimitStep {
    /// For the Redis link of cluster-scoped rules.
    set: Arc<PolicySet>,
    limiters: Vec<Arc<RuleLimiter>>,
    keyed_by_identity: bool,
}

impl RateLimitStep {
    /// `keyed_by_identity`: the rules are keyed by user (step 6), not by IP (step 3).
    pub(crate) fn new(
        set: &Arc<PolicySet>,
        limiters: Vec<Arc<RuleLimiter>>,
        keyed_by_identity: bool,
    ) -> Self {
        Self {
            set: Arc::clone(set),
            limiters,
            keyed_by_identity,
        }
    }

    pub(crate) fn keyed_by_identity(&self) -> bool {
        self.keyed_by_identity
    }

    pub(crate) async fn apply(&self, ctx: &RequestContext, state: &mut ChainState) -> StepOutcome {
        if self.limiters.is_empty() {
            return StepOutcome::Continue;
        }
        let user = state.token.as_ref().map(|t| t.identity.sub.as_str());
        let redis = self.set.redis.as_ref().map(|r| r.value.as_ref());
        let mut retry_after = None;
        for limiter in &self.limiters {
            let Some(key) = LimitKey::for_rule(limiter.rule().key, ctx.client_ip, user) else {
                continue;
            };
            let verdict = limiter.check(&key, redis).await;
            if let LimitVerdict::Limited { retry_after: r, .. } = verdict {
                retry_after = Some(retry_after.map_or(r, |old: Duration| old.max(r)));
            }
            state.reported = Some(verdict.tighter(state.reported));
        }
        if let Some(verdict) = &state.reported {
            verdict.write_headers(&mut state.outcome.response_headers);
        }
        match retry_after {
            None => StepOutcome::Continue,
            Some(wait) => {
                let mut response = error_response(
                    ErrorKind::RateLimited,
                    "rate_limited",
                    "too many requests; retry later",
                    ctx.grpc,
                );
                response.headers.insert(
                    http::header::RETRY_AFTER,
                    HeaderValue::from(LimitVerdict::retry_after_secs(wait)),
                );
                StepOutcome::Respond(response)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{RateLimitKey, RoutePolicy};
    use crate::decision::Decision;
    use crate::steps::testing::*;
    use http::StatusCode;

    #[tokio::test]
    async fn over_the_limit_is_429_with_retry_after_and_ratelimit_headers() {
        let f = fixture(true).await;
        let policy = RoutePolicy {
            rate_limits: vec![rule(RateLimitKey::Ip, 2)],
            ..Default::default()
        };
        let chain = f.chain("login", &policy).expect("chain");
        let first = chain.evaluate(&request("POST", &[]), &ctx(false)).await;
        assert_eq!(first.decision, Decision::Continue);
        assert_eq!(first.response_headers["ratelimit-limit"], "2");
        assert_eq!(first.response_headers["ratelimit-remaining"], "1");
        chain.evaluate(&request("POST", &[]), &ctx(false)).await;
        let limited = chain.evaluate(&request("POST", &[]), &ctx(false)).await;
        let response = respond(&limited);
        assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = response.headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=1800).contains(&retry), "{retry}");
        assert_eq!(limited.response_headers["ratelimit-remaining"], "0");
        assert_eq!(error_code(response), "rate_limited");
        let grpc = chain.evaluate(&request("POST", &[]), &ctx(true)).await;
        assert_eq!(respond(&grpc).headers["grpc-status"], "8");
        let decisions = &f.runtime.metrics().ratelimit_decisions;
        assert_eq!(decisions.with_label_values(&["login", "allowed"]).get(), 2);
        assert_eq!(decisions.with_label_values(&["login", "limited"]).get(), 2);
    }

    #[tokio::test]
    async fn buckets_survive_a_rebuild_with_the_same_rule() {
        let f = fixture(true).await;
        let policy = RoutePolicy {
            rate_limits: vec![rule(RateLimitKey::Ip, 1)],
            ..Default::default()
        };
        let old = f.chain("login", &policy).expect("chain");
        assert_eq!(
            old.evaluate(&request("POST", &[]), &ctx(false))
                .await
                .decision,
            Decision::Continue
        );
        // A config reload builds a new chain while the old one is still in use.
        let new = f.chain("login", &policy).expect("chain");
        drop(old);
        let outcome = new.evaluate(&request("POST", &[]), &ctx(false)).await;
        assert_eq!(respond(&outcome).status, StatusCode::TOO_MANY_REQUESTS);
    }
}
