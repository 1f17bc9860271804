//! The one failure classifier: how a proxying failure is reported to the client.

use gateway_plugins::ErrorKind;
use pingora_error::{Error, ErrorSource, ErrorType};

use super::RequestCtx;

/// Whether `error` means the client went away: it closed or reset its connection or stream.
/// Routine at an edge, so it is no error of the edge's: nobody is left to answer, and
/// `suppress_error_log` keeps it out of the error log (the request is still counted and
/// access-logged). A client that stopped reading (a write timeout) is not in it: that one
/// held a request open until the deadline, which the error log should still show.
pub(super) fn client_went_away(error: &Error) -> bool {
    /// Pingora's h2 server has no error type of its own for a client's reset, only these
    /// contexts of `H2Error` (pingora-core 0.9.1 `protocols/http/v2/server.rs`: the client
    /// reset the stream while the proxy waited on the upstream, or the stream failed on the
    /// client's side meanwhile). `edge/tests/hardening.rs` pins the first.
    const H2_CLIENT_GONE: [&str; 2] = ["Client closed H2", "downstream error while idling"];
    if error.esource() != &ErrorSource::Downstream {
        return false;
    }
    match error.etype() {
        ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => true,
        // The proxy wraps the session's error with the peer as context; the session's own
        // context is on the cause.
        ErrorType::H2Error => contexts(error)
            .any(|context| H2_CLIENT_GONE.iter().any(|gone| context.starts_with(gone))),
        _ => false,
    }
}

/// The contexts of `error` and of the Pingora errors it was caused by, outermost first.
fn contexts(error: &Error) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(error), |error| {
        // Pingora chains its own errors boxed (`BError`), as `root_cause` unwraps them.
        error
            .cause
            .as_ref()?
            .downcast_ref::<Box<Error>>()
            .map(|cause| &**cause)
    })
    .filter_map(|error| error.context.as_ref().map(|context| context.as_str()))
}

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
    if client_went_away(error) {
        return None;
    }
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
                // The client stopped reading the response: nobody to answer either.
                ErrorType::WriteTimedout => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn downstream(etype: ErrorType, context: &'static str) -> Box<Error> {
        Error::explain(etype, context).into_down()
    }

    #[test]
    fn a_client_that_closed_or_reset_went_away_whatever_context_the_proxy_added() {
        for error in [
            downstream(
                ErrorType::ConnectionClosed,
                "Prematurely before response header",
            ),
            downstream(
                ErrorType::WriteError,
                "while writing h2 response to downstream",
            ),
            downstream(
                ErrorType::H2Error,
                "Client closed H2, reason: stream no longer needed",
            ),
            downstream(ErrorType::H2Error, "downstream error while idling")
                .more_context("Peer: addr: 127.0.0.1:1"),
        ] {
            assert!(client_went_away(&error), "{error}");
        }
    }

    #[test]
    fn protocol_errors_and_upstream_failures_are_not_a_client_going_away() {
        let mut upstream_closed = Error::explain(ErrorType::ConnectionClosed, "upstream hung up");
        upstream_closed.as_up();
        for error in [
            downstream(
                ErrorType::H2Error,
                "too many malformed downstream requests on connection",
            ),
            downstream(ErrorType::InvalidHTTPHeader, "bad header"),
            downstream(ErrorType::ReadTimedout, "the body stalled"),
            downstream(ErrorType::WriteTimedout, "the client stopped reading"),
            upstream_closed,
        ] {
            assert!(!client_went_away(&error), "{error}");
        }
    }
}
