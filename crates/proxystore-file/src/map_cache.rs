//! Mappings of recently read objects, kept so that reading an object again
//! costs an `open` and an `fstat` instead of a fresh mapping whose every
//! page is entered again (on tmpfs, which maps in 4 KiB pages, that is
//! about 8 ms per 64 MiB; docs/benchmarks.md).
//!
//! A cached mapping is handed out only while the file at the object's path
//! is the file that was mapped: same device, inode, length and mtime.
//! Objects are published whole by `rename` and never modified, so one inode
//! holds one object's bytes for its whole life; an object evicted and set
//! again under its key is a new inode. Entries of files found gone, or
//! evicted through this connector, are dropped at once (an inode number
//! cannot be reused while the cache holds a mapping of its file, which keeps
//! the unlinked inode alive); the rest are
//! bounded by bytes, least recently used first out. The cost: a file that
//! another process evicts keeps its pages (tmpfs memory) until this cache
//! lets its mapping go, at most the cache's byte limit in all.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use bytes::Bytes;
use proxystore_core::ObjectId;

/// What identifies one published file: its inode, and the length and mtime
/// it had when it was mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileIdent {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileIdent {
    pub(crate) fn of(meta: &Metadata) -> Self {
        FileIdent {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

#[derive(Debug)]
struct Entry {
    ident: FileIdent,
    data: Bytes,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Entries {
    by_id: HashMap<ObjectId, Entry>,
    bytes: usize,
    clock: u64,
}

impl Entries {
    fn remove(&mut self, id: ObjectId) {
        if let Some(old) = self.by_id.remove(&id) {
            self.bytes -= old.data.len();
        }
    }
}

/// Mappings of objects read through one connector, at most `limit` bytes.
#[derive(Debug)]
pub(crate) struct MapCache {
    limit: usize,
    entries: Mutex<Entries>,
}

impl MapCache {
    /// A cache of at most `limit` bytes of mappings (0: keeps none).
    pub(crate) fn new(limit: usize) -> Self {
        MapCache {
            limit,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The mapping of object `id` if it is of the file `ident` names.
    pub(crate) fn get(&self, id: ObjectId, ident: FileIdent) -> Option<Bytes> {
        if self.limit == 0 {
            return None;
        }
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        match entries.by_id.get_mut(&id) {
            Some(e) if e.ident == ident => {
                e.last_used = now;
                Some(e.data.clone())
            }
            Some(_) => {
                // Another file under that key now: the old mapping is stale.
                entries.remove(id);
                None
            }
            None => None,
        }
    }

    /// Keeps the mapping `data` of the file `ident` of object `id`, letting
    /// the least recently used mappings go to stay within the limit.
    pub(crate) fn insert(&self, id: ObjectId, ident: FileIdent, data: &Bytes) {
        if self.limit == 0 || data.len() > self.limit {
            return;
        }
        let mut entries = self.lock();
        entries.remove(id);
        while entries.bytes + data.len() > self.limit {
            let Some(oldest) = entries
                .by_id
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            entries.remove(oldest);
        }
        entries.clock += 1;
        let last_used = entries.clock;
        entries.bytes += data.len();
        entries.by_id.insert(
            id,
            Entry {
                ident,
                data: data.clone(),
                last_used,
            },
        );
    }

    /// Drops the mapping of object `id` (evicted, or its file is gone).
    pub(crate) fn remove(&self, id: ObjectId) {
        if self.limit > 0 {
            self.lock().remove(id);
        }
    }

    /// Drops every mapping.
    pub(crate) fn clear(&self) {
        let mut entries = self.lock();
        entries.by_id.clear();
        entries.bytes = 0;
    }

    /// Bytes of mappings held now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ident(ino: u64, len: u64) -> FileIdent {
        FileIdent {
            dev: 1,
            ino,
            len,
            mtime_ns: 7,
        }
    }

    fn object(len: usize) -> Bytes {
        Bytes::from(vec![0u8; len])
    }

    #[test]
    fn a_mapping_is_handed_out_only_for_the_same_file() {
        let cache = MapCache::new(1 << 20);
        let id = ObjectId::random();
        let data = object(100);
        cache.insert(id, ident(5, 100), &data);
        assert_eq!(
            cache.get(id, ident(5, 100)).unwrap().as_ptr(),
            data.as_ptr()
        );
        // Another inode under that key: a miss, and the stale entry goes.
        assert!(cache.get(id, ident(6, 100)).is_none());
        assert_eq!(cache.bytes(), 0);
        assert!(cache.get(id, ident(5, 100)).is_none());
    }

    #[test]
    fn the_least_recently_used_mappings_go_first_and_the_limit_holds() {
        let cache = MapCache::new(300);
        let ids: Vec<ObjectId> = (0..4).map(|_| ObjectId::random()).collect();
        for (i, id) in ids.iter().take(3).enumerate() {
            cache.insert(*id, ident(i as u64, 100), &object(100));
        }
        assert!(cache.get(ids[0], ident(0, 100)).is_some()); // 0 is now the newest
        cache.insert(ids[3], ident(3, 100), &object(100));
        assert_eq!(cache.bytes(), 300);
        assert!(
            cache.get(ids[1], ident(1, 100)).is_none(),
            "1 was the oldest"
        );
        assert!(cache.get(ids[0], ident(0, 100)).is_some());
        assert!(cache.get(ids[2], ident(2, 100)).is_some());
        assert!(cache.get(ids[3], ident(3, 100)).is_some());
        // Larger than the whole limit: not kept, nothing else dropped.
        cache.insert(ObjectId::random(), ident(9, 301), &object(301));
        assert_eq!(cache.bytes(), 300);
        cache.remove(ids[0]);
        assert_eq!(cache.bytes(), 200);
        cache.clear();
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_zero_limit_keeps_nothing() {
        let cache = MapCache::new(0);
        let id = ObjectId::random();
        cache.insert(id, ident(1, 0), &Bytes::new());
        cache.insert(id, ident(1, 10), &object(10));
        assert!(cache.get(id, ident(1, 10)).is_none());
        assert_eq!(cache.bytes(), 0);
    }
}
