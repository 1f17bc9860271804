//! Process-wide policy state that outlives config reloads.
//!
//! The runtime owns what must survive every reload — the metrics, the rate-limit buckets
//! (a registry keyed by route + rule) — and the *committed* [`PolicySet`] (JWT verifier,
//! Redis link, revocation cache, identity key, client-IP resolver) that
//! [`PolicyRuntime::health`] and friends report on.
//!
//! A reload is two-phase, so that a reload rejected for any reason changes nothing:
//!
//! 1. [`PolicyRuntime::prepare`] builds a complete new set, reusing the parts of the
//!    committed one whose config did not change (caches, subscriptions survive). Nothing
//!    the running chains or `health()` see changes.
//! 2. [`PolicyRuntime::build_chain`] builds every route's chain against the prepared set.
//!    Unchanged rate-limit rules get the buckets the running chains use; changed rules get
//!    fresh buckets that nobody else sees.
//! 3. The caller validates everything else (routes, clusters, certificates), then swaps its
//!    own snapshot and calls [`PolicyRuntime::commit`]; or it drops the prepared set and
//!    the chains, which stops the background tasks of the parts only they held.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderMap;

use crate::chain::Chain;
use crate::client_ip::ClientIpResolver;
use crate::config::{PluginsConfig, RoutePolicy};
use crate::error::RuntimeError;
use crate::jwt::JwksError;
use crate::metrics::PolicyMetrics;
use crate::policy_set::{PolicyHealth, PolicySet, TaskGroup};
use crate::rate_limit::LimiterRegistry;
use crate::revocation::RevocationError;

/// Rate-limit buckets, metrics, and the committed [`PolicySet`].
pub struct PolicyRuntime {
    metrics: PolicyMetrics,
    config_dir: PathBuf,
    /// The committed set. Chains never read this: they hold the set they were built with.
    current: ArcSwap<PolicySet>,
    limiters: Arc<LimiterRegistry>,
    tasks: TaskGroup,
    reconfigure_lock: tokio::sync::Mutex<()>,
}

fn validate(config: &PluginsConfig) -> Result<(), RuntimeError> {
    match config.validate().into_iter().next() {
        Some(issue) => Err(RuntimeError::config(
            format!("plugins.{}", issue.path),
            issue.message,
        )),
        None => Ok(()),
    }
}

