//! Policy configuration as it appears in the edge's TOML file.
//!
//! `[plugins]` holds the process-wide parts ([`PluginsConfig`]); each route's
//! `[routes.plugins]` table is a [`RoutePolicy`]. Every struct denies unknown fields so a
//! typo is an error with a location, never a silently ignored setting. Defaults live here
//! and only here.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// `[plugins]`: shared policy resources.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Where JWT verification keys come from and what every token must say.
    #[serde(default)]
    pub jwt: Option<JwtProviderConfig>,
    /// Redis for revocations and cluster-wide rate limits. Without it, revocations and
    /// limits are kept in process (correct for a single node).
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    #[serde(default)]
    pub revocation: RevocationConfig,
    /// The key for signing identity assertions to the services. Without it the edge
    /// forwards no identity (services then answer 401 to protected calls).
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
    #[serde(default)]
    pub client_ip: ClientIpConfig,
    #[serde(default)]
    pub rate_limit: RateLimitGlobalConfig,
}

impl PluginsConfig {
    /// A copy safe to print: credentials in URLs (the Redis URL, the JWKS URL) are masked.
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        if let Some(redis) = copy.redis.as_mut() {
            redis.url = redact_url(&redis.url);
        }
        if let Some(jwt) = copy.jwt.as_mut() {
            jwt.jwks_url = jwt.jwks_url.as_deref().map(redact_url);
        }
        copy
    }
}

/// Query parameters whose values are masked by [`redact_url`] (compared case-insensitively;
/// a name containing one of these counts, e.g. `access_token`, `api-key`).
const SECRET_QUERY_NAMES: [&str; 6] = ["token", "key", "secret", "password", "auth", "sig"];

/// A URL safe to print: the userinfo (`user:password@`) becomes `***@` — all of it, so a
/// password containing `@` or `:` leaks nothing (the userinfo ends at the LAST `@` of the
/// authority, as URL parsers read it) — and the values of secret-looking query parameters
/// become `***`. Anything else is kept, so an operator still sees which host is meant.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((query, fragment)) => (query, Some(fragment)),
                None => (query, None),
            };
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret_name(name) => format!("{name}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
            format!("{path}?{}{fragment}", masked.join("&"))
        }
        None => tail.to_string(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{tail}"),
        None => format!("{host}{tail}"),
    }
}

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_QUERY_NAMES
        .iter()
        .any(|secret| name.contains(secret))
}

/// Signature algorithms a route may accept. Anything else (`none`, `HS*`, ...) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum JwtAlgorithm {
    EdDSA,
    ES256,
    RS256,
}

/// `[plugins.jwt]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtProviderConfig {
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// The issuer's JWKS document: `https://...`, or `http://...` to a loopback or
    /// in-cluster host when `jwks_allow_http` is set (e.g. the auth service's
    /// `http://127.0.0.1:4001/.well-known/jwks.json`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM bundle of the CAs an `https://` JWKS server's certificate must chain to; when
    /// set, only these are trusted. Default: the system roots. Relative to the config file.
    #[serde(default)]
    pub jwks_ca_file: Option<PathBuf>,
    /// Accept an `http://` `jwks_url`. Only valid for loopback, private-address and
    /// in-cluster hosts (single-label or `*.svc` names): anyone on a plain-HTTP path could
    /// swap the keys.
    #[serde(default)]
    pub jwks_allow_http: bool,
    /// How often the JWKS is refetched in the background.
    #[serde(default = "defaults::jwks_refresh_interval", with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    /// Floor between refetches triggered by an unknown `kid` (stops a token with a random
    /// `kid` from hammering the auth service).
    #[serde(
        default = "defaults::jwks_min_refetch_interval",
        with = "humantime_serde"
    )]
    pub jwks_min_refetch_interval: Duration,
    /// Timeout of one JWKS fetch.
    #[serde(default = "defaults::jwks_fetch_timeout", with = "humantime_serde")]
    pub jwks_fetch_timeout: Duration,
    /// Keys from PEM files (public keys), used alongside or instead of the JWKS.
    #[serde(default)]
    pub static_keys: Vec<StaticKeyConfig>,
    /// Clock leeway for `exp` and `nbf`.
    #[serde(default = "defaults::leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Verified tokens remembered (until their `exp`) so a signature is checked once.
    #[serde(default = "defaults::verified_cache_size")]
    pub verified_cache_size: usize,
}

