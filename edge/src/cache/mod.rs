//! The micro-cache (`routes[].cache`, `[cache]`) on the one proxy path: Pingora's HTTP cache
//! (pingora-cache) with the edge's policy, for h1, h2 and h3 alike. The proxy phases call:
//!
//! - [`MicroCache::enable`] from `request_cache_filter`: GET on a cached route, after the
//!   route's policy chain admitted it (rate limits and JWT checks run before any hit). A
//!   request with `Authorization` bypasses the cache unless the route keys it per user.
//! - [`cache_key`] from `cache_key_callback`: method, host, path, the query with its
//!   parameters sorted, and the verified user on a `per_user` route. `Vary` headers of the
//!   stored response are added by [`variance`] (`cache_vary_filter`).
//! - [`cacheability`] from `response_cache_filter`: the origin's `Cache-Control`/`Expires`
//!   first, the route's `ttl` for a response that states nothing; never `Set-Cookie`,
//!   `private`, `no-store`, `Vary: *` or a status that is not cacheable by default.
//! - [`status_header`] from `response_filter`: `x-cache-status` on every response of a
//!   cached route.
//!
//! Concurrent misses for one key are coalesced by pingora-cache's cache lock: one request
//! goes to the origin, the others wait (up to `[cache] lock_timeout`) and are served its
//! response.

mod store;

use std::time::{Duration, SystemTime};

use http::{header, Method, StatusCode};
use pingora_cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora_cache::eviction::simple_lru;
use pingora_cache::filters::{calculate_fresh_until, calculate_serve_stale_durations};
use pingora_cache::key::{CacheKey, HashBinary};
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_cache::{CacheMeta, CacheMetaDefaults, CachePhase, NoCacheReason, RespCacheable};
use pingora_cache::{CacheOptionOverrides, VarianceBuilder};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use crate::config::{CacheSection, RouteCacheConfig};
use crate::metrics::EdgeMetrics;
use store::MicroCacheStore;
pub use store::StoreMetrics;

/// The response header naming what the cache did.
pub const STATUS_HEADER: &str = "x-cache-status";

/// The process's one cache: store, LRU bound and lock. Pingora wants `'static` parts, so it
/// is built once at start ([`MicroCache::leak`]) and shared by every listener.
pub struct MicroCache {
    store: MicroCacheStore,
    eviction: simple_lru::Manager,
    lock: Box<CacheKeyLockImpl>,
    lock_timeout: Duration,
}

/// What this request gets from the cache, decided before the lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Looked up (and filled on a miss).
    Use,
    /// The route caches, but not this request (method, `Authorization`).
    Bypass,
}

impl MicroCache {
    pub fn leak(config: &CacheSection, metrics: &EdgeMetrics) -> &'static MicroCache {
        let store = MicroCacheStore::new(StoreMetrics {
            stored_bytes: metrics.cache_stored_bytes.clone(),
            stored_objects: metrics.cache_stored_objects.clone(),
            evictions: metrics.cache_evictions.clone(),
        });
        Box::leak(Box::new(MicroCache {
            store,
            eviction: simple_lru::Manager::new(config.max_bytes),
            lock: CacheLock::new_boxed(config.lock_timeout),
            lock_timeout: config.lock_timeout,
        }))
    }

    /// Turns Pingora's cache on for this request when the route's policy allows it.
    pub fn enable(
        &'static self,
        session: &mut Session,
        policy: &RouteCacheConfig,
        user: Option<&str>,
    ) -> Decision {
        let request = session.req_header();
        if request.method != Method::GET {
            return Decision::Bypass;
        }
        if request.headers.contains_key(header::AUTHORIZATION)
            && !(policy.per_user && user.is_some())
        {
            return Decision::Bypass;
        }
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(self.lock_timeout);
        session.cache.enable(
            &self.store,
            Some(&self.eviction),
            None,
            Some(self.lock.as_ref()),
            Some(overrides),
        );
        session
            .cache
            .set_max_file_size_bytes(policy.max_object_bytes);
        Decision::Use
    }

    /// `POST /cache/purge`: drops what was stored for a path (or every path under a
    /// prefix), on one host or all; returns how many objects went.
    pub fn purge(&self, host: Option<&str>, path: &str, prefix: bool) -> usize {
        self.store
            .purge_matching(host, path, prefix, &self.eviction)
    }
}

