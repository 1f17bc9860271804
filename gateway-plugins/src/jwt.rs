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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use dashmap::DashMap;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{JwtAlgorithm, JwtProviderConfig, StaticKeyConfig};
use crate::decision::PolicyResponse;
use crate::error_shape::{error_response, ErrorKind};
use crate::identity::Identity;
use crate::metrics::PolicyMetrics;

/// Longest `Authorization` token considered; longer is malformed (and not worth hashing).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// RFC 7518 §3.3: RSA keys of 2048 bits or more. The modulus is at least 256 bytes.
const MIN_RSA_MODULUS_BYTES: usize = 256;

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

/// The bearer token of a request: `Ok(None)` when there is none, `Err` when the
/// `Authorization` header is a bearer credential we cannot use.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, JwtRejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        // Two credentials: which one would the service think we checked?
        return Err(JwtRejection::Malformed);
    }
    let bytes = value.as_bytes();
    // RFC 6750 §2.1 / RFC 9110 §11.1: the scheme is case-insensitive, then 1*SP.
    if bytes.len() < 7 || !bytes[..6].eq_ignore_ascii_case(b"bearer") || bytes[6] != b' ' {
        // Another scheme (Basic, ...) carries no bearer token.
        return Ok(None);
    }
    let token = std::str::from_utf8(&bytes[7..])
        .map_err(|_| JwtRejection::Malformed)?
        .trim_matches(' ');
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(JwtRejection::Malformed);
    }
    Ok(Some(token))
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
    /// The last identity assertion made for this token: (unix second, key id, value).
    /// Signing costs an HMAC; the assertion only changes once per second.
    assertion: Mutex<Option<(u64, usize, HeaderValue)>>,
}

impl VerifiedToken {
    /// The `x-user-assertion` value for `now`, reusing the one made earlier in the same
    /// second with the same key.
    pub(crate) fn assertion(
        &self,
        key: &Arc<identity_assertion::IdentityKey>,
        now: u64,
    ) -> HeaderValue {
        let key_id = Arc::as_ptr(key) as usize;
        if let Some((second, cached_key, value)) = &*self.assertion.lock() {
            if *second == now && *cached_key == key_id {
                return value.clone();
            }
        }
        let assertion = identity_assertion::sign_at(
            key,
            &identity_assertion::Identity {
                user_id: self.identity.sub.clone(),
                email: self.identity.email.clone().unwrap_or_default(),
                jti: self.identity.jti.clone(),
            },
            now,
        );
        // base64url and digits only: always a valid header value.
        let value = HeaderValue::from_str(&assertion)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        *self.assertion.lock() = Some((now, key_id, value.clone()));
        value
    }
}

/// A verification key, bound to the one algorithm it may verify (RFC 8725 §3.1).
pub(crate) struct KeyEntry {
    algorithm: JwtAlgorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<KeyEntry>>,
    /// kids that came from the JWKS (as opposed to static PEM files).
    from_jwks: Vec<String>,
}

/// Problems with `[plugins.jwt]` found while loading keys.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct JwtConfigError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS URL `{0}` is not a valid http:// URI")]
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

/// SHA-256 of a token. Already uniformly distributed, so the map hashes only its first
/// eight bytes instead of running SipHash over all 32. Only verified tokens are inserted,
/// so nobody can flood a bucket with chosen hashes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct TokenHash([u8; 32]);

impl Hash for TokenHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

#[derive(Default)]
struct FirstWordHasher(u64);

