//! Verification keys: static PEM files and the JWKS (fetching, parsing, rotation).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use super::JwtVerifier;
use crate::config::{JwtAlgorithm, StaticKeyConfig};

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// RFC 7518 §3.3: RSA keys of 2048 bits or more. The modulus is at least 256 bytes.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// A verification key, bound to the one algorithm it may verify (RFC 8725 §3.1).
pub(crate) struct KeyEntry {
    pub(super) algorithm: JwtAlgorithm,
    pub(super) key: DecodingKey,
}

#[derive(Default)]
pub(super) struct KeySet {
    pub(super) keys: HashMap<String, Arc<KeyEntry>>,
    /// kids that came from the JWKS (as opposed to static PEM files).
    pub(super) from_jwks: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS URL `{0}` is not a valid URI")]
    BadUrl(String),
    #[error("JWKS fetch timed out after {0:?}")]
    Timeout(Duration),
    #[error("JWKS fetch failed: {0}")]
    Http(String),
    #[error("JWKS endpoint answered {0}")]
    Status(http::StatusCode),
    #[error("JWKS document is not valid JSON with a `keys` array: {0}")]
    Document(String),
    #[error(
        "JWKS document holds no usable signing key (EdDSA/Ed25519, ES256/P-256, RS256/RSA>=2048)"
    )]
    NoUsableKeys,
}

/// Where JWKS documents come from, and the single-flight state of fetching them.
pub(super) struct JwksSource {
    pub(super) url: http::Uri,
    pub(super) client: super::transport::JwksClient,
    pub(super) timeout: Duration,
    pub(super) min_refetch_interval: Duration,
    /// Held while fetching: concurrent callers wait for the one fetch in flight.
    pub(super) fetch_lock: tokio::sync::Mutex<()>,
    /// Fetches finished (successfully or not); a waiter that sees it move knows a fetch
    /// completed while it waited and uses that result instead of fetching again.
    pub(super) completed: AtomicU64,
    /// When the last unknown-`kid` refetch started (monotonic ms, 0 = never).
    pub(super) last_kid_refetch_ms: AtomicU64,
}

impl JwtVerifier {
    /// An unknown `kid` may mean the issuer rotated keys: refetch, but only one fetch at a
    /// time (everyone else waits for it) and at most once per `jwks_min_refetch_interval`
    /// so a stream of tokens with random kids cannot hammer the auth service.
    pub(super) async fn refetch_for_unknown_kid(&self) {
        let Some(jwks) = &self.jwks else {
            return;
        };
        let seen = jwks.completed.load(Ordering::Acquire);
        let _guard = jwks.fetch_lock.lock().await;
        if jwks.completed.load(Ordering::Acquire) != seen {
            return;
        }
        let now_ms = crate::clock::monotonic_ms().max(1);
        let last = jwks.last_kid_refetch_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < jwks.min_refetch_interval.as_millis() as u64 {
            return;
        }
        jwks.last_kid_refetch_ms.store(now_ms, Ordering::Relaxed);
        if let Err(err) = self.fetch_and_install(jwks).await {
            tracing::warn!(error = %err, "JWKS refetch for an unknown kid failed; keeping the last key set");
        }
    }

    /// Fetches the JWKS now (waiting for a fetch already in flight instead of starting a
    /// second). On failure the last good key set stays in use. `Ok` carries the number of
    /// JWKS keys installed.
    pub async fn refresh_jwks(&self) -> Result<usize, JwksError> {
        let Some(jwks) = &self.jwks else {
            return Ok(0);
        };
        let _guard = jwks.fetch_lock.lock().await;
        self.fetch_and_install(jwks).await
    }

    /// Must be called with `fetch_lock` held.
    async fn fetch_and_install(&self, jwks: &JwksSource) -> Result<usize, JwksError> {
        let result = fetch_jwks(jwks).await;
        jwks.completed.fetch_add(1, Ordering::Release);
        match result {
            Ok(fetched) => {
                self.metrics.jwks_fetches.with_label_values(&["ok"]).inc();
                let count = fetched.len();
                self.install_jwks(fetched);
                Ok(count)
            }
            Err(err) => {
                self.metrics
                    .jwks_fetches
                    .with_label_values(&["error"])
                    .inc();
                Err(err)
            }
        }
    }

