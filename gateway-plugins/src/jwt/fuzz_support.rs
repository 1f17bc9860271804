//! The bearer, JWT and JWKS parsers as fuzz-target and property-test bodies
//! (`crate::fuzz_support` is the public face; docs/fuzzing.md says how to run them).
//!
//! It lives inside `jwt` because it builds verifiers straight from decoding keys and reads
//! the entries `parse_jwks` keeps, both private to this module. Each `check_*` function
//! runs one parser on client-controlled input and panics only when a promise of that
//! parser is broken: for a fuzzer, a panic is the finding.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::DecodingKey;

use super::keys::{parse_jwks, KeyEntry, KeySet};
use super::{bearer_token, JwtRejection, JwtVerifier, VerifiedToken, MAX_TOKEN_LEN};
use crate::config::{JwtAlgorithm, JwtProviderConfig};
use crate::metrics::PolicyMetrics;

/// The `iss` and `aud` a fuzz verifier requires.
pub const ISSUER: &str = "record-platform";
pub const AUDIENCE: &str = "record-platform";

/// Every algorithm a route can allow.
pub const ALL_ALGORITHMS: &[JwtAlgorithm] = &[
    JwtAlgorithm::EdDSA,
    JwtAlgorithm::ES256,
    JwtAlgorithm::RS256,
];

/// The RFC 8037 appendix A.2 Ed25519 public key: a published test vector, so the byte
/// fuzzers' verifier holds a real key without this file holding anything secret.
const RFC8037_ED25519_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

/// A verifier for [`ISSUER`]/[`AUDIENCE`] holding exactly `keys` (no JWKS, so an unknown
/// `kid` never fetches anything and `verify` never waits on I/O).
pub fn verifier(keys: Vec<(String, JwtAlgorithm, DecodingKey)>) -> JwtVerifier {
    // Every other setting at its documented default.
    let config: JwtProviderConfig =
        serde_json::from_value(serde_json::json!({ "issuer": ISSUER, "audience": AUDIENCE }))
            .expect("issuer and audience are all a provider needs");
    let metrics = PolicyMetrics::register(&prometheus::Registry::new())
        .expect("a fresh registry accepts every metric");
    let verifier = JwtVerifier::new(&config, Path::new("."), metrics)
        .expect("a provider without static keys or JWKS URL always builds");
    let keys: HashMap<String, Arc<KeyEntry>> = keys
        .into_iter()
        .map(|(kid, algorithm, key)| (kid, Arc::new(KeyEntry { algorithm, key })))
        .collect();
    verifier.keys.store(Arc::new(KeySet {
        keys,
        from_jwks: Vec::new(),
    }));
    verifier
}

/// The byte fuzzers' verifier: one Ed25519 key, kid `fuzz-ed`.
fn byte_fuzz_verifier() -> &'static JwtVerifier {
    static VERIFIER: OnceLock<JwtVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let key = DecodingKey::from_ed_components(RFC8037_ED25519_X)
            .expect("the RFC 8037 test key is valid base64url");
        verifier(vec![("fuzz-ed".into(), JwtAlgorithm::EdDSA, key)])
    })
}

/// Fuzz body: `data` as an `Authorization` value and, separately, as a bare token.
pub fn fuzz_jwt(data: &[u8]) {
    let verifier = byte_fuzz_verifier();
    check_authorization(verifier, data);
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = check_token(verifier, token);
    }
}

/// Fuzz body: `data` as a JWKS document.
pub fn fuzz_jwks(data: &[u8]) {
    let _ = check_jwks(data);
}

