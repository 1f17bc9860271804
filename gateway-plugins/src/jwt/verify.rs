//! Token verification: the allow-list, the key binding, the claims (RFC 8725).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use jsonwebtoken::{Algorithm, Validation};
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::cache::{TokenHash, VerifiedCache};
use super::keys::{load_static_key, JwksSource, KeyEntry, KeySet};
use super::transport::{jwks_client, jwks_transport_issues};
use super::{JwtConfigError, JwtRejection, VerifiedToken};
use crate::config::{JwtAlgorithm, JwtProviderConfig};
use crate::identity::Identity;
use crate::metrics::PolicyMetrics;

/// The process-wide JWT verifier: keys, the verified-token cache, and the JWKS source.
pub struct JwtVerifier {
    pub(super) issuer: String,
    pub(super) audience: String,
    pub(super) leeway: u64,
    pub(super) static_keys: HashMap<String, Arc<KeyEntry>>,
    pub(super) keys: ArcSwap<KeySet>,
    pub(super) cache: VerifiedCache,
    pub(super) jwks: Option<JwksSource>,
    pub(super) metrics: PolicyMetrics,
    /// `edge_jwt_verifications_total{result}` children, resolved once (hot path).
    pub(super) cache_hits: prometheus::IntCounter,
    pub(super) verified: prometheus::IntCounter,
    pub(super) failed: prometheus::IntCounter,
    pub(super) validations: [Validation; 3],
}

fn to_jsonwebtoken(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
    }
}

fn alg_index(alg: JwtAlgorithm) -> usize {
    match alg {
        JwtAlgorithm::EdDSA => 0,
        JwtAlgorithm::ES256 => 1,
        JwtAlgorithm::RS256 => 2,
    }
}

/// Only the three algorithms a route can allow have a name we accept; `none`, `HS256`,
/// `PS256`, ... all fall through to `None`.
fn parse_alg(name: &str) -> Option<JwtAlgorithm> {
    match name {
        "EdDSA" => Some(JwtAlgorithm::EdDSA),
        "ES256" => Some(JwtAlgorithm::ES256),
        "RS256" => Some(JwtAlgorithm::RS256),
        _ => None,
    }
}

/// The JOSE header fields we look at (RFC 7515 §4.1).
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

