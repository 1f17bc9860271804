//! One route's policy, assembled once per config version.
//!
//! The order, and why:
//!
//! 1. **request id / traceparent** — first, so even a rejection carries an id.
//! 2. **CORS** — a preflight carries no credentials (Fetch standard), so it is answered
//!    here, before anything that would demand a token.
//! 3. **IP-keyed rate limits** — before JWT: they need no identity, and they are the
//!    flood guard that keeps a stream of bogus tokens from buying signature checks. A
//!    request that ends in 401 has therefore consumed an IP token.
//! 4. **JWT** — verify the bearer token (cached per token).
//! 5. **revocation** — the token's `jti` must not be logged out.
//! 6. **user / user-or-IP rate limits** — after authentication, keyed by the verified
//!    `sub`: a 401 never consumes a user's quota, and nobody can spend someone else's
//!    quota by sending their `sub` in a forged token.
//! 7. **identity headers** — `x-user-*` and the signed assertion for the upstream.
//!
//! Each step lives in its own module under [`crate::steps`] with its tests; this file only
//! wires them, in [`build_chain`].

use std::sync::Arc;

use http::request::Parts;

use crate::config::{JwtMode, RateLimitKey, RoutePolicy};
use crate::decision::{ChainOutcome, Decision};
use crate::error::RuntimeError;
use crate::policy_set::PolicySet;
use crate::rate_limit::LimiterRegistry;
use crate::steps::{
    ChainState, CorsStep, IdentityStep, JwtStep, RateLimitStep, RequestIdStep, RevocationStep,
    Step, StepOutcome,
};
use crate::RequestContext;

/// The ordered steps of one route. Immutable; cheap to share (`Arc`) and swap. Holds the
/// [`PolicySet`] it was built against (through its steps) and its rate-limit buckets.
pub struct Chain {
    pub(crate) route_id: String,
    steps: Vec<Step>,
}

/// Assembles the steps a route's config asks for, in chain order, against `set`. Errors
/// name the offending key relative to the route's `plugins` table.
///
/// Rate-limit buckets come from `limiters` (the runtime's registry): an unchanged rule gets
/// the buckets running chains already use; a new rule gets fresh ones, sized by `set`'s
/// `[plugins.rate_limit]`. Building never changes a running chain.
pub(crate) fn build_chain(
    set: &Arc<PolicySet>,
    limiters: &LimiterRegistry,
    route_id: &str,
    policy: &RoutePolicy,
) -> Result<Chain, RuntimeError> {
    let mut issues = policy.validate(&set.config).into_iter();
    if let Some(first) = issues.next() {
        let mut message = first.message;
        for more in issues {
            message.push_str(&format!("; also {}: {}", more.path, more.message));
        }
        return Err(RuntimeError::config(first.path, message));
    }
    let jwt = policy.jwt.as_ref().filter(|jwt| jwt.mode != JwtMode::Off);
    let mut steps = Vec::new();

    // 1. request id, trace context
    steps.push(Step::RequestId(RequestIdStep));

    // 2. CORS
    if let Some(cors) = &policy.cors {
        steps.push(Step::Cors(CorsStep::new(cors)?));
    }

    // 3. IP-keyed limits (the rest are kept for step 6)
    let (ip_limits, identity_limits): (Vec<_>, Vec<_>) = limiters
        .limiters_for(
            route_id,
            &policy.rate_limits,
            set.config.rate_limit.max_tracked_keys,
        )
        .map_err(|e| RuntimeError::config(e.path, e.message))?
        .into_iter()
        .partition(|limiter| limiter.rule().key == RateLimitKey::Ip);
    if !ip_limits.is_empty() {
        steps.push(Step::RateLimit(RateLimitStep::new(set, ip_limits, false)));
    }

    // 4. + 5. token, then revocation
    if let Some(jwt) = jwt {
        steps.push(Step::Jwt(JwtStep::new(set, jwt)));
        steps.push(Step::Revocation(RevocationStep::new(set, jwt)));
    }

    // 6. identity-keyed limits
    if !identity_limits.is_empty() {
        steps.push(Step::RateLimit(RateLimitStep::new(
            set,
            identity_limits,
            true,
        )));
    }

    // 7. identity headers
    if jwt.is_some() {
        steps.push(Step::Identity(IdentityStep::new(set)));
    }

    Ok(Chain {
        route_id: route_id.to_string(),
        steps,
    })
}

impl Chain {
    /// Runs the route's policy for one request: each step in order, until one answers.
    pub async fn evaluate(&self, parts: &Parts, ctx: &RequestContext) -> ChainOutcome {
        let mut state = ChainState::new();
        for step in &self.steps {
            if let StepOutcome::Respond(response) = step.apply(parts, ctx, &mut state).await {
                state.outcome.decision = Decision::Respond(response);
                break;
            }
        }
        state.outcome
    }

    pub fn route_id(&self) -> &str {
        &self.route_id
    }

    /// The steps' names, in order (tests, debugging).
    pub(crate) fn step_names(&self) -> Vec<&'static str> {
        self.steps.iter().map(Step::name).collect()
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("route_id", &self.route_id)
            .field("steps", &self.step_names())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::CorsPolicy;
    use crate::config::{JwtMode, RateLimitKey, RoutePolicy};
    use crate::decision::Decision;
    use crate::steps::testing::*;
    use crate::test_support::{Claims, TestKey};
    use crate::{PluginsConfig, PolicyRuntime, RuntimeError};
    use http::StatusCode;
    use std::time::Duration;

