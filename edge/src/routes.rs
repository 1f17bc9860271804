//! The route table: host + path prefix + request kind -> route (cluster, policy chain).
//! Shared by every downstream protocol; the most specific match wins.

use std::borrow::Cow;
use std::sync::Arc;

use gateway_plugins::Chain;
use http::{HeaderName, HeaderValue};

use crate::config::RouteKind;
use crate::upstream::Cluster;

/// How a route names hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`, stored as `example.com`: one extra label.
    Wildcard(String),
    Any,
}

impl HostPattern {
    pub fn parse(text: &str) -> Self {
        let text = text.to_ascii_lowercase();
        if text == "*" {
            HostPattern::Any
        } else if let Some(suffix) = text.strip_prefix("*.") {
            HostPattern::Wildcard(suffix.to_string())
        } else {
            HostPattern::Exact(text)
        }
    }

    /// Specificity when it matches: exact beats wildcard (longer suffix first) beats any.
    fn score(&self, host: Option<&str>) -> Option<usize> {
        match (self, host) {
            (HostPattern::Any, _) => Some(0),
            (HostPattern::Exact(name), Some(host)) if name == host => Some(usize::MAX),
            (HostPattern::Wildcard(suffix), Some(host)) => host
                .split_once('.')
                .filter(|(label, rest)| !label.is_empty() && rest == suffix)
                .map(|_| 1 + suffix.len()),
            _ => None,
        }
    }
}

/// One route of a config version, with its cluster and policy resolved.
pub struct Route {
    pub id: Arc<str>,
    pub hosts: Vec<HostPattern>,
    pub path_prefix: String,
    pub kind: RouteKind,
    pub strip_prefix: Option<String>,
    pub cluster: Arc<Cluster>,
    pub chain: Chain,
    pub max_body_bytes: u64,
    /// `security_headers` of the route, ready to add to upstream responses that lack them.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Response compression, when the route turns it on.
    pub compression: Option<crate::config::CompressionConfig>,
    /// The micro-cache policy, when the route turns it on.
    pub cache: Option<crate::config::RouteCacheConfig>,
    /// Safe requests in 0-RTT early data may be served (`routes[].early_data`).
    pub early_data: bool,
    /// This route's request metrics, resolved on first use.
    pub series: crate::metric_series::RouteSeries,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("id", &self.id)
            .field("path_prefix", &self.path_prefix)
            .field("cluster", &self.cluster.name)
            .finish_non_exhaustive()
    }
}

impl Route {
    /// Whether `path` is under this route's prefix on a segment boundary: `/api/records`
    /// takes `/api/records` and `/api/records/1`, not `/api/recordsX`.
    fn path_matches(&self, path: &str) -> bool {
        let prefix = self.path_prefix.as_str();
        match path.strip_prefix(prefix) {
            Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    fn kind_score(&self, grpc: bool) -> Option<usize> {
        match (self.kind, grpc) {
            (RouteKind::Any, _) => Some(0),
            (RouteKind::Grpc, true) | (RouteKind::Http, false) => Some(1),
            _ => None,
        }
    }

    /// The upstream path and query for a request path and query.
    pub fn upstream_path(&self, path_and_query: &str) -> String {
        let Some(strip) = &self.strip_prefix else {
            return path_and_query.to_string();
        };
        match path_and_query.strip_prefix(strip.as_str()) {
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            Some(rest) => format!("/{rest}"),
            None => path_and_query.to_string(),
        }
    }
}

/// All routes of one config version.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    /// Some route names a host (exact or wildcard): only then is a request's host read.
    names_hosts: bool,
}

impl RouteTable {
    pub fn new(routes: Vec<Arc<Route>>) -> Self {
        let names_hosts = routes
            .iter()
            .any(|route| route.hosts.iter().any(|h| *h != HostPattern::Any));
        Self {
            routes,
            names_hosts,
        }
    }

    /// The route for a request ([`Self::find`] with its host). The host is parsed only when
    /// some route names one: with only `*` routes every host scores the same, and reading an
    /// HTTP/1.1 `Host` (parse, copy, lower-case) was ≈ 1 000 instructions per request.
    pub fn find_for(&self, parts: &http::request::Parts, grpc: bool) -> Option<&Arc<Route>> {
        let host = if self.names_hosts {
            request_host(parts)
        } else {
            None
        };
        self.find(host.as_deref(), parts.uri.path(), grpc)
    }

