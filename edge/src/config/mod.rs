//! The edge's one typed config file (TOML).
//!
//! Every table denies unknown fields, every default is written once (in `defaults`
//! below), and relative paths are relative to the config file's directory. Loading
//! ([`load`]) parses, validates and reports problems as `file:line: key: message`.

mod load;
pub mod locate;

pub(crate) use load::is_valid_host_pattern;
pub use load::{load_file, load_str, ConfigError, ConfigProblem, LoadedConfig, EMBEDDED_DEFAULT};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_plugins::{PluginsConfig, RoutePolicy};
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub listeners: ListenersSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub http3: Http3Section,
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub plugins: PluginsConfig,
    #[serde(default)]
    pub logging: LoggingSection,
    #[serde(default)]
    pub tracing: TracingSection,
}

/// `[tracing]`: OpenTelemetry spans for each request, exported over OTLP/gRPC. Off unless an
/// endpoint is set here or in `OTEL_EXPORTER_OTLP_ENDPOINT`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSection {
    /// e.g. `http://otel-collector:4317`.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces recorded; a sampled caller's trace is always followed.
    #[serde(default = "defaults::sample_ratio")]
    pub sample_ratio: f64,
    #[serde(default = "defaults::service_name")]
    pub service_name: String,
}

impl Default for TracingSection {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: defaults::sample_ratio(),
            service_name: defaults::service_name(),
        }
    }
}

/// `[server]`: the process.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Worker threads of the proxy service (and of the HTTP/3 service).
    #[serde(default = "defaults::threads")]
    pub threads: usize,
    /// After SIGTERM (or SIGQUIT on upgrade) the listeners stop accepting and requests
    /// in flight get this long to finish; the process exits when it ends.
    #[serde(default = "defaults::grace_period", with = "humantime_serde")]
    pub grace_period: Duration,
    /// After the grace period, how long the runtimes get to wind down before the
    /// remaining work is cancelled.
    #[serde(
        default = "defaults::graceful_shutdown_timeout",
        with = "humantime_serde"
    )]
    pub graceful_shutdown_timeout: Duration,
    /// PID file, written once the process serves (after an upgrade: the new PID).
    #[serde(default = "defaults::pid_file")]
    pub pid_file: PathBuf,
    /// Unix socket the old process hands its listening sockets over on `edge -u`.
    #[serde(default = "defaults::upgrade_sock")]
    pub upgrade_sock: PathBuf,
    /// Watch the config file and the certificate files, reloading on change (SIGHUP always works).
    #[serde(default = "defaults::yes")]
    pub watch: bool,
    /// Idle upstream connections kept for reuse, across all backends. Must cover the
    /// requests in flight at peak (h2 clients multiply them by their streams), or the
    /// excess connections are closed after each response and reopened.
    #[serde(default = "defaults::upstream_keepalive_pool_size")]
    pub upstream_keepalive_pool_size: usize,
}

/// `[listeners]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenersSection {
    #[serde(default)]
    pub https: HttpsListener,
    /// Plain HTTP: `/healthz` and a 308 to https for everything else.
    #[serde(default = "defaults::http_listener")]
    pub http: Option<HttpListener>,
}

impl Default for ListenersSection {
    fn default() -> Self {
        Self {
            https: HttpsListener::default(),
            http: defaults::http_listener(),
        }
    }
}

/// `[listeners.https]`: TLS over TCP (h1, h2) and, with `http3`, QUIC over UDP on the same port.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsListener {
    #[serde(default = "defaults::https_address")]
    pub address: SocketAddr,
    /// Serve HTTP/3 on UDP at the same address and advertise it with `alt-svc`.
    #[serde(default = "defaults::yes")]
    pub http3: bool,
    /// The path the edge answers itself with the health of every cluster.
    #[serde(default = "defaults::health_path")]
    pub health_path: String,
    /// `strict-transport-security` on every TLS response; empty to disable.
    #[serde(default = "defaults::hsts")]
    pub hsts: String,
    /// The port advertised in `alt-svc` (defaults to the listener's; set it when a
    /// hostPort/NAT maps a different public port).
    #[serde(default)]
    pub advertised_port: Option<u16>,
}