    fn install_jwks(&self, fetched: HashMap<String, Arc<KeyEntry>>) {
        let previous = self.keys.load();
        let mut keys = fetched;
        let from_jwks: Vec<String> = keys.keys().cloned().collect();
        for (kid, entry) in &self.static_keys {
            // A kid configured statically is pinned: the JWKS cannot replace it.
            keys.insert(kid.clone(), Arc::clone(entry));
        }
        let removed = previous.from_jwks.iter().any(|kid| !keys.contains_key(kid));
        self.keys.store(Arc::new(KeySet { keys, from_jwks }));
        self.metrics.jwt_keys.set(self.key_count() as i64);
        if removed {
            // A key the issuer withdrew must stop vouching for tokens at once, even for
            // tokens we verified with it earlier.
            self.clear_cache();
        }
    }
}

pub(super) fn load_static_key(
    config: &StaticKeyConfig,
    config_dir: &Path,
) -> Result<KeyEntry, String> {
    let path = if config.pem_file.is_absolute() {
        config.pem_file.clone()
    } else {
        config_dir.join(&config.pem_file)
    };
    let pem = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let key = match config.algorithm {
        JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
        JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(&pem),
        JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
    }
    .map_err(|e| {
        format!(
            "{} is not a {:?} public key in PEM (SPKI): {e}",
            path.display(),
            config.algorithm
        )
    })?;
    Ok(KeyEntry {
        algorithm: config.algorithm,
        key,
    })
}

async fn fetch_jwks(jwks: &JwksSource) -> Result<HashMap<String, Arc<KeyEntry>>, JwksError> {
    let fetch = async {
        let request = http::Request::get(jwks.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| JwksError::BadUrl(e.to_string()))?;
        let response = jwks
            .client
            .request(request)
            .await
            .map_err(|e| JwksError::Http(error_chain(&e)))?;
        if response.status() != http::StatusCode::OK {
            return Err(JwksError::Status(response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| JwksError::Http(e.to_string()))?
            .to_bytes();
        parse_jwks(&body)
    };
    tokio::time::timeout(jwks.timeout, fetch)
        .await
        .map_err(|_| JwksError::Timeout(jwks.timeout))?
}

/// An error and its causes: hyper-util says only "client error (Connect)"; what an operator
/// needs (connection refused, certificate verify failed, ...) is further down the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Parses a JWKS document, keeping only keys we may verify with. Unusable entries are
/// skipped (and logged), not fatal: one odd key must not take the others down with it.
pub(super) fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<KeyEntry>>, JwksError> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| JwksError::Document(e.to_string()))?;
    let mut keys = HashMap::new();
    for value in document.keys {
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(err) => {
                tracing::debug!(error = %err, "skipping a JWKS entry that is not a JWK");
                continue;
            }
        };
        match usable_key(&jwk) {
            Ok((kid, entry)) => {
                keys.insert(kid, Arc::new(entry));
            }
            Err(reason) => {
                tracing::debug!(kid = ?jwk.common.key_id, reason, "skipping JWKS entry");
            }
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKeys);
    }
    Ok(keys)
}

