//! The one failure classifier: how a proxying failure is reported to the client.

use gateway_plugins::ErrorKind;
use pingora_error::{Error, ErrorSource, ErrorType};

use super::RequestCtx;

/// How a proxying failure is reported to the client.
pub(super) fn classify_failure(
    error: &Error,
    ctx: &RequestCtx,
) -> Option<(ErrorKind, &'static str, String)> {
    let cluster = ctx
        .forward
        .as_ref()
        .map(|f| f.route.cluster.name.to_string())
        .unwrap_or_default();
    match error.etype() {
        ErrorType::HTTPStatus(503) if ctx.failure == Some("cluster_busy") => Some((
            ErrorKind::Unavailable,
            "cluster_busy",
            format!("cluster '{cluster}' is at its concurrency limit; retry shortly"),
        )),
        ErrorType::HTTPStatus(503) => Some((
            ErrorKind::Unavailable,
            "no_healthy_upstream",
            format!("no healthy backend in cluster '{cluster}'"),
        )),
        ErrorType::HTTPStatus(413) => Some((
            ErrorKind::PayloadTooLarge,
            "payload_too_large",
            "request body exceeds the route's limit".into(),
        )),
        ErrorType::HTTPStatus(code) if (400..500).contains(code) => Some((
            ErrorKind::BadRequest,
            "bad_request",
            format!("request rejected ({code})"),
        )),
        ErrorType::ConnectTimedout
        | ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError
        | ErrorType::SocketError => Some((
            ErrorKind::BadGateway,
            "upstream_unreachable",
            format!("cannot connect to cluster '{cluster}'"),
        )),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if error.esource() == &ErrorSource::Upstream =>
        {
            Some((
                ErrorKind::GatewayTimeout,
                "upstream_timeout",
                format!("cluster '{cluster}' did not answer in time"),
            ))
        }
        _ => match error.esource() {
            ErrorSource::Upstream => Some((
                ErrorKind::BadGateway,
                "upstream_error",
                format!("cluster '{cluster}' failed: {}", error.etype().as_str()),
            )),
            ErrorSource::Downstream => match error.etype() {
                // The request body stalled: the client is still there to be told (RFC 9110
                // section 15.5.9), unless the response has begun (fail_to_proxy checks).
                ErrorType::ReadTimedout => Some((
                    ErrorKind::RequestTimeout,
                    "request_timeout",
                    "the request body stopped arriving".into(),
                )),
                // The client went away: nobody to answer.
                ErrorType::ReadError
                | ErrorType::WriteError
                | ErrorType::ConnectionClosed
                | ErrorType::WriteTimedout => None,
                _ => Some((
                    ErrorKind::BadRequest,
                    "bad_request",
                    "malformed request".into(),
                )),
            },
            ErrorSource::Internal | ErrorSource::Unset => Some((
                ErrorKind::Internal,
                "internal",
                "the edge failed to handle the request".into(),
            )),
        },
    }
}
