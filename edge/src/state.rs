//! Process state shared by every listener, and the config snapshot swapped on reload.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use gateway_plugins::client_ip::ClientIpResolver;
use gateway_plugins::{PolicyRuntime, PolicySet};
use http::{HeaderName, HeaderValue};
use pingora_core::connectors::http::Connector;

use crate::certs::CertStore;
use crate::config::locate::KeyPath;
use crate::config::{ConfigError, ConfigProblem, LoadedConfig};
use crate::health_check::run_health_checks;
use crate::metrics::EdgeMetrics;
use crate::routes::{HostPattern, Route, RouteTable};
use crate::upstream::{BuiltClusters, Cluster, ClusterError, Clusters};

/// Everything derived from one config version — routes, clusters, the policy chains AND
/// the policy resources they run on (`policy`: JWT keys, Redis link, revocation cache,
/// identity key), the client-IP resolver. Immutable; requests pin the snapshot they
/// started with, so a reload never changes a request midway, and a reload swaps all of it
/// in one store or nothing.
pub struct Snapshot {
    pub version: u64,
    pub loaded: LoadedConfig,
    pub routes: RouteTable,
    pub clusters: Clusters,
    pub policy: Arc<PolicySet>,
    pub client_ip: Arc<ClientIpResolver>,
    pub loaded_at: SystemTime,
    /// `strict-transport-security`, precomputed (None when disabled).
    pub hsts: Option<HeaderValue>,
}

impl Snapshot {
    pub fn config(&self) -> &crate::config::EdgeConfig {
        &self.loaded.config
    }

    /// Builds routes (with their policy chains, built against `policy_set`, a prepared and
    /// not yet committed set) and clusters for `loaded`, reusing the unchanged clusters of
    /// `previous`. Returns the clusters that need health checkers. Changes nothing shared:
    /// dropping the result undoes it.
    pub fn build(
        loaded: LoadedConfig,
        previous: Option<&Snapshot>,
        policy: &PolicyRuntime,
        policy_set: Arc<PolicySet>,
        version: u64,
    ) -> Result<(Self, Vec<Arc<Cluster>>), ConfigError> {
        let config = &loaded.config;
        let BuiltClusters { clusters, fresh } =
            Clusters::build(&config.clusters, previous.map(|p| &p.clusters)).map_err(|err| {
                let key = KeyPath::root().key("clusters").key(&err.name);
                let key = match &err.error {
                    ClusterError::Resolve { index, .. } => key.key("addresses").index(*index),
                    ClusterError::CaFile(_) => key.key("tls_ca_file"),
                };
                ConfigError {
                    problems: vec![loaded.problem(&key, err.error.to_string())],
                }
            })?;
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut problems: Vec<ConfigProblem> = Vec::new();
        for (i, route) in config.routes.iter().enumerate() {
            let key = KeyPath::root().key("routes").index(i);
            let Some(cluster) = clusters.get(&route.upstream) else {
                problems.push(loaded.problem(&key.key("upstream"), "unknown cluster"));
                continue;
            };
            let chain = match policy.build_chain(&policy_set, &route.id, &route.plugins) {
                Ok(chain) => chain,
                Err(err) => {
                    let (path, message) = match &err {
                        gateway_plugins::RuntimeError::Config { path, message } => {
                            (path.clone(), message.clone())
                        }
                        #[allow(unreachable_patterns)]
                        other => (String::new(), other.to_string()),
                    };
                    problems.push(loaded.problem(&key.key("plugins").join_dotted(&path), message));
                    continue;
                }
            };
            routes.push(Arc::new(Route {
                id: Arc::from(route.id.as_str()),
                hosts: route.hosts.iter().map(|h| HostPattern::parse(h)).collect(),
                path_prefix: route.path_prefix.clone(),
                kind: route.kind,
                strip_prefix: route.strip_prefix.clone(),
                cluster: cluster.clone(),
                chain,
                max_body_bytes: config.body_limit(route),
                response_headers: route
                    .security_headers
                    .headers(route.content_security_policy.as_deref())
                    .into_iter()
                    .filter_map(|(name, value)| {
                        // Validated at load; a value that still does not parse is skipped.
                        Some((
                            HeaderName::from_static(name),
                            HeaderValue::from_str(&value).ok()?,
                        ))
                    })
                    .collect(),
                compression: route.compression.clone().filter(|c| c.enabled),
                cache: route.cache.clone().filter(|c| c.enabled),
                early_data: route.early_data,
                series: Default::default(),
            }));
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let hsts = match config.listeners.https.hsts.as_str() {
            "" => None,
            value => HeaderValue::from_str(value).ok(),
        };
        let client_ip = policy_set.client_ip_resolver().clone();
        Ok((
            Self {
                version,
                routes: RouteTable::new(routes),
                clusters,
                policy: policy_set,
                client_ip,
                loaded_at: SystemTime::now(),
                hsts,
                loaded,
            },
            fresh,
        ))
    }
}

/// Process-wide state: the current snapshot plus what outlives reloads.
pub struct EdgeState {
    snapshot: ArcSwap<Snapshot>,
    pub certs: Arc<CertStore>,
    pub policy: Arc<PolicyRuntime>,
    pub metrics: Arc<EdgeMetrics>,
    /// Used by active health checks only: probes never take or return a connection of
    /// the proxy's pool (which `EdgeHttpProxy` owns, one for h1, h2 and h3).
    pub health_connector: Arc<Connector>,
    pub config_path: Option<PathBuf>,
    /// `alt-svc` advertised on TCP responses when HTTP/3 is on (listeners are fixed at start).
    pub alt_svc: Option<HeaderValue>,
    /// Request spans go here when `[tracing]` is configured.
    pub tracer: Option<platform_telemetry::opentelemetry_sdk::trace::Tracer>,
    /// The micro-cache every cached route shares (`[cache]` applies at start).
    pub cache: &'static crate::cache::MicroCache,
    _telemetry: platform_telemetry::Telemetry,
    pub(crate) reload_lock: tokio::sync::Mutex<()>,
}

impl EdgeState {
    pub fn new(
        snapshot: Snapshot,
        certs: Arc<CertStore>,
        policy: Arc<PolicyRuntime>,
        metrics: Arc<EdgeMetrics>,
        telemetry: platform_telemetry::Telemetry,
    ) -> Arc<Self> {
        let https = &snapshot.config().listeners.https;
        let alt_svc = https.http3.then(|| {
            let port = https.advertised_port.unwrap_or(https.address.port());
            HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400"))
                .unwrap_or_else(|_| HeaderValue::from_static("clear"))
        });
        metrics.config_version.set(snapshot.version as i64);
        let cache = crate::cache::MicroCache::leak(&snapshot.config().cache, &metrics);
        Arc::new(Self {
            cache,
            config_path: snapshot.loaded.path.clone(),
            snapshot: ArcSwap::from_pointee(snapshot),
            certs,
            policy,
            metrics,
            health_connector: Arc::new(Connector::new(None)),
            alt_svc,
            tracer: telemetry.tracer("edge"),
            _telemetry: telemetry,
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The snapshot in use now (one atomic load).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub(crate) fn swap(&self, snapshot: Snapshot) {
        self.metrics.config_version.set(snapshot.version as i64);
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Starts health checkers for clusters (on the current tokio runtime).
    pub fn start_health_checks(&self, clusters: &[Arc<Cluster>]) {
        for cluster in clusters {
            if cluster.config.health_check.is_some() {
                tokio::spawn(run_health_checks(
                    Arc::downgrade(cluster),
                    self.health_connector.clone(),
                    self.metrics.clone(),
                ));
            }
        }
    }
}