impl Default for HttpsListener {
    fn default() -> Self {
        Self {
            address: defaults::https_address(),
            http3: true,
            health_path: defaults::health_path(),
            hsts: defaults::hsts(),
            advertised_port: None,
        }
    }
}

/// `[listeners.http]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpListener {
    /// `false` turns the plain-HTTP listener off.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    #[serde(default = "defaults::http_address")]
    pub address: SocketAddr,
    /// Port in the `location` of redirects (defaults to the https listener's, or its
    /// `advertised_port`).
    #[serde(default)]
    pub redirect_port: Option<u16>,
}

/// `[admin]`: metrics, health, readiness, effective config, certificates. Keep it private.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    #[serde(default = "defaults::admin_address")]
    pub address: SocketAddr,
    /// Host names (besides `localhost` and IP literals, always accepted) a request may name
    /// in `Host`; anything else is refused, which defeats DNS rebinding.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// A file holding the admin bearer token (at least 32 characters, read per request so a
    /// rotated Secret applies at once). Required for `POST` endpoints, and for every endpoint
    /// but status-only `/healthz` and `/readyz` when `address` is not loopback.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            address: defaults::admin_address(),
            allowed_hosts: Vec::new(),
            token_file: None,
        }
    }
}

/// TLS protocol versions we accept; older ones are refused by design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// `[tls]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    #[serde(default = "defaults::min_tls")]
    pub min_version: TlsVersion,
    #[serde(default = "defaults::max_tls")]
    pub max_version: TlsVersion,
    /// Served when no SNI entry matches. Without it the edge generates a self-signed
    /// certificate for localhost (dev only; logged loudly).
    #[serde(default)]
    pub default: Option<CertPaths>,
    /// Per-SNI certificates (`server_names` exact or `*.example.com`).
    #[serde(default)]
    pub certs: Vec<SniCertConfig>,
    /// Hosts every loaded certificate set must cover (SAN check before a swap).
    #[serde(default)]
    pub required_hosts: Vec<String>,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            min_version: defaults::min_tls(),
            max_version: defaults::max_tls(),
            default: None,
            certs: Vec::new(),
            required_hosts: Vec::new(),
        }
    }
}

