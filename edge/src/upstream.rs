//! Upstream clusters: backends, load balancing, health, and the `HttpPeer`s both the
//! Pingora (h1/h2) path and the HTTP/3 path connect with.
//!
//! A [`Cluster`] is immutable except for per-backend health and in-flight counters.
//! On config reload an unchanged cluster is carried over as the same `Arc` (its health
//! state and checker survive); a changed one is rebuilt and its old checker stops when
//! the last reference to the old cluster goes away.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;

use crate::config::{Balance, ClusterConfig};
use crate::outlier::{self, Outcome, OutlierState};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("addresses[{index}]: cannot resolve '{address}': {detail}")]
    Resolve {
        index: usize,
        address: String,
        detail: String,
    },
    #[error("tls_ca_file: {0}")]
    CaFile(String),
}

/// One backend address of a cluster.
#[derive(Debug)]
pub struct Backend {
    /// As configured (`auth:4001`), for metrics and logs.
    pub label: String,
    pub addr: SocketAddr,
    pub(crate) peer: HttpPeer,
    pub(crate) healthy: AtomicBool,
    /// True once a health check has run (readiness waits for it).
    pub(crate) checked: AtomicBool,
    pub(crate) consecutive_ok: AtomicU32,
    pub(crate) consecutive_fail: AtomicU32,
    in_flight: AtomicUsize,
    /// Passive ejection by what real requests see (`outlier.rs`).
    outlier: OutlierState,
}