/// The primary key: `GET`, host, path with sorted query parameters and, on a `per_user`
/// route, the verified user; newline-separated (none of them can contain one).
pub fn cache_key(request: &RequestHeader, user: Option<&str>) -> CacheKey {
    let host = crate::routes::request_host(request).unwrap_or_default();
    let path = request.uri.path();
    let mut key = format!("{}\n{host}\n{path}", request.method);
    if let Some(query) = request.uri.query() {
        let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        params.sort_unstable();
        if !params.is_empty() {
            key.push('?');
            key.push_str(&params.join("&"));
        }
    }
    key.push('\n');
    if let Some(user) = user {
        key.push_str(user);
    }
    CacheKey::new(key, "")
}

/// The variance of a stored response: the request's values of the headers its `Vary` names.
pub fn variance(meta: &CacheMeta, request: &RequestHeader) -> Option<HashBinary> {
    let mut names: Vec<String> = meta
        .headers()
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut builder = VarianceBuilder::new();
    for name in names {
        let value = request
            .headers
            .get(name.as_str())
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        builder.add_owned_name_value(name, value);
    }
    builder.finalize()
}

/// Statuses a cache may store without explicit freshness (RFC 9110 section 15.1), less 206
/// (ranges are cut from the whole object here) and 405/414/501 (not worth keeping).
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 410
    )
}

fn no_default_freshness(_: StatusCode) -> Option<Duration> {
    None
}

/// Whether and how long a response may be kept.
pub fn cacheability(policy: &RouteCacheConfig, response: &ResponseHeader) -> RespCacheable {
    let uncacheable = |why: &'static str| RespCacheable::Uncacheable(NoCacheReason::Custom(why));
    if !heuristically_cacheable(response.status) {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    }
    let headers = &response.headers;
    if headers.contains_key(header::SET_COOKIE) {
        return uncacheable("set-cookie");
    }
    let vary_any = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|name| name.trim() == "*"));
    if vary_any {
        return uncacheable("vary-star");
    }
    let cache_control = CacheControl::from_resp_headers(response);
    if cache_control
        .as_ref()
        .is_some_and(|cc| cc.is_cacheable() == Cacheable::No)
    {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    }
    let defaults = CacheMetaDefaults::new(
        no_default_freshness,
        policy.stale_while_revalidate.as_secs() as u32,
        policy.stale_if_error.as_secs() as u32,
    );
    let now = SystemTime::now();
    let fresh_until =
        calculate_fresh_until(now, cache_control.as_ref(), response, false, &defaults)
            .unwrap_or(now + policy.ttl);
    let (stale_while_revalidate, stale_if_error) = if cache_control
        .as_ref()
        .is_some_and(|cc| cc.no_cache() || cc.must_revalidate())
    {
        // Kept, but never used without a successful revalidation (RFC 9111 5.2.2.1/5.2.2.4).
        (0, 0)
    } else {
        calculate_serve_stale_durations(cache_control.as_ref(), &defaults)
    };
    let mut stored = response.clone();
    if let Some(cc) = &cache_control {
        cc.strip_private_headers(&mut stored);
    }
    RespCacheable::Cacheable(CacheMeta::new(
        fresh_until,
        now,
        stale_while_revalidate,
        stale_if_error,
        stored,
    ))
}

/// The `x-cache-status` value for a request of a cached route.
pub fn status(decision: Decision, phase: CachePhase) -> &'static str {
    if decision == Decision::Bypass {
        return "BYPASS";
    }
    match phase {
        CachePhase::Hit => "HIT",
        CachePhase::Stale | CachePhase::StaleUpdating => "STALE",
        CachePhase::Expired => "EXPIRED",
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "REVALIDATED",
        // Looked up, not found (or found unusable), fetched; stored or not.
        _ => "MISS",
    }
}

#[cfg(test)]
mod tests;