    /// The most specific route for a request: host specificity first, then the longest
    /// path prefix, then a kind-specific route over a kind-agnostic one. `host` must be
    /// lower-case without port.
    pub fn find(&self, host: Option<&str>, path: &str, grpc: bool) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .filter(|route| route.path_matches(path))
            .filter_map(|route| {
                let kind = route.kind_score(grpc)?;
                let host_score = route.hosts.iter().filter_map(|h| h.score(host)).max()?;
                Some(((host_score, route.path_prefix.len(), kind), route))
            })
            // On a tie the route listed first wins (max_by_key keeps the last maximum).
            .rev()
            .max_by_key(|(score, _)| *score)
            .map(|(_, route)| route)
    }
}

/// The request's host (from `:authority` / `Host`), lower-cased, without port, and an IPv6
/// literal without its brackets (`::1`, as route hosts are written). Both are read by the
/// one authority parser, so a host means the same over every protocol; a `Host` that is
/// not an authority is no host (only `*` routes take the request).
pub fn request_host(parts: &http::request::Parts) -> Option<Cow<'_, str>> {
    // An h2 or HTTP/3 `:authority` is borrowed (and copied only to lower-case it); an
    // HTTP/1.x `Host` is parsed into an authority of its own.
    if let Some(authority) = parts.uri.authority() {
        let host = bare_host(authority);
        return Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        });
    }
    let value = parts.headers.get(http::header::HOST)?;
    let authority = http::uri::Authority::try_from(value.as_bytes()).ok()?;
    Some(Cow::Owned(bare_host(&authority).to_ascii_lowercase()))
}

