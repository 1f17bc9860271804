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
//! Each step lives in its own module with its tests; this file only wires them.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderName, HeaderValue};

use crate::config::{JwtAlgorithm, JwtMode, RateLimitKey, RoutePolicy};
use crate::cors::{CorsAction, CorsPlugin};
use crate::decision::{ChainOutcome, Decision, PolicyResponse};
use crate::error_shape::{error_response, ErrorKind};
use crate::jwt::{bearer_token, JwtRejection, VerifiedToken};
use crate::rate_limit::{LimitKey, LimitVerdict, RuleLimiter};
use crate::revocation::RevocationStatus;
use crate::runtime::{PolicyRuntime, RuntimeError, Shared};
use crate::{request_id, RequestContext};

const X_USER_ID: HeaderName = HeaderName::from_static(identity_assertion::HEADER_USER_ID);
const X_USER_EMAIL: HeaderName = HeaderName::from_static(identity_assertion::HEADER_USER_EMAIL);
const X_USER_JTI: HeaderName = HeaderName::from_static(identity_assertion::HEADER_USER_JTI);
const X_USER_ASSERTION: HeaderName = HeaderName::from_static(identity_assertion::HEADER_ASSERTION);

/// A route's JWT settings, resolved.
struct JwtStep {
    mode: JwtMode,
    algorithms: Vec<JwtAlgorithm>,
    fail_closed: bool,
}

/// The ordered plugins of one route. Immutable; cheap to share (`Arc`) and swap.
pub struct Chain {
    pub(crate) route_id: String,
    runtime: Arc<PolicyRuntime>,
    cors: Option<CorsPlugin>,
    /// Rules keyed by IP (step 3).
    ip_limits: Vec<Arc<RuleLimiter>>,
    jwt: Option<JwtStep>,
    /// Rules keyed by user or user-or-IP (step 6).
    identity_limits: Vec<Arc<RuleLimiter>>,
}

/// The end of a step: go on, or answer now.
type Step = Result<(), PolicyResponse>;

impl Chain {
    /// `build_chain`: assembles the steps a route's config asks for, in chain order.
    pub(crate) fn build(
        runtime: Arc<PolicyRuntime>,
        route_id: &str,
        policy: &RoutePolicy,
    ) -> Result<Self, RuntimeError> {
        let cors = policy
            .cors
            .as_ref()
            .map(CorsPlugin::new)
            .transpose()
            .map_err(|e| RuntimeError::config(e.path, e.message))?;
        let limiters = runtime
            .limiters
            .limiters_for(route_id, &policy.rate_limits)
            .map_err(|e| RuntimeError::config(e.path, e.message))?;
        let (ip_limits, identity_limits): (Vec<_>, Vec<_>) = limiters
            .into_iter()
            .partition(|limiter| limiter.rule().key == RateLimitKey::Ip);
        let jwt = policy
            .jwt
            .as_ref()
            .filter(|jwt| jwt.mode != JwtMode::Off)
            .map(|jwt| JwtStep {
                mode: jwt.mode,
                algorithms: jwt.algorithms.clone(),
                fail_closed: jwt.effective_fail_mode() == crate::config::FailMode::Closed,
            });
        Ok(Self {
            route_id: route_id.to_string(),
            runtime,
            cors,
            ip_limits,
            jwt,
            identity_limits,
        })
    }

    /// Runs the route's policy for one request.
    pub async fn evaluate(&self, parts: &Parts, ctx: &RequestContext) -> ChainOutcome {
        let shared = self.runtime.shared.load();
        let mut outcome = ChainOutcome::proceed();
        if let Err(response) = self.run(parts, ctx, &shared, &mut outcome).await {
            outcome.decision = Decision::Respond(response);
        }
        outcome
    }