/// `[[plugins.jwt.static_keys]]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticKeyConfig {
    pub kid: String,
    pub algorithm: JwtAlgorithm,
    /// A public key in PEM (SPKI). Relative paths are relative to the config file.
    pub pem_file: PathBuf,
}

/// `[plugins.redis]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`; a password in it is redacted when printed.
    pub url: String,
    /// Prefix of every key and channel (`<namespace>revoked:<jti>`, `<namespace>revocations`).
    #[serde(default)]
    pub namespace: String,
    #[serde(default = "defaults::redis_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Per-command timeout; a slower Redis counts as unreachable for that request.
    #[serde(default = "defaults::redis_command_timeout", with = "humantime_serde")]
    pub command_timeout: Duration,
}

/// `[plugins.revocation]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// Pub/sub channel auth publishes logouts on (prefixed with the Redis namespace).
    #[serde(default = "defaults::revocation_channel")]
    pub channel: String,
    /// Revoked jtis kept locally (each until its token would expire).
    #[serde(default = "defaults::cache_size")]
    pub revoked_cache_size: usize,
    /// Live jtis remembered as "not revoked" so Redis is asked once per token.
    #[serde(default = "defaults::cache_size")]
    pub negative_cache_size: usize,
    /// How long a "not revoked" answer is trusted while the subscription is healthy.
    #[serde(default = "defaults::negative_cache_ttl", with = "humantime_serde")]
    pub negative_cache_ttl: Duration,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            channel: defaults::revocation_channel(),
            revoked_cache_size: defaults::cache_size(),
            negative_cache_size: defaults::cache_size(),
            negative_cache_ttl: defaults::negative_cache_ttl(),
        }
    }
}

/// `[plugins.identity]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The key directory shared with the services: one `<key-id>.key` file (base64 of at
    /// least 32 bytes) per key. Relative paths are relative to the config file.
    pub key_dir: PathBuf,
    /// The key the edge signs with: `<key_dir>/<key_id>.key`. The services accept every
    /// key of their directory, so a rotation adds the new key there first, then moves this
    /// (docs/identity-rotation.md).
    pub key_id: String,
}

/// `[plugins.client_ip]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIpConfig {
    /// Peers whose `X-Forwarded-For` is believed (e.g. a cloud load balancer's ranges).
    /// Empty: the TCP/UDP peer is the client, always.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
}

/// `[plugins.rate_limit]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitGlobalConfig {
    /// Keys (IPs, users) tracked per rule; past the cap, new keys share one overflow bucket
    /// with the rule's own quota (so a flood of new addresses is limited as a group).
    #[serde(default = "defaults::max_tracked_keys")]
    pub max_tracked_keys: usize,
    /// How often idle keys are purged.
    #[serde(default = "defaults::purge_interval", with = "humantime_serde")]
    pub purge_interval: Duration,
}

impl Default for RateLimitGlobalConfig {
    fn default() -> Self {
        Self {
            max_tracked_keys: defaults::max_tracked_keys(),
            purge_interval: defaults::purge_interval(),
        }
    }
}

/// `[routes.plugins]`: the policy of one route. Empty means public and unlimited.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePolicy {
    #[serde(default)]
    pub jwt: Option<JwtRoutePolicy>,
    #[serde(default)]
    pub rate_limits: Vec<RateLimitRule>,
    #[serde(default)]
    pub cors: Option<CorsPolicy>,
}

/// Whether a route needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JwtMode {
    /// No token: 401. Bad token: 401.
    Required,
    /// No token: anonymous. Bad token: 401.
    Optional,
    /// Tokens are ignored.
    Off,
}

/// What to do when revocation cannot be checked (Redis unreachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Refuse the request (503).
    Closed,
    /// Accept the token as not revoked.
    Open,
}

