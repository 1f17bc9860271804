//! The values a policy step returns instead of writing to a socket.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::identity::Identity;

/// A complete response produced by policy (401, 429, a CORS preflight, ...). The edge
/// writes it as is. gRPC-shaped responses are HTTP 200 with `grpc-status` /
/// `grpc-message` in the headers and an empty body (a trailers-only response,
/// gRPC over HTTP/2 spec: "Trailers-Only").
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Header changes to make on the request before it goes upstream. `remove` runs first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderEdits {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty()
    }

    /// Applies the edits to a plain `http::HeaderMap` (the HTTP/3 path; the Pingora path
    /// applies them through `RequestHeader` so header-case bookkeeping stays right).
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// What the chain decided for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Forward upstream.
    Continue,
    /// Answer now with this response; do not contact the upstream.
    Respond(PolicyResponse),
}

/// The chain's verdict plus everything the edge needs to act on it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainOutcome {
    pub decision: Decision,
    /// Applied to the upstream request when `decision` is `Continue`.
    pub upstream_edits: HeaderEdits,
    /// Added to the downstream response, whatever it is (rate-limit headers, CORS).
    pub response_headers: HeaderMap,
    /// The verified caller, when a JWT was presented and accepted.
    pub identity: Option<Identity>,
}

impl ChainOutcome {
    pub fn proceed() -> Self {
        Self {
            decision: Decision::Continue,
            upstream_edits: HeaderEdits::default(),
            response_headers: HeaderMap::new(),
            identity: None,
        }
    }
}
