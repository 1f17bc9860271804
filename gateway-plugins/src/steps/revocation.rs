//! Step 5: the token's `jti` must not be logged out.

use std::sync::Arc;

use super::jwt::reject;
use super::{ChainState, StepOutcome};
use crate::config::{FailMode, JwtRoutePolicy};
use crate::error_shape::{error_response, ErrorKind};
use crate::jwt::JwtRejection;
use crate::policy_set::PolicySet;
use crate::revocation::RevocationStatus;
use crate::RequestContext;

pub(crate) struct RevocationStep {
    set: Arc<PolicySet>,
    /// Refuse (503) rather than admit when revocation cannot be checked.
    fail_closed: bool,
}

impl RevocationStep {
    pub(crate) fn new(set: &Arc<PolicySet>, policy: &JwtRoutePolicy) -> Self {
        Self {
            set: Arc::clone(set),
            fail_closed: policy.effective_fail_mode() == FailMode::Closed,
        }
    }

    /// Checks the token the JWT step accepted; an anonymous request has nothing to check.
    pub(crate) async fn apply(&self, ctx: &RequestContext, state: &mut ChainState) -> StepOutcome {
        let Some(token) = &state.token else {
            return StepOutcome::Continue;
        };
        let metrics = &self.set.metrics;
        let identity = &token.identity;
        match self
            .set
            .revocation
            .value
            .check(&identity.jti, identity.expires_at)
            .await
        {
            RevocationStatus::Live => StepOutcome::Continue,
            RevocationStatus::Revoked => reject(metrics, JwtRejection::Revoked, ctx.grpc),
            RevocationStatus::Unavailable if self.fail_closed => {
                metrics
                    .revocation_fail_mode
                    .with_label_values(&["closed"])
                    .inc();
                StepOutcome::Respond(error_response(
                    ErrorKind::Unavailable,
                    "revocation_unavailable",
                    "token revocation cannot be checked right now; retry shortly",
                    ctx.grpc,
                ))
            }
            RevocationStatus::Unavailable => {
                metrics
                    .revocation_fail_mode
                    .with_label_values(&["open"])
                    .inc();
                StepOutcome::Continue
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::JwtMode;
    use crate::decision::Decision;
    use crate::steps::testing::*;
    use crate::test_support::Claims;

    #[tokio::test]
    async fn revoked_token_is_refused_in_process_without_redis() {
        let f = fixture(true).await;
        let chain = f.jwt_chain("r", JwtMode::Required);
        let claims = Claims::valid("u");
        let token = f.key.sign(&claims);
        let before = chain
            .evaluate(&request("GET", &[bearer(&token)]), &ctx(false))
            .await;
        assert_eq!(before.decision, Decision::Continue);
        f.runtime
            .revoke(&claims.jti(), claims.expires_at())
            .await
            .expect("revoke");
        let after = chain
            .evaluate(&request("GET", &[bearer(&token)]), &ctx(false))
            .await;
        assert_eq!(error_code(respond(&after)), "token_revoked");
        // Another session of the same user is unaffected.
        let other = f.key.sign(&Claims::valid("u"));
        let outcome = chain
            .evaluate(&request("GET", &[bearer(&other)]), &ctx(false))
            .await;
        assert_eq!(outcome.decision, Decision::Continue);
    }
}