impl JwtVerifier {
    /// Loads static keys (paths relative to `config_dir`). Does not fetch the JWKS; call
    /// [`JwtVerifier::refresh_jwks`] (the runtime does, at start and on an interval).
    pub fn new(
        config: &JwtProviderConfig,
        config_dir: &Path,
        metrics: PolicyMetrics,
    ) -> Result<Self, JwtConfigError> {
        let mut static_keys = HashMap::new();
        for (i, key) in config.static_keys.iter().enumerate() {
            let entry = load_static_key(key, config_dir).map_err(|message| JwtConfigError {
                path: format!("jwt.static_keys[{i}].pem_file"),
                message,
            })?;
            if static_keys
                .insert(key.kid.clone(), Arc::new(entry))
                .is_some()
            {
                return Err(JwtConfigError {
                    path: format!("jwt.static_keys[{i}].kid"),
                    message: format!("kid `{}` is listed twice", key.kid),
                });
            }
        }
        let jwks = match &config.jwks_url {
            Some(url) => {
                // The same rules `PluginsConfig::validate` reports, enforced here too so no
                // caller can build a verifier that fetches keys over an untrusted path.
                if let Some(issue) = jwks_transport_issues(config).into_iter().next() {
                    return Err(JwtConfigError {
                        path: issue.path,
                        message: issue.message,
                    });
                }
                let uri: http::Uri = url.parse().map_err(|_| JwtConfigError {
                    path: "jwt.jwks_url".into(),
                    message: format!("`{url}` is not a valid URL"),
                })?;
                Some(JwksSource {
                    url: uri,
                    client: jwks_client(config, config_dir)?,
                    timeout: config.jwks_fetch_timeout,
                    min_refetch_interval: config.jwks_min_refetch_interval,
                    fetch_lock: tokio::sync::Mutex::new(()),
                    completed: AtomicU64::new(0),
                    last_kid_refetch_ms: AtomicU64::new(0),
                })
            }
            None => None,
        };
        let leeway = config.leeway.as_secs();
        let validation = |alg: JwtAlgorithm| {
            let mut v = Validation::new(to_jsonwebtoken(alg));
            v.leeway = leeway;
            v.validate_exp = true;
            v.validate_nbf = true;
            v.validate_aud = true;
            v.set_issuer(&[&config.issuer]);
            v.set_audience(&[&config.audience]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            v
        };
        let verifier = Self {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway,
            keys: ArcSwap::from_pointee(KeySet {
                keys: static_keys.clone(),
                from_jwks: Vec::new(),
            }),
            static_keys,
            cache: VerifiedCache::new(config.verified_cache_size),
            jwks,
            validations: [
                validation(JwtAlgorithm::EdDSA),
                validation(JwtAlgorithm::ES256),
                validation(JwtAlgorithm::RS256),
            ],
            cache_hits: metrics.jwt_verifications.with_label_values(&["cache_hit"]),
            verified: metrics.jwt_verifications.with_label_values(&["verified"]),
            failed: metrics.jwt_verifications.with_label_values(&["failed"]),
            metrics,
        };
        verifier.metrics.jwt_keys.set(verifier.key_count() as i64);
        Ok(verifier)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn has_jwks(&self) -> bool {
        self.jwks.is_some()
    }

    /// Keys currently usable (JWKS + static).
    pub fn key_count(&self) -> usize {
        self.keys.load().keys.len()
    }

    /// Keys that came from the JWKS.
    pub fn jwks_key_count(&self) -> usize {
        self.keys.load().from_jwks.len()
    }

    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// Forgets every verified token (tests, key removal).
    pub fn clear_cache(&self) {
        self.cache.clear();
        self.metrics.jwt_cache_entries.set(0);
    }

    /// Drops expired tokens from the cache; the runtime calls this periodically.
    pub fn sweep_cache(&self) {
        self.cache.sweep(crate::clock::unix_now(), self.leeway);
        self.metrics.jwt_cache_entries.set(self.cache.len() as i64);
    }

    /// Verifies `token` for a route that allows `allowed` algorithms.
    pub async fn verify(
        &self,
        token: &str,
        allowed: &[JwtAlgorithm],
    ) -> Result<Arc<VerifiedToken>, JwtRejection> {
        let hash = TokenHash(Sha256::digest(token.as_bytes()).into());
        let now = crate::clock::unix_now();
        if let Some(cached) = self.cache.get(&hash) {
            // A cached token was verified for some route; this route may allow fewer
            // algorithms, and time has moved on.
            if !allowed.contains(&cached.algorithm) {
                return Err(JwtRejection::AlgorithmNotAllowed);
            }
            if cached.identity.expires_at.saturating_add(self.leeway) < now {
                self.cache.remove(&hash);
                return Err(JwtRejection::Expired);
            }
            self.cache_hits.inc();
            return Ok(cached);
        }
        let result = self.verify_uncached(token, allowed).await;
        match &result {
            Ok(verified) => {
                self.verified.inc();
                self.cache
                    .insert(hash, Arc::clone(verified), now, self.leeway);
                self.metrics.jwt_cache_entries.set(self.cache.len() as i64);
            }
            Err(_) => self.failed.inc(),
        }
        result
    }

    async fn verify_uncached(
        &self,
        token: &str,
        allowed: &[JwtAlgorithm],
    ) -> Result<Arc<VerifiedToken>, JwtRejection> {
        // Compact JWS: exactly three base64url segments (RFC 7515 §7.1). Anything else
        // (including JWE's five) is not a token we can verify.
        let mut segments = token.split('.');
        let (Some(header_b64), Some(_), Some(_), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(JwtRejection::Malformed);
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| JwtRejection::Malformed)?;
        let header: RawHeader =
            serde_json::from_slice(&header_json).map_err(|_| JwtRejection::Malformed)?;
        // RFC 8725 §3.1: the allow-list decides, not the token.
        let Some(algorithm) = parse_alg(&header.alg) else {
            return Err(JwtRejection::AlgorithmNotAllowed);
        };
        if !allowed.contains(&algorithm) {
            return Err(JwtRejection::AlgorithmNotAllowed);
        }
        // RFC 7515 §4.1.11: we implement no extensions, so any `crit` must be refused.
        if header.crit.is_some() {
            return Err(JwtRejection::Malformed);
        }
        // RFC 8725 §3.11 explicit typing: if a type is given it must be a JWT.
        if let Some(typ) = &header.typ {
            if !typ.eq_ignore_ascii_case("JWT") && !typ.eq_ignore_ascii_case("at+jwt") {
                return Err(JwtRejection::Malformed);
            }
        }
        // Our issuer always sets `kid` (docs/contracts.md); without one we would have to
        // try keys until one fits, which a forger could use to multiply our work.
        let Some(kid) = header.kid else {
            return Err(JwtRejection::UnknownKid);
        };
        let key = match self.keys.load().keys.get(&kid).cloned() {
            Some(key) => key,
            None => {
                self.refetch_for_unknown_kid().await;
                self.keys
                    .load()
                    .keys
                    .get(&kid)
                    .cloned()
                    .ok_or(JwtRejection::UnknownKid)?
            }
        };
        if key.algorithm != algorithm {
            return Err(JwtRejection::AlgorithmNotAllowed);
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key.key,
            &self.validations[alg_index(algorithm)],
        )
        .map_err(map_decode_error)?;
        let claims = data.claims;
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str());
        let sub = text("sub")
            .filter(|s| !s.is_empty())
            .ok_or(JwtRejection::Malformed)?;
        // Revocation is by jti, so a token without one could never be logged out.
        let jti = text("jti")
            .filter(|s| !s.is_empty())
            .ok_or(JwtRejection::Malformed)?;
        let email = match claims.get("email") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(JwtRejection::Malformed),
        };
        let expires_at = claims
            .get("exp")
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
            .ok_or(JwtRejection::Malformed)?;
        // Values that cannot be header values (control characters) cannot be forwarded.
        let header_value = |s: &str| HeaderValue::from_str(s).map_err(|_| JwtRejection::Malformed);
        Ok(Arc::new(VerifiedToken {
            user_id_header: header_value(sub)?,
            email_header: header_value(email.as_deref().unwrap_or(""))?,
            jti_header: header_value(jti)?,
            identity: Identity {
                sub: sub.to_string(),
                email,
                jti: jti.to_string(),
                expires_at,
            },
            algorithm,
            kid,
            assertion: Mutex::new(None),
        }))
    }
}