    #[tokio::test]
    async fn a_401_never_consumes_a_user_keyed_token() {
        let f = fixture(true).await;
        let chain = f
            .chain(
                "r",
                &RoutePolicy {
                    jwt: jwt(JwtMode::Required),
                    rate_limits: vec![rule(RateLimitKey::User, 1)],
                    ..Default::default()
                },
            )
            .expect("chain");
        let claims = Claims::valid("victim");
        // Forged tokens naming the victim's sub, and no token at all: all 401.
        let impostor = TestKey::ed25519("k1");
        for _ in 0..5 {
            let forged = impostor.sign(&claims);
            let outcome = chain
                .evaluate(&request("GET", &[bearer(&forged)]), &ctx(false))
                .await;
            assert_eq!(respond(&outcome).status, StatusCode::UNAUTHORIZED);
            let outcome = chain.evaluate(&request("GET", &[]), &ctx(false)).await;
            assert_eq!(respond(&outcome).status, StatusCode::UNAUTHORIZED);
        }
        // The victim's quota (1 per hour) is intact.
        let token = f.key.sign(&claims);
        let first = chain
            .evaluate(&request("GET", &[bearer(&token)]), &ctx(false))
            .await;
        assert_eq!(first.decision, Decision::Continue);
        assert_eq!(first.response_headers["ratelimit-remaining"], "0");
        let second = chain
            .evaluate(&request("GET", &[bearer(&token)]), &ctx(false))
            .await;
        assert_eq!(respond(&second).status, StatusCode::TOO_MANY_REQUESTS);
    }

    #[tokio::test]
    async fn ip_keyed_limit_runs_before_jwt_and_spares_the_verifier() {
        let f = fixture(true).await;
        let chain = f
            .chain(
                "r",
                &RoutePolicy {
                    jwt: jwt(JwtMode::Required),
                    rate_limits: vec![rule(RateLimitKey::Ip, 2)],
                    ..Default::default()
                },
            )
            .expect("chain");
        let impostor = TestKey::ed25519("k1");
        let mut statuses = Vec::new();
        for i in 0..4 {
            let forged = impostor.sign(&Claims::valid(&format!("u{i}")));
            let outcome = chain
                .evaluate(&request("GET", &[bearer(&forged)]), &ctx(false))
                .await;
            statuses.push(respond(&outcome).status.as_u16());
        }
        assert_eq!(statuses, [401, 401, 429, 429]);
        let failed = f
            .runtime
            .metrics()
            .jwt_verifications
            .with_label_values(&["failed"]);
        assert_eq!(
            failed.get(),
            2,
            "limited requests never reach signature checks"
        );
    }

    #[tokio::test]
    async fn build_chain_wires_only_the_steps_a_route_asks_for_in_chain_order() {
        let f = fixture(true).await;
        let bare = f.chain("r", &RoutePolicy::default()).expect("chain");
        assert_eq!(bare.step_names(), ["request_id"]);
        let full = RoutePolicy {
            jwt: jwt(JwtMode::Optional),
            cors: Some(CorsPolicy {
                allowed_origins: vec!["https://app.example.com".into()],
                allowed_methods: vec!["GET".into()],
                allowed_headers: vec![],
                expose_headers: vec![],
                allow_credentials: false,
                max_age: Duration::from_secs(60),
            }),
            rate_limits: vec![
                rule(RateLimitKey::User, 10),
                rule(RateLimitKey::Ip, 10),
                rule(RateLimitKey::UserOrIp, 10),
            ],
        };
        let chain = f.chain("r", &full).expect("chain");
        assert_eq!(
            chain.step_names(),
            [
                "request_id",
                "cors",
                "ip_rate_limits",
                "jwt",
                "revocation",
                "identity_rate_limits",
                "identity",
            ]
        );
        let off = RoutePolicy {
            jwt: jwt(JwtMode::Off),
            ..Default::default()
        };
        assert_eq!(
            f.chain("r", &off).expect("chain").step_names(),
            ["request_id"]
        );
    }

    #[tokio::test]
    async fn cors_preflight_is_answered_before_jwt() {
        let f = fixture(true).await;
        let policy = RoutePolicy {
            jwt: jwt(JwtMode::Required),
            cors: Some(CorsPolicy {
                allowed_origins: vec!["https://app.example.com".into()],
                allowed_methods: vec!["GET".into()],
                allowed_headers: vec!["authorization".into()],
                expose_headers: vec![],
                allow_credentials: true,
                max_age: Duration::from_secs(60),
            }),
            ..Default::default()
        };
        let chain = f.chain("r", &policy).expect("chain");
        let origin = ("origin", "https://app.example.com".to_string());
        let preflight = chain
            .evaluate(
                &request(
                    "OPTIONS",
                    &[
                        origin.clone(),
                        ("access-control-request-method", "GET".into()),
                    ],
                ),
                &ctx(false),
            )
            .await;
        let response = respond(&preflight);
        assert_eq!(response.status, StatusCode::NO_CONTENT);
        assert_eq!(
            response.headers["access-control-allow-origin"],
            "https://app.example.com"
        );
        // An actual request without a token: 401, and the browser may read it.
        let actual = chain
            .evaluate(&request("GET", &[origin]), &ctx(false))
            .await;
        assert_eq!(respond(&actual).status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            actual.response_headers["access-control-allow-origin"],
            "https://app.example.com"
        );
    }

    #[tokio::test]
    async fn route_needing_jwt_without_a_provider_is_a_config_error() {
        let runtime = PolicyRuntime::new(
            &PluginsConfig::default(),
            std::path::Path::new("."),
            &prometheus::Registry::new(),
        )
        .await
        .expect("runtime");
        let err = runtime
            .build_chain(
                &runtime.current(),
                "r",
                &RoutePolicy {
                    jwt: jwt(JwtMode::Required),
                    ..Default::default()
                },
            )
            .expect_err("error");
        assert!(
            matches!(err, RuntimeError::Config { ref path, .. } if path == "jwt"),
            "{err}"
        );
    }
}
