//! Parse + validate, with every problem located as `file:line: key: message`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::locate::{line_at, line_of, KeyPath};
use super::{EdgeConfig, HealthCheckKind, RouteConfig, RouteKind};

/// The config `edge` runs with when no `--config` is given: a dev setup in front of the
/// auth and records dev ports, with a generated self-signed certificate.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}: {}", self.file, line, self.key, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.key, self.message),
        }
    }
}

/// Every problem found (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A parsed, validated config and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: EdgeConfig,
    /// The file, or `None` for the embedded default.
    pub path: Option<PathBuf>,
    /// Directory relative paths were resolved against.
    pub base_dir: PathBuf,
    pub source_text: String,
}

impl LoadedConfig {
    /// `file` label used in problems.
    pub fn label(&self) -> String {
        label_for(self.path.as_deref())
    }

    /// Builds a problem located in this config's source.
    pub fn problem(&self, key: &KeyPath, message: impl Into<String>) -> ConfigProblem {
        Problems::new(&self.label(), &self.source_text).locate(key, message.into())
    }
}

fn label_for(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string())
        .unwrap_or_else(|| "<embedded default config>".to_string())
}

/// Reads and validates `path`.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
        problems: vec![ConfigProblem {
            file: label.clone(),
            line: None,
            key: "(file)".into(),
            message: format!("cannot read: {err}"),
        }],
    })?;
    let base_dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    let base_dir = std::fs::canonicalize(&base_dir).unwrap_or(base_dir);
    load_str(&text, Some(path), &base_dir)
}

/// Parses and validates config text. `path` only labels problems; `base_dir` resolves
/// relative paths.
pub fn load_str(
    text: &str,
    path: Option<&Path>,
    base_dir: &Path,
) -> Result<LoadedConfig, ConfigError> {
    let label = label_for(path);
    let problems = Problems::new(&label, text);
    let mut config = parse(text, &problems)?;
    config.resolve_paths(base_dir);
    let found = validate(&config, &problems);
    if !found.is_empty() {
        return Err(ConfigError { problems: found });
    }
    Ok(LoadedConfig {
        config,
        path: path.map(Path::to_path_buf),
        base_dir: base_dir.to_path_buf(),
        source_text: text.to_string(),
    })
}

struct Problems<'a> {
    label: &'a str,
    source: &'a str,
}

impl<'a> Problems<'a> {
    fn new(label: &'a str, source: &'a str) -> Self {
        Self { label, source }
    }

    fn locate(&self, key: &KeyPath, message: String) -> ConfigProblem {
        ConfigProblem {
            file: self.label.to_string(),
            line: line_of(self.source, key),
            key: key.to_string(),
            message,
        }
    }
}

fn parse(text: &str, problems: &Problems<'_>) -> Result<EdgeConfig, ConfigError> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|err| syntax_error(&err, problems))?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = KeyPath::parse(&err.path().to_string());
        let inner = err.into_inner();
        // serde's own line is better than our key lookup for type errors inside a value.
        let line = inner
            .span()
            .map(|span| line_at(problems.source, span.start))
            .or_else(|| line_of(problems.source, &key));
        ConfigError {
            problems: vec![ConfigProblem {
                file: problems.label.to_string(),
                line,
                key: key.to_string(),
                message: inner.message().trim().to_string(),
            }],
        }
    })
}

fn syntax_error(err: &toml::de::Error, problems: &Problems<'_>) -> ConfigError {
    ConfigError {
        problems: vec![ConfigProblem {
            file: problems.label.to_string(),
            line: err.span().map(|span| line_at(problems.source, span.start)),
            key: "(syntax)".into(),
            message: err.message().trim().to_string(),
        }],
    }
}