/// The host of an authority without port, IPv6 brackets or a trailing dot.
fn bare_host(authority: &http::uri::Authority) -> &str {
    let host = authority.host();
    host.strip_prefix('[')
        .and_then(|v6| v6.strip_suffix(']'))
        .unwrap_or(host)
        .trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Cluster;

    fn cluster() -> Arc<Cluster> {
        let config = toml::from_str("addresses = [\"127.0.0.1:1\"]").expect("config");
        Cluster::build("c", &config).expect("cluster")
    }

    /// A chain with no route plugins, from a throw-away policy runtime.
    fn empty_chain(id: &str) -> Chain {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let runtime = gateway_plugins::PolicyRuntime::new(
                &gateway_plugins::PluginsConfig::default(),
                std::path::Path::new("."),
                &prometheus::Registry::new(),
            )
            .await
            .expect("policy runtime");
            runtime
                .build_chain(
                    &runtime.current(),
                    id,
                    &gateway_plugins::RoutePolicy::default(),
                )
                .expect("chain")
        })
    }

    fn route(id: &str, hosts: &[&str], prefix: &str, kind: RouteKind) -> Arc<Route> {
        Arc::new(Route {
            id: Arc::from(id),
            hosts: hosts.iter().map(|h| HostPattern::parse(h)).collect(),
            path_prefix: prefix.to_string(),
            kind,
            strip_prefix: None,
            cluster: cluster(),
            chain: empty_chain(id),
            max_body_bytes: 1024,
            response_headers: Vec::new(),
            compression: None,
            cache: None,
            early_data: false,
            series: Default::default(),
        })
    }

    fn table() -> RouteTable {
        RouteTable::new(vec![
            route("any-root", &["*"], "/", RouteKind::Any),
            route("records", &["*"], "/api/records", RouteKind::Any),
            route(
                "records-shop",
                &["shop.example.com"],
                "/api/records",
                RouteKind::Any,
            ),
            route(
                "records-wild",
                &["*.example.com"],
                "/api/records",
                RouteKind::Any,
            ),
            route("auth-grpc", &["*"], "/auth.AuthService/", RouteKind::Grpc),
            route(
                "auth-grpc-me",
                &["*"],
                "/auth.AuthService/Me",
                RouteKind::Grpc,
            ),
        ])
    }

    fn find<'a>(
        table: &'a RouteTable,
        host: Option<&str>,
        path: &str,
        grpc: bool,
    ) -> Option<&'a str> {
        table.find(host, path, grpc).map(|r| &*r.id)
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let t = table();
        assert_eq!(find(&t, None, "/api/records", false), Some("records"));
        assert_eq!(find(&t, None, "/api/records/42", false), Some("records"));
        assert_eq!(find(&t, None, "/api/recordsX", false), Some("any-root"));
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any() {
        let t = table();
        assert_eq!(
            find(&t, Some("shop.example.com"), "/api/records", false),
            Some("records-shop")
        );
        assert_eq!(
            find(&t, Some("www.example.com"), "/api/records", false),
            Some("records-wild")
        );
        assert_eq!(
            find(&t, Some("a.b.example.com"), "/api/records", false),
            Some("records")
        );
    }

    #[test]
    fn grpc_routes_take_only_grpc_and_methods_beat_services() {
        let t = table();
        assert_eq!(
            find(&t, None, "/auth.AuthService/Me", true),
            Some("auth-grpc-me")
        );
        assert_eq!(
            find(&t, None, "/auth.AuthService/Login", true),
            Some("auth-grpc")
        );
        assert_eq!(
            find(&t, None, "/auth.AuthService/Login", false),
            Some("any-root")
        );
    }

    #[test]
    fn no_match_without_a_catch_all() {
        let t = RouteTable::new(vec![route(
            "records",
            &["*"],
            "/api/records",
            RouteKind::Any,
        )]);
        assert!(t.find(None, "/other", false).is_none());
    }

    #[test]
    fn strip_prefix_rewrites_and_keeps_the_query() {
        let mut r = route("r", &["*"], "/api/records", RouteKind::Any);
        Arc::get_mut(&mut r).expect("unique").strip_prefix = Some("/api".into());
        assert_eq!(r.upstream_path("/api/records/1?x=y"), "/records/1?x=y");
        let mut auth = route("a", &["*"], "/api/auth/", RouteKind::Any);
        Arc::get_mut(&mut auth).expect("unique").strip_prefix = Some("/api/auth".into());
        assert_eq!(auth.upstream_path("/api/auth/login"), "/login");
        assert_eq!(auth.upstream_path("/api/auth"), "/");
    }

    #[test]
    fn host_comes_from_authority_or_host_header_without_port() {
        let (parts, ()) = http::Request::builder()
            .uri("/x")
            .header("host", "Record.Local:8443")
            .body(())
            .expect("request")
            .into_parts();
        assert_eq!(request_host(&parts).as_deref(), Some("record.local"));
        let (parts, ()) = http::Request::builder()
            .uri("https://[::1]:8443/x")
            .body(())
            .expect("request")
            .into_parts();
        assert_eq!(request_host(&parts).as_deref(), Some("::1"));
    }

    /// `find_for` reads the host from the request (Host or `:authority`) when a route names
    /// one, and finds the same route as `find` with that host; a table of `*` routes only
    /// finds the same route whatever the host says.
    #[test]
    fn find_for_reads_the_host_only_where_a_route_names_one() {
        let t = table();
        for (uri, host, want) in [
            ("/api/records/1", Some("Shop.Example.com"), "records-shop"),
            ("https://www.example.com/api/records", None, "records-wild"),
            ("/api/records", Some("other.test"), "records"),
            ("/api/records", None, "records"),
        ] {
            let mut request = http::Request::builder().uri(uri);
            if let Some(host) = host {
                request = request.header("host", host);
            }
            let (parts, ()) = request.body(()).expect("request").into_parts();
            let found = t.find_for(&parts, false).map(|r| &*r.id);
            assert_eq!(found, Some(want), "{uri} {host:?}");
        }
        let any_only = RouteTable::new(vec![
            route("root", &["*"], "/", RouteKind::Any),
            route("api", &["*"], "/api", RouteKind::Http),
        ]);
        for host in ["a.example", "not a host", "[::1]:1"] {
            let (parts, ()) = http::Request::builder()
                .uri("/api/x")
                .header("host", host)
                .body(())
                .expect("request")
                .into_parts();
            assert_eq!(
                any_only.find_for(&parts, false).map(|r| &*r.id),
                Some("api")
            );
        }
    }

    /// Found by the route_lookup property test: an IPv6 literal came out as `[::1]` from an
    /// HTTP/2 `:authority` but as `::1` from an HTTP/1.1 `Host`, so a route for the host
    /// `::1` (the form the config accepts) never matched over HTTP/2; and `a.example:x`
    /// was `a.example` from one and `a.example:x` from the other.
    #[test]
    fn an_ipv6_host_is_the_same_from_authority_and_host_header() {
        let t = RouteTable::new(vec![route("v6", &["::1"], "/", RouteKind::Any)]);
        for (uri, host) in [("https://[::1]:8443/x", None), ("/x", Some("[::1]:8443"))] {
            let mut request = http::Request::builder().uri(uri);
            if let Some(host) = host {
                request = request.header("host", host);
            }
            let (parts, ()) = request.body(()).expect("request").into_parts();
            let host = request_host(&parts);
            assert_eq!(host.as_deref(), Some("::1"), "{uri} {host:?}");
            assert_eq!(find(&t, host.as_deref(), "/x", false), Some("v6"));
        }
        for (uri, host) in [("https://a.example:x/", None), ("/", Some("a.example:x"))] {
            let mut request = http::Request::builder().uri(uri);
            if let Some(host) = host {
                request = request.header("host", host);
            }
            let (parts, ()) = request.body(()).expect("request").into_parts();
            assert_eq!(request_host(&parts).as_deref(), Some("a.example"), "{uri}");
        }
    }
}
