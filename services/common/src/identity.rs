//! Who is calling, as the edge asserted it (docs/contracts.md, "Identity from the edge").
//!
//! The services never see a JWT: the edge verifies it and forwards `x-user-id`,
//! `x-user-email`, `x-user-jti` plus an HMAC over them (`x-user-assertion`). Those values are
//! trusted only when the assertion verifies and is fresh; anything else is 401 /
//! UNAUTHENTICATED, whatever the plain headers claim.

use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use identity_assertion::{
    Identity, IdentityKey, KeyError, Verifier, HEADER_ASSERTION, HEADER_USER_EMAIL, HEADER_USER_ID,
    HEADER_USER_JTI,
};
use uuid::Uuid;

use crate::error::ApiError;

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    /// Empty when the token had no email claim.
    pub email: String,
    pub jti: String,
}

/// Verifies identity assertions with the key shared with the edge.
#[derive(Debug, Clone)]
pub struct IdentityGate {
    verifier: Verifier,
}

impl IdentityGate {
    pub fn new(key: IdentityKey) -> Self {
        Self {
            verifier: Verifier::new(key),
        }
    }

    pub fn from_key_file(path: &Path) -> Result<Self, KeyError> {
        IdentityKey::from_file(path).map(Self::new)
    }

    /// `lookup(name)` returns the raw value of a header / metadata entry.
    pub fn check<'a>(&self, lookup: impl Fn(&str) -> Option<&'a [u8]>) -> Result<Caller, ApiError> {
        let text = |name: &str| -> Result<String, ApiError> {
            match lookup(name) {
                None => Ok(String::new()),
                Some(bytes) => std::str::from_utf8(bytes)
                    .map(str::to_string)
                    .map_err(|_| rejected("identity header is not UTF-8")),
            }
        };
        let assertion = text(HEADER_ASSERTION)?;
        let identity = Identity {
            user_id: text(HEADER_USER_ID)?,
            email: text(HEADER_USER_EMAIL)?,
            jti: text(HEADER_USER_JTI)?,
        };
        if let Err(err) = self.verifier.verify(&assertion, &identity) {
            return Err(rejected(&err.to_string()));
        }
        let user_id = Uuid::parse_str(&identity.user_id)
            .map_err(|_| rejected("asserted user id is not a UUID"))?;
        Ok(Caller {
            user_id,
            email: identity.email,
            jti: identity.jti,
        })
    }

    pub fn from_headers(&self, headers: &http::HeaderMap) -> Result<Caller, ApiError> {
        self.check(|name| headers.get(name).map(http::HeaderValue::as_bytes))
    }

    pub fn from_metadata(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Caller, ApiError> {
        self.check(|name| metadata.get(name).map(|value| value.as_encoded_bytes()))
    }
}

fn rejected(reason: &str) -> ApiError {
    // The reason goes to the log, not to the client: telling a forger which check failed
    // helps nobody legitimate.
    tracing::info!(reason, "identity assertion rejected");
    ApiError::unauthenticated("missing or invalid identity assertion")
}

/// Implemented by a service's axum state so handlers can take a [`Caller`] argument.
pub trait HasIdentityGate {
    fn identity_gate(&self) -> &IdentityGate;
}

impl<S> FromRequestParts<S> for Caller
where
    S: HasIdentityGate + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        state.identity_gate().from_headers(&parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity_assertion::{sign, sign_at};

    fn key() -> IdentityKey {
        IdentityKey::from_bytes(vec![42; 32]).expect("key")
    }

    fn headers(identity: &Identity, assertion: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER_USER_ID, identity.user_id.parse().expect("id"));
        headers.insert(HEADER_USER_EMAIL, identity.email.parse().expect("email"));
        headers.insert(HEADER_USER_JTI, identity.jti.parse().expect("jti"));
        headers.insert(HEADER_ASSERTION, assertion.parse().expect("assertion"));
        headers
    }

    fn alice() -> Identity {
        Identity {
            user_id: Uuid::new_v4().to_string(),
            email: "alice@example.com".into(),
            jti: Uuid::new_v4().to_string(),
        }
    }

    #[test]
    fn valid_assertion_yields_the_caller() {
        let gate = IdentityGate::new(key());
        let id = alice();
        let caller = gate
            .from_headers(&headers(&id, &sign(&key(), &id)))
            .expect("valid");
        assert_eq!(caller.user_id.to_string(), id.user_id);
        assert_eq!(caller.email, id.email);
    }

    #[test]
    fn forged_stale_and_missing_assertions_are_401() {
        let gate = IdentityGate::new(key());
        let id = alice();
        let mut forged = headers(&id, &sign(&key(), &id));
        forged.insert(
            HEADER_USER_ID,
            Uuid::new_v4().to_string().parse().expect("id"),
        );
        let stale = headers(&id, &sign_at(&key(), &id, 1_000));
        let other_key = IdentityKey::from_bytes(vec![1; 32]).expect("key");
        let wrong_key = headers(&id, &sign(&other_key, &id));
        let mut missing = headers(&id, "x");
        missing.remove(HEADER_ASSERTION);
        for (name, h) in [
            ("forged", forged),
            ("stale", stale),
            ("wrong key", wrong_key),
            ("missing", missing),
        ] {
            let err = gate.from_headers(&h).expect_err(name);
            assert_eq!(err.http_status(), http::StatusCode::UNAUTHORIZED, "{name}");
        }
    }

    #[test]
    fn non_uuid_user_id_is_401_even_when_signed() {
        let gate = IdentityGate::new(key());
        let mut id = alice();
        id.user_id = "not-a-uuid".into();
        let err = gate
            .from_headers(&headers(&id, &sign(&key(), &id)))
            .expect_err("non-uuid");
        assert_eq!(err.grpc_code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn metadata_is_checked_like_headers() {
        let gate = IdentityGate::new(key());
        let id = alice();
        let md = tonic::metadata::MetadataMap::from_headers(headers(&id, &sign(&key(), &id)));
        assert_eq!(gate.from_metadata(&md).expect("valid").jti, id.jti);
    }
}
