//! OpenTelemetry spans for requests through the edge (h1, h2 and h3 alike). A span
//! continues the caller's trace (`traceparent`) or starts one, and its context replaces
//! `traceparent` on the request sent upstream, so the service's spans hang under it.

use std::net::SocketAddr;

use gateway_plugins::Protocol;
use http::request::Parts;
use pingora_http::RequestHeader;
use platform_telemetry::opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use platform_telemetry::opentelemetry::{Context, KeyValue};
use platform_telemetry::opentelemetry_sdk::trace::Tracer;

/// The span of one request; ended by [`RequestSpan::finish`] (or when dropped).
pub struct RequestSpan {
    cx: Context,
}

impl RequestSpan {
    pub fn start(
        tracer: &Tracer,
        parts: &Parts,
        protocol: Protocol,
        peer: Option<SocketAddr>,
    ) -> Self {
        let parent = platform_telemetry::extract(&parts.headers);
        let version = match protocol {
            Protocol::Http1 => "1.1",
            Protocol::Http2 => "2",
            Protocol::Http3 => "3",
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", parts.method.as_str().to_string()),
            KeyValue::new("url.path", parts.uri.path().to_string()),
            KeyValue::new("network.protocol.name", "http"),
            KeyValue::new("network.protocol.version", version),
        ];
        if let Some(peer) = peer {
            attributes.push(KeyValue::new("client.address", peer.ip().to_string()));
        }
        let span = tracer
            .span_builder(format!("edge {}", parts.method))
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        Self {
            cx: parent.with_span(span),
        }
    }

    /// Puts this span's context on the upstream request (`traceparent`, `tracestate`).
    pub fn inject(&self, request: &mut RequestHeader) {
        let mut headers = http::HeaderMap::new();
        platform_telemetry::inject(&self.cx, &mut headers);
        for (name, value) in headers {
            if let Some(name) = name {
                if let Err(err) = request.insert_header(name, value) {
                    tracing::debug!(%err, "cannot set the trace context header");
                }
            }
        }
    }

    /// Records the outcome and ends the span.
    pub fn finish(
        self,
        status: u16,
        route: Option<&str>,
        cluster: Option<&str>,
        error: Option<&str>,
    ) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if let Some(route) = route {
            span.set_attribute(KeyValue::new("http.route", route.to_string()));
            span.update_name(format!("edge {route}"));
        }
        if let Some(cluster) = cluster {
            span.set_attribute(KeyValue::new("edge.upstream.cluster", cluster.to_string()));
        }
        if status >= 500 || status == 0 {
            span.set_status(Status::error(error.unwrap_or("server error").to_string()));
        }
        span.end();
    }
}
