//! The identity assertion: how the edge tells a service who the caller is.
//!
//! After the edge has verified a JWT it forwards the caller as plain headers
//! (`x-user-id`, `x-user-email`, `x-user-jti`) plus `x-user-assertion`, an
//! HMAC-SHA256 over those values and a timestamp, keyed with a secret shared
//! only by the edge and the services. A service trusts the plain headers only
//! when the assertion verifies and is fresh, so a request that bypasses the
//! edge (or a client that forges `x-user-id`) gets nothing.
//!
//! Wire format of the assertion: `v1.<unix-seconds>.<base64url(mac)>` where
//! `mac = HMAC-SHA256(key, "v1\n<unix-seconds>\n<user-id>\n<email>\n<jti>")`.
//! gRPC carries the same four values as metadata with the same names.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const HEADER_USER_ID: &str = "x-user-id";
pub const HEADER_USER_EMAIL: &str = "x-user-email";
pub const HEADER_USER_JTI: &str = "x-user-jti";
pub const HEADER_ASSERTION: &str = "x-user-assertion";

/// How old an assertion may be when it reaches a service.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);
/// How far in the future an assertion may be stamped (clock skew between nodes).
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(5);

const VERSION: &str = "v1";
const MIN_KEY_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read identity key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("identity key is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("identity key is {0} bytes; at least {MIN_KEY_BYTES} are required")]
    TooShort(usize),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("identity assertion is missing")]
    Missing,
    #[error("identity assertion is malformed")]
    Malformed,
    #[error("identity assertion signature does not match")]
    BadSignature,
    #[error("identity assertion has expired")]
    Expired,
    #[error("identity assertion is dated in the future")]
    NotYetValid,
}

/// The shared HMAC key. Its `Debug` never prints the secret.
#[derive(Clone)]
pub struct IdentityKey(Vec<u8>);

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey(<{} bytes redacted>)", self.0.len())
    }
}

impl IdentityKey {
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// A key written as base64 text (standard alphabet, surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        Self::from_bytes(STANDARD.decode(text.trim())?)
    }

    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_base64(&text)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; construction cannot fail.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
        }
    }
}

/// Who the caller is, as the edge established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub email: String,
    pub jti: String,
}

