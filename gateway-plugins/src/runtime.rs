//! Process-wide policy state that outlives config reloads.
//!
//! The runtime owns the stateful parts — JWT keys and the verified-token cache, the
//! Redis link, the revocation cache and its subscription, the identity key, the client-IP
//! resolver (together a [`Shared`] snapshot behind an `ArcSwap`) and the rate-limit
//! buckets (a registry keyed by route + rule). Chains hold the runtime and load the
//! snapshot per request (one atomic load), so [`PolicyRuntime::reconfigure`] can swap a
//! changed `[plugins]` table under running chains. Parts whose config did not change are
//! carried over as they are (caches, subscriptions and buckets survive).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderMap;
use identity_assertion::IdentityKey;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::chain::Chain;
use crate::client_ip::ClientIpResolver;
use crate::config::{PluginsConfig, RoutePolicy};
use crate::jwt::{JwksError, JwtVerifier};
use crate::metrics::PolicyMetrics;
use crate::rate_limit::LimiterRegistry;
use crate::redis_link::RedisLink;
use crate::revocation::{RevocationCache, RevocationError};

/// How often expired verified tokens and revocation entries are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Retry pace for the JWKS while no key has ever been fetched (auth may start after us).
const JWKS_INITIAL_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    /// The registry already holds `edge_*` policy metrics (one runtime per registry).
    #[error("cannot register policy metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl RuntimeError {
    pub(crate) fn config(path: impl Into<String>, message: impl Into<String>) -> Self {
        RuntimeError::Config {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Health of the shared policy resources, for the edge's `/readyz` and `/api/healthz`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyHealth {
    /// `None` when no Redis is configured.
    pub redis_connected: Option<bool>,
    /// Verification keys currently loaded.
    pub jwt_keys: usize,
    /// `None` without Redis; otherwise whether the revocation channel subscription is
    /// live (while it is not, every token is checked against Redis).
    pub revocation_subscribed: Option<bool>,
}

/// Background tasks of one component; aborted when the last owner drops it.
#[derive(Default)]
pub(crate) struct TaskGroup(Mutex<Vec<JoinHandle<()>>>);

impl TaskGroup {
    fn push(&self, handle: JoinHandle<()>) {
        self.0.lock().push(handle);
    }

    fn abort_all(&self) {
        for handle in self.0.lock().iter() {
            handle.abort();
        }
    }
}

impl Drop for TaskGroup {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// A component and the tasks that keep it fresh. Tasks hold the component, never the
/// other way round, so dropping the last `Part` stops them.
pub(crate) struct Part<T> {
    pub(crate) value: Arc<T>,
    tasks: Arc<TaskGroup>,
}

impl<T> Clone for Part<T> {
    fn clone(&self) -> Self {
        Self {
            value: Arc::clone(&self.value),
            tasks: Arc::clone(&self.tasks),
        }
    }
}

impl<T> Part<T> {
    fn new(value: Arc<T>) -> Self {
        Self {
            value,
            tasks: Arc::new(TaskGroup::default()),
        }
    }
}

/// One consistent set of policy resources (swapped whole on reconfigure).
pub(crate) struct Shared {
    pub(crate) config: PluginsConfig,
    pub(crate) jwt: Option<Part<JwtVerifier>>,
    pub(crate) redis: Option<Part<RedisLink>>,
    pub(crate) revocation: Part<RevocationCache>,
    pub(crate) identity_key: Option<Arc<IdentityKey>>,
    pub(crate) client_ip: Arc<ClientIpResolver>,
}

impl Shared {
    fn abort_all(&self) {
        if let Some(jwt) = &self.jwt {
            jwt.tasks.abort_all();
        }
        if let Some(redis) = &self.redis {
            redis.tasks.abort_all();
        }
        self.revocation.tasks.abort_all();
    }
}

/// JWKS keys, the revocation cache and its subscription, and rate-limit buckets.
pub struct PolicyRuntime {
    metrics: PolicyMetrics,
    config_dir: PathBuf,
    pub(crate) shared: ArcSwap<Shared>,
    pub(crate) limiters: Arc<LimiterRegistry>,
    tasks: TaskGroup,
    reconfigure_lock: tokio::sync::Mutex<()>,
}

impl PolicyRuntime {
    /// Builds the runtime and starts its background tasks (JWKS refresh, revocation
    /// subscription, limiter purge) on the current tokio runtime, which must stay alive.
    /// `config_dir` resolves relative paths (static PEM keys, the identity key file).
    ///
    /// Waits for the first JWKS fetch and the first Redis connection and subscription
    /// (each bounded by its configured timeout), so with healthy dependencies the runtime
    /// is fully live when returned; with unhealthy ones it starts anyway and keeps
    /// retrying in the background (see [`PolicyRuntime::health`]).
    pub async fn new(
        config: &PluginsConfig,
        config_dir: &Path,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Self>, RuntimeError> {
        if let Some(issue) = config.validate().into_iter().next() {
            return Err(RuntimeError::config(
                format!("plugins.{}", issue.path),
                issue.message,
            ));
        }
        let metrics = PolicyMetrics::register(registry)?;
        let shared = build_shared(config, config_dir, &metrics, None).await?;
        let limiters = Arc::new(LimiterRegistry::new(&config.rate_limit, metrics.clone()));
        let runtime = Arc::new(Self {
            metrics,
            config_dir: config_dir.to_path_buf(),
            shared: ArcSwap::from_pointee(shared),
            limiters: Arc::clone(&limiters),
            tasks: TaskGroup::default(),
            reconfigure_lock: tokio::sync::Mutex::new(()),
        });
        runtime.tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(limiters.purge_interval()).await;
                limiters.purge();
            }
        }));
        Ok(runtime)
    }

    /// Assembles a route's chain. Errors name the offending key relative to the route's
    /// `plugins` table.
    pub fn build_chain(
        self: &Arc<Self>,
        route_id: &str,
        policy: &RoutePolicy,
    ) -> Result<Chain, RuntimeError> {
        let shared = self.shared.load();
        let mut issues = policy.validate(&shared.config).into_iter();
        if let Some(first) = issues.next() {
            let mut message = first.message;
            for more in issues {
                message.push_str(&format!("; also {}: {}", more.path, more.message));
            }
            return Err(RuntimeError::config(first.path, message));
        }
        Chain::build(Arc::clone(self), route_id, policy)
    }

    pub fn health(&self) -> PolicyHealth {
        let shared = self.shared.load();
        PolicyHealth {
            redis_connected: shared.redis.as_ref().map(|r| r.value.is_up()),
            jwt_keys: shared.jwt.as_ref().map_or(0, |j| j.value.key_count()),
            revocation_subscribed: shared
                .redis
                .as_ref()
                .map(|_| shared.revocation.value.is_subscribed()),
        }
    }

    /// The resolver the edge uses to fill `RequestContext::client_ip`.
    pub fn client_ip_resolver(&self) -> Arc<ClientIpResolver> {
        Arc::clone(&self.shared.load().client_ip)
    }

    /// Shorthand for `client_ip_resolver().resolve(peer, headers)`.
    pub fn resolve_client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        self.shared.load().client_ip.resolve(peer, headers)
    }

    /// Revokes a token the way auth does (Redis SET + PUBLISH, or the in-process store
    /// without Redis). For tests and single-node use; the edge itself never revokes.
    pub async fn revoke(&self, jti: &str, exp: u64) -> Result<(), RevocationError> {
        let revocation = self.shared.load().revocation.clone();
        revocation.value.revoke(jti, exp).await
    }

    /// Fetches the JWKS now (no-op without a JWKS URL).
    pub async fn refresh_jwks(&self) -> Result<usize, JwksError> {
        let jwt = self.shared.load().jwt.clone();
        match jwt {
            Some(jwt) => jwt.value.refresh_jwks().await,
            None => Ok(0),
        }
    }

    /// Purges idle rate-limit keys now (the background task does it every
    /// `purge_interval`).
    pub fn purge_rate_limits(&self) {
        self.limiters.purge();
    }

    pub fn metrics(&self) -> &PolicyMetrics {
        &self.metrics
    }

    /// Applies a changed `[plugins]` table (hot reload). Sections that did not change keep
    /// their state (verified tokens, revoked set, subscription, connection). Rate-limit
    /// buckets always survive. On error nothing changes. Rebuild the chains afterwards if
    /// route validation may depend on the change (e.g. `[plugins.jwt]` added).
    pub async fn reconfigure(&self, config: &PluginsConfig) -> Result<(), RuntimeError> {
        let _serial = self.reconfigure_lock.lock().await;
        if let Some(issue) = config.validate().into_iter().next() {
            return Err(RuntimeError::config(
                format!("plugins.{}", issue.path),
                issue.message,
            ));
        }
        let old = self.shared.load_full();
        if old.config == *config {
            return Ok(());
        }
        let shared = build_shared(config, &self.config_dir, &self.metrics, Some(&old)).await?;
        self.limiters.reconfigure(&config.rate_limit);
        self.shared.store(Arc::new(shared));
        Ok(())
    }

    /// Stops every background task now (they also stop when the runtime is dropped).
    pub fn shutdown(&self) {
        self.tasks.abort_all();
        self.shared.load().abort_all();
    }
}