/// A certificate chain (leaf first) and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[[tls.certs]]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SniCertConfig {
    pub server_names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[limits]`: everything a client controls is bounded.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Sum of header name + value bytes of a request (431 above).
    #[serde(default = "defaults::max_request_header_bytes")]
    pub max_request_header_bytes: usize,
    /// Number of request headers (431 above).
    #[serde(default = "defaults::max_request_headers")]
    pub max_request_headers: usize,
    /// Request body bytes unless a route says otherwise (413 above).
    #[serde(default = "defaults::max_request_body_bytes")]
    pub max_request_body_bytes: u64,
    /// Idle time allowed on a keep-alive connection between requests.
    #[serde(default = "defaults::idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time allowed between two reads of a request (headers or body).
    #[serde(default = "defaults::client_read_timeout", with = "humantime_serde")]
    pub client_read_timeout: Duration,
    /// Time allowed for one write to a client.
    #[serde(default = "defaults::client_write_timeout", with = "humantime_serde")]
    pub client_write_timeout: Duration,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients.
    #[serde(default = "defaults::h2_max_concurrent_streams")]
    pub h2_max_concurrent_streams: u32,
    /// Requests served on one keep-alive HTTP/1.1 connection before it is closed.
    #[serde(default = "defaults::keepalive_requests")]
    pub keepalive_requests: u32,
    /// Whole HTTP/1.1 request header, first byte to last (a keep-alive connection gets
    /// `idle_timeout` more for the wait before it). Restarted reads do not extend it.
    #[serde(default = "defaults::header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// TCP: from accept to the end of the TLS handshake (applies at start; restart to change).
    #[serde(default = "defaults::handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Open client connections (TCP + QUIC) before requests are answered 503; at twice
    /// this, new connections are refused.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Open client connections from one IP address; more are refused before TLS.
    #[serde(default = "defaults::max_connections_per_ip")]
    pub max_connections_per_ip: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_request_header_bytes: defaults::max_request_header_bytes(),
            max_request_headers: defaults::max_request_headers(),
            max_request_body_bytes: defaults::max_request_body_bytes(),
            idle_timeout: defaults::idle_timeout(),
            client_read_timeout: defaults::client_read_timeout(),
            client_write_timeout: defaults::client_write_timeout(),
            h2_max_concurrent_streams: defaults::h2_max_concurrent_streams(),
            keepalive_requests: defaults::keepalive_requests(),
            header_timeout: defaults::header_timeout(),
            handshake_timeout: defaults::handshake_timeout(),
            max_connections: defaults::max_connections(),
            max_connections_per_ip: defaults::max_connections_per_ip(),
        }
    }
}

/// `[http3]`: QUIC transport settings, matched to the TCP side's limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Http3Section {
    #[serde(default = "defaults::quic_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(default = "defaults::quic_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Concurrent request streams per connection (the h2 `max_concurrent_streams` analogue).
    #[serde(default = "defaults::h2_max_concurrent_streams_u64")]
    pub max_streams_bidi: u64,
    /// Connection-level flow-control window.
    #[serde(default = "defaults::quic_initial_max_data")]
    pub initial_max_data: u64,
    /// Per-stream flow-control window.
    #[serde(default = "defaults::quic_initial_max_stream_data")]
    pub initial_max_stream_data: u64,
    /// Largest UDP payload sent and accepted.
    #[serde(default = "defaults::quic_max_udp_payload")]
    pub max_udp_payload: usize,
    /// 0-RTT replays are possible, so when enabled only safe methods (GET, HEAD,
    /// OPTIONS) are served from early data; others get 425 Too Early.
    #[serde(default)]
    pub enable_0rtt: bool,
}

impl Default for Http3Section {
    fn default() -> Self {
        Self {
            idle_timeout: defaults::quic_idle_timeout(),
            handshake_timeout: defaults::quic_handshake_timeout(),
            max_streams_bidi: defaults::h2_max_concurrent_streams_u64(),
            initial_max_data: defaults::quic_initial_max_data(),
            initial_max_stream_data: defaults::quic_initial_max_stream_data(),
            max_udp_payload: defaults::quic_max_udp_payload(),
            enable_0rtt: false,
        }
    }
}

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

/// Which requests a route takes by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// Any request.
    Any,
    /// Only `content-type: application/grpc*` (gRPC and grpc-web).
    Grpc,
    /// Everything that is not gRPC.
    Http,
}

/// `[[routes]]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique; used in metrics, logs and the plugin registry.
    pub id: String,
    /// `example.com`, `*.example.com` or `*` (any host).
    #[serde(default = "defaults::any_host")]
    pub hosts: Vec<String>,
    /// Longest matching prefix wins (after host specificity). For gRPC use
    /// `/package.Service/` or `/package.Service/Method`.
    #[serde(default = "defaults::root_path")]
    pub path_prefix: String,
    #[serde(default = "defaults::route_kind")]
    pub kind: RouteKind,
    /// Removed from the front of the path before forwarding (`/api` turns
    /// `/api/records/1` into `/records/1`). Must be a prefix of `path_prefix`.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// The cluster that serves this route.
    pub upstream: String,
    /// Overrides `[limits] max_request_body_bytes` for this route.
    #[serde(default)]
    pub max_request_body_bytes: Option<u64>,
    #[serde(default)]
    pub plugins: RoutePolicy,
    /// Response headers added where the upstream set none (`api`, `browser`, `off`).
    #[serde(default)]
    pub security_headers: SecurityHeaders,
    /// The `content-security-policy` of a `browser` route (a strict same-origin default).
    #[serde(default)]
    pub content_security_policy: Option<String>,
    /// Response compression (gzip, brotli, zstd by `Accept-Encoding`); off when absent.
    #[serde(default)]
    pub compression: Option<CompressionConfig>,
}

/// `routes[].compression`: Pingora's compression module, per route.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Responses announcing fewer bytes (`content-length`) are sent as they are.
    #[serde(default = "defaults::compression_min_size")]
    pub min_size: u64,
    /// Media types to compress; an entry ending in `/` is a prefix (`text/`).
    #[serde(default = "defaults::compression_types")]
    pub content_types: Vec<String>,
}

