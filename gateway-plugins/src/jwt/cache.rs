//! The verified-token cache: tokens whose signature checked out, by SHA-256, until `exp`.

use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::VerifiedToken;

/// SHA-256 of a token. Already uniformly distributed, so the map hashes only its first
/// eight bytes instead of running SipHash over all 32. Only verified tokens are inserted,
/// so nobody can flood a bucket with chosen hashes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct TokenHash(pub(super) [u8; 32]);

impl Hash for TokenHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

#[derive(Default)]
struct FirstWordHasher(u64);

impl Hasher for FirstWordHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Verified tokens by hash, bounded. When full, expired entries are swept (at most once
/// a second); if it is still full the new token is simply not remembered — correctness
/// never depends on the cache, only cost does.
pub(super) struct VerifiedCache {
    map: DashMap<TokenHash, Arc<VerifiedToken>, BuildHasherDefault<FirstWordHasher>>,
    len: AtomicUsize,
    capacity: usize,
    last_sweep_ms: AtomicU64,
}

impl VerifiedCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            map: DashMap::with_hasher(BuildHasherDefault::default()),
            len: AtomicUsize::new(0),
            capacity,
            last_sweep_ms: AtomicU64::new(0),
        }
    }

    pub(super) fn get(&self, hash: &TokenHash) -> Option<Arc<VerifiedToken>> {
        self.map.get(hash).map(|entry| Arc::clone(entry.value()))
    }

    pub(super) fn remove(&self, hash: &TokenHash) {
        if self.map.remove(hash).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(super) fn insert(&self, hash: TokenHash, token: Arc<VerifiedToken>, now: u64, leeway: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.len.load(Ordering::Relaxed) >= self.capacity {
            let now_ms = crate::clock::monotonic_ms();
            let last = self.last_sweep_ms.load(Ordering::Relaxed);
            if now_ms.saturating_sub(last) >= 1000
                && self
                    .last_sweep_ms
                    .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.sweep(now, leeway);
            }
            if self.len.load(Ordering::Relaxed) >= self.capacity {
                return;
            }
        }
        if self.map.insert(hash, token).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops expired tokens and recounts.
    pub(super) fn sweep(&self, now: u64, leeway: u64) {
        self.map
            .retain(|_, token| token.identity.expires_at.saturating_add(leeway) >= now);
        self.len.store(self.map.len(), Ordering::Relaxed);
    }

    pub(super) fn clear(&self) {
        self.map.clear();
        self.len.store(0, Ordering::Relaxed);
    }

    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JwtAlgorithm;
    use crate::identity::Identity;
    use http::HeaderValue;
    use parking_lot::Mutex;

    fn token(jti: &str, expires_at: u64) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            identity: Identity {
                sub: "u".into(),
                email: None,
                jti: jti.into(),
                expires_at,
            },
            algorithm: JwtAlgorithm::EdDSA,
            kid: "k".into(),
            user_id_header: HeaderValue::from_static("u"),
            email_header: HeaderValue::from_static(""),
            jti_header: HeaderValue::from_static("j"),
            assertion: Mutex::new(None),
        })
    }

    fn hash(n: u8) -> TokenHash {
        TokenHash([n; 32])
    }

    #[test]
    fn bounded_and_swept_by_expiry() {
        let cache = VerifiedCache::new(2);
        cache.insert(hash(1), token("a", 100), 50, 5);
        cache.insert(hash(2), token("b", 1000), 50, 5);
        // Full, and nothing has expired: the third token is not remembered.
        cache.insert(hash(3), token("c", 1000), 50, 5);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&hash(3)).is_none());
        // Within the leeway the first token is kept; past it, swept.
        cache.sweep(104, 5);
        assert_eq!(cache.len(), 2);
        cache.sweep(106, 5);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&hash(1)).is_none());
        assert_eq!(cache.get(&hash(2)).expect("kept").identity.jti, "b");
        cache.remove(&hash(2));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let cache = VerifiedCache::new(0);
        cache.insert(hash(1), token("a", 1000), 50, 5);
        assert_eq!(cache.len(), 0);
        assert!(cache.get(&hash(1)).is_none());
    }
}