impl PolicyRuntime {
    /// Builds the runtime with a first, committed set for `config`, and starts the
    /// background tasks (JWKS refresh, revocation subscription, limiter purge) on the
    /// current tokio runtime, which must stay alive. `config_dir` resolves relative paths
    /// (static PEM keys, the identity key file).
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
        validate(config)?;
        let metrics = PolicyMetrics::register(registry)?;
        let set = PolicySet::build(config, config_dir, &metrics, None).await?;
        let limiters = Arc::new(LimiterRegistry::new(&config.rate_limit, metrics.clone()));
        let runtime = Arc::new(Self {
            metrics,
            config_dir: config_dir.to_path_buf(),
            current: ArcSwap::from_pointee(set),
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

    /// Builds a complete set for `config` without committing it: nothing running chains,
    /// [`health`](Self::health), [`revoke`](Self::revoke) or
    /// [`refresh_jwks`](Self::refresh_jwks) see changes. Parts whose config equals the
    /// committed set's are shared with it (same caches, subscriptions and tasks); an
    /// unchanged `config` returns the committed set itself.
    ///
    /// Build chains against the result with [`build_chain`](Self::build_chain), then
    /// [`commit`](Self::commit) it, or drop it (and those chains) to abandon the reload:
    /// that stops the background tasks of the parts it created and nothing else.
    ///
    /// Reloads must be serialised by the caller: a set is prepared from the committed one,
    /// and committing an older preparation after a newer one brings the older one back.
    pub async fn prepare(&self, config: &PluginsConfig) -> Result<Arc<PolicySet>, RuntimeError> {
        validate(config)?;
        let current = self.current.load_full();
        if current.config == *config {
            return Ok(current);
        }
        let set = PolicySet::build(config, &self.config_dir, &self.metrics, Some(&current)).await?;
        Ok(Arc::new(set))
    }

    /// Makes `set` the committed set (for [`health`](Self::health),
    /// [`revoke`](Self::revoke), [`refresh_jwks`](Self::refresh_jwks) and
    /// [`client_ip_resolver`](Self::client_ip_resolver)) and applies its
    /// `[plugins.rate_limit]` (the purge interval; the key cap already applied to the
    /// limiters created while building chains against `set`). Running chains are not
    /// touched: they keep the set they were built with until the caller drops them.
    pub fn commit(&self, set: &Arc<PolicySet>) {
        self.limiters.reconfigure(&set.config.rate_limit);
        self.current.store(Arc::clone(set));
    }

    /// The committed set, e.g. to build chains for a config that did not change.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// Assembles a route's chain against `set` (prepared or committed). Errors name the
    /// offending key relative to the route's `plugins` table. Rate-limit buckets of rules
    /// that running chains already use are shared with them (they survive the reload);
    /// nothing a running chain uses is changed.
    pub fn build_chain(
        &self,
        set: &Arc<PolicySet>,
        route_id: &str,
        policy: &RoutePolicy,
    ) -> Result<Chain, RuntimeError> {
        crate::chain::build_chain(set, &self.limiters, route_id, policy)
    }

    /// Health of the committed set.
    pub fn health(&self) -> PolicyHealth {
        self.current.load().health()
    }

    /// The committed set's resolver, which the edge uses to fill
    /// `RequestContext::client_ip`.
    pub fn client_ip_resolver(&self) -> Arc<ClientIpResolver> {
        Arc::clone(&self.current.load().client_ip)
    }

    /// Shorthand for `client_ip_resolver().resolve(peer, headers)`.
    pub fn resolve_client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        self.current.load().client_ip.resolve(peer, headers)
    }

    /// Revokes a token the way auth does (Redis SET + PUBLISH, or the in-process store
    /// without Redis), through the committed set. For tests and single-node use; the edge
    /// itself never revokes.
    pub async fn revoke(&self, jti: &str, exp: u64) -> Result<(), RevocationError> {
        let revocation = self.current.load().revocation.clone();
        revocation.value.revoke(jti, exp).await
    }

    /// Fetches the committed set's JWKS now (no-op without a JWKS URL).
    pub async fn refresh_jwks(&self) -> Result<usize, JwksError> {
        let jwt = self.current.load().jwt.clone();
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

    /// [`prepare`](Self::prepare) + [`commit`](Self::commit) in one go, for tests and
    /// embedders without a snapshot of their own. On error nothing changes. Chains built
    /// earlier keep the set they were built with: rebuild them afterwards.
    ///
    /// The edge must not use this for reloads: it commits before the rest of the new
    /// config is validated. Use `prepare`, `build_chain`, validate, then `commit`.
    pub async fn reconfigure(&self, config: &PluginsConfig) -> Result<(), RuntimeError> {
        let _serial = self.reconfigure_lock.lock().await;
        let set = self.prepare(config).await?;
        self.commit(&set);
        Ok(())
    }

    /// Stops every background task now, including those of the committed set (they also
    /// stop when the runtime is dropped).
    pub fn shutdown(&self) {
        self.tasks.abort_all();
        self.current.load().abort_all();
    }
}

impl Drop for PolicyRuntime {
    fn drop(&mut self) {
        self.current.load().abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JwtAlgorithm, JwtMode, JwtProviderConfig, RateLimitKey, StaticKeyConfig};
    use crate::decision::Decision;
    use crate::steps::testing::*;
    use crate::test_support::{Claims, JwksServer, TestKey};
    use http::StatusCode;
    use std::time::Duration;

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
                jwks_ca_file: None,
                jwks_allow_http: true,
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
    async fn identity_key_problems_are_reported_at_the_key_that_fixes_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::test_support::write_identity_key(dir.path());
        let attempt = |key_dir: &str, key_id: &str| {
            let config = PluginsConfig {
                identity: Some(crate::config::IdentityConfig {
                    key_dir: key_dir.into(),
                    key_id: key_id.into(),
                }),
                ..PluginsConfig::default()
            };
            let dir = dir.path().to_path_buf();
            async move {
                PolicyRuntime::new(&config, &dir, &prometheus::Registry::new())
                    .await
                    .err()
                    .expect("refused")
            }
        };
        for (key_dir, key_id, path, says) in [
            (
                "missing",
                "test",
                "plugins.identity.key_dir",
                "not a directory",
            ),
            ("identity", "other", "plugins.identity.key_id", "other.key"),
            ("identity", "../test", "plugins.identity.key_id", "key id"),
        ] {
            let err = attempt(key_dir, key_id).await;
            assert!(
                matches!(&err, RuntimeError::Config { path: p, .. } if p == path),
                "{key_dir}/{key_id}: {err}"
            );
            assert!(err.to_string().contains(says), "{err}");
        }
    }
    #[tokio::test]
    async fn reconfigure_keeps_buckets_and_picks_up_a_new_identity_key() {
        let f = fixture(true).await;
        let policy = RoutePolicy {
            jwt: jwt(JwtMode::Required),
            rate_limits: vec![rule(RateLimitKey::User, 1)],
            ..Default::default()
        };
        let chain = f.chain("r", &policy).expect("chain");
        let token = f.key.sign(&Claims::valid("u"));
        assert_eq!(
            chain
                .evaluate(&request("GET", &[bearer(&token)]), &ctx(false))
                .await
                .decision,
            Decision::Continue
        );
        let mut config = f.runtime.current().config().clone();
        config.identity = None;
        f.runtime.reconfigure(&config).await.expect("reconfigure");
        // Chains built earlier keep the set they were built with; a rebuilt chain shares
        // their buckets and uses the new set.
        let rebuilt = f.chain("r", &policy).expect("chain");
        let outcome = rebuilt
            .evaluate(&request("GET", &[bearer(&token)]), &ctx(false))
            .await;
        assert_eq!(
            respond(&outcome).status,
            StatusCode::TOO_MANY_REQUESTS,
            "bucket kept"
        );
        let other = f.key.sign(&Claims::valid("v"));
        let outcome = rebuilt
            .evaluate(&request("GET", &[bearer(&other)]), &ctx(false))
            .await;
        assert_eq!(outcome.decision, Decision::Continue);
        assert!(outcome.identity.is_some());
        assert!(
            upstream(&outcome, "x-user-id").is_none(),
            "no identity key any more"
        );
        let bad = PluginsConfig {
            redis: Some(crate::config::RedisConfig {
                url: "http://not-redis".into(),
                namespace: String::new(),
                connect_timeout: Duration::from_millis(100),
                command_timeout: Duration::from_millis(100),
            }),
            ..config
        };
        assert!(f.runtime.reconfigure(&bad).await.is_err());
    }

    /// Whether `chain` admits `token`, or the error code it answers with.
    async fn admits(chain: &Chain, token: &str) -> Result<(), String> {
        let outcome = chain
            .evaluate(&request("GET", &[bearer(token)]), &ctx(false))
            .await;
        match &outcome.decision {
            Decision::Continue => Ok(()),
            Decision::Respond(response) => Err(error_code(response)),
        }
    }

    #[tokio::test]
    async fn a_prepared_set_changes_nothing_until_it_is_committed() {
        let f = fixture(true).await;
        let policy = RoutePolicy {
            jwt: jwt(JwtMode::Required),
            ..Default::default()
        };
        let running = f.chain("r", &policy).expect("chain");
        let old_token = f.key.sign(&Claims::valid("u"));
        let new_token = f
            .key
            .sign(&Claims::valid("u").set("iss", serde_json::json!("new-issuer")));
        assert_eq!(admits(&running, &old_token).await, Ok(()));
        assert_eq!(admits(&running, &new_token).await, Err("bad_issuer".into()));

        // The new config: another issuer, and a second key so health() tells them apart.
        let mut config = f.runtime.current().config().clone();
        let second = TestKey::ed25519("k2");
        std::fs::write(f.dir.path().join("k2.pem"), &second.public_pem).expect("pem");
        let provider = config.jwt.as_mut().expect("jwt");
        provider.issuer = "new-issuer".into();
        provider.static_keys.push(StaticKeyConfig {
            kid: "k2".into(),
            algorithm: JwtAlgorithm::EdDSA,
            pem_file: "k2.pem".into(),
        });

        // A reload that is rejected after its chains were built: nothing changed.
        let prepared = f.runtime.prepare(&config).await.expect("prepare");
        assert_eq!(prepared.health().jwt_keys, 2);
        assert_eq!(
            f.runtime.health().jwt_keys,
            1,
            "health is the committed set's"
        );
        let candidate = f
            .runtime
            .build_chain(&prepared, "r", &policy)
            .expect("chain");
        assert_eq!(admits(&candidate, &new_token).await, Ok(()));
        assert_eq!(
            admits(&candidate, &old_token).await,
            Err("bad_issuer".into())
        );
        drop(candidate);
        drop(prepared);
        assert_eq!(admits(&running, &old_token).await, Ok(()));
        assert_eq!(admits(&running, &new_token).await, Err("bad_issuer".into()));
        assert_eq!(f.runtime.health().jwt_keys, 1);
        let current = f.runtime.current();
        let issuer = current.config().jwt.as_ref().map(|j| j.issuer.as_str());
        assert_eq!(issuer, Some(crate::test_support::ISSUER));

        // The same reload, accepted: chains built against the set enforce it once committed.
        let prepared = f.runtime.prepare(&config).await.expect("prepare");
        let rebuilt = f
            .runtime
            .build_chain(&prepared, "r", &policy)
            .expect("chain");
        f.runtime.commit(&prepared);
        assert!(Arc::ptr_eq(&f.runtime.current(), &prepared));
        assert_eq!(f.runtime.health().jwt_keys, 2);
        assert_eq!(admits(&rebuilt, &new_token).await, Ok(()));
        assert_eq!(admits(&rebuilt, &old_token).await, Err("bad_issuer".into()));
        let from_current = f.chain("r", &policy).expect("chain");
        assert_eq!(admits(&from_current, &new_token).await, Ok(()));
        // The old chain keeps its own set until the caller drops it with its snapshot.
        assert_eq!(admits(&running, &old_token).await, Ok(()));

        // Preparing the committed config again yields the committed set itself.
        let again = f.runtime.prepare(&config).await.expect("prepare");
        assert!(Arc::ptr_eq(&again, &prepared));
    }

    #[tokio::test]
    async fn dropping_a_prepared_set_stops_only_the_tasks_it_started() {
        let key = TestKey::ed25519("k");
        let committed_jwks = JwksServer::start(vec![key.jwk.clone()]).await;
        let abandoned_jwks = JwksServer::start(vec![key.jwk.clone()]).await;
        let provider = |url: String| JwtProviderConfig {
            issuer: "i".into(),
            audience: "a".into(),
            jwks_url: Some(url),
            jwks_ca_file: None,
            jwks_allow_http: true,
            jwks_refresh_interval: Duration::from_millis(50),
            jwks_min_refetch_interval: Duration::from_secs(10),
            jwks_fetch_timeout: Duration::from_secs(1),
            static_keys: Vec::new(),
            leeway: Duration::from_secs(5),
            verified_cache_size: 100,
        };
        let config = PluginsConfig {
            jwt: Some(provider(committed_jwks.url())),
            ..PluginsConfig::default()
        };
        let runtime = PolicyRuntime::new(&config, Path::new("."), &prometheus::Registry::new())
            .await
            .expect("runtime");

        // A new JWKS source is a fresh part with its own refresh task.
        let other = PluginsConfig {
            jwt: Some(provider(abandoned_jwks.url())),
            ..config.clone()
        };
        let prepared = runtime.prepare(&other).await.expect("prepare");
        assert!(
            wait_for(Duration::from_secs(5), || abandoned_jwks.hits() >= 3).await,
            "the prepared set refreshes its keys"
        );
        drop(prepared);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopped_at = abandoned_jwks.hits();
        let committed_before = committed_jwks.hits();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(abandoned_jwks.hits(), stopped_at, "its refresh stopped");
        assert!(
            committed_jwks.hits() > committed_before,
            "the committed set's refresh runs on"
        );

        // A set sharing the committed JWT part: dropping it stops nothing.
        let mut shares_jwt = config.clone();
        shares_jwt.rate_limit.max_tracked_keys += 1;
        let prepared = runtime.prepare(&shares_jwt).await.expect("prepare");
        assert!(Arc::ptr_eq(
            &prepared.jwt.as_ref().expect("jwt").value,
            &runtime.current().jwt.as_ref().expect("jwt").value
        ));
        drop(prepared);
        let committed_before = committed_jwks.hits();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            committed_jwks.hits() > committed_before,
            "shared part still refreshed"
        );
        assert_eq!(runtime.health().jwt_keys, 1);
        runtime.shutdown();
    }
}
