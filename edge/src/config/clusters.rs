//! `[clusters.<name>]`: backends, protocol, balancing, timeouts, health checks, outlier
//! ejection and concurrency limits.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::defaults;

/// How the edge talks to a cluster's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over plain TCP.
    H1,
    /// HTTP/2 with prior knowledge over plain TCP (tonic servers).
    H2c,
    /// HTTP/1.1 over TLS.
    H1Tls,
    /// HTTP/2 over TLS (ALPN h2).
    H2,
}

impl UpstreamProtocol {
    pub fn is_tls(self) -> bool {
        matches!(self, UpstreamProtocol::H1Tls | UpstreamProtocol::H2)
    }
    pub fn is_h2(self) -> bool {
        matches!(self, UpstreamProtocol::H2c | UpstreamProtocol::H2)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    RoundRobin,
    LeastConnections,
}

/// `[clusters.<name>]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `host:port` entries; names are resolved when the config is loaded.
    pub addresses: Vec<String>,
    #[serde(default = "defaults::upstream_protocol")]
    pub protocol: UpstreamProtocol,
    #[serde(default = "defaults::balance")]
    pub balance: Balance,
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed between two reads from the backend (a slower backend is a 504).
    #[serde(default = "defaults::upstream_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
    #[serde(default = "defaults::upstream_write_timeout", with = "humantime_serde")]
    pub write_timeout: Duration,
    /// How long an idle pooled connection is kept.
    #[serde(default = "defaults::upstream_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Concurrent streams per HTTP/2 backend connection before another is opened.
    #[serde(default = "defaults::max_h2_streams")]
    pub max_h2_streams: usize,
    /// Extra attempts on another backend when connecting fails (idempotent requests only).
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    /// Requests in flight to this cluster (all backends) before new ones are answered 503 +
    /// `Retry-After` at once instead of queueing.
    #[serde(default = "defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Requests waiting for an upstream connection to this cluster (a connect in progress,
    /// or a pooled connection being handed over) before new ones are answered 503 +
    /// `Retry-After` at once: a backend that stops accepting cannot pile up every request.
    #[serde(default = "defaults::max_pending_connections")]
    pub max_pending_connections: usize,
    /// Passive outlier ejection (`outlier.rs`); `consecutive_failures = 0` turns it off.
    #[serde(default)]
    pub outlier_detection: OutlierConfig,
    /// SNI and verification name for TLS backends (defaults to the address's host).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// CA bundle for TLS backends (defaults to the system roots).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Counts toward `/readyz` (at least one healthy backend needed).
    #[serde(default = "defaults::yes")]
    pub required: bool,
    /// The service behind this cluster, as its identity assertions name it: the value the
    /// service checks with `--identity-audience`. Defaults to the cluster's name; clusters
    /// that are two listeners of one service (`auth` and `auth-grpc`) set the same value.
    #[serde(default)]
    pub identity_audience: Option<String>,
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// `GET <path>`; 2xx is healthy.
    Http,
    /// `grpc.health.v1.Health/Check` for `grpc_service`; SERVING is healthy.
    Grpc,
    /// A TCP connect succeeds.
    Tcp,
}

/// `[clusters.<name>.outlier_detection]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierConfig {
    /// Failures in a row (5xx, connect failure, timeout) that eject a backend; 0 = never.
    #[serde(default = "defaults::outlier_failures")]
    pub consecutive_failures: u32,
    /// First ejection; each further one in a row doubles it.
    #[serde(default = "defaults::outlier_base", with = "humantime_serde")]
    pub base_ejection: Duration,
    #[serde(default = "defaults::outlier_max", with = "humantime_serde")]
    pub max_ejection: Duration,
    /// At most this share of the cluster's backends out at once (at least one may be).
    #[serde(default = "defaults::outlier_percent")]
    pub max_ejected_percent: u8,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: defaults::outlier_failures(),
            base_ejection: defaults::outlier_base(),
            max_ejection: defaults::outlier_max(),
            max_ejected_percent: defaults::outlier_percent(),
        }
    }
}

/// `[clusters.<name>.health_check]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    pub kind: HealthCheckKind,
    #[serde(default = "defaults::health_check_path")]
    pub path: String,
    /// Service name for gRPC checks; empty = the server as a whole.
    #[serde(default)]
    pub grpc_service: String,
    #[serde(default = "defaults::health_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "defaults::health_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failures before a backend is taken out.
    #[serde(default = "defaults::unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Consecutive successes before it is put back.
    #[serde(default = "defaults::healthy_threshold")]
    pub healthy_threshold: u32,
}
