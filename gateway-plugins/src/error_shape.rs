//! Protocol-shaped errors: JSON `{"error":{"code","message"}}` for HTTP clients, a
//! trailers-only `grpc-status` answer for gRPC clients. Used by the plugins and by the
//! edge for its own errors (no route, upstream down, timeouts, limits).

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};

use crate::decision::PolicyResponse;

/// gRPC status codes (grpc/doc/statuscodes.md) the edge produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// Every error the edge or its policy can answer with, with its HTTP and gRPC mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404 / UNIMPLEMENTED: no route matches.
    NoRoute,
    /// 401 / UNAUTHENTICATED.
    Unauthenticated,
    /// 403 / PERMISSION_DENIED (e.g. CORS origin not allowed).
    Forbidden,
    /// 429 / RESOURCE_EXHAUSTED.
    RateLimited,
    /// 413 / RESOURCE_EXHAUSTED.
    PayloadTooLarge,
    /// 431 / RESOURCE_EXHAUSTED.
    HeadersTooLarge,
    /// 400 / INVALID_ARGUMENT.
    BadRequest,
    /// 425 / UNAVAILABLE: sent in 0-RTT early data where that is not allowed; the client
    /// retries after the handshake (RFC 8470 section 5.2). UNAVAILABLE is the gRPC code
    /// clients retry.
    TooEarly,
    /// 502 / UNAVAILABLE: the upstream failed or answered garbage.
    BadGateway,
    /// 503 / UNAVAILABLE: no healthy upstream, or a dependency (Redis) is down in fail-closed mode.
    Unavailable,
    /// 504 / DEADLINE_EXCEEDED.
    GatewayTimeout,
    /// 408 / DEADLINE_EXCEEDED: the client stopped sending its request.
    RequestTimeout,
    /// 500 / INTERNAL.
    Internal,
}

impl ErrorKind {
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::TooEarly => StatusCode::TOO_EARLY,
            ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> GrpcCode {
        match self {
            ErrorKind::NoRoute => GrpcCode::Unimplemented,
            ErrorKind::Unauthenticated => GrpcCode::Unauthenticated,
            ErrorKind::Forbidden => GrpcCode::PermissionDenied,
            ErrorKind::RateLimited | ErrorKind::PayloadTooLarge | ErrorKind::HeadersTooLarge => {
                GrpcCode::ResourceExhausted
            }
            ErrorKind::BadRequest => GrpcCode::InvalidArgument,
            ErrorKind::BadGateway | ErrorKind::Unavailable | ErrorKind::TooEarly => {
                GrpcCode::Unavailable
            }
            ErrorKind::GatewayTimeout | ErrorKind::RequestTimeout => GrpcCode::DeadlineExceeded,
            ErrorKind::Internal => GrpcCode::Internal,
        }
    }

    /// The default machine-readable code in the JSON body.
    pub fn default_code(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "not_found",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::TooEarly => "too_early",
            ErrorKind::BadGateway => "bad_gateway",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::GatewayTimeout => "gateway_timeout",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Builds the protocol-shaped answer for an error. `code` is the JSON `error.code` (e.g.
/// `token_expired`); `message` is for humans and goes to `grpc-message` percent-encoded.
pub fn error_response(kind: ErrorKind, code: &str, message: &str, grpc: bool) -> PolicyResponse {
    let mut headers = HeaderMap::new();
    if grpc {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(
            "grpc-status",
            HeaderValue::from(kind.grpc_code() as u8 as u16),
        );
        if let Ok(value) = HeaderValue::from_str(&grpc_percent_encode(message)) {
            headers.insert("grpc-message", value);
        }
        return PolicyResponse {
            status: StatusCode::OK,
            headers,
            body: Bytes::new(),
        };
    }
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    PolicyResponse {
        status: kind.http_status(),
        headers,
        body: Bytes::from(body.to_string()),
    }
}

/// `grpc-message` is percent-encoded: everything outside printable ASCII, and `%` itself
/// (gRPC over HTTP/2 spec, "Responses").
pub fn grpc_percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_are_json_with_code_and_message() {
        let resp = error_response(
            ErrorKind::BadGateway,
            "upstream_unreachable",
            "records is down",
            false,
        );
        assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
        assert_eq!(resp.headers[header::CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
        assert_eq!(body["error"]["code"], "upstream_unreachable");
        assert_eq!(body["error"]["message"], "records is down");
    }

    #[test]
    fn grpc_errors_are_trailers_only_with_status() {
        let resp = error_response(ErrorKind::NoRoute, "not_found", "no route for /x.Y/Z", true);
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.headers["grpc-status"], "12");
        assert_eq!(resp.headers["grpc-message"], "no route for /x.Y/Z");
        assert!(resp.body.is_empty());
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_percent_encode("50% off ✓"), "50%25 off %E2%9C%93");
    }

    #[test]
    fn status_mapping_matches_the_contract() {
        assert_eq!(ErrorKind::Unavailable.grpc_code(), GrpcCode::Unavailable);
        assert_eq!(
            ErrorKind::GatewayTimeout.grpc_code(),
            GrpcCode::DeadlineExceeded
        );
        assert_eq!(ErrorKind::NoRoute.grpc_code(), GrpcCode::Unimplemented);
        assert_eq!(
            ErrorKind::RateLimited.http_status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(ErrorKind::HeadersTooLarge.http_status().as_u16(), 431);
    }
}
