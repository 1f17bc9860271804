//! Metric series resolved once per route and per cluster instead of once per request.
//!
//! `IntCounterVec::with_label_values` hashes every label value and takes the vector's lock on
//! each call; a request touched four such look-ups (requests, request duration, upstream
//! connections, upstream duration). A route's and a cluster's label values are fixed, so their
//! handles are resolved on first use into cells indexed by the bounded labels (method, status
//! class, protocol, reused) and each later request is an index and an atomic add. A cell is
//! resolved only when first counted, so `/metrics` shows exactly the series the per-request
//! look-up showed: none for a combination that never happened. A reloaded route resolves its
//! cells again and finds the same series (the vectors keep them by label values).

use std::sync::OnceLock;
use std::time::Duration;

use gateway_plugins::Protocol;
use prometheus::{Histogram, IntCounter};

use crate::metrics::{method_index, status_index, EdgeMetrics, METHOD_LABELS, STATUS_LABELS};

const PROTOCOLS: [Protocol; 3] = [Protocol::Http1, Protocol::Http2, Protocol::Http3];

fn protocol_index(protocol: Protocol) -> usize {
    match protocol {
        Protocol::Http1 => 0,
        Protocol::Http2 => 1,
        Protocol::Http3 => 2,
    }
}

type RequestCells =
    [[[OnceLock<IntCounter>; PROTOCOLS.len()]; STATUS_LABELS.len()]; METHOD_LABELS.len()];

/// `edge_requests_total` and `edge_request_duration_seconds` of one route (or of requests no
/// route took, under route `-`).
#[derive(Default)]
pub struct RouteSeries {
    requests: Box<RequestCells>,
    duration: [OnceLock<Histogram>; PROTOCOLS.len()],
}

impl RouteSeries {
    /// One finished request of route `route` (the id this series belongs to).
    pub fn observe(
        &self,
        metrics: &EdgeMetrics,
        route: &str,
        method: &http::Method,
        status: u16,
        protocol: Protocol,
        elapsed: Duration,
    ) {
        let (m, s, p) = (
            method_index(method),
            status_index(status),
            protocol_index(protocol),
        );
        self.requests[m][s][p]
            .get_or_init(|| {
                metrics.requests.with_label_values(&[
                    route,
                    METHOD_LABELS[m],
                    STATUS_LABELS[s],
                    protocol.as_str(),
                ])
            })
            .inc();
        self.duration[p]
            .get_or_init(|| {
                metrics
                    .request_duration
                    .with_label_values(&[route, protocol.as_str()])
            })
            .observe(elapsed.as_secs_f64());
    }
}

impl std::fmt::Debug for RouteSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSeries").finish_non_exhaustive()
    }
}

/// `edge_upstream_connections_total` and `edge_upstream_duration_seconds` of one cluster.
#[derive(Default)]
pub struct ClusterSeries {
    /// Indexed by `reused`.
    connections: [OnceLock<IntCounter>; 2],
    duration: OnceLock<Histogram>,
}

impl ClusterSeries {
    /// One upstream connection used by a request, new or taken from the pool.
    pub fn count_connection(&self, metrics: &EdgeMetrics, cluster: &str, reused: bool) {
        self.connections[usize::from(reused)]
            .get_or_init(|| {
                metrics
                    .upstream_connections
                    .with_label_values(&[cluster, if reused { "true" } else { "false" }])
            })
            .inc();
    }

    /// Time from sending a request upstream to its response headers.
    pub fn observe_duration(&self, metrics: &EdgeMetrics, cluster: &str, elapsed: Duration) {
        self.duration
            .get_or_init(|| metrics.upstream_duration.with_label_values(&[cluster]))
            .observe(elapsed.as_secs_f64());
    }
}

impl std::fmt::Debug for ClusterSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSeries").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(metrics: &EdgeMetrics) -> String {
        String::from_utf8(metrics.render()).expect("utf8")
    }

    #[test]
    fn every_cell_lands_in_its_own_labelled_series() {
        let metrics = EdgeMetrics::new();
        let series = RouteSeries::default();
        let methods = [
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "BREW",
        ];
        let statuses = [101u16, 204, 304, 429, 503, 0];
        for (m, method) in methods.iter().enumerate() {
            let method = http::Method::from_bytes(method.as_bytes()).expect("token");
            for (s, status) in statuses.iter().enumerate() {
                for (p, protocol) in PROTOCOLS.iter().enumerate() {
                    // A distinct count per cell, so a cell writing into another's series shows.
                    for _ in 0..=(m * 100 + s * 10 + p) {
                        series.observe(
                            &metrics,
                            "records",
                            &method,
                            *status,
                            *protocol,
                            Duration::from_millis(1),
                        );
                    }
                }
            }
        }
        for (m, method) in METHOD_LABELS.iter().enumerate() {
            for (s, status) in STATUS_LABELS.iter().enumerate() {
                for (p, protocol) in PROTOCOLS.iter().enumerate() {
                    let counted = metrics
                        .requests
                        .with_label_values(&["records", method, status, protocol.as_str()])
                        .get();
                    assert_eq!(
                        counted,
                        (m * 100 + s * 10 + p + 1) as u64,
                        "{method} {status} {protocol:?}"
                    );
                }
            }
        }
        let h2 = metrics
            .request_duration
            .with_label_values(&["records", "h2"])
            .get_sample_count();
        let all: u64 = (0..METHOD_LABELS.len())
            .flat_map(|m| (0..STATUS_LABELS.len()).map(move |s| (m * 100 + s * 10 + 1 + 1) as u64))
            .sum();
        assert_eq!(h2, all);
    }

    #[test]
    fn new_and_reused_connections_are_counted_apart() {
        let metrics = EdgeMetrics::new();
        let series = ClusterSeries::default();
        series.count_connection(&metrics, "records", false);
        for _ in 0..3 {
            series.count_connection(&metrics, "records", true);
        }
        series.observe_duration(&metrics, "records", Duration::from_millis(2));
        let text = rendered(&metrics);
        assert!(
            text.contains(r#"edge_upstream_connections_total{cluster="records",reused="false"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"edge_upstream_connections_total{cluster="records",reused="true"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"edge_upstream_duration_seconds_count{cluster="records"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn nothing_counted_shows_no_series() {
        let metrics = EdgeMetrics::new();
        let _route = RouteSeries::default();
        let _cluster = ClusterSeries::default();
        let series = RouteSeries::default();
        series.observe(
            &metrics,
            "records",
            &http::Method::GET,
            200,
            Protocol::Http3,
            Duration::from_millis(1),
        );
        let text = rendered(&metrics);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("edge_requests_total{"))
            .collect();
        assert_eq!(
            lines,
            [r#"edge_requests_total{method="GET",protocol="h3",route="records",status="2xx"} 1"#],
            "{text}"
        );
        assert!(!text.contains("edge_upstream_connections_total{"), "{text}");
    }
}
