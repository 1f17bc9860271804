//! JWT bearer-token verification (RFC 7519) with keys from a JWKS (RFC 7517) or PEM files.
//!
//! Hard rules, after RFC 8725 (JWT BCP):
//! - The algorithm is never taken on trust from the token (§3.1): the header's `alg` must
//!   be on the route's allow-list (EdDSA, ES256, RS256 only — `none` and every `HS*` are
//!   unrepresentable in [`JwtAlgorithm`]) **and** equal the algorithm the selected key is
//!   bound to. A public key can therefore never be used as an HMAC secret.
//! - `iss` and `aud` are required and must match (§3.8, §3.9); `exp` is required and,
//!   like `nbf`, checked with a small leeway (RFC 7519 §4.1.4, §4.1.5).
//! - JWKS entries of type `oct` (symmetric) are ignored, RSA keys under 2048 bits are
//!   refused (RFC 7518 §3.3).
//!
//! Cost: a signature check is tens of microseconds; a proxy hop is ~20 µs. Verified tokens
//! are therefore remembered (bounded, keyed by SHA-256 of the token, until `exp`), so a
//! token's signature is checked once and later requests cost a hash and a map lookup.

mod bearer;
mod cache;
pub(crate) mod fuzz_support;
mod keys;
mod transport;
mod verify;

use std::sync::Arc;

use http::header::WWW_AUTHENTICATE;
use http::HeaderValue;
use parking_lot::Mutex;

use crate::config::JwtAlgorithm;
use crate::decision::PolicyResponse;
use crate::error_shape::{error_response, ErrorKind};
use crate::identity::Identity;

pub use bearer::{bearer_token, MAX_TOKEN_LEN};
pub use keys::JwksError;
pub(crate) use transport::jwks_transport_issues;
pub use verify::JwtVerifier;

/// Why a token was refused. [`JwtRejection::code`] is the JSON `error.code` and the
/// `reason` label of `edge_jwt_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRejection {
    Missing,
    Expired,
    NotYetValid,
    BadSignature,
    UnknownKid,
    AlgorithmNotAllowed,
    BadIssuer,
    BadAudience,
    Malformed,
    Revoked,
}

impl JwtRejection {
    pub fn code(self) -> &'static str {
        match self {
            JwtRejection::Missing => "token_missing",
            JwtRejection::Expired => "token_expired",
            JwtRejection::NotYetValid => "token_not_yet_valid",
            JwtRejection::BadSignature => "bad_signature",
            JwtRejection::UnknownKid => "unknown_kid",
            JwtRejection::AlgorithmNotAllowed => "algorithm_not_allowed",
            JwtRejection::BadIssuer => "bad_issuer",
            JwtRejection::BadAudience => "bad_audience",
            JwtRejection::Malformed => "malformed_token",
            JwtRejection::Revoked => "token_revoked",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            JwtRejection::Missing => "a bearer token is required",
            JwtRejection::Expired => "the token has expired",
            JwtRejection::NotYetValid => "the token is not valid yet",
            JwtRejection::BadSignature => "the token signature does not verify",
            JwtRejection::UnknownKid => "the token was signed with an unknown key",
            JwtRejection::AlgorithmNotAllowed => "the token's algorithm is not allowed here",
            JwtRejection::BadIssuer => "the token has the wrong issuer",
            JwtRejection::BadAudience => "the token is not meant for this audience",
            JwtRejection::Malformed => "the token is malformed",
            JwtRejection::Revoked => "the token has been revoked",
        }
    }

    /// The 401 (HTTP) or UNAUTHENTICATED (gRPC) answer. RFC 6750 §3: `error="invalid_token"`
    /// for a bad token; a request with no credentials gets a bare `Bearer` challenge (§3.1:
    /// no error code when authentication information is missing).
    pub fn response(self, grpc: bool) -> PolicyResponse {
        let mut response = error_response(
            ErrorKind::Unauthenticated,
            self.code(),
            self.message(),
            grpc,
        );
        let challenge = match self {
            JwtRejection::Missing => HeaderValue::from_static("Bearer"),
            _ => HeaderValue::from_static("Bearer error=\"invalid_token\""),
        };
        response.headers.insert(WWW_AUTHENTICATE, challenge);
        response
    }
}

/// A token whose signature and claims checked out, shared by every request that presents
/// it until it expires.
#[derive(Debug)]
pub struct VerifiedToken {
    pub identity: Identity,
    pub algorithm: JwtAlgorithm,
    pub kid: String,
    /// The identity headers, rendered once.
    pub(crate) user_id_header: HeaderValue,
    pub(crate) email_header: HeaderValue,
    pub(crate) jti_header: HeaderValue,
    /// The last identity assertion made for this token. Signing costs an HMAC, and a
    /// client repeating one request within a second (polling, benchmarks) can reuse it.
    assertion: Mutex<Option<CachedAssertion>>,
}