    async fn run(
        &self,
        parts: &Parts,
        ctx: &RequestContext,
        shared: &Shared,
        outcome: &mut ChainOutcome,
    ) -> Step {
        // 1. request id, trace context
        request_id::apply(&parts.headers, outcome);

        // 2. CORS
        if let Some(cors) = &self.cors {
            match cors.evaluate(&parts.method, &parts.headers) {
                Some(CorsAction::Preflight(response)) => return Err(response),
                Some(CorsAction::Actual(headers)) => outcome.response_headers.extend(headers),
                None => {}
            }
        }

        // 3. IP-keyed limits
        let mut reported: Option<LimitVerdict> = None;
        self.limit(&self.ip_limits, ctx, None, shared, &mut reported, outcome)
            .await?;

        // 4. + 5. token and revocation
        let token = self.authenticate(parts, ctx, shared).await?;
        let sub = token.as_ref().map(|t| t.identity.sub.as_str());

        // 6. identity-keyed limits
        self.limit(
            &self.identity_limits,
            ctx,
            sub,
            shared,
            &mut reported,
            outcome,
        )
        .await?;

        // 7. identity headers
        if let Some(token) = token {
            add_identity(&token, shared, outcome);
        }
        Ok(())
    }

    /// Steps 4 and 5: `Ok(None)` for an anonymous request the route accepts.
    async fn authenticate(
        &self,
        parts: &Parts,
        ctx: &RequestContext,
        shared: &Shared,
    ) -> Result<Option<Arc<VerifiedToken>>, PolicyResponse> {
        let Some(step) = &self.jwt else {
            return Ok(None);
        };
        let reject = |rejection: JwtRejection| {
            self.runtime
                .metrics()
                .jwt_rejections
                .with_label_values(&[rejection.code()])
                .inc();
            rejection.response(ctx.grpc)
        };
        // build_chain validated that a route with a JWT step has `[plugins.jwt]`; a
        // reconfigure that removed it since leaves nothing to verify with: refuse.
        let Some(verifier) = &shared.jwt else {
            return Err(reject(JwtRejection::UnknownKid));
        };
        let token = match bearer_token(&parts.headers) {
            Ok(Some(token)) => token,
            Ok(None) if step.mode == JwtMode::Optional => return Ok(None),
            Ok(None) => return Err(reject(JwtRejection::Missing)),
            Err(rejection) => return Err(reject(rejection)),
        };
        let verified = verifier
            .value
            .verify(token, &step.algorithms)
            .await
            .map_err(&reject)?;
        let identity = &verified.identity;
        match shared
            .revocation
            .value
            .check(&identity.jti, identity.expires_at)
            .await
        {
            RevocationStatus::Live => {}
            RevocationStatus::Revoked => return Err(reject(JwtRejection::Revoked)),
            RevocationStatus::Unavailable if step.fail_closed => {
                self.runtime
                    .metrics()
                    .revocation_fail_mode
                    .with_label_values(&["closed"])
                    .inc();
                return Err(error_response(
                    ErrorKind::Unavailable,
                    "revocation_unavailable",
                    "token revocation cannot be checked right now; retry shortly",
                    ctx.grpc,
                ));
            }
            RevocationStatus::Unavailable => {
                self.runtime
                    .metrics()
                    .revocation_fail_mode
                    .with_label_values(&["open"])
                    .inc();
            }
        }
        Ok(Some(verified))
    }

    /// Steps 3 and 6: every rule is checked (and counted); the tightest verdict is the one
    /// reported in the `RateLimit-*` headers.
    async fn limit(
        &self,
        limiters: &[Arc<RuleLimiter>],
        ctx: &RequestContext,
        user: Option<&str>,
        shared: &Shared,
        reported: &mut Option<LimitVerdict>,
        outcome: &mut ChainOutcome,
    ) -> Step {
        if limiters.is_empty() {
            return Ok(());
        }
        let redis = shared.redis.as_ref().map(|r| r.value.as_ref());
        let mut retry_after = None;
        for limiter in limiters {
            let Some(key) = LimitKey::for_rule(limiter.rule().key, ctx.client_ip, user) else {
                continue;
            };
            let verdict = limiter.check(&key, redis).await;
            if let LimitVerdict::Limited { retry_after: r, .. } = verdict {
                retry_after = Some(retry_after.map_or(r, |old: std::time::Duration| old.max(r)));
            }
            *reported = Some(verdict.tighter(*reported));
        }
        if let Some(verdict) = reported {
            verdict.write_headers(&mut outcome.response_headers);
        }
        match retry_after {
            None => Ok(()),
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
                Err(response)
            }
        }
    }

    pub fn route_id(&self) -> &str {
        &self.route_id
    }
}

