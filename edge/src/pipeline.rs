//! The one request pipeline every downstream protocol goes through.
//!
//! `EdgeProxy::request_filter` (h1, h2 and h3 alike) calls [`admit`]: limits, the edge's
//! own health endpoint, routing, the route's 0-RTT gate, the route's policy chain. What comes
//! back is either a response to write or a [`Forward`] that `upstream_request_filter`
//! turns into the upstream request with [`prepare_upstream_request`];
//! [`decorate_response`] adds what every response gets.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use gateway_plugins::decision::Decision;
use gateway_plugins::early_data::{self, EarlyData, EarlyDataOutcome};
use gateway_plugins::error_shape::error_response;
use gateway_plugins::identity::is_identity_header;
use gateway_plugins::request_id;
use gateway_plugins::{
    ErrorKind, HeaderEdits, PolicyResponse, Protocol, RequestContext, TlsInfo, UpstreamTarget,
};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::StatusCode;
use pingora_http::RequestHeader;

use crate::header_set::{
    ip_value, SetHeader, ALT_SVC, STRICT_TRANSPORT_SECURITY, X_FORWARDED_FOR, X_FORWARDED_PROTO,
};
use crate::routes::Route;
use crate::state::{EdgeState, Snapshot};

/// What the transport knows about the client.
#[derive(Debug, Clone)]
pub struct Downstream {
    pub peer_addr: Option<SocketAddr>,
    pub protocol: Protocol,
    pub tls: Option<TlsInfo>,
    /// Whether the request came in QUIC early data (0-RTT), which an attacker can
    /// replay, and what the listener's replay record said of its connection.
    pub early_data: EarlyData,
}

/// A request the edge answers itself.
#[derive(Debug)]
pub struct Answer {
    pub response: PolicyResponse,
    /// The route, when one matched (for metrics and logs).
    pub route: Option<Arc<Route>>,
    /// Why (for the access log): `no_route`, `policy`, `health`, `headers_too_large`, ...
    pub reason: &'static str,
    /// Set when the answer is the 0-RTT gate's `425` (`edge_quic_early_data_total`).
    pub early_data: Option<EarlyDataOutcome>,
}

/// A request to send upstream.
#[derive(Debug)]
pub struct Forward {
    pub route: Arc<Route>,
    pub grpc: bool,
    pub client_ip: IpAddr,
    pub upstream_edits: HeaderEdits,
    /// Added to whatever response goes back (rate-limit headers, CORS, request id).
    pub response_headers: HeaderMap,
    pub request_id: Option<HeaderValue>,
    /// The verified user (`sub`) when the route's JWT check accepted a token.
    pub user: Option<String>,
    /// The request is served from 0-RTT early data (sent upstream with `Early-Data: 1`).
    pub early_data: bool,
}

#[derive(Debug)]
pub enum Admission {
    Answer(Answer),
    Forward(Forward),
}

/// Methods a retry may repeat (RFC 9110 section 9.2.2).
pub fn is_idempotent(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::PUT
            | http::Method::DELETE
    )
}

/// `content-type: application/grpc`, `application/grpc+proto`, `application/grpc-web...`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.len() >= 16 && ct[..16].eq_ignore_ascii_case("application/grpc"))
}

/// An edge-produced error in the request's protocol shape.
pub fn edge_error(kind: ErrorKind, code: &str, message: &str, grpc: bool) -> PolicyResponse {
    error_response(kind, code, message, grpc)
}

/// `503` + `Retry-After` (gRPC `UNAVAILABLE`): the edge is over a capacity limit; the
/// client should come back shortly rather than wait in a queue.
pub fn overloaded(grpc: bool, message: &str) -> Admission {
    let mut response = edge_error(ErrorKind::Unavailable, "overloaded", message, grpc);
    add_retry_after(&mut response);
    Admission::Answer(Answer {
        response,
        route: None,
        reason: "overloaded",
        early_data: None,
    })
}

/// One second: long enough to let a burst pass, short enough not to strand a client.
pub fn add_retry_after(response: &mut PolicyResponse) {
    response
        .headers
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
}

