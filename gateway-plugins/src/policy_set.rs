//! One consistent set of policy resources: the `[plugins]` config it was built from, the
//! JWT verifier, the Redis link, the revocation cache, the identity key and the client-IP
//! resolver.
//!
//! A set is immutable once built. Chains hold the set they were built against
//! (`Arc<PolicySet>`), so a request sees one set from start to end and a reload that is
//! rejected never reaches a running chain. The runtime keeps the *committed* set for
//! [`PolicyRuntime::health`](crate::PolicyRuntime::health) and friends.
//!
//! Stateful components live in [`Part`]s: a component plus the background tasks that keep
//! it fresh. A new set reuses the parts of the current one whose config is unchanged, so
//! caches and subscriptions survive reloads; a part's tasks stop when the last set holding
//! it is dropped (an uncommitted set stops only the parts it created).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use identity_assertion::{KeyId, SigningKey};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::client_ip::ClientIpResolver;
use crate::config::{IdentityConfig, PluginsConfig};
use crate::error::RuntimeError;
use crate::jwt::JwtVerifier;
use crate::metrics::PolicyMetrics;
use crate::redis_link::RedisLink;
use crate::revocation::RevocationCache;

/// How often expired verified tokens and revocation entries are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Retry pace for the JWKS while no key has ever been fetched (auth may start after us).
const JWKS_INITIAL_RETRY: Duration = Duration::from_secs(1);

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
    pub(crate) fn push(&self, handle: JoinHandle<()>) {
        self.0.lock().push(handle);
    }

    pub(crate) fn abort_all(&self) {
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
    pub(crate) tasks: Arc<TaskGroup>,
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

/// One consistent set of policy resources, built by
/// [`PolicyRuntime::prepare`](crate::PolicyRuntime::prepare) and made current by
/// [`PolicyRuntime::commit`](crate::PolicyRuntime::commit). Chains built against it hold
/// it (and with it the background tasks of its parts) for as long as they live.
pub struct PolicySet {
    pub(crate) config: PluginsConfig,
    pub(crate) metrics: PolicyMetrics,
    pub(crate) jwt: Option<Part<JwtVerifier>>,
    pub(crate) redis: Option<Part<RedisLink>>,
    pub(crate) revocation: Part<RevocationCache>,
    pub(crate) identity_key: Option<Arc<SigningKey>>,
    pub(crate) client_ip: Arc<ClientIpResolver>,
}

impl PolicySet {
    /// The `[plugins]` table this set was built from.
    pub fn config(&self) -> &PluginsConfig {
        &self.config
    }

    /// Health of this set's resources.
    pub fn health(&self) -> PolicyHealth {
        PolicyHealth {
            redis_connected: self.redis.as_ref().map(|r| r.value.is_up()),
            jwt_keys: self.jwt.as_ref().map_or(0, |j| j.value.key_count()),
            revocation_subscribed: self
                .redis
                .as_ref()
                .map(|_| self.revocation.value.is_subscribed()),
        }
    }

    /// The resolver the edge uses to fill `RequestContext::client_ip`.
    pub fn client_ip_resolver(&self) -> &Arc<ClientIpResolver> {
        &self.client_ip
    }

    /// Stops the tasks of every part of this set, shared or not (runtime shutdown).
    pub(crate) fn abort_all(&self) {
        if let Some(jwt) = &self.jwt {
            jwt.tasks.abort_all();
        }
        if let Some(redis) = &self.redis {
            redis.tasks.abort_all();
        }
        self.revocation.tasks.abort_all();
    }
}

impl PolicySet {
    /// Builds a set for `config`, reusing the parts of `old` whose config is unchanged
    /// (shared `Part`s: their caches, subscriptions and tasks carry over). Fresh parts start
    /// their background tasks here; they stop when the last set holding them is dropped.
    pub(crate) async fn build(
        config: &PluginsConfig,
        config_dir: &Path,
        metrics: &PolicyMetrics,
        old: Option<&PolicySet>,
    ) -> Result<PolicySet, RuntimeError> {
        let same = |f: &dyn Fn(&PluginsConfig) -> bool| old.is_some_and(|o| f(&o.config));

        let identity_key = match &config.identity {
            Some(identity) => Some(Arc::new(load_signing_key(identity, config_dir)?)),
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

        Ok(PolicySet {
            config: config.clone(),
            metrics: metrics.clone(),
            jwt,
            redis,
            revocation,
            identity_key,
            client_ip: Arc::new(ClientIpResolver::new(&config.client_ip)),
        })
    }
}

/// `<key_dir>/<key_id>.key`; a problem is reported at the key that can fix it.
fn load_signing_key(
    identity: &IdentityConfig,
    config_dir: &Path,
) -> Result<SigningKey, RuntimeError> {
    let id = KeyId::new(&identity.key_id)
        .map_err(|e| RuntimeError::config("plugins.identity.key_id", e.to_string()))?;
    let dir = resolve(config_dir, &identity.key_dir);
    if !dir.is_dir() {
        return Err(RuntimeError::config(
            "plugins.identity.key_dir",
            format!("{} is not a directory", dir.display()),
        ));
    }
    SigningKey::from_dir(&dir, &id).map_err(|e| {
        RuntimeError::config(
            "plugins.identity.key_id",
            format!("no usable key `{id}` in {}: {e}", dir.display()),
        )
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