fn signing_input(mac: &mut HmacSha256, unix_seconds: u64, identity: &Identity) {
    mac.update(VERSION.as_bytes());
    mac.update(b"\n");
    mac.update(unix_seconds.to_string().as_bytes());
    for value in [&identity.user_id, &identity.email, &identity.jti] {
        mac.update(b"\n");
        mac.update(value.as_bytes());
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs `identity` at the current time.
pub fn sign(key: &IdentityKey, identity: &Identity) -> String {
    sign_at(key, identity, now_unix())
}

pub fn sign_at(key: &IdentityKey, identity: &Identity, unix_seconds: u64) -> String {
    let mut mac = key.mac();
    signing_input(&mut mac, unix_seconds, identity);
    let tag = mac.finalize().into_bytes();
    format!("{VERSION}.{unix_seconds}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Checks an assertion against the identity values that came with it.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: IdentityKey,
    max_age: Duration,
    max_skew: Duration,
}

impl Verifier {
    pub fn new(key: IdentityKey) -> Self {
        Self {
            key,
            max_age: DEFAULT_MAX_AGE,
            max_skew: DEFAULT_MAX_SKEW,
        }
    }

    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    pub fn verify(&self, assertion: &str, identity: &Identity) -> Result<(), VerifyError> {
        self.verify_at(assertion, identity, now_unix())
    }

    pub fn verify_at(
        &self,
        assertion: &str,
        identity: &Identity,
        now_unix_seconds: u64,
    ) -> Result<(), VerifyError> {
        if assertion.is_empty() {
            return Err(VerifyError::Missing);
        }
        let mut parts = assertion.splitn(3, '.');
        let (Some(version), Some(stamp), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed);
        };
        if version != VERSION {
            return Err(VerifyError::Malformed);
        }
        let stamp: u64 = stamp.parse().map_err(|_| VerifyError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| VerifyError::Malformed)?;

        let mut mac = self.key.mac();
        signing_input(&mut mac, stamp, identity);
        let expected = mac.finalize().into_bytes();
        if expected.as_slice().ct_eq(&tag).unwrap_u8() != 1 {
            return Err(VerifyError::BadSignature);
        }
        if stamp > now_unix_seconds.saturating_add(self.max_skew.as_secs()) {
            return Err(VerifyError::NotYetValid);
        }
        if now_unix_seconds.saturating_sub(stamp) > self.max_age.as_secs() {
            return Err(VerifyError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> IdentityKey {
        IdentityKey::from_bytes(vec![7u8; 32]).expect("32-byte key")
    }

    fn alice() -> Identity {
        Identity {
            user_id: "5f0c8a3e-0000-4000-8000-000000000001".into(),
            email: "alice@example.com".into(),
            jti: "jti-1".into(),
        }
    }

    #[test]
    fn fresh_assertion_verifies() {
        let signed = sign_at(&key(), &alice(), 1_000);
        assert_eq!(
            Verifier::new(key()).verify_at(&signed, &alice(), 1_010),
            Ok(())
        );
    }

    #[test]
    fn changed_user_id_fails_signature() {
        let signed = sign_at(&key(), &alice(), 1_000);
        let mut mallory = alice();
        mallory.user_id = "someone-else".into();
        assert_eq!(
            Verifier::new(key()).verify_at(&signed, &mallory, 1_000),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        // "a\nb" + "c" must not collide with "a" + "b\nc": values are newline-separated,
        // and an email cannot legally contain a newline, but the MAC must still differ.
        let one = Identity {
            user_id: "a".into(),
            email: "b@x".into(),
            jti: "c".into(),
        };
        let two = Identity {
            user_id: "a\nb@x".into(),
            email: "".into(),
            jti: "c".into(),
        };
        let signed = sign_at(&key(), &one, 1_000);
        assert_eq!(
            Verifier::new(key()).verify_at(&signed, &two, 1_000),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn other_key_fails_signature() {
        let signed = sign_at(&key(), &alice(), 1_000);
        let other = IdentityKey::from_bytes(vec![8u8; 32]).expect("key");
        assert_eq!(
            Verifier::new(other).verify_at(&signed, &alice(), 1_000),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn stale_assertion_is_expired() {
        let signed = sign_at(&key(), &alice(), 1_000);
        assert_eq!(
            Verifier::new(key()).verify_at(&signed, &alice(), 1_061),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn future_assertion_beyond_skew_is_rejected() {
        let signed = sign_at(&key(), &alice(), 1_010);
        assert_eq!(
            Verifier::new(key()).verify_at(&signed, &alice(), 1_000),
            Err(VerifyError::NotYetValid)
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let verifier = Verifier::new(key());
        for bad in [
            "v1",
            "v1.x.y",
            "v2.1000.AAAA",
            "v1.1000.%%%",
            "..",
            "v1..abc",
        ] {
            assert_eq!(
                verifier.verify_at(bad, &alice(), 1_000),
                Err(VerifyError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verifier.verify_at("", &alice(), 1_000),
            Err(VerifyError::Missing)
        );
    }

    #[test]
    fn short_keys_are_refused_and_debug_hides_the_secret() {
        assert!(matches!(
            IdentityKey::from_bytes(vec![1; 16]),
            Err(KeyError::TooShort(16))
        ));
        let text = STANDARD.encode([0x5au8; 32]);
        let parsed = IdentityKey::from_base64(&format!("  {text}\n")).expect("key");
        let debug = format!("{parsed:?}");
        assert!(!debug.contains(&text) && !debug.contains("90"), "{debug}");
        assert!(debug.contains("redacted"));
    }
}