impl Drop for PolicyRuntime {
    fn drop(&mut self) {
        self.shared.load().abort_all();
    }
}

/// Builds a `Shared` for `config`, reusing the parts of `old` whose config is unchanged.
async fn build_shared(
    config: &PluginsConfig,
    config_dir: &Path,
    metrics: &PolicyMetrics,
    old: Option<&Arc<Shared>>,
) -> Result<Shared, RuntimeError> {
    let same = |f: &dyn Fn(&PluginsConfig) -> bool| old.is_some_and(|o| f(&o.config));

    let identity_key = match &config.identity {
        Some(identity) => {
            let path = resolve(config_dir, &identity.key_file);
            let key = IdentityKey::from_file(&path)
                .map_err(|e| RuntimeError::config("plugins.identity.key_file", e.to_string()))?;
            Some(Arc::new(key))
        }
        None => None,
    };

    let jwt = match (&config.jwt, old) {
        (Some(jwt_config), Some(old)) if old.config.jwt.as_ref() == Some(jwt_config) => {
            old.jwt.clone()
        }
        (Some(jwt_config), _) => {
            let verifier = JwtVerifier::new(jwt_config, config_dir, metrics.clone())
                .map_err(|e| RuntimeError::config(format!("plugins.{}", e.path), e.message))?;
            let part = Part::new(Arc::new(verifier));
            start_jwt_tasks(&part, jwt_config.jwks_refresh_interval).await;
            Some(part)
        }
        (None, _) => None,
    };

    let redis = match (&config.redis, old) {
        (Some(redis_config), Some(old)) if old.config.redis.as_ref() == Some(redis_config) => {
            old.redis.clone()
        }
        (Some(redis_config), _) => {
            let link = RedisLink::new(redis_config, metrics.clone())
                .map_err(|message| RuntimeError::config("plugins.redis.url", message))?;
            let link = Arc::new(link);
            if let Err(err) = link.connect_once().await {
                tracing::warn!(error = %err, "Redis unreachable at start; continuing and retrying in the background");
            }
            let part = Part::new(Arc::clone(&link));
            part.tasks.push(tokio::spawn(link.supervise()));
            Some(part)
        }
        (None, _) => None,
    };

    let revocation_unchanged =
        same(&|c| c.revocation == config.revocation && c.redis == config.redis);
    let revocation = match old {
        Some(old) if revocation_unchanged => old.revocation.clone(),
        _ => {
            let cache = match &redis {
                Some(link) => RevocationCache::with_redis(
                    &config.revocation,
                    Arc::clone(&link.value),
                    metrics.clone(),
                ),
                None => RevocationCache::in_memory(&config.revocation, metrics.clone()),
            };
            let part = Part::new(Arc::new(cache));
            if let Some(handle) = part.value.start_subscription().await {
                part.tasks.push(handle);
            }
            let sweeper = Arc::clone(&part.value);
            part.tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SWEEP_INTERVAL).await;
                    sweeper.sweep();
                }
            }));
            part
        }
    };

    Ok(Shared {
        config: config.clone(),
        jwt,
        redis,
        revocation,
        identity_key,
        client_ip: Arc::new(ClientIpResolver::new(&config.client_ip)),
    })
}