/// `[routes.plugins.jwt]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtRoutePolicy {
    #[serde(default = "defaults::jwt_mode")]
    pub mode: JwtMode,
    #[serde(default = "defaults::algorithms")]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Default: `closed` for `required`, `open` for `optional`.
    #[serde(default)]
    pub revocation_fail_mode: Option<FailMode>,
}

impl JwtRoutePolicy {
    pub fn effective_fail_mode(&self) -> FailMode {
        self.revocation_fail_mode.unwrap_or(match self.mode {
            JwtMode::Required => FailMode::Closed,
            JwtMode::Optional | JwtMode::Off => FailMode::Open,
        })
    }
}

/// What a rate-limit bucket is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// The client IP.
    Ip,
    /// The token's `sub`; requests without identity are not limited by this rule.
    User,
    /// The `sub` when there is one, else the client IP.
    UserOrIp,
}

/// Where a bucket lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitScope {
    /// Per edge process (governor GCRA).
    Local,
    /// One quota across every edge sharing the Redis (falls back to local when Redis is down).
    Cluster,
}

/// `[[routes.plugins.rate_limits]]`: `requests` per `per`, plus `burst` extra.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    pub key: RateLimitKey,
    pub requests: u32,
    #[serde(default = "defaults::per", with = "humantime_serde")]
    pub per: Duration,
    /// Requests allowed at once above the steady rate (0 = none).
    #[serde(default)]
    pub burst: u32,
    #[serde(default = "defaults::scope")]
    pub scope: RateLimitScope,
    /// Rules naming the same budget share their buckets across routes (e.g. `login` on the
    /// HTTP route and on the gRPC method, so the two protocols do not each get the quota).
    /// Every rule of one budget must say the same key, requests, per, burst and scope.
    #[serde(default)]
    pub budget: Option<String>,
}

impl RateLimitRule {
    /// What must match between rules sharing a budget.
    pub fn same_quota(&self, other: &RateLimitRule) -> bool {
        (self.key, self.requests, self.per, self.burst, self.scope)
            == (
                other.key,
                other.requests,
                other.per,
                other.burst,
                other.scope,
            )
    }
}

/// `[routes.plugins.cors]`: an explicit allow-list; no wildcard origin with credentials.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorsPolicy {
    /// Exact origins (`https://app.example.com`), or `*` (then `allow_credentials` must be false).
    pub allowed_origins: Vec<String>,
    #[serde(default = "defaults::cors_methods")]
    pub allowed_methods: Vec<String>,
    #[serde(default = "defaults::cors_headers")]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default = "defaults::cors_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

