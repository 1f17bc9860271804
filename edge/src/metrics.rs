//! Prometheus metrics of the edge. One registry per process (the policy runtime registers
//! its own `edge_*` metrics into it too); `/metrics` on the admin listener serves it.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the edge itself exports (see the README's metrics table).
pub struct EdgeMetrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub upstream_connections: IntCounterVec,
    pub upstream_backend_healthy: IntGaugeVec,
    pub upstream_ejections: IntCounterVec,
    pub compression_bytes: IntCounterVec,
    pub downstream_connections: IntGaugeVec,
    pub tls_handshakes: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_version: IntGauge,
    pub cert_reloads: IntCounterVec,
    pub cert_not_after: IntGaugeVec,
    pub quic_connections: IntCounter,
    pub quic_handshake_failures: IntCounter,
    pub quic_stream_errors: IntCounterVec,
    pub quic_handoff_packets: IntCounterVec,
    pub quic_path_events: IntCounterVec,
    pub quic_early_data: IntCounterVec,
    pub request_body_bytes: Histogram,
    pub connections_limited: IntCounterVec,
    pub client_connections_open: IntGauge,
    pub client_timeouts: IntCounterVec,
    pub cache_responses: IntCounterVec,
    pub cache_hit_bytes: IntCounterVec,
    pub cache_stored_bytes: IntGauge,
    pub cache_stored_objects: IntGauge,
    pub cache_evictions: IntCounter,
    pub cache_purged: IntCounter,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} definition: {e}"));
    register(registry, Box::new(metric.clone()), name);
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} definition: {e}"));
    register(registry, Box::new(metric.clone()), name);
    metric
}

fn single_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric =
        IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name} definition: {e}"));
    register(registry, Box::new(metric.clone()), name);
    metric
}

fn single_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric =
        IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name} definition: {e}"));
    register(registry, Box::new(metric.clone()), name);
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    // 100 µs .. ~26 s: an edge hop is sub-millisecond, a slow upstream is seconds.
    let buckets = prometheus::exponential_buckets(0.0001, 2.0, 19)
        .unwrap_or_else(|e| panic!("buckets for {name}: {e}"));
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .unwrap_or_else(|e| panic!("metric {name} definition: {e}"));
    register(registry, Box::new(metric.clone()), name);
    metric
}

fn register(registry: &Registry, metric: Box<dyn prometheus::core::Collector>, name: &str) {
    // Names are fixed at compile time and the registry is fresh, so a clash is a bug.
    registry
        .register(metric)
        .unwrap_or_else(|e| panic!("registering {name}: {e}"));
}

impl EdgeMetrics {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let r = &registry;
        let config_version = single_gauge(
            r,
            "edge_config_version",
            "Generation of the config in use (1 at start, +1 per accepted reload)",
        );
        let quic_connections = single_counter(
            r,
            "edge_quic_connections_total",
            "QUIC connections accepted (handshake completed)",
        );
        let quic_handshake_failures = single_counter(
            r,
            "edge_quic_handshake_failures_total",
            "QUIC connections that failed before the handshake completed",
        );
        let request_body_bytes = Histogram::with_opts(
            HistogramOpts::new(
                "edge_request_body_bytes",
                "Request body sizes forwarded upstream",
            )
            .buckets(
                prometheus::exponential_buckets(64.0, 4.0, 10)
                    .unwrap_or_else(|e| panic!("body buckets: {e}")),
            ),
        )
        .unwrap_or_else(|e| panic!("edge_request_body_bytes: {e}"));
        register(
            r,
            Box::new(request_body_bytes.clone()),
            "edge_request_body_bytes",
        );

