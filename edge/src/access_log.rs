//! One structured line per request (tracing target `access`), the same for h1, h2 and h3.
//! With `[logging] format = "json"` every field is a JSON key.

use std::net::IpAddr;
use std::time::Duration;

use gateway_plugins::Protocol;

/// What the access log records about a finished request.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    pub protocol: Protocol,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub cluster: Option<&'a str>,
    pub status: u16,
    pub grpc_status: Option<&'a str>,
    pub duration: Duration,
    pub upstream_duration: Option<Duration>,
    pub upstream_reused: Option<bool>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub client: Option<IpAddr>,
    pub request_id: Option<&'a str>,
    /// Set when the edge answered without an upstream (`policy`, `no_route`, `health`, ...).
    pub answered_by_edge: Option<&'a str>,
    /// `x-cache-status` on a cached route (`HIT`, `MISS`, ...).
    pub cache: Option<&'a str>,
    /// For a request sent in 0-RTT: `accepted`, `too_early`, `replayed` or `unchecked`.
    pub early_data: Option<&'a str>,
    pub error: Option<&'a str>,
}

pub fn emit(record: &AccessRecord<'_>) {
    tracing::info!(
        target: "access",
        protocol = record.protocol.as_str(),
        method = record.method,
        path = record.path,
        route = record.route,
        cluster = record.cluster,
        status = record.status,
        grpc_status = record.grpc_status,
        duration_ms = record.duration.as_secs_f64() * 1000.0,
        upstream_ms = record.upstream_duration.map(|d| d.as_secs_f64() * 1000.0),
        upstream_reused = record.upstream_reused,
        request_bytes = record.request_bytes,
        response_bytes = record.response_bytes,
        client = record.client.map(|ip| ip.to_string()),
        request_id = record.request_id,
        answered_by = record.answered_by_edge,
        cache = record.cache,
        early_data = record.early_data,
        error = record.error,
    );
}