impl CompressionConfig {
    /// Whether a response of this `content-type` may be compressed.
    pub fn compresses(&self, content_type: &str) -> bool {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        self.content_types.iter().any(|t| {
            if t.ends_with('/') {
                media.starts_with(t.as_str())
            } else {
                media == *t
            }
        })
    }
}

/// Presets of `routes[].security_headers`; each header is added only when the upstream's
/// response lacks it (an app that sends its own keeps it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityHeaders {
    /// JSON and gRPC APIs: `x-content-type-options: nosniff` only.
    #[default]
    Api,
    /// Pages: nosniff, a referrer policy, no framing, a CSP, a cross-origin opener policy.
    Browser,
    /// Nothing added.
    Off,
}

impl SecurityHeaders {
    /// Same origin only: scripts, styles, images, fetches; no plugins, framing or foreign forms.
    pub const DEFAULT_CSP: &'static str =
        "default-src 'self'; base-uri 'self'; object-src 'none'; \
         frame-ancestors 'none'; form-action 'self'; img-src 'self' data:";

    /// The headers of the preset, in order.
    pub fn headers(self, csp: Option<&str>) -> Vec<(&'static str, String)> {
        let nosniff = ("x-content-type-options", "nosniff".to_string());
        match self {
            SecurityHeaders::Off => Vec::new(),
            SecurityHeaders::Api => vec![nosniff],
            SecurityHeaders::Browser => vec![
                nosniff,
                (
                    "referrer-policy",
                    "strict-origin-when-cross-origin".to_string(),
                ),
                ("x-frame-options", "DENY".to_string()),
                (
                    "content-security-policy",
                    csp.unwrap_or(Self::DEFAULT_CSP).to_string(),
                ),
                ("cross-origin-opener-policy", "same-origin".to_string()),
            ],
        }
    }
}

/// `[logging]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// A `tracing` filter: `info`, `edge=debug,info`, ...
    #[serde(default = "defaults::log_level")]
    pub level: String,
    #[serde(default = "defaults::log_format")]
    pub format: LogFormat,
    /// One JSON line per request (target `access`).
    #[serde(default = "defaults::yes")]
    pub access_log: bool,
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self {
            level: defaults::log_level(),
            format: defaults::log_format(),
            access_log: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Text,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            threads: defaults::threads(),
            grace_period: defaults::grace_period(),
            graceful_shutdown_timeout: defaults::graceful_shutdown_timeout(),
            pid_file: defaults::pid_file(),
            upgrade_sock: defaults::upgrade_sock(),
            watch: true,
            upstream_keepalive_pool_size: defaults::upstream_keepalive_pool_size(),
        }
    }
}

impl EdgeConfig {
    /// A copy safe to print (admin `/config`, `edge check`): secrets masked.
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        copy.plugins = self.plugins.redacted();
        copy.tracing.otlp_endpoint = self
            .tracing
            .otlp_endpoint
            .as_deref()
            .map(gateway_plugins::redact_url);
        copy
    }

    /// Makes every relative path absolute against `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        fix(&mut self.server.pid_file);
        if let Some(token) = self.admin.token_file.as_mut() {
            fix(token);
        }
        fix(&mut self.server.upgrade_sock);
        if let Some(default) = self.tls.default.as_mut() {
            fix(&mut default.cert);
            fix(&mut default.key);
        }
        for sni in &mut self.tls.certs {
            fix(&mut sni.cert);
            fix(&mut sni.key);
        }
        for cluster in self.clusters.values_mut() {
            if let Some(ca) = cluster.tls_ca_file.as_mut() {
                fix(ca);
            }
        }
        if let Some(jwt) = self.plugins.jwt.as_mut() {
            for key in &mut jwt.static_keys {
                fix(&mut key.pem_file);
            }
            if let Some(ca) = jwt.jwks_ca_file.as_mut() {
                fix(ca);
            }
        }
        if let Some(identity) = self.plugins.identity.as_mut() {
            fix(&mut identity.key_dir);
        }
    }

    /// The body limit of a route.
    pub fn body_limit(&self, route: &RouteConfig) -> u64 {
        route
            .max_request_body_bytes
            .unwrap_or(self.limits.max_request_body_bytes)
    }
}