        Arc::new(Self {
            requests: counter(
                r,
                "edge_requests_total",
                "Requests by route, method, status class and downstream protocol",
                &["route", "method", "status", "protocol"],
            ),
            request_duration: histogram(
                r,
                "edge_request_duration_seconds",
                "Time from request headers to the end of the response",
                &["route", "protocol"],
            ),
            upstream_duration: histogram(
                r,
                "edge_upstream_duration_seconds",
                "Time from sending the request upstream to its response headers",
                &["cluster"],
            ),
            upstream_errors: counter(
                r,
                "edge_upstream_errors_total",
                "Upstream failures by cluster and kind (connect, timeout, no_healthy_backend, protocol)",
                &["cluster", "kind"],
            ),
            upstream_connections: counter(
                r,
                "edge_upstream_connections_total",
                "Upstream connections used, by whether they were reused from the pool",
                &["cluster", "reused"],
            ),
            compression_bytes: counter(
                r,
                "edge_response_compression_bytes_total",
                "Response bytes through the compressor, by algorithm and side (in, out)",
                &["algorithm", "direction"],
            ),
            upstream_ejections: counter(
                r,
                "edge_upstream_ejections_total",
                "Backends taken out of rotation by outlier detection (consecutive failures)",
                &["cluster", "backend"],
            ),
            upstream_backend_healthy: gauge(
                r,
                "edge_upstream_backend_healthy",
                "1 when the backend passes its health check",
                &["cluster", "backend"],
            ),
            downstream_connections: gauge(
                r,
                "edge_downstream_connections_active",
                "Open client connections by transport",
                &["transport"],
            ),
            tls_handshakes: counter(
                r,
                "edge_tls_handshakes_total",
                "Completed TLS handshakes by version and ALPN",
                &["transport", "version", "alpn"],
            ),
            tls_handshake_failures: counter(
                r,
                "edge_tls_handshake_failures_total",
                "Failed TLS handshakes by reason (the alert sent, or no_certificate)",
                &["reason"],
            ),
            config_reloads: counter(
                r,
                "edge_config_reloads_total",
                "Config reload attempts by result (applied, rejected, unchanged)",
                &["result"],
            ),
            config_version,
            cert_reloads: counter(
                r,
                "edge_cert_reloads_total",
                "Certificate reload attempts by result (applied, rejected, unchanged)",
                &["result"],
            ),
            cert_not_after: gauge(
                r,
                "edge_certificate_not_after_seconds",
                "Expiry (unix seconds) of each served certificate",
                &["sni", "serial"],
            ),
            quic_connections,
            quic_handshake_failures,
            quic_stream_errors: counter(
                r,
                "edge_quic_stream_errors_total",
                "HTTP/3 streams that ended in error, by kind",
                &["kind"],
            ),
            quic_path_events: counter(
                r,
                "edge_quic_path_events_total",
                "QUIC path events (connection migration): new, validated, failed_validation, \
                 closed, reused_connection_id, peer_migrated, other",
                &["event"],
            ),
            quic_handoff_packets: counter(
                r,
                "edge_quic_handoff_packets_total",
                "QUIC packets of another edge process's connections (graceful upgrade): \
                 to_older / to_newer (forwarded), injected (received and served here), dropped",
                &["route"],
            ),
            quic_early_data: counter(
                r,
                "edge_quic_early_data_total",
                "Requests sent in 0-RTT early data, by outcome (accepted; too_early, replayed, \
                 unchecked: answered 425)",
                &["outcome"],
            ),
            request_body_bytes,
            connections_limited: counter(
                r,
                "edge_connections_limited_total",
                "Client connections over a connection cap: shed (answered 503) or refused",
                &["transport", "reason"],
            ),
            client_connections_open: single_gauge(
                r,
                "edge_client_connections_open",
                "Client connections (TCP from accept, QUIC from the first flight) counted \
                 against limits.max_connections",
            ),
            client_timeouts: counter(
                r,
                "edge_client_timeouts_total",
                "Clients cut off for slowness, by phase (header, body)",
                &["phase"],
            ),
            cache_responses: counter(
                r,
                "edge_cache_responses_total",
                "Responses of cached routes by x-cache-status (HIT, MISS, EXPIRED, STALE, \
                 REVALIDATED, BYPASS)",
                &["route", "status"],
            ),
            cache_hit_bytes: counter(
                r,
                "edge_cache_hit_bytes_total",
                "Response body bytes served from the cache (HIT, STALE, REVALIDATED)",
                &["route"],
            ),
            cache_stored_bytes: single_gauge(
                r,
                "edge_cache_stored_bytes",
                "Bytes of responses in the cache (bodies and headers), at most [cache] max_bytes",
            ),
            cache_stored_objects: single_gauge(
                r,
                "edge_cache_stored_objects",
                "Responses in the cache",
            ),
            cache_evictions: single_counter(
                r,
                "edge_cache_evictions_total",
                "Responses dropped from the cache to stay under [cache] max_bytes",
            ),
            cache_purged: single_counter(
                r,
                "edge_cache_purged_total",
                "Responses dropped from the cache by POST /cache/purge",
            ),
            registry,
        })
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let families = self.registry.gather();
        if let Err(err) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(%err, "encoding metrics");
        }
        out
    }

    /// One response of a cached route: its `x-cache-status`, and the bytes a hit served.
    pub fn observe_cache(&self, route: &str, status: &str, body_bytes: u64) {
        self.cache_responses
            .with_label_values(&[route, status])
            .inc();
        if matches!(status, "HIT" | "STALE" | "REVALIDATED") {
            self.cache_hit_bytes
                .with_label_values(&[route])
                .inc_by(body_bytes);
        }
    }
}