/// Runs limits, health, routing and policy for one request.
pub async fn admit(snapshot: &Snapshot, parts: &Parts, downstream: &Downstream) -> Admission {
    let grpc = is_grpc(&parts.headers);
    let config = snapshot.config();
    let answer = |response, route: Option<&Arc<Route>>, reason| {
        Admission::Answer(Answer {
            response,
            route: route.cloned(),
            reason,
            early_data: None,
        })
    };

    if let Some(problem) = header_limit_problem(&parts.headers, &config.limits) {
        return answer(
            edge_error(
                ErrorKind::HeadersTooLarge,
                "headers_too_large",
                &problem,
                grpc,
            ),
            None,
            "headers_too_large",
        );
    }

    let path = parts.uri.path();
    if path == config.listeners.https.health_path
        && (parts.method == http::Method::GET || parts.method == http::Method::HEAD)
    {
        return answer(health_response(snapshot), None, "health");
    }

    let Some(route) = snapshot.routes.find_for(parts, grpc) else {
        let message = format!("no route for {path}");
        return answer(
            edge_error(ErrorKind::NoRoute, "not_found", &message, grpc),
            None,
            "no_route",
        );
    };

    // 0-RTT data can be replayed: only a route that opted in serves it, only for safe
    // methods, only once per ClientHello; anything else gets 425 and the client retries
    // after the handshake (RFC 8470 section 5.2).
    let early_outcome = early_data::decide(downstream.early_data, route.early_data, &parts.method);
    if let Some(refused) = early_outcome.filter(|o| *o != EarlyDataOutcome::Accepted) {
        return Admission::Answer(too_early(refused, route, grpc));
    }

    if let Some(length) = content_length(&parts.headers) {
        if length > route.max_body_bytes {
            let message = format!(
                "request body of {length} bytes exceeds the limit of {} bytes",
                route.max_body_bytes
            );
            return answer(
                edge_error(
                    ErrorKind::PayloadTooLarge,
                    "payload_too_large",
                    &message,
                    grpc,
                ),
                Some(route),
                "payload_too_large",
            );
        }
    }

    let client_ip = snapshot
        .client_ip
        .resolve(downstream.peer_addr, &parts.headers);
    let ctx = RequestContext {
        peer_addr: downstream.peer_addr,
        client_ip,
        protocol: downstream.protocol,
        tls: downstream.tls.clone(),
        route_id: route.id.clone(),
        grpc,
        upstream: UpstreamTarget {
            audience: Arc::clone(&route.cluster.identity_audience),
            path_and_query: upstream_path_and_query(route, &parts.uri),
        },
    };
    let outcome = route.chain.evaluate(parts, &ctx).await;
    let request_id = outcome
        .response_headers
        .get(&request_id::X_REQUEST_ID)
        .cloned()
        .or_else(|| {
            outcome
                .upstream_edits
                .set
                .iter()
                .find(|(name, _)| *name == request_id::X_REQUEST_ID)
                .map(|(_, value)| value.clone())
        });
    match outcome.decision {
        Decision::Respond(mut response) => {
            for (name, value) in &outcome.response_headers {
                response
                    .headers
                    .entry(name)
                    .or_insert_with(|| value.clone());
            }
            answer(response, Some(route), "policy")
        }
        Decision::Continue => {
            let served_early = early_outcome == Some(EarlyDataOutcome::Accepted);
            let mut upstream_edits = outcome.upstream_edits;
            early_data::add_upstream_edits(&mut upstream_edits, served_early);
            Admission::Forward(Forward {
                route: route.clone(),
                grpc,
                client_ip,
                upstream_edits,
                response_headers: outcome.response_headers,
                request_id,
                user: outcome.identity.map(|identity| identity.sub),
                early_data: served_early,
            })
        }
    }
}

