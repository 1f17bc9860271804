//! The edge's one typed config file (TOML).
//!
//! Every table denies unknown fields, every default is written once (in `defaults`
//! below), and relative paths are relative to the config file's directory. Loading
//! ([`load`]) parses, validates and reports problems as `file:line: key: message`.

mod clusters;
mod load;
pub mod locate;
mod routes;

pub use clusters::*;
pub use routes::*;

pub(crate) use load::is_valid_host_pattern;
pub use load::{load_file, load_str, ConfigError, ConfigProblem, LoadedConfig, EMBEDDED_DEFAULT};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_plugins::PluginsConfig;
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
    #[serde(default)]
    pub cache: CacheSection,
}

/// `[cache]`: the one in-memory store every cached route shares (applies at start).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Total bytes of stored responses (bodies + headers); least recently used go first.
    #[serde(default = "defaults::cache_max_bytes")]
    pub max_bytes: usize,
    /// How long concurrent misses for one key wait for the first one's response before
    /// going to the origin themselves.
    #[serde(default = "defaults::cache_lock_timeout", with = "humantime_serde")]
    pub lock_timeout: Duration,
}

impl Default for CacheSection {
    fn default() -> Self {
        Self {
            max_bytes: defaults::cache_max_bytes(),
            lock_timeout: defaults::cache_lock_timeout(),
        }
    }
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
    /// How the HTTPS service's worker threads share work. `true`: one work-stealing tokio
    /// runtime (an idle thread takes tasks from a busy one). `false`: one single-threaded
    /// runtime per thread; each new connection lands on a random one and stays there, which
    /// costs less per request (h2: 12-15 % less CPU, perf/README "Per-thread runtimes")
    /// but lets a busy thread's connections wait while another idles, and a pooled upstream
    /// connection opened on one thread wakes that thread when another reuses it. Unset:
    /// `false` with one thread (there is nothing to steal from), `true` with more.
    #[serde(default)]
    pub work_stealing: Option<bool>,
}

impl ServerSection {
    /// [`Self::work_stealing`] with its default applied.
    pub fn work_stealing(&self) -> bool {
        self.work_stealing.unwrap_or(self.threads > 1)
    }
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
    /// More addresses served the same way (TCP and, with `http3`, UDP), on the same port:
    /// `["[::1]:8443"]` beside `127.0.0.1:8443`, because browsers try `localhost` as `::1`
    /// first and would otherwise never reach HTTP/3.
    #[serde(default)]
    pub extra_addresses: Vec<SocketAddr>,
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
    /// Bytes read from a client's TCP socket at a time: a buffer per connection, held (and
    /// resident) while it is open. Pingora's default, 64 KiB, made an idle keep-alive
    /// connection cost ~100 KiB; reads larger than the buffer bypass it, so a TLS record
    /// body (up to 16 KiB) still arrives in one read.
    #[serde(default = "defaults::read_buffer_bytes")]
    pub read_buffer_bytes: usize,
}

impl Default for HttpsListener {
    fn default() -> Self {
        Self {
            address: defaults::https_address(),
            extra_addresses: Vec::new(),
            http3: true,
            health_path: defaults::health_path(),
            hsts: defaults::hsts(),
            read_buffer_bytes: defaults::read_buffer_bytes(),
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
    /// The listener accepts 0-RTT early data. Early requests are served only on routes
    /// with `early_data = true`, only for safe methods (GET, HEAD, OPTIONS), and only
    /// once per ClientHello; every other early request gets 425 Too Early.
    #[serde(default)]
    pub enable_0rtt: bool,
    /// Clients may move the connection to a new address on their own (RFC 9000 §9); a
    /// NAT rebinding (a new address the client did not choose) is followed either way.
    #[serde(default = "defaults::yes")]
    pub active_migration: bool,
    /// ClientHellos the 0-RTT replay record holds (each for `REPLAY_WINDOW`, 130 s). When
    /// it is full, early data is refused (425) until entries age out: fail closed.
    #[serde(default = "defaults::early_data_replay_entries")]
    pub early_data_replay_entries: usize,
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
            active_migration: true,
            early_data_replay_entries: defaults::early_data_replay_entries(),
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
            work_stealing: None,
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
    pub fn read_buffer_bytes() -> usize {
        4 * 1024
    }
    pub fn max_connections_per_ip() -> usize {
        256
    }
    pub fn max_concurrent_requests() -> usize {
        1_000
    }
    pub fn max_pending_connections() -> usize {
        256
    }
    pub fn cache_ttl() -> Duration {
        Duration::from_secs(10)
    }
    pub fn cache_stale_while_revalidate() -> Duration {
        Duration::from_secs(10)
    }
    pub fn cache_stale_if_error() -> Duration {
        Duration::from_secs(60)
    }
    pub fn cache_max_object_bytes() -> usize {
        1024 * 1024
    }
    pub fn cache_max_bytes() -> usize {
        64 * 1024 * 1024
    }
    pub fn cache_lock_timeout() -> Duration {
        Duration::from_secs(5)
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
    /// About 10 MiB of record at most; room for ~500 early-data connections a second.
    pub fn early_data_replay_entries() -> usize {
        65_536
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