fn validate(config: &EdgeConfig, problems: &Problems<'_>) -> Vec<ConfigProblem> {
    let mut found = Vec::new();
    let mut add = |key: KeyPath, message: String| found.push(problems.locate(&key, message));
    let root = KeyPath::root();

    if config.server.threads == 0 {
        add(
            root.key("server").key("threads"),
            "must be at least 1".into(),
        );
    }
    if config.server.upstream_keepalive_pool_size == 0 {
        add(
            root.key("server").key("upstream_keepalive_pool_size"),
            "must be at least 1 (0 would reopen an upstream connection for every request)".into(),
        );
    }
    let https = &config.listeners.https;
    if !(1024..=1024 * 1024).contains(&https.read_buffer_bytes) {
        add(
            root.key("listeners").key("https").key("read_buffer_bytes"),
            format!(
                "{} is outside 1024 ..= 1048576 (bytes read from a client socket at a time)",
                https.read_buffer_bytes
            ),
        );
    }
    if !https.health_path.starts_with('/') {
        add(
            root.key("listeners").key("https").key("health_path"),
            "must start with '/'".into(),
        );
    }
    let mut tcp_addresses: Vec<(KeyPath, SocketAddr)> = vec![
        (
            root.key("listeners").key("https").key("address"),
            https.address,
        ),
        (root.key("admin").key("address"), config.admin.address),
    ];
    for (j, extra) in https.extra_addresses.iter().enumerate() {
        let key = root
            .key("listeners")
            .key("https")
            .key("extra_addresses")
            .index(j);
        if extra.port() != https.address.port() {
            // alt-svc advertises one port, and clients expect TCP and UDP to share it.
            add(
                key.clone(),
                format!(
                    "{extra} must use the port of listeners.https.address ({})",
                    https.address.port()
                ),
            );
        }
        tcp_addresses.push((key, *extra));
    }
    if let Some(http) = config.listeners.http.as_ref().filter(|h| h.enabled) {
        tcp_addresses.push((
            root.key("listeners").key("http").key("address"),
            http.address,
        ));
    }
    for (i, (key, addr)) in tcp_addresses.iter().enumerate() {
        if let Some((other, _)) = tcp_addresses[..i].iter().find(|(_, other)| {
            other.port() == addr.port()
                && addr.port() != 0
                && (other.ip() == addr.ip()
                    || other.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        }) {
            add(key.clone(), format!("{addr} is also used by {other}"));
        }
    }

    let admin = root.key("admin");
    if config.admin.token_file.is_none() && !config.admin.address.ip().is_loopback() {
        add(
            admin.key("token_file"),
            format!(
                "is required when admin.address ({}) is not a loopback address",
                config.admin.address
            ),
        );
    }
    if let Some(path) = &config.admin.token_file {
        if let Err(problem) = crate::admin_guard::read_token(path) {
            add(admin.key("token_file"), problem);
        }
    }
    for (i, host) in config.admin.allowed_hosts.iter().enumerate() {
        if !is_valid_host_pattern(host) || host.contains('*') {
            add(
                admin.key("allowed_hosts").index(i),
                format!("'{host}' is not a host name"),
            );
        }
    }

    if config.tls.min_version > config.tls.max_version {
        add(
            root.key("tls").key("min_version"),
            "is newer than max_version".into(),
        );
    }
    for (i, sni) in config.tls.certs.iter().enumerate() {
        let key = root.key("tls").key("certs").index(i);
        if sni.server_names.is_empty() {
            add(key.key("server_names"), "list at least one name".into());
        }
        for (j, name) in sni.server_names.iter().enumerate() {
            if !is_valid_host_pattern(name) || name == "*" {
                add(
                    key.key("server_names").index(j),
                    format!("'{name}' is not a host name or *.wildcard"),
                );
            }
        }
    }

    let limits = &config.limits;
    let limit_key = root.key("limits");
    for (name, value) in [
        (
            "max_request_header_bytes",
            limits.max_request_header_bytes as u64,
        ),
        ("max_request_headers", limits.max_request_headers as u64),
        ("max_request_body_bytes", limits.max_request_body_bytes),
        (
            "h2_max_concurrent_streams",
            u64::from(limits.h2_max_concurrent_streams),
        ),
        ("keepalive_requests", u64::from(limits.keepalive_requests)),
        ("max_connections", limits.max_connections as u64),
        (
            "max_connections_per_ip",
            limits.max_connections_per_ip as u64,
        ),
        ("header_timeout", limits.header_timeout.as_millis() as u64),
        (
            "handshake_timeout",
            limits.handshake_timeout.as_millis() as u64,
        ),
    ] {
        if value == 0 {
            add(limit_key.key(name), "must be at least 1".into());
        }
    }
    if config.http3.max_udp_payload < 1200 {
        add(
            root.key("http3").key("max_udp_payload"),
            "QUIC needs at least 1200 bytes (RFC 9000 section 14)".into(),
        );
    }

    if config.http3.enable_0rtt && config.http3.early_data_replay_entries == 0 {
        add(
            root.key("http3").key("early_data_replay_entries"),
            "must be at least 1 with enable_0rtt (an empty replay record refuses all early data)"
                .into(),
        );
    }

    for (name, cluster) in &config.clusters {
        let key = root.key("clusters").key(name);
        if cluster.addresses.is_empty() {
            add(key.key("addresses"), "list at least one host:port".into());
        }
        for (i, address) in cluster.addresses.iter().enumerate() {
            if let Err(message) = check_host_port(address) {
                add(key.key("addresses").index(i), message);
            }
        }
        if cluster.max_h2_streams == 0 {
            add(key.key("max_h2_streams"), "must be at least 1".into());
        }
        let outlier = &cluster.outlier_detection;
        if outlier.max_ejected_percent > 100 {
            add(
                key.key("outlier_detection").key("max_ejected_percent"),
                "is a percentage (0 to 100)".into(),
            );
        }
        if outlier.base_ejection.is_zero() || outlier.max_ejection < outlier.base_ejection {
            add(
                key.key("outlier_detection").key("max_ejection"),
                "needs 0 < base_ejection <= max_ejection".into(),
            );
        }
        if cluster.max_concurrent_requests == 0 {
            add(
                key.key("max_concurrent_requests"),
                "must be at least 1".into(),
            );
        }
        if let Some(audience) = &cluster.identity_audience {
            if !is_valid_audience(audience) {
                add(
                    key.key("identity_audience"),
                    format!("'{audience}': use 1 to 64 characters from A-Z a-z 0-9 . _ -"),
                );
            }
        }
        if cluster.tls_ca_file.is_some() && !cluster.protocol.is_tls() {
            add(
                key.key("tls_ca_file"),
                "only applies to TLS protocols (h1_tls, h2)".into(),
            );
        }
        if let Some(check) = &cluster.health_check {
            let check_key = key.key("health_check");
            if check.kind == HealthCheckKind::Http && !check.path.starts_with('/') {
                add(check_key.key("path"), "must start with '/'".into());
            }
            if check.kind == HealthCheckKind::Grpc && !cluster.protocol.is_h2() {
                add(
                    check_key.key("kind"),
                    "grpc health checks need an HTTP/2 cluster (protocol h2c or h2)".into(),
                );
            }
            if check.unhealthy_threshold == 0 || check.healthy_threshold == 0 {
                add(check_key.clone(), "thresholds must be at least 1".into());
            }
            if check.interval.is_zero() || check.timeout.is_zero() {
                add(check_key, "interval and timeout must be positive".into());
            }
        }
    }

    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut matches: HashMap<(Vec<String>, &str, RouteKind), usize> = HashMap::new();
    // A shared rate-limit budget is one quota: every rule naming it must define it alike.
    let mut budgets: HashMap<&str, (usize, &gateway_plugins::config::RateLimitRule)> =
        HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let key = root.key("routes").index(i);
        validate_route(config, route, &key, &mut add);
        for (j, rule) in route.plugins.rate_limits.iter().enumerate() {
            let Some(budget) = rule.budget.as_deref() else {
                continue;
            };
            match budgets.get(budget) {
                Some((first, defined)) if !defined.same_quota(rule) => add(
                    key.key("plugins")
                        .key("rate_limits")
                        .index(j)
                        .key("budget"),
                    format!(
                        "budget '{budget}' is defined differently on routes[{first}] (key, requests, per, burst and scope must match)"
                    ),
                ),
                Some(_) => {}
                None => {
                    budgets.insert(budget, (i, rule));
                }
            }
        }
        if let Some(previous) = ids.insert(route.id.as_str(), i) {
            add(
                key.key("id"),
                format!("'{}' is already the id of routes[{previous}]", route.id),
            );
        }
        let mut hosts = route.hosts.clone();
        hosts.sort();
        if let Some(previous) = matches.insert((hosts, route.path_prefix.as_str(), route.kind), i) {
            add(
                key.key("path_prefix"),
                format!(
                    "routes[{previous}] ('{}') already matches the same hosts, prefix and kind",
                    config.routes[previous].id
                ),
            );
        }
    }

    let tracing = &config.tracing;
    if !(0.0..=1.0).contains(&tracing.sample_ratio) {
        add(
            root.key("tracing").key("sample_ratio"),
            "must be between 0.0 and 1.0".into(),
        );
    }
    if let Some(endpoint) = &tracing.otlp_endpoint {
        if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
            add(
                root.key("tracing").key("otlp_endpoint"),
                format!("'{endpoint}' must be an http:// or https:// URL"),
            );
        }
    }

    for issue in config.plugins.validate() {
        add(root.key("plugins").join_dotted(&issue.path), issue.message);
    }
    found
}