/// An assertion and everything it was made for.
#[derive(Debug)]
struct CachedAssertion {
    second: u64,
    /// Address of the signing key (a reload with another key makes a new `Arc`).
    key: usize,
    method: http::Method,
    target: crate::UpstreamTarget,
    value: HeaderValue,
}

impl VerifiedToken {
    /// The `x-user-assertion` value for one request at `now`, reusing the one made earlier
    /// in the same second for the same request with the same key.
    pub(crate) fn assertion(
        &self,
        key: &Arc<identity_assertion::SigningKey>,
        method: &http::Method,
        target: &crate::UpstreamTarget,
        now: u64,
    ) -> HeaderValue {
        let key_addr = Arc::as_ptr(key) as usize;
        if let Some(cached) = &*self.assertion.lock() {
            if cached.second == now
                && cached.key == key_addr
                && cached.method == method
                && cached.target == *target
            {
                return cached.value.clone();
            }
        }
        let assertion = identity_assertion::sign_at(
            key,
            &identity_assertion::Identity {
                user_id: self.identity.sub.clone(),
                email: self.identity.email.clone().unwrap_or_default(),
                jti: self.identity.jti.clone(),
            },
            &identity_assertion::Target {
                audience: &target.audience,
                method: method.as_str(),
                path_and_query: &target.path_and_query,
            },
            now,
        );
        // A key id, digits and base64url: always a valid header value.
        let value = HeaderValue::from_str(&assertion)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        *self.assertion.lock() = Some(CachedAssertion {
            second: now,
            key: key_addr,
            method: method.clone(),
            target: target.clone(),
            value: value.clone(),
        });
        value
    }
}

/// Problems with `[plugins.jwt]` found while loading keys.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct JwtConfigError {
    pub path: String,
    pub message: String,
}

/// Fixtures shared by the tests of the jwt modules.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;
    use std::time::Duration;

    use super::JwtVerifier;
    use crate::config::{JwtAlgorithm, JwtProviderConfig};
    use crate::metrics::PolicyMetrics;
    use crate::test_support::{self, JwksServer, TestKey};

    pub(crate) fn provider(jwks_url: Option<String>) -> JwtProviderConfig {
        JwtProviderConfig {
            issuer: test_support::ISSUER.into(),
            audience: test_support::AUDIENCE.into(),
            // The test JWKS servers listen on 127.0.0.1 over plain HTTP unless TLS is asked for.
            jwks_allow_http: jwks_url
                .as_deref()
                .is_some_and(|u| u.starts_with("http://")),
            jwks_url,
            jwks_ca_file: None,
            jwks_refresh_interval: Duration::from_secs(300),
            jwks_min_refetch_interval: Duration::from_secs(60),
            jwks_fetch_timeout: Duration::from_secs(2),
            static_keys: Vec::new(),
            leeway: Duration::from_secs(5),
            verified_cache_size: 1000,
        }
    }

    pub(crate) const ALL: &[JwtAlgorithm] = &[
        JwtAlgorithm::EdDSA,
        JwtAlgorithm::ES256,
        JwtAlgorithm::RS256,
    ];

    pub(crate) async fn verifier_with(
        keys: &[&TestKey],
    ) -> (JwtVerifier, JwksServer, PolicyMetrics) {
        let server = JwksServer::start(keys.iter().map(|k| k.jwk.clone()).collect()).await;
        let metrics = PolicyMetrics::for_tests();
        let verifier = JwtVerifier::new(
            &provider(Some(server.url())),
            Path::new("."),
            metrics.clone(),
        )
        .expect("config");
        verifier.refresh_jwks().await.expect("initial fetch");
        (verifier, server, metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_carry_the_bearer_challenge() {
        let missing = JwtRejection::Missing.response(false);
        assert_eq!(missing.status, http::StatusCode::UNAUTHORIZED);
        assert_eq!(missing.headers[WWW_AUTHENTICATE], "Bearer");
        let expired = JwtRejection::Expired.response(false);
        assert_eq!(
            expired.headers[WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        let body: serde_json::Value = serde_json::from_slice(&expired.body).expect("json");
        assert_eq!(body["error"]["code"], "token_expired");
        let grpc = JwtRejection::Revoked.response(true);
        assert_eq!(grpc.headers["grpc-status"], "16");
    }
}
