//! The error every operation returns, whichever protocol asked.
//!
//! HTTP renders it as `{"error":{"code","message"[,"field"]}}` with a fitting status; gRPC as a
//! `Status` with the matching code, the same message, and the code/field repeated as metadata
//! (`x-error-code`, `x-error-field`) so gRPC clients can branch on them too.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_postgres::error::SqlState;

pub type ApiResult<T> = Result<T, ApiError>;

/// What went wrong, at the granularity a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request could not be read at all (malformed JSON, bad encoding).
    BadRequest,
    /// The request was readable but a value is not acceptable.
    Invalid,
    Unauthenticated,
    NotFound,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    /// The caller has to slow down (a throttle refused this attempt; `retry_after` says when).
    TooManyRequests,
    /// A dependency (PostgreSQL, Redis) is down, or the service is saturated; retrying later
    /// may succeed.
    Unavailable,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub code: Cow<'static, str>,
    pub message: String,
    pub field: Option<String>,
    /// Seconds after which a retry may succeed: the `Retry-After` header (HTTP) and
    /// `retry-after` metadata (gRPC). Unavailable errors without one say 1 s.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        kind: ErrorKind,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Tells the client when to retry (at least 1 s: `Retry-After: 0` invites a hot loop).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// Too many attempts (HTTP 429, gRPC RESOURCE_EXHAUSTED), retry after `seconds`.
    pub fn too_many_requests(code: &'static str, message: impl Into<String>, seconds: u64) -> Self {
        Self::new(ErrorKind::TooManyRequests, code, message).with_retry_after(seconds)
    }

    /// A field value that fails validation (HTTP 422, gRPC INVALID_ARGUMENT).
    pub fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message).with_field(field)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, "unauthenticated", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }

    pub fn database_unavailable() -> Self {
        Self::unavailable(
            "database_unavailable",
            "the database is unreachable; retry shortly",
        )
    }

    pub fn http_status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(&self) -> tonic::Code {
        match self.kind {
            ErrorKind::BadRequest | ErrorKind::Invalid => tonic::Code::InvalidArgument,
            ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::Conflict => tonic::Code::AlreadyExists,
            ErrorKind::PayloadTooLarge | ErrorKind::TooManyRequests => {
                tonic::Code::ResourceExhausted
            }
            ErrorKind::UnsupportedMediaType | ErrorKind::MethodNotAllowed => {
                tonic::Code::Unimplemented
            }
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }

    /// The `Retry-After` seconds this error carries, if any.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.retry_after
            .or((self.kind == ErrorKind::Unavailable).then_some(1))
    }

    fn log_if_server_side(&self) {
        match self.kind {
            ErrorKind::Internal => {
                tracing::error!(code = %self.code, message = %self.message, "request failed")
            }
            ErrorKind::Unavailable => {
                tracing::warn!(code = %self.code, message = %self.message, "dependency unavailable")
            }
            _ => {}
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// The JSON body, exactly as docs/contracts.md ("Errors") specifies.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(Envelope {
            error: Body {
                code: &self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        })
        .unwrap_or_else(|_| serde_json::json!({"error": {"code": "internal", "message": "error"}}))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_if_server_side();
        let mut response = (self.http_status(), axum::Json(self.to_json())).into_response();
        if let Some(seconds) = self.retry_after_seconds() {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> Self {
        err.log_if_server_side();
        let mut status = tonic::Status::new(err.grpc_code(), err.message.clone());
        let metadata = status.metadata_mut();
        if let Ok(value) = err.code.parse() {
            metadata.insert("x-error-code", value);
        }
        if let Some(Ok(value)) = err.field.as_deref().map(str::parse) {
            metadata.insert("x-error-field", value);
        }
        // gRPC has no Retry-After; the same seconds as metadata (RFC 9110 §10.2.3 syntax).
        if let Some(seconds) = err.retry_after_seconds() {
            metadata.insert("retry-after", seconds.into());
        }
        status
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(err) => err.into(),
            other => {
                tracing::debug!(error = %other, "no database connection");
                Self::database_unavailable()
            }
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    /// Connection-level failures and server-side resource problems are 503; a rejected value
    /// that slipped past validation is still the client's fault (422), never a 500.
    fn from(err: tokio_postgres::Error) -> Self {
        let Some(state) = err.code() else {
            tracing::debug!(error = %err, "database connection failed");
            return Self::database_unavailable();
        };
        if *state == SqlState::UNDEFINED_TABLE || *state == SqlState::INVALID_SCHEMA_NAME {
            // Requests that arrive before the startup migrations finished.
            tracing::warn!(sqlstate = state.code(), "schema not migrated yet");
            return Self::unavailable(
                "schema_not_ready",
                "the service is still preparing its database; retry shortly",
            );
        }
        let class = &state.code()[..2];
        if class == "08" || class == "53" || class == "57" || class == "40" {
            tracing::warn!(sqlstate = state.code(), error = %err, "database temporarily unable to serve");
            return Self::database_unavailable();
        }
        if class == "22" || class == "23" {
            // Validation should have caught it; say which constraint without leaking SQL.
            let detail = err
                .as_db_error()
                .and_then(|db| db.constraint().map(str::to_string))
                .unwrap_or_else(|| state.code().to_string());
            tracing::warn!(sqlstate = state.code(), %detail, "value rejected by the database");
            if *state == SqlState::UNIQUE_VIOLATION {
                return Self::conflict("conflict", "a conflicting value already exists");
            }
            return Self::new(
                ErrorKind::Invalid,
                "invalid_value",
                format!("a value was rejected ({detail})"),
            );
        }
        tracing::error!(sqlstate = state.code(), error = %err, "database error");
        Self::internal("internal database error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_has_code_message_and_optional_field() {
        let plain = ApiError::not_found("record_not_found", "no such record");
        assert_eq!(
            plain.to_json(),
            serde_json::json!({"error": {"code": "record_not_found", "message": "no such record"}})
        );
        let with_field = ApiError::invalid("pricePaid", "invalid_price", "must be >= 0");
        assert_eq!(with_field.to_json()["error"]["field"], "pricePaid");
        assert_eq!(with_field.http_status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn grpc_codes_match_the_contract() {
        let cases = [
            (
                ApiError::invalid("email", "invalid_email", "x"),
                tonic::Code::InvalidArgument,
            ),
            (
                ApiError::bad_request("malformed_json", "x"),
                tonic::Code::InvalidArgument,
            ),
            (ApiError::unauthenticated("x"), tonic::Code::Unauthenticated),
            (
                ApiError::not_found("record_not_found", "x"),
                tonic::Code::NotFound,
            ),
            (
                ApiError::conflict("email_taken", "x"),
                tonic::Code::AlreadyExists,
            ),
            (ApiError::database_unavailable(), tonic::Code::Unavailable),
        ];
        for (err, code) in cases {
            let status = tonic::Status::from(err.clone());
            assert_eq!(status.code(), code, "{err}");
            assert_eq!(status.message(), err.message);
            assert_eq!(
                status
                    .metadata()
                    .get("x-error-code")
                    .and_then(|v| v.to_str().ok()),
                Some(err.code.as_ref())
            );
        }
    }

    #[test]
    fn unavailable_responses_say_retry_after() {
        let response = ApiError::database_unavailable().into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
    }

    #[test]
    fn throttled_answers_are_429_and_resource_exhausted_with_their_retry_after() {
        let err = ApiError::too_many_requests("login_throttled", "slow down", 42);
        let response = err.clone().into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "42");
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.metadata().get("retry-after").expect("retry-after"),
            "42"
        );
        let zero = ApiError::too_many_requests("x", "y", 0);
        assert_eq!(zero.retry_after, Some(1), "never Retry-After: 0");
    }
}
