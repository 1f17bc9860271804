//! Route lookup against an independent statement of the matching rules (README, routes):
//! host specificity (exact > `*.suffix`, longer suffix first > `*`), then the longest path
//! prefix on a segment boundary, then a kind-specific route over `kind = "any"`, then the
//! route listed first.

use std::sync::{Arc, OnceLock};

use gateway_plugins::{PolicyRuntime, PolicySet, RoutePolicy};

use crate::config::RouteKind;
use crate::routes::{request_host, HostPattern, Route, RouteTable};
use crate::upstream::Cluster;

/// One route as the config writes it.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub hosts: Vec<String>,
    pub path_prefix: String,
    pub kind: RouteKind,
}

/// What every fuzz route shares: a cluster and a policy runtime to build empty chains
/// (the runtime's background tasks need a Tokio runtime that outlives them).
struct Fixture {
    tokio: tokio::runtime::Runtime,
    policy: Arc<PolicyRuntime>,
    set: Arc<PolicySet>,
    cluster: Arc<Cluster>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime");
        let policy = tokio
            .block_on(PolicyRuntime::new(
                &gateway_plugins::PluginsConfig::default(),
                std::path::Path::new("."),
                &prometheus::Registry::new(),
            ))
            .expect("the default policy runtime");
        let set = policy.current();
        let config = toml::from_str("addresses = [\"127.0.0.1:1\"]").expect("cluster config");
        let cluster = Cluster::build("fuzz", &config).expect("a literal address");
        Fixture {
            tokio,
            policy,
            set,
            cluster,
        }
    })
}

fn table(specs: &[RouteSpec]) -> RouteTable {
    let fixture = fixture();
    let _entered = fixture.tokio.enter();
    let routes = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let id = format!("r{i}");
            let chain = fixture
                .policy
                .build_chain(&fixture.set, &id, &RoutePolicy::default())
                .expect("an empty policy builds");
            Arc::new(Route {
                id: Arc::from(id.as_str()),
                hosts: spec.hosts.iter().map(|h| HostPattern::parse(h)).collect(),
                path_prefix: spec.path_prefix.clone(),
                kind: spec.kind,
                strip_prefix: None,
                cluster: Arc::clone(&fixture.cluster),
                chain,
                max_body_bytes: 1,
                response_headers: Vec::new(),
                compression: None,
                cache: None,
                early_data: false,
                series: Default::default(),
            })
        })
        .collect();
    RouteTable::new(routes)
}

/// Fuzz body: lines `hosts|prefix|kind` (hosts comma-separated, kind `a`/`g`/`h`) are
/// routes, up to a line `--`; each line after it is a request `host|path|grpc`.
pub fn fuzz_route_lookup(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (routes, requests) = text.split_once("\n--\n").unwrap_or((text, ""));
    let specs: Vec<RouteSpec> = routes
        .lines()
        .take(32)
        .map(|line| {
            let mut parts = line.splitn(3, '|');
            let hosts = parts
                .next()
                .unwrap_or("*")
                .split(',')
                .map(String::from)
                .collect();
            let path_prefix = parts.next().unwrap_or("/").to_string();
            let kind = match parts.next() {
                Some("g") => RouteKind::Grpc,
                Some("h") => RouteKind::Http,
                _ => RouteKind::Any,
            };
            RouteSpec {
                hosts,
                path_prefix,
                kind,
            }
        })
        .collect();
    for request in requests.lines().take(32) {
        let mut parts = request.splitn(3, '|');
        let host = parts.next().filter(|h| !h.is_empty());
        let path = parts.next().unwrap_or("/");
        let grpc = parts.next() == Some("g");
        check_route_lookup(&specs, host, path, grpc);
    }
}

/// Looks up a request whose `Host` (or `:authority`) is `host` and checks the answer: the
/// host means the same in a `Host` header and in an absolute URI; the route found really
/// matches; no matching route ranks higher; and a request some route matches finds one.
/// Returns the index of the route found.
pub fn check_route_lookup(
    specs: &[RouteSpec],
    host: Option<&str>,
    path: &str,
    grpc: bool,
) -> Option<usize> {
    let from_header = host.and_then(|host| {
        let (parts, ()) = http::Request::builder()
            .uri(path)
            .header(http::header::HOST, host)
            .body(())
            .ok()?
            .into_parts();
        Some(request_host(&parts).map(std::borrow::Cow::into_owned))
    });
    let from_authority = host.and_then(|host| {
        // As an h2 `:authority`: the value alone must be an authority.
        let uri = http::Uri::builder()
            .scheme("https")
            .authority(host)
            .path_and_query("/")
            .build()
            .ok()?;
        let (parts, ()) = http::Request::builder()
            .uri(uri)
            .body(())
            .ok()?
            .into_parts();
        Some(request_host(&parts).map(std::borrow::Cow::into_owned))
    });
    if let (Some(a), Some(b)) = (&from_header, &from_authority) {
        assert_eq!(
            a, b,
            "{host:?} as Host and as :authority name different hosts"
        );
    }
    let host = from_header.flatten();
    let table = table(specs);
    let found = table
        .find(host.as_deref(), path, grpc)
        .map(|route| route.id[1..].parse::<usize>().expect("ids are r<index>"));
    let ranks: Vec<Option<(usize, usize, usize)>> = specs
        .iter()
        .map(|spec| rank(spec, host.as_deref(), path, grpc))
        .collect();
    let best = ranks.iter().flatten().max().copied();
    match found {
        None => assert!(best.is_none(), "{path} matches a route but none was found"),
        Some(i) => {
            let rank = ranks[i].unwrap_or_else(|| panic!("route {i} found but does not match"));
            assert_eq!(Some(rank), best, "route {i} found, a better one exists");
            let first = ranks.iter().position(|r| *r == best);
            assert_eq!(first, Some(i), "on a tie the route listed first wins");
        }
    }
    found
}

/// How well `spec` matches (higher is better), or `None` when it does not.
fn rank(
    spec: &RouteSpec,
    host: Option<&str>,
    path: &str,
    grpc: bool,
) -> Option<(usize, usize, usize)> {
    let kind = match (spec.kind, grpc) {
        (RouteKind::Any, _) => 0,
        (RouteKind::Grpc, true) | (RouteKind::Http, false) => 1,
        _ => return None,
    };
    let prefix = spec.path_prefix.as_str();
    let on_boundary = path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes()[prefix.len()] == b'/');
    if !on_boundary {
        return None;
    }
    let host_rank = spec
        .hosts
        .iter()
        .filter_map(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            if pattern == "*" {
                return Some(0);
            }
            let host = host?;
            match pattern.strip_prefix("*.") {
                Some(suffix) => {
                    let label = host.strip_suffix(suffix)?.strip_suffix('.')?;
                    (!label.is_empty() && !label.contains('.')).then_some(1 + suffix.len())
                }
                None => (pattern == host).then_some(usize::MAX),
            }
        })
        .max()?;
    Some((host_rank, prefix.len(), kind))
}