impl Hasher for FirstWordHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Verified tokens by hash, bounded. When full, expired entries are swept (at most once
/// a second); if it is still full the new token is simply not remembered — correctness
/// never depends on the cache, only cost does.
struct VerifiedCache {
    map: DashMap<TokenHash, Arc<VerifiedToken>, BuildHasherDefault<FirstWordHasher>>,
    len: AtomicUsize,
    capacity: usize,
    last_sweep_ms: AtomicU64,
}

impl VerifiedCache {
    fn new(capacity: usize) -> Self {
        Self {
            map: DashMap::with_hasher(BuildHasherDefault::default()),
            len: AtomicUsize::new(0),
            capacity,
            last_sweep_ms: AtomicU64::new(0),
        }
    }

    fn get(&self, hash: &TokenHash) -> Option<Arc<VerifiedToken>> {
        self.map.get(hash).map(|entry| Arc::clone(entry.value()))
    }

    fn remove(&self, hash: &TokenHash) {
        if self.map.remove(hash).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn insert(&self, hash: TokenHash, token: Arc<VerifiedToken>, now: u64, leeway: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.len.load(Ordering::Relaxed) >= self.capacity {
            let now_ms = crate::clock::monotonic_ms();
            let last = self.last_sweep_ms.load(Ordering::Relaxed);
            if now_ms.saturating_sub(last) >= 1000
                && self
                    .last_sweep_ms
                    .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.sweep(now, leeway);
            }
            if self.len.load(Ordering::Relaxed) >= self.capacity {
                return;
            }
        }
        if self.map.insert(hash, token).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops expired tokens and recounts.
    fn sweep(&self, now: u64, leeway: u64) {
        self.map
            .retain(|_, token| token.identity.expires_at.saturating_add(leeway) >= now);
        self.len.store(self.map.len(), Ordering::Relaxed);
    }

    fn clear(&self) {
        self.map.clear();
        self.len.store(0, Ordering::Relaxed);
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

/// Where JWKS documents come from, and the single-flight state of fetching them.
struct JwksSource {
    url: http::Uri,
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    min_refetch_interval: Duration,
    /// Held while fetching: concurrent callers wait for the one fetch in flight.
    fetch_lock: tokio::sync::Mutex<()>,
    /// Fetches finished (successfully or not); a waiter that sees it move knows a fetch
    /// completed while it waited and uses that result instead of fetching again.
    completed: AtomicU64,
    /// When the last unknown-`kid` refetch started (monotonic ms, 0 = never).
    last_kid_refetch_ms: AtomicU64,
}

/// The process-wide JWT verifier: keys, the verified-token cache, and the JWKS source.
pub struct JwtVerifier {
    issuer: String,
    audience: String,
    leeway: u64,
    static_keys: HashMap<String, Arc<KeyEntry>>,
    keys: ArcSwap<KeySet>,
    cache: VerifiedCache,
    jwks: Option<JwksSource>,
    metrics: PolicyMetrics,
    /// `edge_jwt_verifications_total{result}` children, resolved once (hot path).
    cache_hits: prometheus::IntCounter,
    verified: prometheus::IntCounter,
    failed: prometheus::IntCounter,
    validations: [Validation; 3],
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
                let uri: http::Uri = url.parse().map_err(|_| JwtConfigError {
                    path: "jwt.jwks_url".into(),
                    message: format!("`{url}` is not a valid URL"),
                })?;
                if uri.scheme_str() != Some("http") || uri.host().is_none() {
                    return Err(JwtConfigError {
                        path: "jwt.jwks_url".into(),
                        message: format!("`{url}` must be an http:// URL with a host"),
                    });
                }
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(config.jwks_fetch_timeout));
                connector.set_nodelay(true);
                Some(JwksSource {
                    url: uri,
                    client: Client::builder(TokioExecutor::new()).build(connector),
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

    /// An unknown `kid` may mean the issuer rotated keys: refetch, but only one fetch at a
    /// time (everyone else waits for it) and at most once per `jwks_min_refetch_interval`
    /// so a stream of tokens with random kids cannot hammer the auth service.
    async fn refetch_for_unknown_kid(&self) {
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

fn load_static_key(config: &StaticKeyConfig, config_dir: &Path) -> Result<KeyEntry, String> {
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
            .map_err(|e| JwksError::Http(e.to_string()))?;
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

/// Parses a JWKS document, keeping only keys we may verify with. Unusable entries are
/// skipped (and logged), not fatal: one odd key must not take the others down with it.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<KeyEntry>>, JwksError> {
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
    use crate::config::JwtProviderConfig;
    use crate::test_support::{self, Claims, JwksServer, TestKey};

    fn provider(jwks_url: Option<String>) -> JwtProviderConfig {
        JwtProviderConfig {
            issuer: test_support::ISSUER.into(),
            audience: test_support::AUDIENCE.into(),
            jwks_url,
            jwks_refresh_interval: Duration::from_secs(300),
            jwks_min_refetch_interval: Duration::from_secs(60),
            jwks_fetch_timeout: Duration::from_secs(2),
            static_keys: Vec::new(),
            leeway: Duration::from_secs(5),
            verified_cache_size: 1000,
        }
    }

    const ALL: &[JwtAlgorithm] = &[
        JwtAlgorithm::EdDSA,
        JwtAlgorithm::ES256,
        JwtAlgorithm::RS256,
    ];

    async fn verifier_with(keys: &[&TestKey]) -> (JwtVerifier, JwksServer, PolicyMetrics) {
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

    #[test]
    fn bearer_token_extraction() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), Ok(None));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        assert_eq!(bearer_token(&headers), Ok(None));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("bearer abc.def.ghi"),
        );
        assert_eq!(bearer_token(&headers), Ok(Some("abc.def.ghi")));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), Err(JwtRejection::Malformed));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer d.e.f"));
        assert_eq!(bearer_token(&headers), Err(JwtRejection::Malformed));
    }

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
