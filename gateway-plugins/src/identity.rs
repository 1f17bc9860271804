//! The verified caller, and the headers that carry it to the services.
//!
//! Inbound `x-user-*` headers are never trusted: the edge removes every header with
//! that prefix from every request, on every route, before anything else runs
//! ([`is_identity_header`]). After a token verifies, the chain sets `x-user-id`,
//! `x-user-email`, `x-user-jti` and `x-user-assertion` (see the `identity-assertion`
//! crate for the HMAC format).

use http::HeaderName;

/// Claims of an accepted token that policy and services care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's id (`sub`).
    pub sub: String,
    pub email: Option<String>,
    pub jti: String,
    /// `exp`, unix seconds.
    pub expires_at: u64,
}

/// The prefix of headers that carry identity; inbound ones are always removed.
pub const IDENTITY_HEADER_PREFIX: &str = "x-user-";

/// True for a header the edge must strip from inbound requests.
pub fn is_identity_header(name: &HeaderName) -> bool {
    name.as_str().starts_with(IDENTITY_HEADER_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_are_recognised_case_insensitively() {
        // http::HeaderName is always lower-case, whatever the client sent.
        let spoofed = HeaderName::from_bytes(b"X-User-Id").expect("valid");
        assert!(is_identity_header(&spoofed));
        assert!(is_identity_header(&HeaderName::from_static(
            "x-user-assertion"
        )));
        assert!(!is_identity_header(&HeaderName::from_static(
            "x-request-id"
        )));
        assert!(!is_identity_header(&HeaderName::from_static("x-username")));
    }
}