/// Method labels of `edge_requests_total`, a bounded set (a client can send any token as a
/// method); [`method_index`] gives a method's place in it.
pub const METHOD_LABELS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other",
];

/// Status classes of `edge_requests_total`; [`status_index`] gives a status's place in it.
pub const STATUS_LABELS: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

pub fn method_index(method: &http::Method) -> usize {
    match *method {
        http::Method::GET => 0,
        http::Method::POST => 1,
        http::Method::PUT => 2,
        http::Method::PATCH => 3,
        http::Method::DELETE => 4,
        http::Method::HEAD => 5,
        http::Method::OPTIONS => 6,
        _ => 7,
    }
}

pub fn status_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

/// Decrements an active-connection gauge when the connection (and this guard) goes away.
pub struct ConnectionGauge {
    gauge: IntGauge,
}

impl ConnectionGauge {
    pub fn open(gauge: IntGauge) -> Self {
        gauge.inc();
        Self { gauge }
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_contains_observed_requests() {
        let metrics = EdgeMetrics::new();
        metrics
            .requests
            .with_label_values(&[
                "records",
                METHOD_LABELS[method_index(&http::Method::GET)],
                STATUS_LABELS[status_index(204)],
                "h2",
            ])
            .inc();
        metrics
            .request_duration
            .with_label_values(&["records", "h2"])
            .observe(0.003);
        let text = String::from_utf8(metrics.render()).expect("utf8");
        assert!(
            text.contains(
                r#"edge_requests_total{method="GET",protocol="h2",route="records",status="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("edge_request_duration_seconds_bucket"));
    }

    #[test]
    fn unusual_methods_share_one_label() {
        let method = http::Method::from_bytes(b"BREW").expect("token");
        assert_eq!(METHOD_LABELS[method_index(&method)], "other");
        assert_eq!(STATUS_LABELS[status_index(431)], "4xx");
        assert_eq!(STATUS_LABELS[status_index(0)], "other");
    }

    #[test]
    fn connection_gauge_counts_open_connections() {
        let metrics = EdgeMetrics::new();
        let gauge = metrics.downstream_connections.with_label_values(&["tcp"]);
        let a = ConnectionGauge::open(gauge.clone());
        let b = ConnectionGauge::open(gauge.clone());
        assert_eq!(gauge.get(), 2);
        drop(a);
        assert_eq!(gauge.get(), 1);
        drop(b);
        assert_eq!(gauge.get(), 0);
    }
}