fn usable_key(jwk: &Jwk) -> Result<(String, KeyEntry), &'static str> {
    let kid = jwk.common.key_id.clone().ok_or("no kid")?;
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return Err("not a signature key");
    }
    let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::OctetKeyPair(p), None | Some(KeyAlgorithm::EdDSA))
            if p.curve == EllipticCurve::Ed25519 =>
        {
            JwtAlgorithm::EdDSA
        }
        (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
            if p.curve == EllipticCurve::P256 =>
        {
            JwtAlgorithm::ES256
        }
        (AlgorithmParameters::RSA(p), None | Some(KeyAlgorithm::RS256)) => {
            let modulus = URL_SAFE_NO_PAD
                .decode(p.n.trim_end_matches('='))
                .map_err(|_| "RSA modulus is not base64url")?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err("RSA key shorter than 2048 bits");
            }
            JwtAlgorithm::RS256
        }
        // `oct` keys would turn a public document into HMAC secrets; other curves and
        // algorithms are not on any route's list.
        _ => return Err("key type or algorithm not supported"),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "key material does not parse")?;
    Ok((kid, KeyEntry { algorithm, key }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::testing::{provider, verifier_with, ALL};
    use crate::jwt::JwtRejection;
    use crate::metrics::PolicyMetrics;
    use crate::test_support::{Claims, TestKey};

    #[tokio::test]
    async fn unknown_kid_triggers_exactly_one_refetch_even_when_concurrent() {
        let old = TestKey::ed25519("old");
        let (verifier, server, metrics) = verifier_with(&[&old]).await;
        let verifier = Arc::new(verifier);
        assert_eq!(server.hits(), 1);
        // The issuer rotates: a new key appears in the JWKS.
        let new = TestKey::ed25519("new");
        server.set_keys(vec![old.jwk.clone(), new.jwk.clone()]);
        let mut tasks = Vec::new();
        for i in 0..8 {
            let token = new.sign(&Claims::valid(&format!("user-{i}")));
            let verifier = Arc::clone(&verifier);
            tasks.push(tokio::spawn(
                async move { verifier.verify(&token, ALL).await },
            ));
        }
        for task in tasks {
            task.await
                .expect("task")
                .expect("new key verifies after the refetch");
        }
        assert_eq!(
            server.hits(),
            2,
            "one refetch for eight concurrent unknown-kid tokens"
        );
        // Another unknown kid inside the minimum interval: no fetch, refused.
        let stranger = TestKey::ed25519("stranger");
        assert_eq!(
            verifier
                .verify(&stranger.sign(&Claims::valid("u")), ALL)
                .await
                .err(),
            Some(JwtRejection::UnknownKid)
        );
        assert_eq!(server.hits(), 2);
        assert_eq!(metrics.jwks_fetches.with_label_values(&["ok"]).get(), 2);
    }

    #[tokio::test]
    async fn jwks_outage_keeps_the_last_good_keys() {
        let key = TestKey::es256("ec");
        let (verifier, server, metrics) = verifier_with(&[&key]).await;
        server.set_failing(true);
        assert!(matches!(
            verifier.refresh_jwks().await,
            Err(JwksError::Status(_))
        ));
        assert_eq!(verifier.jwks_key_count(), 1);
        let token = key.sign(&Claims::valid("u"));
        assert!(verifier.verify(&token, ALL).await.is_ok());
        assert_eq!(metrics.jwks_fetches.with_label_values(&["error"]).get(), 1);
        // A document with no usable key is a failure too, not an empty key set.
        server.set_failing(false);
        server.set_keys(vec![
            serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
        ]);
        assert!(matches!(
            verifier.refresh_jwks().await,
            Err(JwksError::NoUsableKeys)
        ));
        assert_eq!(verifier.jwks_key_count(), 1);
    }

    #[tokio::test]
    async fn withdrawn_key_stops_vouching_for_cached_tokens() {
        let a = TestKey::ed25519("a");
        let b = TestKey::ed25519("b");
        let (verifier, server, _) = verifier_with(&[&a, &b]).await;
        let token = a.sign(&Claims::valid("u"));
        verifier.verify(&token, ALL).await.expect("valid");
        server.set_keys(vec![b.jwk.clone()]);
        verifier.refresh_jwks().await.expect("fetch");
        assert_eq!(
            verifier.verify(&token, ALL).await.err(),
            Some(JwtRejection::UnknownKid)
        );
    }

    #[tokio::test]
    async fn static_pem_keys_verify_and_are_pinned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = [
            TestKey::ed25519("s-ed"),
            TestKey::es256("s-ec"),
            TestKey::rs256("s-rsa"),
        ];
        let mut config = provider(None);
        for key in &keys {
            let file = format!("{}.pem", key.kid);
            std::fs::write(dir.path().join(&file), &key.public_pem).expect("write pem");
            config.static_keys.push(StaticKeyConfig {
                kid: key.kid.clone(),
                algorithm: key.algorithm,
                pem_file: file.into(),
            });
        }
        let verifier =
            JwtVerifier::new(&config, dir.path(), PolicyMetrics::for_tests()).expect("keys load");
        assert_eq!(verifier.key_count(), 3);
        for key in &keys {
            let token = key.sign(&Claims::valid("u"));
            verifier
                .verify(&token, ALL)
                .await
                .expect("static key verifies");
        }
        // Unknown kid without a JWKS: refused without any fetch.
        let stranger = TestKey::ed25519("x");
        assert_eq!(
            verifier
                .verify(&stranger.sign(&Claims::valid("u")), ALL)
                .await
                .err(),
            Some(JwtRejection::UnknownKid)
        );
    }

    #[test]
    fn missing_static_key_file_names_the_config_key() {
        let mut config = provider(None);
        config.static_keys.push(StaticKeyConfig {
            kid: "k".into(),
            algorithm: JwtAlgorithm::EdDSA,
            pem_file: "does-not-exist.pem".into(),
        });
        let err = JwtVerifier::new(
            &config,
            Path::new("/nonexistent"),
            PolicyMetrics::for_tests(),
        )
        .err()
        .expect("missing file");
        assert_eq!(err.path, "jwt.static_keys[0].pem_file");
    }
}