fn validate_route(
    config: &EdgeConfig,
    route: &RouteConfig,
    key: &KeyPath,
    add: &mut impl FnMut(KeyPath, String),
) {
    if route.id.trim().is_empty() {
        add(key.key("id"), "must not be empty".into());
    }
    if !config.clusters.contains_key(&route.upstream) {
        let known: BTreeSet<&str> = config.clusters.keys().map(String::as_str).collect();
        let suggestion = closest(&route.upstream, known.iter().copied())
            .map(|c| format!(" (did you mean '{c}'?)"))
            .unwrap_or_default();
        add(
            key.key("upstream"),
            format!(
                "unknown cluster '{}'{suggestion}; defined clusters: {}",
                route.upstream,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.into_iter().collect::<Vec<_>>().join(", ")
                }
            ),
        );
    }
    if !route.path_prefix.starts_with('/') {
        add(key.key("path_prefix"), "must start with '/'".into());
    }
    if route.hosts.is_empty() {
        add(key.key("hosts"), "list at least one host (or \"*\")".into());
    }
    for (j, host) in route.hosts.iter().enumerate() {
        if !is_valid_host_pattern(host) {
            add(
                key.key("hosts").index(j),
                format!("'{host}' is not a host name, *.wildcard or *"),
            );
        }
    }
    if let Some(strip) = &route.strip_prefix {
        if !strip.starts_with('/') || !route.path_prefix.starts_with(strip.as_str()) {
            add(
                key.key("strip_prefix"),
                format!(
                    "'{strip}' must start with '/' and be a prefix of path_prefix '{}'",
                    route.path_prefix
                ),
            );
        }
    }
    if let Some(csp) = &route.content_security_policy {
        if route.security_headers != super::SecurityHeaders::Browser {
            add(
                key.key("content_security_policy"),
                "only applies with security_headers = \"browser\"".into(),
            );
        } else if http::HeaderValue::from_str(csp).is_err() || csp.trim().is_empty() {
            add(
                key.key("content_security_policy"),
                "is not a valid header value".into(),
            );
        }
    }
    if route.max_request_body_bytes == Some(0) {
        add(
            key.key("max_request_body_bytes"),
            "must be at least 1".into(),
        );
    }
    if route.early_data && !(config.http3.enable_0rtt && config.listeners.https.http3) {
        add(
            key.key("early_data"),
            "needs http3.enable_0rtt = true on an HTTP/3 listener (listeners.https.http3): \
             without it no request arrives in 0-RTT, so this route would never see early data"
                .into(),
        );
    }
    if let Some(cache) = route.cache.as_ref().filter(|c| c.enabled) {
        validate_route_cache(config, route, cache, &key.key("cache"), add);
    }
    for issue in route.plugins.validate(&config.plugins) {
        add(key.key("plugins").join_dotted(&issue.path), issue.message);
    }
}

