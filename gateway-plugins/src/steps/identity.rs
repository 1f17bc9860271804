//! Step 7: `x-user-*` and the signed assertion for the upstream.

use std::sync::Arc;

use http::request::Parts;
use http::HeaderName;

use super::{ChainState, StepOutcome};
use crate::policy_set::PolicySet;
use crate::RequestContext;

const X_USER_ID: HeaderName = HeaderName::from_static(identity_assertion::HEADER_USER_ID);
const X_USER_EMAIL: HeaderName = HeaderName::from_static(identity_assertion::HEADER_USER_EMAIL);
const X_USER_JTI: HeaderName = HeaderName::from_static(identity_assertion::HEADER_USER_JTI);
const X_USER_ASSERTION: HeaderName = HeaderName::from_static(identity_assertion::HEADER_ASSERTION);

/// Only `set` edits: the edge removes every inbound `x-user-*` header
/// ([`crate::identity::is_identity_header`]) from every request on every route before it
/// applies these edits, so a client can never smuggle identity past a route without JWT,
/// and `upstream_edits.remove` needs to list nothing.
pub(crate) struct IdentityStep {
    /// For the identity key.
    set: Arc<PolicySet>,
}

impl IdentityStep {
    pub(crate) fn new(set: &Arc<PolicySet>) -> Self {
        Self {
            set: Arc::clone(set),
        }
    }

    pub(crate) fn apply(
        &self,
        parts: &Parts,
        ctx: &RequestContext,
        state: &mut ChainState,
    ) -> StepOutcome {
        let Some(token) = &state.token else {
            return StepOutcome::Continue;
        };
        let outcome = &mut state.outcome;
        outcome.identity = Some(token.identity.clone());
        // Without `[plugins.identity]` no identity is forwarded (config.rs): unsigned
        // x-user-* headers would be worthless to the services, which verify the assertion.
        let Some(key) = &self.set.identity_key else {
            return StepOutcome::Continue;
        };
        let now = crate::clock::unix_now();
        let set = &mut outcome.upstream_edits.set;
        set.push((X_USER_ID, token.user_id_header.clone()));
        set.push((X_USER_EMAIL, token.email_header.clone()));
        set.push((X_USER_JTI, token.jti_header.clone()));
        // Bound to this request as the service will receive it (method, rewritten path and
        // query, target service): a captured assertion opens nothing else.
        let assertion = token.assertion(key, &parts.method, &ctx.upstream, now);
        set.push((X_USER_ASSERTION, assertion));
        StepOutcome::Continue
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{JwtMode, RoutePolicy};
    use crate::decision::Decision;
    use crate::steps::testing::*;
    use crate::test_support::Claims;

    #[tokio::test]
    async fn valid_token_continues_with_signed_identity_headers() {
        let f = fixture(true).await;
        let chain = f.jwt_chain("records", JwtMode::Required);
        let claims = Claims::valid("user-42");
        let outcome = chain
            .evaluate(
                &request("GET", &[bearer(&f.key.sign(&claims))]),
                &ctx(false),
            )
            .await;
        assert_eq!(outcome.decision, Decision::Continue);
        let identity = outcome.identity.clone().expect("identity");
        assert_eq!(identity.sub, "user-42");
        assert_eq!(upstream(&outcome, "x-user-id").expect("id"), "user-42");
        assert_eq!(
            upstream(&outcome, "x-user-email").expect("email"),
            "user-42@example.com"
        );
        assert_eq!(
            upstream(&outcome, "x-user-jti").expect("jti"),
            claims.jti().as_str()
        );
        let assertion = upstream(&outcome, "x-user-assertion").expect("assertion");
        let assertion = assertion.to_str().expect("ascii").to_string();
        let alice = identity_assertion::Identity {
            user_id: "user-42".into(),
            email: "user-42@example.com".into(),
            jti: claims.jti(),
        };
        let ring = identity_assertion::KeyRing::new([identity_assertion::SigningKey::new(
            identity_assertion::KeyId::new(crate::test_support::IDENTITY_KEY_ID).expect("kid"),
            identity_assertion::IdentityKey::from_base64(&f.identity_key).expect("key"),
        )]);
        // Bound to the upstream target of the context (audience `records`, path `/records`
        // after the rewrite) and the method, not to the client's `/api/records`.
        let records = identity_assertion::Verifier::new(ring.clone(), "records");
        records
            .verify(&assertion, &alice, "GET", "/records")
            .expect("the service accepts the assertion for this request");
        for (verifier, method, path) in [
            (&records, "GET", "/api/records"),
            (&records, "DELETE", "/records"),
            (
                &identity_assertion::Verifier::new(ring.clone(), "auth"),
                "GET",
                "/records",
            ),
        ] {
            assert_eq!(
                verifier.verify(&assertion, &alice, method, path),
                Err(identity_assertion::VerifyError::BadSignature),
                "{} {method} {path}",
                verifier.audience()
            );
        }
        // The same token on another request (within the same second) gets an assertion of
        // its own, not the one cached for the first request.
        let mut elsewhere = ctx(false);
        elsewhere.upstream.path_and_query = "/records/stats".into();
        let second = chain
            .evaluate(&request("GET", &[bearer(&f.key.sign(&claims))]), &elsewhere)
            .await;
        let second = upstream(&second, "x-user-assertion").expect("assertion");
        records
            .verify(
                second.to_str().expect("ascii"),
                &alice,
                "GET",
                "/records/stats",
            )
            .expect("bound to the second request");
        // Nothing is listed for removal: the edge strips every inbound x-user-* itself.
        assert!(outcome.upstream_edits.remove.is_empty());
        assert!(upstream(&outcome, "x-request-id").is_some());
        assert!(upstream(&outcome, "traceparent").is_some());
    }

    #[tokio::test]
    async fn without_identity_key_the_caller_is_known_but_not_forwarded() {
        let f = fixture(false).await;
        let chain = f.jwt_chain("r", JwtMode::Required);
        let token = f.key.sign(&Claims::valid("u"));
        let outcome = chain
            .evaluate(&request("GET", &[bearer(&token)]), &ctx(false))
            .await;
        assert_eq!(outcome.decision, Decision::Continue);
        assert!(outcome.identity.is_some());
        assert!(upstream(&outcome, "x-user-id").is_none());
    }

    #[tokio::test]
    async fn spoofed_identity_headers_are_never_echoed_upstream_by_the_chain() {
        let f = fixture(true).await;
        let chain = f.chain("public", &RoutePolicy::default()).expect("chain");
        let outcome = chain
            .evaluate(
                &request(
                    "GET",
                    &[
                        ("x-user-id", "admin".into()),
                        ("x-user-assertion", "v2.test.1.x".into()),
                    ],
                ),
                &ctx(false),
            )
            .await;
        assert_eq!(outcome.decision, Decision::Continue);
        assert!(outcome.identity.is_none());
        assert!(outcome
            .upstream_edits
            .set
            .iter()
            .all(|(name, _)| !crate::identity::is_identity_header(name)));
    }
}