/// One problem found while validating policy config; `path` is relative to the table
/// being validated (`jwt.algorithms[1]`, `rate_limits[0].scope`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl RoutePolicy {
    /// Checks what serde cannot: cross-references to `[plugins]` and value ranges.
    pub fn validate(&self, global: &PluginsConfig) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Some(jwt) = &self.jwt {
            if jwt.mode != JwtMode::Off && global.jwt.is_none() {
                issues.push(ConfigIssue {
                    path: "jwt".into(),
                    message: "route needs tokens but [plugins.jwt] (issuer, audience, keys) is not configured".into(),
                });
            }
            if jwt.mode != JwtMode::Off && jwt.algorithms.is_empty() {
                issues.push(ConfigIssue {
                    path: "jwt.algorithms".into(),
                    message: "at least one algorithm must be allowed (EdDSA, ES256, RS256)".into(),
                });
            }
        }
        let has_identity = self
            .jwt
            .as_ref()
            .is_some_and(|jwt| jwt.mode != JwtMode::Off);
        for (i, rule) in self.rate_limits.iter().enumerate() {
            if rule.requests == 0 {
                issues.push(ConfigIssue {
                    path: format!("rate_limits[{i}].requests"),
                    message: "must be at least 1".into(),
                });
            }
            if rule.per.is_zero() {
                issues.push(ConfigIssue {
                    path: format!("rate_limits[{i}].per"),
                    message: "must be a positive duration".into(),
                });
            }
            if rule.key == RateLimitKey::User && !has_identity {
                issues.push(ConfigIssue {
                    path: format!("rate_limits[{i}].key"),
                    message: "`user` needs [routes.plugins.jwt] with mode required or optional"
                        .into(),
                });
            }
            if let Some(budget) = &rule.budget {
                let valid = !budget.is_empty()
                    && budget.len() <= 64
                    && budget
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    issues.push(ConfigIssue {
                        path: format!("rate_limits[{i}].budget"),
                        message: "1 to 64 of [A-Za-z0-9_-]".into(),
                    });
                }
            }
            if rule.scope == RateLimitScope::Cluster && global.redis.is_none() {
                issues.push(ConfigIssue {
                    path: format!("rate_limits[{i}].scope"),
                    message: "`cluster` needs [plugins.redis]".into(),
                });
            }
        }
        if let Some(cors) = &self.cors {
            if cors.allowed_origins.is_empty() {
                issues.push(ConfigIssue {
                    path: "cors.allowed_origins".into(),
                    message: "list at least one origin".into(),
                });
            }
            if cors.allow_credentials && cors.allowed_origins.iter().any(|o| o == "*") {
                issues.push(ConfigIssue {
                    path: "cors.allowed_origins".into(),
                    message: "`*` cannot be combined with allow_credentials = true".into(),
                });
            }
        }
        issues
    }
}

impl PluginsConfig {
    /// Checks the process-wide policy settings.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Some(jwt) = &self.jwt {
            if jwt.jwks_url.is_none() && jwt.static_keys.is_empty() {
                issues.push(ConfigIssue {
                    path: "jwt".into(),
                    message: "set jwks_url or at least one static_keys entry".into(),
                });
            }
            issues.extend(crate::jwt::jwks_transport_issues(jwt));
            if jwt.issuer.is_empty() {
                issues.push(ConfigIssue {
                    path: "jwt.issuer".into(),
                    message: "must not be empty".into(),
                });
            }
            if jwt.audience.is_empty() {
                issues.push(ConfigIssue {
                    path: "jwt.audience".into(),
                    message: "must not be empty".into(),
                });
            }
        }
        if let Some(redis) = &self.redis {
            if !(redis.url.starts_with("redis://") || redis.url.starts_with("rediss://")) {
                issues.push(ConfigIssue {
                    path: "redis.url".into(),
                    message: "must start with redis:// or rediss://".into(),
                });
            }
        }
        if self.rate_limit.max_tracked_keys == 0 {
            issues.push(ConfigIssue {
                path: "rate_limit.max_tracked_keys".into(),
                message: "must be at least 1".into(),
            });
        }
        issues
    }
}

mod defaults {
    use super::*;