/// `value` as the request's `Authorization` header: the bearer parser's promises, then
/// the token's verification if it yields one.
pub fn check_authorization(verifier: &JwtVerifier, value: &[u8]) {
    // Only bytes that can be a header value reach the edge (the h1/h2/h3 codecs refuse the rest).
    let Ok(header) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, header);
    let is_bearer =
        value.len() >= 7 && value[..6].eq_ignore_ascii_case(b"bearer") && value[6] == b' ';
    match bearer_token(&headers) {
        Ok(None) => assert!(!is_bearer, "a bearer credential was ignored: {value:?}"),
        Ok(Some(token)) => {
            assert!(is_bearer, "a token came out of another scheme: {value:?}");
            assert!(!token.is_empty() && token.len() <= MAX_TOKEN_LEN);
            assert!(!token.starts_with(' ') && !token.ends_with(' '));
            // The token is the credential minus the scheme and the spaces around it.
            let rest = &value[7..];
            let start = rest.iter().take_while(|b| **b == b' ').count();
            assert_eq!(&rest[start..start + token.len()], token.as_bytes());
            assert!(rest[start + token.len()..].iter().all(|b| *b == b' '));
            let _ = check_token(verifier, token);
        }
        Err(rejection) => {
            assert!(is_bearer, "another scheme was refused: {value:?}");
            assert_eq!(rejection, JwtRejection::Malformed);
        }
    }
}

/// Verifies `token` twice (the second answer may come from the cache) and checks that a
/// token the verifier accepts is one it could have accepted, and that both answers agree.
pub fn check_token(
    verifier: &JwtVerifier,
    token: &str,
) -> Result<Arc<VerifiedToken>, JwtRejection> {
    let first = futures::executor::block_on(verifier.verify(token, ALL_ALGORITHMS));
    if token.split('.').count() != 3 {
        assert_eq!(
            first.as_ref().err(),
            Some(&JwtRejection::Malformed),
            "not a compact JWS"
        );
    }
    if let Ok(verified) = &first {
        let identity = &verified.identity;
        assert!(!identity.sub.is_empty() && !identity.jti.is_empty());
        assert_eq!(verified.user_id_header.as_bytes(), identity.sub.as_bytes());
        assert_eq!(verified.jti_header.as_bytes(), identity.jti.as_bytes());
        assert_eq!(
            verified.email_header.as_bytes(),
            identity.email.as_deref().unwrap_or("").as_bytes()
        );
        let keys = verifier.keys.load();
        let key = keys
            .keys
            .get(&verified.kid)
            .expect("verified with a key we hold");
        assert_eq!(
            key.algorithm, verified.algorithm,
            "key bound to one algorithm"
        );
    }
    let second = futures::executor::block_on(verifier.verify(token, ALL_ALGORITHMS));
    let agree = match (&first, &second) {
        (Ok(a), Ok(b)) => a.kid == b.kid && a.identity == b.identity,
        (Err(a), Err(b)) => a == b,
        // The clock may tick between the two calls.
        (Ok(_), Err(JwtRejection::Expired)) | (Err(JwtRejection::NotYetValid), _) => true,
        _ => false,
    };
    assert!(agree, "{first:?} then {second:?} for {token:?}");
    first
}

/// Parses `body` as a JWKS document and checks that every key kept is one the document
/// holds as a public signing key of a type bound to the algorithm it was given. `Ok`
/// carries the number of keys kept.
pub fn check_jwks(body: &[u8]) -> Result<usize, super::JwksError> {
    let keys = parse_jwks(body)?;
    assert!(!keys.is_empty(), "an empty key set is an error, not Ok");
    let document: serde_json::Value =
        serde_json::from_slice(body).expect("parse_jwks accepted it as JSON");
    let entries = document["keys"]
        .as_array()
        .expect("parse_jwks found `keys`");
    for (kid, entry) in &keys {
        let kty = match entry.algorithm {
            JwtAlgorithm::EdDSA => "OKP",
            JwtAlgorithm::ES256 => "EC",
            JwtAlgorithm::RS256 => "RSA",
        };
        let source = entries.iter().any(|e| {
            e["kid"].as_str() == Some(kid.as_str())
                && e["kty"].as_str() == Some(kty)
                && (e["use"].is_null() || e["use"].as_str() == Some("sig"))
        });
        assert!(
            source,
            "kid {kid:?} kept as {:?} without a matching entry",
            entry.algorithm
        );
    }
    Ok(keys.len())
}

/// The kids `parse_jwks` keeps from `body` (none when it refuses the document).
pub fn kept_kids(body: &[u8]) -> std::collections::BTreeSet<String> {
    parse_jwks(body)
        .map(|keys| keys.into_keys().collect())
        .unwrap_or_default()
}
