//! Prometheus metrics every service exports on `/metrics`, and the code that feeds them.
//!
//! Requests are labelled by protocol, operation (the route template for HTTP, the method path
//! for gRPC — never a raw path, so cardinality stays bounded) and status.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use platform_telemetry::OpenTelemetrySpanExt;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tracing::Instrument;

use std::sync::Arc;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    cache: IntCounterVec,
    cache_writes: IntCounterVec,
    pool: IntGaugeVec,
}

impl Metrics {
    /// Metrics of service `service` (a constant `service` label on every series).
    pub fn new(service: &str) -> Result<Self, prometheus::Error> {
        let labels = std::iter::once(("service".to_string(), service.to_string())).collect();
        let registry = Registry::new_custom(None, Some(labels))?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests served, by protocol, operation and status",
            ),
            &["protocol", "operation", "status"],
        )?;
        let durations = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "Time to answer a request").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            &["protocol", "operation", "status"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "cache_requests_total",
                "Cache lookups by cache and result (hit, miss, error)",
            ),
            &["cache", "result"],
        )?;
        let cache_writes = IntCounterVec::new(
            Opts::new(
                "cache_writes_total",
                "Cache writes by cache and result (stored, too_large: over the entry-size cap, \
                 served but not cached; error)",
            ),
            &["cache", "result"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "PostgreSQL pool: size, available, waiting, max",
            ),
            &["state"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(durations.clone()))?;
        registry.register(Box::new(cache.clone()))?;
        registry.register(Box::new(cache_writes.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        Ok(Self {
            registry,
            requests,
            durations,
            cache,
            cache_writes,
            pool,
        })
    }

    /// For service-specific metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn observe(&self, protocol: &str, operation: &str, status: &str, elapsed: Duration) {
        let labels = [protocol, operation, status];
        self.requests.with_label_values(&labels).inc();
        self.durations
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn cache_result(&self, cache: &str, result: CacheResult) {
        self.cache
            .with_label_values(&[cache, result.as_str()])
            .inc();
    }

    pub fn cache_write(&self, cache: &str, result: CacheWrite) {
        self.cache_writes
            .with_label_values(&[cache, result.as_str()])
            .inc();
    }

    pub fn set_pool_status(&self, status: &deadpool_postgres::Status) {
        let gauge = |state: &str, value: usize| {
            self.pool
                .with_label_values(&[state])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        gauge("size", status.size);
        gauge("available", status.available);
        gauge("waiting", status.waiting);
        gauge("max", status.max_size);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %err, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Times a gRPC method body, records its status, and logs the outcome.
    pub async fn track_grpc<T, Fut>(
        &self,
        operation: &'static str,
        fut: Fut,
    ) -> Result<T, tonic::Status>
    where
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let started = Instant::now();
        let result = fut.await;
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        let elapsed = started.elapsed();
        let status = format!("{code:?}");
        self.observe("grpc", operation, &status, elapsed);
        tracing::info!(
            operation,
            status = %status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "grpc request"
        );
        result
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    /// The cache could not be asked (Redis down); the answer came from PostgreSQL.
    Error,
}

impl CacheResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheWrite {
    Stored,
    /// Larger than the entry-size cap: the answer was served but not cached.
    TooLarge,
    /// The cache refused or could not be reached (full, down).
    Error,
}

impl CacheWrite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::TooLarge => "too_large",
            Self::Error => "error",
        }
    }
}

/// The request id the edge assigned, or a fresh one when a request did not pass the edge.
pub fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// axum middleware: a span carrying the request id around the handler, an access log line,
/// request metrics, and the request id echoed in the response.
pub async fn observe_http(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let method = request.method().clone();
    let operation = match request.extensions().get::<MatchedPath>() {
        Some(path) => format!("{method} {}", path.as_str()),
        None => format!("{method} unmatched"),
    };
    let span = tracing::info_span!(
        "http",
        request_id = %request_id,
        operation = %operation,
        otel.name = %operation,
        otel.kind = "server",
    );
    // Continue the edge's trace (W3C traceparent); a no-op when tracing is off.
    let _ = span.set_parent(platform_telemetry::extract(request.headers()));
    let path = request.uri().path().to_string();
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    metrics.observe("http", &operation, status.as_str(), elapsed);
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            path = %path,
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "http request"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// For tonic's `Server::trace_fn`: every event inside a gRPC call carries its request id.
pub fn grpc_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc",
        request_id = %request_id(request.headers()),
        path = %request.uri().path(),
        otel.name = %request.uri().path(),
        otel.kind = "server",
    );
    let _ = span.set_parent(platform_telemetry::extract(request.headers()));
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_has_labelled_series() {
        let metrics = Metrics::new("records").expect("metrics");
        metrics.observe("http", "GET /records", "200", Duration::from_millis(3));
        metrics.cache_result("search", CacheResult::Hit);
        metrics.cache_result("search", CacheResult::Miss);
        metrics.cache_write("search", CacheWrite::TooLarge);
        let text = metrics.render();
        assert!(
            text.contains(r#"requests_total{operation="GET /records",protocol="http",status="200",service="records"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"cache_requests_total{cache="search",result="hit",service="records"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"cache_writes_total{cache="search",result="too_large",service="records"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("request_duration_seconds_bucket"), "{text}");
    }

    #[test]
    fn request_id_comes_from_the_edge_or_is_generated() {
        let mut headers = http::HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        let generated = request_id(&http::HeaderMap::new());
        assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    }
}