/// Step 7. Only `set` edits: the edge removes every inbound `x-user-*` header
/// ([`crate::identity::is_identity_header`]) from every request on every route before it
/// applies these edits, so a client can never smuggle identity past a route without JWT,
/// and `upstream_edits.remove` needs to list nothing.
fn add_identity(token: &Arc<VerifiedToken>, shared: &Shared, outcome: &mut ChainOutcome) {
    outcome.identity = Some(token.identity.clone());
    // Without `[plugins.identity]` no identity is forwarded (config.rs): unsigned x-user-*
    // headers would be worthless to the services, which verify the assertion.
    let Some(key) = &shared.identity_key else {
        return;
    };
    let now = crate::clock::unix_now();
    let set = &mut outcome.upstream_edits.set;
    set.push((X_USER_ID, token.user_id_header.clone()));
    set.push((X_USER_EMAIL, token.email_header.clone()));
    set.push((X_USER_JTI, token.jti_header.clone()));
    set.push((X_USER_ASSERTION, token.assertion(key, now)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        CorsPolicy, IdentityConfig, JwtProviderConfig, JwtRoutePolicy, PluginsConfig,
        RateLimitRule, RateLimitScope, StaticKeyConfig,
    };
    use crate::test_support::{write_identity_key, Claims, TestKey};
    use crate::Protocol;
    use http::StatusCode;
    use std::net::IpAddr;
    use std::time::Duration;

    /// A runtime with one static Ed25519 key and an identity key, no Redis.
    struct Fixture {
        runtime: Arc<PolicyRuntime>,
        key: TestKey,
        identity_key: String,
        _dir: tempfile::TempDir,
    }

    async fn fixture(with_identity: bool) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = TestKey::ed25519("k1");
        std::fs::write(dir.path().join("k1.pem"), &key.public_pem).expect("pem");
        let (_, identity_key) = write_identity_key(dir.path());
        let config = PluginsConfig {
            jwt: Some(JwtProviderConfig {
                issuer: crate::test_support::ISSUER.into(),
                audience: crate::test_support::AUDIENCE.into(),
                jwks_url: None,
                jwks_refresh_interval: Duration::from_secs(300),
                jwks_min_refetch_interval: Duration::from_secs(10),
                jwks_fetch_timeout: Duration::from_secs(1),
                static_keys: vec![StaticKeyConfig {
                    kid: "k1".into(),
                    algorithm: JwtAlgorithm::EdDSA,
                    pem_file: "k1.pem".into(),
                }],
                leeway: Duration::from_secs(5),
                verified_cache_size: 1000,
            }),
            identity: with_identity.then(|| IdentityConfig {
                key_file: "identity.key".into(),
            }),
            ..PluginsConfig::default()
        };
        let runtime = PolicyRuntime::new(&config, dir.path(), &prometheus::Registry::new())
            .await
            .expect("runtime");
        Fixture {
            runtime,
            key,
            identity_key,
            _dir: dir,
        }
    }

    fn jwt(mode: JwtMode) -> Option<JwtRoutePolicy> {
        Some(JwtRoutePolicy {
            mode,
            algorithms: vec![JwtAlgorithm::EdDSA],
            revocation_fail_mode: None,
        })
    }

    fn rule(key: RateLimitKey, requests: u32) -> RateLimitRule {
        RateLimitRule {
            key,
            requests,
            per: Duration::from_secs(3600),
            burst: 0,
            scope: RateLimitScope::Local,
        }
    }

    fn request(method: &str, headers: &[(&str, String)]) -> Parts {
        let mut builder = http::Request::builder().method(method).uri("/api/records");
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        builder.body(()).expect("request").into_parts().0
    }

    fn bearer(token: &str) -> (&'static str, String) {
        ("authorization", format!("Bearer {token}"))
    }

    fn ctx(grpc: bool) -> RequestContext {
        RequestContext {
            peer_addr: None,
            client_ip: IpAddr::from([192, 0, 2, 10]),
            protocol: if grpc {
                Protocol::Http2
            } else {
                Protocol::Http1
            },
            tls: None,
            route_id: Arc::from("records"),
            grpc,
        }
    }

    fn respond(outcome: &ChainOutcome) -> &PolicyResponse {
        match &outcome.decision {
            Decision::Respond(response) => response,
            Decision::Continue => panic!("expected a response, got Continue: {outcome:?}"),
        }
    }

    fn error_code(response: &PolicyResponse) -> String {
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("json body");
        body["error"]["code"].as_str().expect("code").to_string()
    }

    fn upstream(outcome: &ChainOutcome, name: &str) -> Option<HeaderValue> {
        outcome
            .upstream_edits
            .set
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    #[tokio::test]
    async fn valid_token_continues_with_signed_identity_headers() {
        let f = fixture(true).await;
        let chain = f
            .runtime
            .build_chain(
                "records",
                &RoutePolicy {
                    jwt: jwt(JwtMode::Required),
                    ..Default::default()
                },
            )
            .expect("chain");
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
        let verifier = identity_assertion::Verifier::new(
            identity_assertion::IdentityKey::from_base64(&f.identity_key).expect("key"),
        );
        verifier
            .verify(
                assertion.to_str().expect("ascii"),
                &identity_assertion::Identity {
                    user_id: "user-42".into(),
                    email: "user-42@example.com".into(),
                    jti: claims.jti(),
                },
            )
            .expect("the services accept the assertion");
        // Nothing is listed for removal: the edge strips every inbound x-user-* itself.
        assert!(outcome.upstream_edits.remove.is_empty());
        assert!(upstream(&outcome, "x-request-id").is_some());
        assert!(upstream(&outcome, "traceparent").is_some());
    }

    #[tokio::test]
    async fn without_identity_key_the_caller_is_known_but_not_forwarded() {
        let f = fixture(false).await;
        let chain = f
            .runtime
            .build_chain(
                "r",
                &RoutePolicy {
                    jwt: jwt(JwtMode::Required),
                    ..Default::default()
                },
            )
            .expect("chain");
        let token = f.key.sign(&Claims::valid("u"));
        let outcome = chain
            .evaluate(&request("GET", &[bearer(&token)]), &ctx(false))
            .await;
        assert_eq!(outcome.decision, Decision::Continue);
        assert!(outcome.identity.is_some());
        assert!(upstream(&outcome, "x-user-id").is_none());
    }

    #[tokio::test]
    async fn missing_token_is_401_with_a_bare_bearer_challenge_and_a_request_id() {
        let f = fixture(true).await;
        let chain = f
            .runtime
            .build_chain(
                "r",
                &RoutePolicy {
                    jwt: jwt(JwtMode::Required),
                    ..Default::default()
                },
            )
            .expect("chain");
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
        let chain = f
            .runtime
            .build_chain(
                "r",
                &RoutePolicy {
                    jwt: jwt(JwtMode::Required),
                    ..Default::default()
                },
            )
            .expect("chain");
        let outcome = chain.evaluate(&request("POST", &[]), &ctx(true)).await;
        let response = respond(&outcome);
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.headers["grpc-status"], "16");
    }

    #[tokio::test]
    async fn optional_mode_admits_anonymous_but_not_bad_tokens() {
        let f = fixture(true).await;
        let chain = f
            .runtime
            .build_chain(
                "r",
                &RoutePolicy {
                    jwt: jwt(JwtMode::Optional),
                    ..Default::default()
                },
            )
            .expect("chain");
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

    #[tokio::test]
    async fn revoked_token_is_refused_in_process_without_redis() {
        let f = fixture(true).await;
        let chain = f
            .runtime
            .build_chain(
                "r",
                &RoutePolicy {
                    jwt: jwt(JwtMode::Required),
                    ..Default::default()
                },
            )
            .expect("chain");
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

    #[tokio::test]
    async fn a_401_never_consumes_a_user_keyed_token() {
        let f = fixture(true).await;
        let chain = f
            .runtime
            .build_chain(
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
            .runtime
            .build_chain(
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
    async fn over_the_limit_is_429_with_retry_after_and_ratelimit_headers() {
        let f = fixture(true).await;
        let policy = RoutePolicy {
            rate_limits: vec![rule(RateLimitKey::Ip, 2)],
            ..Default::default()
        };
        let chain = f.runtime.build_chain("login", &policy).expect("chain");
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
        let old = f.runtime.build_chain("login", &policy).expect("chain");
        assert_eq!(
            old.evaluate(&request("POST", &[]), &ctx(false))
                .await
                .decision,
            Decision::Continue
        );
        // A config reload builds a new chain while the old one is still in use.
        let new = f.runtime.build_chain("login", &policy).expect("chain");
        drop(old);
        let outcome = new.evaluate(&request("POST", &[]), &ctx(false)).await;
        assert_eq!(respond(&outcome).status, StatusCode::TOO_MANY_REQUESTS);
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
        let chain = f.runtime.build_chain("r", &policy).expect("chain");
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
    async fn spoofed_identity_headers_are_never_echoed_upstream_by_the_chain() {
        let f = fixture(true).await;
        let chain = f
            .runtime
            .build_chain("public", &RoutePolicy::default())
            .expect("chain");
        let outcome = chain
            .evaluate(
                &request(
                    "GET",
                    &[
                        ("x-user-id", "admin".into()),
                        ("x-user-assertion", "v1.1.x".into()),
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
                "r",
                &RoutePolicy {
                    jwt: jwt(JwtMode::Required),
                    ..Default::default()
                },
            )
            .err()
            .expect("error");
        assert!(
            matches!(err, RuntimeError::Config { ref path, .. } if path == "jwt"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn reconfigure_keeps_buckets_and_picks_up_a_new_identity_key() {
        let f = fixture(true).await;
        let policy = RoutePolicy {
            jwt: jwt(JwtMode::Required),
            rate_limits: vec![rule(RateLimitKey::User, 1)],
            ..Default::default()
        };
        let chain = f.runtime.build_chain("r", &policy).expect("chain");
        let token = f.key.sign(&Claims::valid("u"));
        assert_eq!(
            chain
                .evaluate(&request("GET", &[bearer(&token)]), &ctx(false))
                .await
                .decision,
            Decision::Continue
        );
        let mut config = f.runtime.shared.load().config.clone();
        config.identity = None;
        f.runtime.reconfigure(&config).await.expect("reconfigure");
        let outcome = chain
            .evaluate(&request("GET", &[bearer(&token)]), &ctx(false))
            .await;
        assert_eq!(
            respond(&outcome).status,
            StatusCode::TOO_MANY_REQUESTS,
            "bucket kept"
        );
        let bad = PluginsConfig {
            redis: Some(crate::config::RedisConfig {
                url: "http://not-redis".into(),
                namespace: String::new(),
                connect_timeout: Duration::from_millis(100),
                command_timeout: Duration::from_millis(100),
            }),
            ..config
        };
        assert!(f.runtime.reconfigure(&bad).await.is_err());
    }
}