impl Backend {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// A peer to connect with (cloned per request: Pingora takes it boxed).
    pub fn peer(&self) -> HttpPeer {
        self.peer.clone()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts a request against a backend (least-connections) until dropped.
#[derive(Debug)]
pub struct InFlight {
    backend: Arc<Backend>,
}

impl InFlight {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A named group of backends with one protocol and one policy.
#[derive(Debug)]
pub struct Cluster {
    pub name: Arc<str>,
    /// The service name identity assertions for this cluster are bound to
    /// (`identity_audience`, else the cluster's name).
    pub identity_audience: Arc<str>,
    pub config: ClusterConfig,
    pub backends: Vec<Arc<Backend>>,
    next: AtomicUsize,
    /// Requests holding a [`ClusterSlot`] (`max_concurrent_requests`).
    requests: Arc<AtomicUsize>,
    /// Requests holding a pending slot (`max_pending_connections`).
    pending: Arc<AtomicUsize>,
    /// This cluster's upstream metrics, resolved on first use.
    pub series: crate::metric_series::ClusterSeries,
}

/// One request's place under its cluster's `max_concurrent_requests`, held from the first
/// attempt to the end of the request (retries included); or, from `reserve_pending`, its
/// place among the requests waiting for a connection.
#[derive(Debug)]
pub struct ClusterSlot {
    requests: Arc<AtomicUsize>,
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        self.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Health of a cluster for `/api/healthz` and `/readyz`.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct ClusterHealth {
    pub healthy_backends: usize,
    /// Backends taken out by outlier detection right now (healthy or not).
    pub ejected_backends: usize,
    pub backends: usize,
    /// Requests in flight now, and waiting for a connection now.
    pub requests_in_flight: usize,
    pub pending_connections: usize,
    /// A limit (`max_concurrent_requests`, `max_pending_connections`) is reached: new
    /// requests get 503 until it frees up.
    pub breaker_open: bool,
    /// False until every backend has been checked once (clusters without checks: true).
    pub checked: bool,
    pub required: bool,
}

impl Cluster {
    pub fn build(name: &str, config: &ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        let ca = match &config.tls_ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| ClusterError::CaFile(format!("{}: {e}", path.display())))?;
                let certs = boring::x509::X509::stack_from_pem(&pem)
                    .map_err(|e| ClusterError::CaFile(format!("{}: {e}", path.display())))?;
                Some(Arc::new(certs.into_boxed_slice()))
            }
            None => None,
        };
        let mut backends = Vec::new();
        for (index, address) in config.addresses.iter().enumerate() {
            let resolved: Vec<SocketAddr> = address
                .to_socket_addrs()
                .map_err(|e| ClusterError::Resolve {
                    index,
                    address: address.clone(),
                    detail: e.to_string(),
                })?
                .collect();
            if resolved.is_empty() {
                return Err(ClusterError::Resolve {
                    index,
                    address: address.clone(),
                    detail: "no addresses".into(),
                });
            }
            let host = address
                .rsplit_once(':')
                .map(|(host, _)| host.trim_matches(['[', ']']))
                .unwrap_or(address);
            for addr in resolved {
                let sni = config
                    .tls_server_name
                    .clone()
                    .unwrap_or_else(|| host.to_string());
                let peer = make_peer(addr, &sni, config, ca.clone());
                backends.push(Arc::new(Backend {
                    label: if config.addresses.len() == 1 && address.parse::<SocketAddr>().is_ok() {
                        address.clone()
                    } else {
                        format!("{address}={addr}")
                    },
                    addr,
                    peer,
                    healthy: AtomicBool::new(true),
                    checked: AtomicBool::new(config.health_check.is_none()),
                    consecutive_ok: AtomicU32::new(0),
                    consecutive_fail: AtomicU32::new(0),
                    in_flight: AtomicUsize::new(0),
                    outlier: OutlierState::default(),
                }));
            }
        }
        Ok(Arc::new(Self {
            name: Arc::from(name),
            identity_audience: Arc::from(config.identity_audience.as_deref().unwrap_or(name)),
            config: config.clone(),
            backends,
            next: AtomicUsize::new(0),
            requests: Arc::new(AtomicUsize::new(0)),
            pending: Arc::new(AtomicUsize::new(0)),
            series: Default::default(),
        }))
    }

    /// A place for one more request, or `None` when `max_concurrent_requests` are in flight.
    pub fn reserve_slot(&self) -> Option<ClusterSlot> {
        let previous = self.requests.fetch_add(1, Ordering::AcqRel);
        let slot = ClusterSlot {
            requests: self.requests.clone(),
        };
        (previous < self.config.max_concurrent_requests).then_some(slot)
    }

    /// A place among the requests waiting for an upstream connection (held from choosing
    /// the backend until the connection is ready or failed), or `None` when
    /// `max_pending_connections` are waiting.
    pub fn reserve_pending(&self) -> Option<ClusterSlot> {
        let previous = self.pending.fetch_add(1, Ordering::AcqRel);
        let slot = ClusterSlot {
            requests: self.pending.clone(),
        };
        (previous < self.config.max_pending_connections).then_some(slot)
    }

    /// Requests in flight (holding a slot).
    #[cfg(test)]
    pub fn requests_in_flight(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }

    /// Picks a healthy backend not in `exclude` (indices already tried by this request),
    /// skipping ejected outliers unless only they are left.
    pub fn select(&self, exclude: &[usize]) -> Option<(usize, InFlight)> {
        let now = outlier::now_ms();
        let any_in_rotation =
            self.backends.iter().enumerate().any(|(i, b)| {
                b.is_healthy() && !b.outlier.is_ejected(now) && !exclude.contains(&i)
            });
        let candidates = || {
            self.backends.iter().enumerate().filter(move |(i, b)| {
                b.is_healthy()
                    && !exclude.contains(i)
                    && (!any_in_rotation || !b.outlier.is_ejected(now))
            })
        };
        let chosen = match self.config.balance {
            Balance::RoundRobin => {
                let count = candidates().count();
                if count == 0 {
                    None
                } else {
                    let n = self.next.fetch_add(1, Ordering::Relaxed) % count;
                    candidates().nth(n)
                }
            }
            Balance::LeastConnections => {
                // Ties rotate so equal backends share load.
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                let len = self.backends.len().max(1);
                candidates().min_by_key(|(i, b)| (b.in_flight(), (i + len - start % len) % len))
            }
        }?;
        let (index, backend) = chosen;
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        Some((
            index,
            InFlight {
                backend: backend.clone(),
            },
        ))
    }

    /// Feeds one request's outcome on `backend` to outlier detection; `Some(period)` when
    /// it got the backend ejected.
    pub fn record_outcome(&self, backend: &Backend, failed: bool) -> Option<Duration> {
        if !failed {
            backend.outlier.record_success();
            return None;
        }
        let now = outlier::now_ms();
        let config = &self.config.outlier_detection;
        let outcome = backend.outlier.record_failure(config, now, || {
            let ejected = self
                .backends
                .iter()
                .filter(|b| b.outlier.is_ejected(now))
                .count();
            let available = self
                .backends
                .iter()
                .filter(|b| b.is_healthy() && !b.outlier.is_ejected(now))
                .count();
            outlier::may_eject(config, self.backends.len(), ejected, available)
        });
        match outcome {
            Outcome::Ejected(period) => {
                tracing::warn!(cluster = %self.name, backend = %backend.label, ?period, "backend ejected after consecutive failures");
                Some(period)
            }
            Outcome::Unchanged => None,
        }
    }

    /// Whether a retry could go to a healthy backend this request has not tried yet.
    pub fn has_untried_backend(&self, tried: &[usize]) -> bool {
        self.backends
            .iter()
            .enumerate()
            .any(|(i, b)| b.is_healthy() && !tried.contains(&i))
    }

    pub fn health(&self) -> ClusterHealth {
        let now = outlier::now_ms();
        ClusterHealth {
            ejected_backends: self
                .backends
                .iter()
                .filter(|b| b.outlier.is_ejected(now))
                .count(),
            healthy_backends: self.backends.iter().filter(|b| b.is_healthy()).count(),
            backends: self.backends.len(),
            requests_in_flight: self.requests.load(Ordering::Acquire),
            pending_connections: self.pending.load(Ordering::Acquire),
            breaker_open: self.requests.load(Ordering::Acquire)
                >= self.config.max_concurrent_requests
                || self.pending.load(Ordering::Acquire) >= self.config.max_pending_connections,
            checked: self
                .backends
                .iter()
                .all(|b| b.checked.load(Ordering::Relaxed)),
            required: self.config.required,
        }
    }
}

fn make_peer(
    addr: SocketAddr,
    sni: &str,
    config: &ClusterConfig,
    ca: Option<Arc<Box<[boring::x509::X509]>>>,
) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, config.protocol.is_tls(), sni.to_string());
    let options = &mut peer.options;
    options.connection_timeout = Some(config.connect_timeout);
    options.total_connection_timeout = Some(config.connect_timeout * 2);
    options.read_timeout = Some(config.read_timeout);
    options.write_timeout = Some(config.write_timeout);
    options.idle_timeout = Some(config.idle_timeout);
    if config.protocol.is_h2() {
        // With tls = false and ALPN H2 Pingora speaks h2c with prior knowledge.
        options.alpn = ALPN::H2;
        // The default of 1 would open one connection per concurrent gRPC call.
        options.max_h2_streams = config.max_h2_streams;
        options.h2_ping_interval = Some(Duration::from_secs(30));
    } else {
        options.alpn = ALPN::H1;
    }
    if config.protocol.is_tls() {
        options.verify_cert = true;
        options.verify_hostname = true;
        if let Some(ca) = ca {
            options.ca = Some(ca);
        }
    }
    peer
}