/// The `425 Too Early` (gRPC `UNAVAILABLE`, which clients retry) of a refused early request.
fn too_early(outcome: EarlyDataOutcome, route: &Arc<Route>, grpc: bool) -> Answer {
    let (reason, message) = match outcome {
        EarlyDataOutcome::Replayed => (
            "early_data_replayed",
            "this connection's 0-RTT data was seen before; retry after the handshake completes",
        ),
        EarlyDataOutcome::Unchecked => (
            "early_data_unchecked",
            "0-RTT data cannot be checked for replay now; retry after the handshake completes",
        ),
        EarlyDataOutcome::TooEarly | EarlyDataOutcome::Accepted => (
            "too_early",
            "this request may not be sent in 0-RTT data; retry after the handshake completes",
        ),
    };
    Answer {
        response: edge_error(ErrorKind::TooEarly, "too_early", message, grpc),
        route: Some(route.clone()),
        reason,
        early_data: Some(outcome),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Header count and total size against `[limits]`.
fn header_limit_problem(
    headers: &HeaderMap,
    limits: &crate::config::LimitsSection,
) -> Option<String> {
    if headers.len() > limits.max_request_headers {
        return Some(format!(
            "{} request headers exceed the limit of {}",
            headers.len(),
            limits.max_request_headers
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > limits.max_request_header_bytes {
        return Some(format!(
            "{bytes} bytes of request headers exceed the limit of {}",
            limits.max_request_header_bytes
        ));
    }
    None
}

/// Each cluster's health, and whether every required cluster has a healthy backend. The
/// detail is for the admin listener only (`GET /healthz` there).
pub fn cluster_health(snapshot: &Snapshot) -> (bool, serde_json::Value) {
    let mut clusters = serde_json::Map::new();
    let mut all_required_up = true;
    for (name, cluster) in snapshot.clusters.iter() {
        let health = cluster.health();
        let up = health.healthy_backends > 0;
        if health.required && !up {
            all_required_up = false;
        }
        clusters.insert(
            name.clone(),
            serde_json::json!({
                "status": if up { "up" } else { "down" },
                "healthyBackends": health.healthy_backends,
                "ejectedBackends": health.ejected_backends,
                "backends": health.backends,
                "requestsInFlight": health.requests_in_flight,
                "pendingConnections": health.pending_connections,
                "breakerOpen": health.breaker_open,
            }),
        );
    }
    (all_required_up, serde_json::Value::Object(clusters))
}

/// `GET /api/healthz` on the public listener: `ok` or `degraded`, nothing else — which
/// clusters and backends exist is for operators (admin `GET /healthz`), not the Internet.
/// Cheap: no upstream call.
pub fn health_response(snapshot: &Snapshot) -> PolicyResponse {
    let (all_required_up, _) = cluster_health(snapshot);
    let body = serde_json::json!({
        "status": if all_required_up { "ok" } else { "degraded" },
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    PolicyResponse {
        // The edge itself is up; a degraded body says some required cluster is not.
        status: StatusCode::OK,
        headers,
        body: Bytes::from(body.to_string()),
    }
}

/// Turns the downstream request header into the upstream one: strips inbound identity
/// headers (always, every route), applies the chain's edits, sets `x-forwarded-*`, and
/// rewrites the path.
pub fn prepare_upstream_request(
    request: &mut RequestHeader,
    forward: &Forward,
    peer: Option<SocketAddr>,
) -> pingora_error::Result<()> {
    // Collected first (a header map cannot shrink while iterated); nearly every
    // request has none, so this allocates nothing.
    if request.headers.keys().any(is_identity_header) {
        let spoofable: Vec<HeaderName> = request
            .headers
            .keys()
            .filter(|name| is_identity_header(name))
            .cloned()
            .collect();
        for name in spoofable {
            request.remove_header(&name);
        }
    }
    for name in &forward.upstream_edits.remove {
        request.remove_header(name);
    }
    for (name, value) in &forward.upstream_edits.set {
        request.set(name, value.clone())?;
    }

    // X-Forwarded-For: keep the chain only when the resolver trusted it (the resolved
    // client differs from the peer), then add the peer.
    let peer_ip = peer.map(|p| p.ip());
    let forwarded_for = match (peer_ip, request.headers.get(&X_FORWARDED_FOR)) {
        (Some(peer), Some(existing)) if peer != forward.client_ip => HeaderValue::from_str(
            &format!("{}, {peer}", existing.to_str().unwrap_or_default()),
        )
        .unwrap_or_else(|_| ip_value(peer)),
        (Some(peer), _) => ip_value(peer),
        (None, _) => ip_value(forward.client_ip),
    };
    request.set(&X_FORWARDED_FOR, forwarded_for)?;
    request.set(&X_FORWARDED_PROTO, HeaderValue::from_static("https"))?;

    if forward.route.strip_prefix.is_some() {
        let rewritten = upstream_path_and_query(&forward.route, &request.uri);
        let uri = http::Uri::builder()
            .path_and_query(rewritten.as_str())
            .build()
            .map_err(|e| {
                pingora_error::Error::explain(
                    pingora_error::ErrorType::InvalidHTTPHeader,
                    format!("rewritten path {rewritten:?}: {e}"),
                )
            })?;
        request.set_uri(uri);
    }
    Ok(())
}

/// The path and query the upstream receives for a request to `uri` on `route`: the one
/// function both the identity assertion (bound to it) and the rewrite use, so the service
/// checks the assertion against exactly the target it was signed for.
pub fn upstream_path_and_query(route: &Route, uri: &http::Uri) -> String {
    let original = uri.path_and_query().map_or("/", |pq| pq.as_str());
    route.upstream_path(original)
}

/// Headers every response through the edge gets.
pub fn decorate_response(
    headers: &mut impl ResponseHeaders,
    snapshot: &Snapshot,
    state: &EdgeState,
    extra: &HeaderMap,
    protocol: Protocol,
) {
    if let Some(hsts) = &snapshot.hsts {
        headers.set_or_warn(&STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    if protocol != Protocol::Http3 {
        if let Some(alt_svc) = &state.alt_svc {
            headers.set_or_warn(&ALT_SVC, alt_svc.clone());
        }
    }
    for (name, value) in extra {
        headers.set_or_warn(name, value.clone());
    }
}

/// The route's `security_headers` the upstream response does not already carry.
pub fn add_route_headers(headers: &mut pingora_http::ResponseHeader, route: &Route) {
    for (name, value) in &route.response_headers {
        if !headers.headers.contains_key(name) {
            headers.set_or_warn(name, value.clone());
        }
    }
}

/// The two response header types the paths use (Pingora's keeps header case for h1).
pub trait ResponseHeaders {
    fn set_or_warn(&mut self, name: &HeaderName, value: HeaderValue);
}

impl ResponseHeaders for pingora_http::ResponseHeader {
    fn set_or_warn(&mut self, name: &HeaderName, value: HeaderValue) {
        if let Err(err) = self.set(name, value) {
            tracing::warn!(%err, %name, "cannot set response header");
        }
    }
}

impl ResponseHeaders for HeaderMap {
    fn set_or_warn(&mut self, name: &HeaderName, value: HeaderValue) {
        self.insert(name.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_are_recognised() {
        let mut headers = HeaderMap::new();
        for (ct, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc-web+proto", true),
            ("Application/GRPC", true),
            ("application/json", false),
            ("application/gr", false),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_grpc(&headers), grpc, "{ct}");
        }
        headers.clear();
        assert!(!is_grpc(&headers));
    }

    #[test]
    fn header_limits_count_and_size() {
        let limits = crate::config::LimitsSection {
            max_request_headers: 3,
            max_request_header_bytes: 40,
            ..Default::default()
        };
        let mut headers = HeaderMap::new();
        headers.insert("a", HeaderValue::from_static("1"));
        assert!(header_limit_problem(&headers, &limits).is_none());
        headers.insert(
            "big",
            HeaderValue::from_static("0123456789012345678901234567890123456789"),
        );
        assert!(header_limit_problem(&headers, &limits)
            .expect("too big")
            .contains("bytes"));
        headers.clear();
        for name in ["a", "b", "c", "d"] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static("1"));
        }
        assert!(header_limit_problem(&headers, &limits)
            .expect("too many")
            .contains("headers exceed"));
    }

    #[test]
    fn only_safe_or_idempotent_methods_are_retried() {
        assert!(is_idempotent(&http::Method::GET));
        assert!(is_idempotent(&http::Method::PUT));
        assert!(!is_idempotent(&http::Method::POST));
        assert!(!is_idempotent(&http::Method::PATCH));
    }

    #[test]
    fn content_length_parses_only_numbers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("42"));
        assert_eq!(content_length(&headers), Some(42));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("x"));
        assert_eq!(content_length(&headers), None);
    }
}