fn map_decode_error(err: jsonwebtoken::errors::Error) -> JwtRejection {
    use jsonwebtoken::errors::ErrorKind as E;
    match err.kind() {
        E::ExpiredSignature => JwtRejection::Expired,
        E::ImmatureSignature => JwtRejection::NotYetValid,
        E::InvalidIssuer => JwtRejection::BadIssuer,
        E::InvalidAudience => JwtRejection::BadAudience,
        E::InvalidSignature => JwtRejection::BadSignature,
        E::InvalidAlgorithm | E::InvalidAlgorithmName | E::UnsupportedAlgorithm => {
            JwtRejection::AlgorithmNotAllowed
        }
        E::MissingRequiredClaim(claim) if claim == "iss" => JwtRejection::BadIssuer,
        E::MissingRequiredClaim(claim) if claim == "aud" => JwtRejection::BadAudience,
        // A key that does not parse cannot have signed the token.
        E::InvalidEcdsaKey | E::InvalidEddsaKey | E::InvalidRsaKey(_) | E::InvalidKeyFormat => {
            JwtRejection::BadSignature
        }
        _ => JwtRejection::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::testing::{verifier_with, ALL};
    use crate::test_support::{self, Claims, TestKey};

    #[tokio::test]
    async fn each_algorithm_verifies_and_yields_the_identity() {
        let keys = [
            TestKey::ed25519("ed"),
            TestKey::es256("ec"),
            TestKey::rs256("rsa"),
        ];
        let (verifier, _server, _) = verifier_with(&keys.iter().collect::<Vec<_>>()).await;
        for key in &keys {
            let token = key.sign(&Claims::valid("user-1"));
            let verified = verifier.verify(&token, ALL).await.expect("valid token");
            assert_eq!(verified.identity.sub, "user-1");
            assert_eq!(
                verified.identity.email.as_deref(),
                Some("user-1@example.com")
            );
            assert_eq!(verified.algorithm, key.algorithm);
        }
    }

    #[tokio::test]
    async fn a_token_is_verified_once_then_served_from_the_cache() {
        let key = TestKey::ed25519("ed");
        let (verifier, _server, metrics) = verifier_with(&[&key]).await;
        let token = key.sign(&Claims::valid("u"));
        for _ in 0..3 {
            verifier.verify(&token, ALL).await.expect("valid");
        }
        let count = |r: &str| metrics.jwt_verifications.with_label_values(&[r]).get();
        assert_eq!(count("verified"), 1);
        assert_eq!(count("cache_hit"), 2);
        assert_eq!(verifier.cached_tokens(), 1);
    }

    #[tokio::test]
    async fn cached_token_still_honours_the_route_allow_list() {
        let key = TestKey::es256("ec");
        let (verifier, _server, _) = verifier_with(&[&key]).await;
        let token = key.sign(&Claims::valid("u"));
        verifier.verify(&token, ALL).await.expect("valid");
        assert_eq!(
            verifier.verify(&token, &[JwtAlgorithm::EdDSA]).await.err(),
            Some(JwtRejection::AlgorithmNotAllowed)
        );
    }

    #[tokio::test]
    async fn expired_and_not_yet_valid_tokens_are_refused_beyond_the_leeway() {
        let key = TestKey::ed25519("ed");
        let (verifier, _server, _) = verifier_with(&[&key]).await;
        let now = crate::clock::unix_now();
        let expired = key.sign(&Claims::valid("u").exp(now - 60));
        assert_eq!(
            verifier.verify(&expired, ALL).await.err(),
            Some(JwtRejection::Expired)
        );
        let within_leeway = key.sign(&Claims::valid("u").exp(now - 2));
        assert!(verifier.verify(&within_leeway, ALL).await.is_ok());
        let future = key.sign(&Claims::valid("u").nbf(now + 120));
        assert_eq!(
            verifier.verify(&future, ALL).await.err(),
            Some(JwtRejection::NotYetValid)
        );
    }

    #[tokio::test]
    async fn wrong_or_missing_issuer_and_audience_are_refused() {
        let key = TestKey::ed25519("ed");
        let (verifier, _server, _) = verifier_with(&[&key]).await;
        let cases = [
            (
                Claims::valid("u").set("iss", "someone-else".into()),
                JwtRejection::BadIssuer,
            ),
            (Claims::valid("u").remove("iss"), JwtRejection::BadIssuer),
            (
                Claims::valid("u").set("aud", "other-app".into()),
                JwtRejection::BadAudience,
            ),
            (Claims::valid("u").remove("aud"), JwtRejection::BadAudience),
            (Claims::valid("u").remove("exp"), JwtRejection::Malformed),
            (Claims::valid("u").remove("jti"), JwtRejection::Malformed),
        ];
        for (claims, expected) in cases {
            let token = key.sign(&claims);
            assert_eq!(
                verifier.verify(&token, ALL).await.err(),
                Some(expected),
                "{claims:?}"
            );
        }
        // An audience array containing ours is fine (RFC 7519 §4.1.3).
        let token = key.sign(
            &Claims::valid("u").set("aud", serde_json::json!(["other", test_support::AUDIENCE])),
        );
        assert!(verifier.verify(&token, ALL).await.is_ok());
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let key = TestKey::ed25519("ed");
        let (verifier, _server, metrics) = verifier_with(&[&key]).await;
        let token = test_support::unsigned_token("ed", &Claims::valid("u"));
        assert_eq!(
            verifier.verify(&token, ALL).await.err(),
            Some(JwtRejection::AlgorithmNotAllowed)
        );
        assert_eq!(
            metrics
                .jwt_verifications
                .with_label_values(&["failed"])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn hs256_signed_with_the_public_key_as_secret_is_refused() {
        for key in [
            TestKey::rs256("rsa"),
            TestKey::es256("ec"),
            TestKey::ed25519("ed"),
        ] {
            let (verifier, _server, _) = verifier_with(&[&key]).await;
            // The classic key-confusion forgery: HMAC keyed with the public key the
            // attacker downloaded, in both the PEM and the raw JWK encodings.
            for secret in [key.public_pem.as_bytes().to_vec(), key.public_jwk_bytes()] {
                let token = test_support::hs256_token(&key.kid, &secret, &Claims::valid("admin"));
                assert_eq!(
                    verifier.verify(&token, ALL).await.err(),
                    Some(JwtRejection::AlgorithmNotAllowed)
                );
            }
        }
    }

    #[tokio::test]
    async fn algorithm_outside_the_route_list_or_the_key_binding_is_refused() {
        let ed = TestKey::ed25519("ed");
        let ec = TestKey::es256("ec");
        let (verifier, _server, _) = verifier_with(&[&ed, &ec]).await;
        let token = ec.sign(&Claims::valid("u"));
        assert_eq!(
            verifier.verify(&token, &[JwtAlgorithm::EdDSA]).await.err(),
            Some(JwtRejection::AlgorithmNotAllowed)
        );
        // ES256 token that names the Ed25519 key: the key is bound to EdDSA.
        let token = ec.sign_with_kid("ed", &Claims::valid("u"));
        assert_eq!(
            verifier.verify(&token, ALL).await.err(),
            Some(JwtRejection::AlgorithmNotAllowed)
        );
    }

    #[tokio::test]
    async fn tampered_payload_is_a_bad_signature() {
        let key = TestKey::ed25519("ed");
        let (verifier, _server, _) = verifier_with(&[&key]).await;
        let token = key.sign(&Claims::valid("alice"));
        let forged_claims = key.sign(&Claims::valid("mallory"));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged: Vec<&str> = forged_claims.split('.').collect();
        parts[1] = forged[1];
        assert_eq!(
            verifier.verify(&parts.join("."), ALL).await.err(),
            Some(JwtRejection::BadSignature)
        );
        // A token signed by a different key that reuses our kid.
        let impostor = TestKey::ed25519("ed");
        assert_eq!(
            verifier
                .verify(&impostor.sign(&Claims::valid("u")), ALL)
                .await
                .err(),
            Some(JwtRejection::BadSignature)
        );
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        let key = TestKey::ed25519("ed");
        let (verifier, _server, _) = verifier_with(&[&key]).await;
        for token in ["abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.e30.sig"] {
            let result = verifier.verify(token, ALL).await.err();
            assert!(
                matches!(
                    result,
                    Some(JwtRejection::Malformed | JwtRejection::AlgorithmNotAllowed)
                ),
                "{token}: {result:?}"
            );
        }
    }
}