/// First JWKS fetch (awaited, bounded by the fetch timeout), then the refresh loop and the
/// verified-cache sweeper.
async fn start_jwt_tasks(part: &Part<JwtVerifier>, refresh_interval: Duration) {
    let verifier = Arc::clone(&part.value);
    if verifier.has_jwks() {
        if let Err(err) = verifier.refresh_jwks().await {
            tracing::warn!(error = %err, "initial JWKS fetch failed; retrying in the background");
        }
        let refresher = Arc::clone(&verifier);
        part.tasks.push(tokio::spawn(async move {
            let mut retry = JWKS_INITIAL_RETRY;
            loop {
                // Until a first key set arrives, retry quickly (with backoff) instead of
                // waiting a whole refresh interval with no keys.
                let wait = if refresher.jwks_key_count() == 0 {
                    let wait = retry.min(refresh_interval);
                    retry = (retry * 2).min(Duration::from_secs(30));
                    wait
                } else {
                    refresh_interval
                };
                tokio::time::sleep(wait).await;
                if let Err(err) = refresher.refresh_jwks().await {
                    tracing::warn!(error = %err, "JWKS refresh failed; keeping the last good key set");
                }
            }
        }));
    }
    part.tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            verifier.sweep_cache();
        }
    }));
}

fn resolve(config_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        config_dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JwtProviderConfig;
    use crate::test_support::{JwksServer, TestKey};

    async fn wait_for(limit: Duration, condition: impl Fn() -> bool) -> bool {
        let start = std::time::Instant::now();
        while !condition() {
            if start.elapsed() > limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    #[tokio::test]
    async fn starts_without_the_jwks_and_picks_keys_up_in_the_background() {
        let first = TestKey::ed25519("first");
        let server = JwksServer::start(vec![first.jwk.clone()]).await;
        server.set_failing(true);
        let config = PluginsConfig {
            jwt: Some(JwtProviderConfig {
                issuer: "i".into(),
                audience: "a".into(),
                jwks_url: Some(server.url()),
                jwks_refresh_interval: Duration::from_millis(200),
                jwks_min_refetch_interval: Duration::from_secs(10),
                jwks_fetch_timeout: Duration::from_secs(1),
                static_keys: Vec::new(),
                leeway: Duration::from_secs(5),
                verified_cache_size: 100,
            }),
            ..PluginsConfig::default()
        };
        let runtime = PolicyRuntime::new(&config, Path::new("."), &prometheus::Registry::new())
            .await
            .expect("the edge starts even though auth is not up yet");
        assert_eq!(runtime.health().jwt_keys, 0);
        assert_eq!(runtime.health().redis_connected, None);
        server.set_failing(false);
        assert!(
            wait_for(Duration::from_secs(5), || runtime.health().jwt_keys == 1).await,
            "keys arrive once the JWKS answers"
        );
        // Periodic refresh picks up a rotation without any unknown-kid trigger.
        let second = TestKey::ed25519("second");
        server.set_keys(vec![first.jwk.clone(), second.jwk.clone()]);
        assert!(
            wait_for(Duration::from_secs(5), || runtime.health().jwt_keys == 2).await,
            "refreshed on the interval"
        );
        runtime.shutdown();
    }

    #[tokio::test]
    async fn one_registry_cannot_hold_two_runtimes_but_two_registries_can() {
        let registry = prometheus::Registry::new();
        let config = PluginsConfig::default();
        let _first = PolicyRuntime::new(&config, Path::new("."), &registry)
            .await
            .expect("first");
        let second = PolicyRuntime::new(&config, Path::new("."), &registry).await;
        assert!(matches!(second, Err(RuntimeError::Metrics(_))));
        let _other = PolicyRuntime::new(&config, Path::new("."), &prometheus::Registry::new())
            .await
            .expect("separate registry");
    }

    #[tokio::test]
    async fn missing_identity_key_file_is_reported_at_its_key() {
        let config = PluginsConfig {
            identity: Some(crate::config::IdentityConfig {
                key_file: "missing.key".into(),
            }),
            ..PluginsConfig::default()
        };
        let err = PolicyRuntime::new(
            &config,
            Path::new("/nonexistent"),
            &prometheus::Registry::new(),
        )
        .await
        .err()
        .expect("missing key file");
        assert!(
            matches!(&err, RuntimeError::Config { path, .. } if path == "plugins.identity.key_file"),
            "{err}"
        );
    }
}