    pub fn jwks_refresh_interval() -> Duration {
        Duration::from_secs(300)
    }
    pub fn jwks_min_refetch_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn jwks_fetch_timeout() -> Duration {
        Duration::from_secs(3)
    }
    pub fn leeway() -> Duration {
        Duration::from_secs(30)
    }
    pub fn verified_cache_size() -> usize {
        100_000
    }
    pub fn redis_connect_timeout() -> Duration {
        Duration::from_millis(500)
    }
    pub fn redis_command_timeout() -> Duration {
        Duration::from_millis(250)
    }
    pub fn revocation_channel() -> String {
        "revocations".into()
    }
    pub fn cache_size() -> usize {
        100_000
    }
    pub fn negative_cache_ttl() -> Duration {
        Duration::from_secs(300)
    }
    pub fn max_tracked_keys() -> usize {
        100_000
    }
    pub fn purge_interval() -> Duration {
        Duration::from_secs(60)
    }
    pub fn jwt_mode() -> JwtMode {
        JwtMode::Required
    }
    pub fn algorithms() -> Vec<JwtAlgorithm> {
        vec![JwtAlgorithm::EdDSA]
    }
    pub fn per() -> Duration {
        Duration::from_secs(1)
    }
    pub fn scope() -> RateLimitScope {
        RateLimitScope::Local
    }
    pub fn cors_methods() -> Vec<String> {
        ["GET", "POST", "PUT", "PATCH", "DELETE"]
            .map(String::from)
            .to_vec()
    }
    pub fn cors_headers() -> Vec<String> {
        ["authorization", "content-type", "x-request-id"]
            .map(String::from)
            .to_vec()
    }
    pub fn cors_max_age() -> Duration {
        Duration::from_secs(600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_printed_without_credentials() {
        for (url, printed) in [
            (
                "redis://user:s3cret@10.0.0.1:6379/0",
                "redis://***@10.0.0.1:6379/0",
            ),
            ("redis://:s3cret@redis:6379", "redis://***@redis:6379"),
            // A password with '@' in it (not percent-encoded): the userinfo ends at the
            // last '@', so no part of it leaks.
            (
                "redis://:p@ss@w0rd@redis:6379/1",
                "redis://***@redis:6379/1",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "https://auth.internal/.well-known/jwks.json?access_token=abc&v=2",
                "https://auth.internal/.well-known/jwks.json?access_token=***&v=2",
            ),
            (
                "http://u:p@collector:4317?API-Key=k#frag",
                "http://***@collector:4317?API-Key=***#frag",
            ),
            ("no-scheme:pw@host", "***@host"),
            // An '@' after the authority is path, not userinfo.
            ("https://host/a@b", "https://host/a@b"),
        ] {
            assert_eq!(redact_url(url), printed, "{url}");
            for secret in ["s3cret", "p@ss", "w0rd", "abc", "API-Key=k"] {
                assert!(!redact_url(url).contains(secret), "{url} leaks {secret}");
            }
        }
    }

    #[test]
    fn the_printable_config_masks_redis_and_jwks_urls() {
        let config: PluginsConfig = toml::from_str(
            r#"
[redis]
url = "redis://:top@secret@redis:6379"
[jwt]
issuer = "i"
audience = "a"
jwks_url = "http://auth:4001/.well-known/jwks.json?token=t0k"
"#,
        )
        .expect("parse");
        let printed = toml::to_string(&config.redacted()).expect("print");
        assert!(
            !printed.contains("top") && !printed.contains("t0k"),
            "{printed}"
        );
        assert!(printed.contains("redis:6379") && printed.contains("auth:4001"));
    }

    #[test]
    fn required_jwt_without_provider_is_reported_at_jwt() {
        let policy: RoutePolicy = toml::from_str("[jwt]\nmode = \"required\"\n").expect("parse");
        let issues = policy.validate(&PluginsConfig::default());
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "jwt");
    }

    #[test]
    fn user_keyed_limit_needs_jwt_and_cluster_scope_needs_redis() {
        let policy: RoutePolicy =
            toml::from_str("[[rate_limits]]\nkey = \"user\"\nrequests = 5\nscope = \"cluster\"\n")
                .expect("parse");
        let paths: Vec<String> = policy
            .validate(&PluginsConfig::default())
            .into_iter()
            .map(|i| i.path)
            .collect();
        assert_eq!(paths, ["rate_limits[0].key", "rate_limits[0].scope"]);
    }

    #[test]
    fn unknown_fields_and_algorithms_are_refused() {
        assert!(toml::from_str::<RoutePolicy>("[jwt]\nmood = \"required\"\n").is_err());
        assert!(toml::from_str::<RoutePolicy>("[jwt]\nalgorithms = [\"HS256\"]\n").is_err());
        assert!(toml::from_str::<RoutePolicy>("[jwt]\nalgorithms = [\"none\"]\n").is_err());
    }

    #[test]
    fn fail_mode_defaults_follow_jwt_mode() {
        let required: JwtRoutePolicy = toml::from_str("mode = \"required\"").expect("parse");
        let optional: JwtRoutePolicy = toml::from_str("mode = \"optional\"").expect("parse");
        assert_eq!(required.effective_fail_mode(), FailMode::Closed);
        assert_eq!(optional.effective_fail_mode(), FailMode::Open);
    }
}