mod defaults {
    use super::*;

    pub fn yes() -> bool {
        true
    }
    pub fn threads() -> usize {
        2
    }
    pub fn upstream_keepalive_pool_size() -> usize {
        1024
    }
    pub fn grace_period() -> Duration {
        Duration::from_secs(10)
    }
    pub fn graceful_shutdown_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn pid_file() -> PathBuf {
        PathBuf::from("/tmp/record-edge.pid")
    }
    pub fn upgrade_sock() -> PathBuf {
        PathBuf::from("/tmp/record-edge-upgrade.sock")
    }
    pub fn https_address() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8443))
    }
    pub fn http_address() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn http_listener() -> Option<HttpListener> {
        Some(HttpListener {
            enabled: true,
            address: http_address(),
            redirect_port: None,
        })
    }
    pub fn admin_address() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9000))
    }
    pub fn health_path() -> String {
        "/api/healthz".into()
    }
    pub fn hsts() -> String {
        "max-age=31536000".into()
    }
    pub fn min_tls() -> TlsVersion {
        TlsVersion::Tls12
    }
    pub fn max_tls() -> TlsVersion {
        TlsVersion::Tls13
    }
    pub fn max_request_header_bytes() -> usize {
        32 * 1024
    }
    pub fn max_request_headers() -> usize {
        100
    }
    pub fn max_request_body_bytes() -> u64 {
        1024 * 1024
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn client_read_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn client_write_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn h2_max_concurrent_streams() -> u32 {
        100
    }
    pub fn h2_max_concurrent_streams_u64() -> u64 {
        100
    }
    pub fn keepalive_requests() -> u32 {
        10_000
    }
    pub fn header_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn handshake_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_connections() -> usize {
        20_000
    }
    pub fn max_connections_per_ip() -> usize {
        256
    }
    pub fn max_concurrent_requests() -> usize {
        1_000
    }
    pub fn compression_min_size() -> u64 {
        1024
    }
    pub fn compression_types() -> Vec<String> {
        [
            "text/",
            "application/json",
            "application/javascript",
            "application/xml",
            "application/manifest+json",
            "application/wasm",
            "image/svg+xml",
        ]
        .map(String::from)
        .to_vec()
    }
    pub fn outlier_failures() -> u32 {
        5
    }
    pub fn outlier_base() -> Duration {
        Duration::from_secs(10)
    }
    pub fn outlier_max() -> Duration {
        Duration::from_secs(300)
    }
    pub fn outlier_percent() -> u8 {
        50
    }
    pub fn quic_idle_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn quic_handshake_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn quic_initial_max_data() -> u64 {
        10 * 1024 * 1024
    }
    pub fn quic_initial_max_stream_data() -> u64 {
        1024 * 1024
    }
    pub fn quic_max_udp_payload() -> usize {
        1350
    }
    pub fn upstream_protocol() -> UpstreamProtocol {
        UpstreamProtocol::H1
    }
    pub fn balance() -> Balance {
        Balance::RoundRobin
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub fn upstream_read_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn upstream_write_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn upstream_idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_h2_streams() -> usize {
        100
    }
    pub fn retries() -> u32 {
        1
    }
    pub fn health_check_path() -> String {
        "/healthz".into()
    }
    pub fn health_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub fn health_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub fn unhealthy_threshold() -> u32 {
        2
    }
    pub fn healthy_threshold() -> u32 {
        1
    }
    pub fn any_host() -> Vec<String> {
        vec!["*".into()]
    }
    pub fn root_path() -> String {
        "/".into()
    }
    pub fn route_kind() -> RouteKind {
        RouteKind::Any
    }
    pub fn log_level() -> String {
        "info".into()
    }
    pub fn log_format() -> LogFormat {
        LogFormat::Json
    }
    pub fn sample_ratio() -> f64 {
        1.0
    }
    pub fn service_name() -> String {
        "edge".into()
    }
}
