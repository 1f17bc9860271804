//! Step 4: verify the bearer token (cached per token).

use std::sync::Arc;

use http::request::Parts;

use super::{ChainState, StepOutcome};
use crate::config::{JwtAlgorithm, JwtMode, JwtRoutePolicy};
use crate::jwt::{bearer_token, JwtRejection};
use crate::metrics::PolicyMetrics;
use crate::policy_set::PolicySet;
use crate::RequestContext;

/// A route's JWT settings, resolved, and the set whose verifier checks its tokens.
pub(crate) struct JwtStep {
    set: Arc<PolicySet>,
    mode: JwtMode,
    algorithms: Vec<JwtAlgorithm>,
}

impl JwtStep {
    pub(crate) fn new(set: &Arc<PolicySet>, policy: &JwtRoutePolicy) -> Self {
        Self {
            set: Arc::clone(set),
            mode: policy.mode,
            algorithms: policy.algorithms.clone(),
        }
    }

    /// Leaves the verified token in `state.token`; an anonymous request the route accepts
    /// (`optional`) continues with none.
    pub(crate) async fn apply(
        &self,
        parts: &Parts,
        ctx: &RequestContext,
        state: &mut ChainState,
    ) -> StepOutcome {
        let metrics = &self.set.metrics;
        // build_chain validated against this very set that it has `[plugins.jwt]`; should
        // that ever not hold, there is nothing to verify with: refuse.
        let Some(verifier) = &self.set.jwt else {
            return reject(metrics, JwtRejection::UnknownKid, ctx.grpc);
        };
        let token = match bearer_token(&parts.headers) {
            Ok(Some(token)) => token,
            Ok(None) if self.mode == JwtMode::Optional => return StepOutcome::Continue,
            Ok(None) => return reject(metrics, JwtRejection::Missing, ctx.grpc),
            Err(rejection) => return reject(metrics, rejection, ctx.grpc),
        };
        match verifier.value.verify(token, &self.algorithms).await {
            Ok(verified) => {
                state.token = Some(verified);
                StepOutcome::Continue
            }
            Err(rejection) => reject(metrics, rejection, ctx.grpc),
        }
    }
}

/// Counts the rejection (`edge_jwt_rejections_total{reason}`) and answers 401.
pub(super) fn reject(metrics: &PolicyMetrics, rejection: JwtRejection, grpc: bool) -> StepOutcome {
    metrics
        .jwt_rejections
        .with_label_values(&[rejection.code()])
        .inc();
    StepOutcome::Respond(rejection.response(grpc))
}

#[cfg(test)]
mod tests {
    use crate::config::JwtMode;
    use crate::decision::Decision;
    use crate::steps::testing::*;
    use crate::test_support::Claims;
    use http::StatusCode;

    #[tokio::test]
    async fn missing_token_is_401_with_a_bare_bearer_challenge_and_a_request_id() {
        let f = fixture(true).await;
        let chain = f.jwt_chain("r", JwtMode::Required);
        let outcome = chain.evaluate(&request("GET", &[]), &ctx(false)).await;
        let response = respond(&outcome);
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers["www-authenticate"], "Bearer");
        assert_eq!(error_code(response), "token_missing");
        assert!(outcome.response_headers.contains_key("x-request-id"));
        let rejections = f
            .runtime
            .metrics()
            .jwt_rejections
            .with_label_values(&["token_missing"]);
        assert_eq!(rejections.get(), 1);
    }

    #[tokio::test]
    async fn grpc_without_token_is_unauthenticated() {
        let f = fixture(true).await;
        let chain = f.jwt_chain("r", JwtMode::Required);
        let outcome = chain.evaluate(&request("POST", &[]), &ctx(true)).await;
        let response = respond(&outcome);
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.headers["grpc-status"], "16");
    }

    #[tokio::test]
    async fn optional_mode_admits_anonymous_but_not_bad_tokens() {
        let f = fixture(true).await;
        let chain = f.jwt_chain("r", JwtMode::Optional);
        let anonymous = chain.evaluate(&request("GET", &[]), &ctx(false)).await;
        assert_eq!(anonymous.decision, Decision::Continue);
        assert!(anonymous.identity.is_none());
        let expired = f
            .key
            .sign(&Claims::valid("u").exp(crate::clock::unix_now() - 600));
        let outcome = chain
            .evaluate(&request("GET", &[bearer(&expired)]), &ctx(false))
            .await;
        let response = respond(&outcome);
        assert_eq!(error_code(response), "token_expired");
        assert_eq!(
            response.headers["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
    }
}
