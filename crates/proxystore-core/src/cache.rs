//! A store's private object cache: an LRU bounded by entries and by bytes,
//! which never takes back an object that an eviction removed while a `get`
//! of it was in flight.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;

use crate::key::Key;

/// Default byte bound of a store's cache (256 MiB).
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

/// Eviction counters are kept per stripe of keys, not per key (no map to
/// grow) and not one for all (an evict of one key would keep every racing
/// get of other keys out of the cache).
const STRIPES: usize = 64;

/// What a cache miss hands the caller: the eviction count of the key's
/// stripe when the miss happened. [`ObjectCache::insert`] refuses the object
/// if an eviction of that stripe happened since.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    generation: u64,
}

#[derive(Debug)]
struct State {
    lru: LruCache<Key, Bytes>,
    bytes: usize,
    evictions: [u64; STRIPES],
}

/// The cache itself; every method takes one short lock.
#[derive(Debug)]
pub(crate) struct ObjectCache {
    state: Mutex<State>,
    max_bytes: usize,
}

fn stripe(key: &Key) -> usize {
    // Ids are random, so the low bits spread evenly.
    (key.id().as_u128() as usize) % STRIPES
}

impl ObjectCache {
    /// A cache of at most `entries` objects and `max_bytes` bytes; `None`
    /// (no cache) if either bound is zero.
    pub(crate) fn new(entries: usize, max_bytes: usize) -> Option<Self> {
        let entries = NonZeroUsize::new(entries)?;
        if max_bytes == 0 {
            return None;
        }
        Some(ObjectCache {
            state: Mutex::new(State {
                lru: LruCache::new(entries),
                bytes: 0,
                evictions: [0; STRIPES],
            }),
            max_bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached object, or a ticket to insert it with after fetching it.
    pub(crate) fn get(&self, key: &Key) -> Result<Bytes, Ticket> {
        let mut state = self.lock();
        match state.lru.get(key) {
            Some(hit) => Ok(hit.clone()),
            None => Err(Ticket {
                generation: state.evictions[stripe(key)],
            }),
        }
    }

    /// Whether `key` is cached.
    pub(crate) fn contains(&self, key: &Key) -> bool {
        self.lock().lru.contains(key)
    }

    /// Caches `data` fetched after the miss that gave `ticket`, unless the
    /// key's stripe saw an eviction since (the data may be of an object that
    /// no longer exists) or `data` alone is over the byte bound.
    pub(crate) fn insert(&self, key: &Key, data: &Bytes, ticket: Ticket) {
        if data.len() > self.max_bytes {
            return;
        }
        let mut state = self.lock();
        if state.evictions[stripe(key)] != ticket.generation {
            return;
        }
        state.bytes += data.len();
        // `push` hands back the replaced entry of the same key or the least
        // recently used one pushed out by the entry bound.
        if let Some((_, old)) = state.lru.push(key.clone(), data.clone()) {
            state.bytes -= old.len();
        }
        while state.bytes > self.max_bytes {
            match state.lru.pop_lru() {
                Some((_, old)) => state.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// Drops `key` and makes every outstanding ticket of its stripe stale.
    pub(crate) fn invalidate(&self, key: &Key) {
        let mut state = self.lock();
        if let Some(old) = state.lru.pop(key) {
            state.bytes -= old.len();
        }
        state.evictions[stripe(key)] += 1;
    }

    /// Drops everything and makes every outstanding ticket stale.
    pub(crate) fn clear(&self) {
        let mut state = self.lock();
        state.lru.clear();
        state.bytes = 0;
        for e in &mut state.evictions {
            *e += 1;
        }
    }

    /// Objects and bytes held.
    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        let state = self.lock();
        (state.lru.len(), state.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(cache: &ObjectCache, len: usize) -> Key {
        let key = Key::random();
        let ticket = cache.get(&key).expect_err("a new key misses");
        cache.insert(&key, &Bytes::from(vec![0u8; len]), ticket);
        key
    }

    #[test]
    fn byte_bound_pushes_out_least_recently_used() {
        let cache = ObjectCache::new(100, 1000).expect("cache");
        let a = fill(&cache, 400);
        let b = fill(&cache, 400);
        assert_eq!(cache.usage(), (2, 800));
        let c = fill(&cache, 400);
        assert_eq!(cache.usage(), (2, 800));
        assert!(!cache.contains(&a) && cache.contains(&b) && cache.contains(&c));
    }

    #[test]
    fn objects_over_the_byte_bound_are_not_cached() {
        let cache = ObjectCache::new(100, 1000).expect("cache");
        let small = fill(&cache, 10);
        let big = fill(&cache, 1001);
        assert!(cache.contains(&small) && !cache.contains(&big));
        assert_eq!(cache.usage(), (1, 10));
    }

    #[test]
    fn entry_bound_still_holds_and_bytes_follow_it() {
        let cache = ObjectCache::new(2, 1 << 20).expect("cache");
        for _ in 0..5 {
            fill(&cache, 100);
        }
        assert_eq!(cache.usage(), (2, 200));
    }

    #[test]
    fn a_ticket_from_before_an_eviction_is_refused() {
        let cache = ObjectCache::new(10, 1000).expect("cache");
        let key = Key::random();
        let ticket = cache.get(&key).expect_err("miss");
        cache.invalidate(&key);
        cache.insert(&key, &Bytes::from_static(b"stale"), ticket);
        assert!(!cache.contains(&key));
        let fresh = cache.get(&key).expect_err("miss");
        cache.insert(&key, &Bytes::from_static(b"ok"), fresh);
        assert!(cache.contains(&key));
        let other = Key::random();
        let before_clear = cache.get(&other).expect_err("miss");
        cache.clear();
        cache.insert(&other, &Bytes::from_static(b"x"), before_clear);
        assert_eq!(cache.usage(), (0, 0));
    }

    #[test]
    fn zero_bounds_mean_no_cache() {
        assert!(ObjectCache::new(0, 1000).is_none());
        assert!(ObjectCache::new(10, 0).is_none());
    }
}
