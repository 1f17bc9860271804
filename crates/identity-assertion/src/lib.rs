//! The identity assertion: how the edge tells a service who the caller is.
//!
//! After the edge has verified a JWT it forwards the caller as plain headers
//! (`x-user-id`, `x-user-email`, `x-user-jti`) plus `x-user-assertion`, an HMAC-SHA256
//! keyed with a secret shared only by the edge and the services. A service trusts the
//! plain headers only when the assertion verifies and is fresh, so a request that bypasses
//! the edge (or a client that forges `x-user-id`) gets nothing.
//!
//! The MAC binds the caller to **one request**: the target service (its audience name),
//! the method, and the path and query exactly as the service receives them (after any
//! rewrite at the edge), for a few seconds. A captured assertion is therefore no bearer
//! token: replayed on another path, with another method or at another service it fails,
//! and it dies within seconds (`DEFAULT_MAX_AGE` + `DEFAULT_MAX_SKEW`).
//!
//! Wire format (version 2; version 1, which bound neither the request nor a key id, is
//! refused like any malformed value):
//!
//! ```text
//! v2.<key-id>.<unix-seconds>.<base64url(mac)>
//! mac = HMAC-SHA256(key[key-id], "v2" || field...)   for the fields
//!       key-id, unix-seconds, audience, METHOD, path-and-query, user-id, email, jti
//! ```
//!
//! each field written as its length (8 bytes, big-endian) and its bytes, so no choice of
//! values can make two different field lists sign alike. gRPC carries the same four values
//! as metadata with the same names; its path is `/<package>.<Service>/<Method>`.

mod keys;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use subtle::ConstantTimeEq;

pub use keys::{key_file, IdentityKey, KeyError, KeyId, KeyRing, SigningKey, KEY_FILE_SUFFIX};

pub const HEADER_USER_ID: &str = "x-user-id";
pub const HEADER_USER_EMAIL: &str = "x-user-email";
pub const HEADER_USER_JTI: &str = "x-user-jti";
pub const HEADER_ASSERTION: &str = "x-user-assertion";

/// How old an assertion may be when it reaches a service. The edge signs each request as
/// it forwards it, so this only has to cover the hop (and a retry on another backend).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(5);
/// How far in the future an assertion may be stamped (clock skew between nodes).
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(2);
/// The largest `max_age` a verifier accepts: a longer window turns the assertion back
/// into a replayable credential.
pub const MAX_MAX_AGE: Duration = Duration::from_secs(30);
/// The largest `max_skew` a verifier accepts.
pub const MAX_MAX_SKEW: Duration = Duration::from_secs(10);

const VERSION: &str = "v2";
/// Longer values are refused before any parsing (a v2 assertion is ~110 bytes).
const MAX_ASSERTION_LEN: usize = 256;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("identity assertion is missing")]
    Missing,
    #[error("identity assertion is malformed (or not version 2)")]
    Malformed,
    #[error("identity assertion is signed with key `{0}`, which this service does not hold")]
    UnknownKey(String),
    #[error(
        "identity assertion signature does not match (forged, or signed for another method, path or service)"
    )]
    BadSignature,
    #[error("identity assertion has expired")]
    Expired,
    #[error("identity assertion is dated in the future")]
    NotYetValid,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("max age {0:?} exceeds the cap of {MAX_MAX_AGE:?}")]
    MaxAge(Duration),
    #[error("max skew {0:?} exceeds the cap of {MAX_MAX_SKEW:?}")]
    MaxSkew(Duration),
}

/// Who the caller is, as the edge established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub email: String,
    pub jti: String,
}

/// The one request an assertion is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The name of the service the request is for (`auth`, `records`): the edge's
    /// `identity_audience` of the cluster, the service's own `--identity-audience`.
    pub audience: &'a str,
    /// The request method, upper case as on the wire (`GET`, `POST`).
    pub method: &'a str,
    /// Path and query exactly as the service receives them (`/records?limit=5`).
    pub path_and_query: &'a str,
}

fn signing_input(
    mac: &mut keys::HmacSha256,
    key_id: &str,
    unix_seconds: u64,
    target: &Target<'_>,
    identity: &Identity,
) {
    mac.update(VERSION.as_bytes());
    let stamp = unix_seconds.to_string();
    for field in [
        key_id,
        stamp.as_str(),
        target.audience,
        target.method,
        target.path_and_query,
        &identity.user_id,
        &identity.email,
        &identity.jti,
    ] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs `identity` for `target` at the current time.
pub fn sign(key: &SigningKey, identity: &Identity, target: &Target<'_>) -> String {
    sign_at(key, identity, target, now_unix())
}

pub fn sign_at(
    key: &SigningKey,
    identity: &Identity,
    target: &Target<'_>,
    unix_seconds: u64,
) -> String {
    let mut mac = key.key.mac();
    signing_input(&mut mac, key.id.as_str(), unix_seconds, target, identity);
    let tag = mac.finalize().into_bytes();
    format!(
        "{VERSION}.{}.{unix_seconds}.{}",
        key.id,
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// Checks an assertion against the identity values that came with it and the request
/// that carried it.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: KeyRing,
    audience: String,
    max_age: Duration,
    max_skew: Duration,
}

impl Verifier {
    /// A verifier for the service named `audience`, accepting every key of `keys`, with
    /// the default window.
    pub fn new(keys: KeyRing, audience: impl Into<String>) -> Self {
        Self {
            keys,
            audience: audience.into(),
            max_age: DEFAULT_MAX_AGE,
            max_skew: DEFAULT_MAX_SKEW,
        }
    }

    /// Another window, within the caps ([`MAX_MAX_AGE`], [`MAX_MAX_SKEW`]).
    pub fn with_window(
        mut self,
        max_age: Duration,
        max_skew: Duration,
    ) -> Result<Self, WindowError> {
        if max_age > MAX_MAX_AGE {
            return Err(WindowError::MaxAge(max_age));
        }
        if max_skew > MAX_MAX_SKEW {
            return Err(WindowError::MaxSkew(max_skew));
        }
        self.max_age = max_age;
        self.max_skew = max_skew;
        Ok(self)
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// `method` and `path_and_query` are those of the request this service received.
    pub fn verify(
        &self,
        assertion: &str,
        identity: &Identity,
        method: &str,
        path_and_query: &str,
    ) -> Result<(), VerifyError> {
        self.verify_at(assertion, identity, method, path_and_query, now_unix())
    }

    pub fn verify_at(
        &self,
        assertion: &str,
        identity: &Identity,
        method: &str,
        path_and_query: &str,
        now_unix_seconds: u64,
    ) -> Result<(), VerifyError> {
        if assertion.is_empty() {
            return Err(VerifyError::Missing);
        }
        if assertion.len() > MAX_ASSERTION_LEN {
            return Err(VerifyError::Malformed);
        }
        let mut parts = assertion.split('.');
        let (Some(version), Some(key_id), Some(stamp), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(VerifyError::Malformed);
        };
        if version != VERSION {
            return Err(VerifyError::Malformed);
        }
        // Digits only: `u64::from_str` would also take a leading `+`, and then two
        // spellings of one stamp would exist.
        if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VerifyError::Malformed);
        }
        let stamp: u64 = stamp.parse().map_err(|_| VerifyError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| VerifyError::Malformed)?;
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| VerifyError::UnknownKey(key_id.chars().take(64).collect()))?;

        let target = Target {
            audience: &self.audience,
            method,
            path_and_query,
        };
        let mut mac = key.mac();
        signing_input(&mut mac, key_id, stamp, &target, identity);
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
mod tests;