fn validate_route_cache(
    config: &EdgeConfig,
    route: &RouteConfig,
    cache: &super::RouteCacheConfig,
    key: &KeyPath,
    add: &mut impl FnMut(KeyPath, String),
) {
    if cache.ttl.is_zero() {
        add(key.key("ttl"), "must be more than 0s".into());
    }
    if cache.max_object_bytes == 0 || cache.max_object_bytes > config.cache.max_bytes {
        add(
            key.key("max_object_bytes"),
            format!(
                "must be between 1 and [cache] max_bytes ({})",
                config.cache.max_bytes
            ),
        );
    }
    if cache.per_user && route.plugins.jwt.is_none() {
        add(
            key.key("per_user"),
            "needs plugins.jwt on the route: the key is the verified user".into(),
        );
    }
}

/// `example.com`, `*.example.com`, `*`, an IP literal, or `localhost`.
pub(crate) fn is_valid_host_pattern(host: &str) -> bool {
    if host == "*" {
        return true;
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.parse::<std::net::IpAddr>().is_ok() {
        return !host.starts_with("*.");
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A service name as the services spell theirs (`--identity-audience`): short, no spaces.
fn is_valid_audience(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_host_port(address: &str) -> Result<(), String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("'{address}' has no valid port"));
        }
        return Ok(());
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("'{address}' is not host:port"));
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("'{address}' has no valid port"));
    }
    if !is_valid_host_pattern(host) || host.contains('*') {
        return Err(format!("'{host}' in '{address}' is not a host name or IP"));
    }
    Ok(())
}

/// The candidate within edit distance 2, if any.
fn closest<'a>(target: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(target, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
