//! Who is calling, as the edge asserted it (docs/contracts.md, "Identity from the edge").
//!
//! The services never see a JWT: the edge verifies it and forwards `x-user-id`,
//! `x-user-email`, `x-user-jti` plus an HMAC over them and over the request itself
//! (`x-user-assertion`: this service's name, the method, the path and query). Those values
//! are trusted only when the assertion verifies against the request this service actually
//! received and is seconds old; anything else is 401 / UNAUTHENTICATED, whatever the plain
//! headers claim.

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use identity_assertion::{
    Identity, KeyError, KeyRing, Verifier, WindowError, HEADER_ASSERTION, HEADER_USER_EMAIL,
    HEADER_USER_ID, HEADER_USER_JTI,
};
use uuid::Uuid;

use crate::config::IdentityArgs;
use crate::error::ApiError;

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    /// Empty when the token had no email claim.
    pub email: String,
    pub jti: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityConfigError {
    #[error("--identity-key-dir / IDENTITY_KEY_DIR: {0}")]
    Keys(#[from] KeyError),
    #[error(
        "--identity-max-age / --identity-max-skew (IDENTITY_MAX_AGE / IDENTITY_MAX_SKEW): {0}"
    )]
    Window(#[from] WindowError),
    #[error("--identity-audience / IDENTITY_AUDIENCE: must not be empty")]
    EmptyAudience,
}

/// The method and path of an incoming gRPC call. tonic hands a method implementation the
/// metadata but not the URI, so [`record_request_target`] (a layer on the gRPC server)
/// copies them into the request's extensions for [`IdentityGate::from_grpc`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    pub method: http::Method,
    pub path_and_query: String,
}

impl RequestTarget {
    pub fn of(method: &http::Method, uri: &http::Uri) -> Self {
        Self {
            method: method.clone(),
            path_and_query: path_and_query(uri).to_string(),
        }
    }
}

fn path_and_query(uri: &http::Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

/// For `tonic::transport::Server::layer(tower::util::MapRequestLayer::new(..))`.
pub fn record_request_target<B>(mut request: http::Request<B>) -> http::Request<B> {
    let target = RequestTarget::of(request.method(), request.uri());
    request.extensions_mut().insert(target);
    request
}

/// Verifies identity assertions with the keys shared with the edge.
#[derive(Debug, Clone)]
pub struct IdentityGate {
    verifier: Verifier,
}

impl IdentityGate {
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }

    /// From the service's flags; `service_name` is the audience unless
    /// `--identity-audience` says otherwise.
    pub fn from_args(args: &IdentityArgs, service_name: &str) -> Result<Self, IdentityConfigError> {
        let audience = args.identity_audience.as_deref().unwrap_or(service_name);
        if audience.is_empty() {
            return Err(IdentityConfigError::EmptyAudience);
        }
        let keys = KeyRing::from_dir(&args.identity_key_dir)?;
        let verifier = Verifier::new(keys, audience)
            .with_window(args.identity_max_age, args.identity_max_skew)?;
        tracing::info!(
            audience,
            keys = ?verifier.keys().ids(),
            max_age = ?args.identity_max_age,
            max_skew = ?args.identity_max_skew,
            "identity assertions accepted"
        );
        Ok(Self::new(verifier))
    }

    /// `lookup(name)` returns the raw value of a header / metadata entry; `method` and
    /// `path_and_query` are those of the request as this service received it.
    pub fn check<'a>(
        &self,
        lookup: impl Fn(&str) -> Option<&'a [u8]>,
        method: &str,
        path_and_query: &str,
    ) -> Result<Caller, ApiError> {
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
        if let Err(err) = self
            .verifier
            .verify(&assertion, &identity, method, path_and_query)
        {
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

    /// An HTTP request: headers, method, and the URI as it arrived (before any nesting
    /// inside the router rewrote it).
    pub fn from_http(&self, parts: &Parts) -> Result<Caller, ApiError> {
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or(&parts.uri, |original| &original.0);
        self.check(
            |name| parts.headers.get(name).map(http::HeaderValue::as_bytes),
            parts.method.as_str(),
            path_and_query(uri),
        )
    }

    /// A gRPC call: metadata, and the method and path [`record_request_target`] recorded.
    pub fn from_grpc<T>(&self, request: &tonic::Request<T>) -> Result<Caller, ApiError> {
        let Some(target) = request.extensions().get::<RequestTarget>() else {
            // Fail closed: without the layer there is nothing to bind the assertion to.
            return Err(rejected(
                "no request target recorded (record_request_target layer missing)",
            ));
        };
        let metadata = request.metadata();
        self.check(
            |name| metadata.get(name).map(|value| value.as_encoded_bytes()),
            target.method.as_str(),
            &target.path_and_query,
        )
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
        state.identity_gate().from_http(parts)
    }
}

#[cfg(test)]
mod tests;