/// All clusters of one config version.
#[derive(Debug, Default)]
pub struct Clusters {
    by_name: HashMap<String, Arc<Cluster>>,
}

/// [`Clusters::build`]'s result: the clusters, and those new in this version (which need
/// health checkers).
#[derive(Debug)]
pub struct BuiltClusters {
    pub clusters: Clusters,
    pub fresh: Vec<Arc<Cluster>>,
}

/// A cluster that could not be built, by name.
#[derive(Debug, thiserror::Error)]
#[error("clusters.{name}: {error}")]
pub struct ClusterBuildError {
    pub name: String,
    pub error: ClusterError,
}

impl Clusters {
    /// Builds the clusters of a config, reusing `previous` ones whose config is unchanged.
    /// Errors carry the cluster name.
    pub fn build(
        configs: &std::collections::BTreeMap<String, ClusterConfig>,
        previous: Option<&Clusters>,
    ) -> Result<BuiltClusters, ClusterBuildError> {
        let mut by_name = HashMap::new();
        let mut fresh = Vec::new();
        for (name, config) in configs {
            let reused = previous
                .and_then(|p| p.by_name.get(name))
                .filter(|old| old.config == *config)
                .cloned();
            let cluster = match reused {
                Some(cluster) => cluster,
                None => {
                    let cluster =
                        Cluster::build(name, config).map_err(|error| ClusterBuildError {
                            name: name.clone(),
                            error,
                        })?;
                    fresh.push(cluster.clone());
                    cluster
                }
            };
            by_name.insert(name.clone(), cluster);
        }
        Ok(BuiltClusters {
            clusters: Self { by_name },
            fresh,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Cluster>)> {
        self.by_name.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(addresses: &[&str], balance: Balance) -> ClusterConfig {
        let text = format!(
            "addresses = {:?}\nbalance = \"{}\"\n",
            addresses,
            match balance {
                Balance::RoundRobin => "round_robin",
                Balance::LeastConnections => "least_connections",
            }
        );
        toml::from_str(&text).expect("cluster config")
    }

    #[test]
    fn pending_slots_stop_at_max_pending_connections_and_open_the_breaker() {
        let mut cfg = config(&["127.0.0.1:1"], Balance::RoundRobin);
        cfg.max_pending_connections = 1;
        let cluster = Cluster::build("c", &cfg).expect("cluster");
        let waiting = cluster.reserve_pending().expect("first");
        assert!(
            cluster.reserve_pending().is_none(),
            "second is over the cap"
        );
        let health = cluster.health();
        assert_eq!(health.pending_connections, 1);
        assert!(health.breaker_open);
        drop(waiting);
        assert!(!cluster.health().breaker_open);
        assert!(cluster.reserve_pending().is_some(), "freed on drop");
    }

    #[test]
    fn slots_stop_at_max_concurrent_requests_and_free_on_drop() {
        let mut cfg = config(&["127.0.0.1:1"], Balance::RoundRobin);
        cfg.max_concurrent_requests = 2;
        let cluster = Cluster::build("c", &cfg).expect("cluster");
        let a = cluster.reserve_slot().expect("first");
        let _b = cluster.reserve_slot().expect("second");
        assert!(cluster.reserve_slot().is_none(), "third is over the cap");
        assert_eq!(
            cluster.requests_in_flight(),
            2,
            "a refused try holds nothing"
        );
        drop(a);
        assert!(cluster.reserve_slot().is_some());
    }

    #[test]
    fn round_robin_rotates_over_healthy_backends() {
        let cluster = Cluster::build(
            "c",
            &config(
                &["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"],
                Balance::RoundRobin,
            ),
        )
        .expect("build");
        cluster.backends[1].healthy.store(false, Ordering::Relaxed);
        let picks: Vec<u16> = (0..4)
            .map(|_| cluster.select(&[]).expect("pick").1.backend().addr.port())
            .collect();
        assert_eq!(picks, [1, 3, 1, 3]);
    }

    #[test]
    fn excluded_and_unhealthy_backends_are_skipped_until_none_remain() {
        let cluster = Cluster::build(
            "c",
            &config(&["127.0.0.1:1", "127.0.0.1:2"], Balance::RoundRobin),
        )
        .expect("build");
        let (first, _guard) = cluster.select(&[]).expect("first");
        let (second, _guard2) = cluster.select(&[first]).expect("second");
        assert_ne!(first, second);
        assert!(cluster.select(&[first, second]).is_none());
    }

    #[test]
    fn least_connections_prefers_the_idle_backend() {
        let cluster = Cluster::build(
            "c",
            &config(&["127.0.0.1:1", "127.0.0.1:2"], Balance::LeastConnections),
        )
        .expect("build");
        let (busy, held) = cluster.select(&[]).expect("first");
        for _ in 0..5 {
            let (picked, _) = cluster.select(&[]).expect("pick");
            assert_ne!(
                picked, busy,
                "the backend with a request in flight must not be picked"
            );
        }
        drop(held);
        assert_eq!(cluster.backends[busy].in_flight(), 0);
    }

    #[test]
    fn unresolvable_address_is_an_error_naming_the_index() {
        let err = Cluster::build(
            "c",
            &config(
                &["127.0.0.1:1", "no-such-host.invalid:80"],
                Balance::RoundRobin,
            ),
        )
        .expect_err("unresolvable");
        assert!(
            matches!(err, ClusterError::Resolve { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn unchanged_clusters_are_reused_on_rebuild() {
        let mut configs = std::collections::BTreeMap::new();
        configs.insert(
            "a".to_string(),
            config(&["127.0.0.1:1"], Balance::RoundRobin),
        );
        configs.insert(
            "b".to_string(),
            config(&["127.0.0.1:2"], Balance::RoundRobin),
        );
        let built = Clusters::build(&configs, None).expect("first");
        assert_eq!(built.fresh.len(), 2);
        let first = built.clusters;
        configs.insert(
            "b".to_string(),
            config(&["127.0.0.1:3"], Balance::RoundRobin),
        );
        let built = Clusters::build(&configs, Some(&first)).expect("second");
        assert_eq!(built.fresh.len(), 1);
        let second = built.clusters;
        assert!(Arc::ptr_eq(
            first.get("a").expect("a"),
            second.get("a").expect("a")
        ));
        assert!(!Arc::ptr_eq(
            first.get("b").expect("b"),
            second.get("b").expect("b")
        ));
    }
}
