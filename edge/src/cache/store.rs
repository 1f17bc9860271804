//! The micro-cache's storage: whole objects in memory, behind pingora-cache's `Storage`
//! trait, so Pingora's proxy does the HTTP caching (freshness, revalidation, stale serving,
//! request coalescing through its cache lock, range replies) and this only keeps bytes.
//!
//! Why not `pingora_cache::MemCache`: it is marked test-only (unbounded, copies every body
//! on each hit, supports partial reads we do not want). Here an object becomes visible
//! only when complete — concurrent misses wait on the cache lock instead, which is the
//! coalescing the issue asks for — a hit shares the stored `Bytes` without copying, and the
//! total is bounded by pingora-cache's LRU eviction manager, which the proxy consults on
//! every admission (`MicroCache::eviction`) and whose victims come back here as purges.

use std::any::Any;
use std::collections::HashMap;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use pingora_cache::eviction::{CacheEntryKey, EvictionManager};
use pingora_cache::key::{CacheHashKey, CacheKey, CompactCacheKey};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType, Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::CacheMeta;
use pingora_error::{Error, ErrorType, Result};
use prometheus::{IntCounter, IntGauge};

/// Where an object came from, for purges by path.
#[derive(Debug, Clone)]
struct Origin {
    host: String,
    path: String,
}

struct StoredObject {
    meta: (Vec<u8>, Vec<u8>),
    body: Bytes,
    compact: CompactCacheKey,
    origin: Option<Origin>,
}

impl StoredObject {
    fn weight(&self) -> usize {
        self.body.len() + self.meta.0.len() + self.meta.1.len()
    }
}

/// Metrics the store keeps current.
#[derive(Clone)]
pub struct StoreMetrics {
    pub stored_bytes: IntGauge,
    pub stored_objects: IntGauge,
    pub evictions: IntCounter,
}

pub struct MicroCacheStore {
    objects: RwLock<Objects>,
    metrics: StoreMetrics,
}

/// The stored objects by combined key (primary + variance), and their total weight.
#[derive(Default)]
struct Objects {
    map: HashMap<String, StoredObject>,
    bytes: usize,
}

impl Objects {
    fn insert(&mut self, key: String, object: StoredObject) {
        self.bytes += object.weight();
        if let Some(old) = self.map.insert(key, object) {
            self.bytes -= old.weight();
        }
    }

    fn remove(&mut self, key: &str) -> Option<StoredObject> {
        let object = self.map.remove(key)?;
        self.bytes -= object.weight();
        Some(object)
    }
}

/// Host and path (with query) of a primary key built by `cache::cache_key`: method, host,
/// path and query, user, separated by newlines (which none of them can contain).
pub fn origin_of(primary: &str) -> Option<(&str, &str)> {
    let mut parts = primary.splitn(4, '\n');
    let _method = parts.next()?;
    let host = parts.next()?;
    let path_and_query = parts.next()?;
    Some((host, path_and_query))
}

impl MicroCacheStore {
    pub fn new(metrics: StoreMetrics) -> Self {
        Self {
            objects: RwLock::new(Objects::default()),
            metrics,
        }
    }

    fn update_gauges(&self, objects: &Objects) {
        self.metrics.stored_bytes.set(objects.bytes as i64);
        self.metrics.stored_objects.set(objects.map.len() as i64);
    }

    /// Removes every object whose path (without query) is `path`, or starts with it when
    /// `prefix`, on `host` or any host; tells the eviction manager. Returns how many went.
    pub fn purge_matching(
        &self,
        host: Option<&str>,
        path: &str,
        prefix: bool,
        eviction: &(dyn EvictionManager + Sync),
    ) -> usize {
        let mut objects = self.objects.write();
        let doomed: Vec<String> = objects
            .map
            .iter()
            .filter(|(_, object)| {
                object.origin.as_ref().is_some_and(|origin| {
                    let bare = origin.path.split('?').next().unwrap_or("");
                    let path_matches = if prefix {
                        bare.starts_with(path)
                    } else {
                        bare == path
                    };
                    path_matches && host.is_none_or(|h| origin.host.eq_ignore_ascii_case(h))
                })
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            if let Some(object) = objects.remove(key) {
                eviction.remove((&CacheEntryKey::KeyOnly(object.compact)).into());
            }
        }
        self.update_gauges(&objects);
        doomed.len()
    }
}

/// A hit: the whole stored body, shared, optionally narrowed to a range.
struct StoredHit {
    body: Bytes,
    range: (usize, usize),
    done: bool,
}

#[async_trait]
impl HandleHit for StoredHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.range.0..self.range.1)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        if start >= self.body.len() {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start {start} beyond {} bytes", self.body.len()),
            );
        }
        let end = end.map_or(self.body.len(), |end| end.min(self.body.len()));
        self.range = (start, end.max(start));
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// A miss being written: buffered here, stored only when complete (`finish`).
struct PendingObject {
    store: &'static MicroCacheStore,
    key: String,
    meta: (Vec<u8>, Vec<u8>),
    body: BytesMut,
    compact: CompactCacheKey,
    origin: Option<Origin>,
}

#[async_trait]
impl HandleMiss for PendingObject {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        // The proxy stops writing (and drops this handler) past the route's
        // `max_object_size`, so the buffer is bounded by it.
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let object = StoredObject {
            meta: self.meta,
            body: self.body.freeze(),
            compact: self.compact,
            origin: self.origin,
        };
        let weight = object.weight();
        let mut objects = self.store.objects.write();
        objects.insert(self.key, object);
        self.store.update_gauges(&objects);
        Ok(MissFinishType::Created(weight))
    }
}

#[async_trait]
impl Storage for MicroCacheStore {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let objects = self.objects.read();
        let Some(object) = objects.map.get(&key.combined()) else {
            return Ok(None);
        };
        let meta = CacheMeta::deserialize(&object.meta.0, &object.meta.1)?;
        let hit = StoredHit {
            body: object.body.clone(),
            range: (0, object.body.len()),
            done: false,
        };
        Ok(Some((meta, Box::new(hit))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let origin = key
            .primary_key_str()
            .and_then(origin_of)
            .map(|(host, path)| Origin {
                host: host.to_string(),
                path: path.to_string(),
            });
        Ok(Box::new(PendingObject {
            store: self,
            key: key.combined(),
            meta: meta.serialize()?,
            body: BytesMut::new(),
            compact: key.to_compact(),
            origin,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let mut objects = self.objects.write();
        let removed = objects.remove(&target.key().combined()).is_some();
        self.update_gauges(&objects);
        if !removed {
            return Ok(PurgeOutcome::NotFound);
        }
        if matches!(purge_type, PurgeType::Eviction) {
            self.metrics.evictions.inc();
        }
        Ok(PurgeOutcome::Purged(None))
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let mut objects = self.objects.write();
        let Objects { map, bytes } = &mut *objects;
        match map.get_mut(&key.combined()) {
            Some(object) => {
                let before = object.weight();
                object.meta = meta.serialize()?;
                *bytes = *bytes + object.weight() - before;
                Ok(true)
            }
            // Evicted meanwhile: nothing to update, the next request is a miss.
            None => Ok(false),
        }
    }

    fn support_streaming_partial_write(&self) -> bool {
        false
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
