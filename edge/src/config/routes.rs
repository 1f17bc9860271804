//! `[[routes]]`: matching, forwarding, per-route policy, response headers and compression.

use std::time::Duration;

use gateway_plugins::RoutePolicy;
use serde::{Deserialize, Serialize};

use super::defaults;

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
    /// The micro-cache for this route's GET responses; off when absent.
    #[serde(default)]
    pub cache: Option<RouteCacheConfig>,
    /// Serve GET, HEAD and OPTIONS requests that arrive in 0-RTT early data (forwarded
    /// with `Early-Data: 1`); needs `http3.enable_0rtt`. Off: every early request to the
    /// route gets 425 Too Early and the client retries after the handshake.
    #[serde(default)]
    pub early_data: bool,
}

/// `routes[].cache`: which responses of the route the edge keeps and for how long.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCacheConfig {
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Freshness of a response that states none (no `Cache-Control` max-age/s-maxage, no
    /// `Expires`); the origin's own freshness wins when it gives one.
    #[serde(default = "defaults::cache_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// After expiry, serve the stale copy this long while one request refreshes it (unless
    /// the origin's `stale-while-revalidate` says otherwise).
    #[serde(
        default = "defaults::cache_stale_while_revalidate",
        with = "humantime_serde"
    )]
    pub stale_while_revalidate: Duration,
    /// After expiry, serve the stale copy this long when the origin fails (5xx, unreachable).
    #[serde(default = "defaults::cache_stale_if_error", with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// Larger responses are passed through and not kept.
    #[serde(default = "defaults::cache_max_object_bytes")]
    pub max_object_bytes: usize,
    /// Requests carrying `Authorization` are cached per verified user (`x-user-id` from the
    /// route's JWT check) instead of bypassing the cache. Needs `plugins.jwt` on the route.
    #[serde(default)]
    pub per_user: bool,
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
