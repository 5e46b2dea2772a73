//! The object table: id -> bytes, the memory of an in-process store and of
//! every peer-to-peer data server (ZeroMQ, UCX, libfabric).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use bytes::Bytes;

use crate::key::ObjectId;

const SHARDS: usize = 16;

/// A sharded, thread-safe map from object id to bytes.
///
/// Reads take a shard's read lock and clone a [`Bytes`] (a reference count),
/// so concurrent gets of different objects do not contend.
#[derive(Debug)]
pub struct ObjectTable {
    shards: [RwLock<HashMap<ObjectId, Bytes>>; SHARDS],
    bytes: AtomicU64,
}

impl Default for ObjectTable {
    fn default() -> Self {
        ObjectTable {
            shards: std::array::from_fn(|_| RwLock::default()),
            bytes: AtomicU64::new(0),
        }
    }
}

impl ObjectTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, id: ObjectId) -> &RwLock<HashMap<ObjectId, Bytes>> {
        // Ids are random, so the low bits spread evenly.
        &self.shards[(id.as_u128() as usize) % SHARDS]
    }

    /// Stores `data` under `id`, replacing any previous object.
    pub fn insert(&self, id: ObjectId, data: Bytes) {
        let added = data.len() as u64;
        let old = self
            .shard(id)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, data);
        self.bytes.fetch_add(added, Ordering::Relaxed);
        if let Some(old) = old {
            self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
    }

    /// The bytes under `id`, if any (no copy).
    pub fn get(&self, id: ObjectId) -> Option<Bytes> {
        self.shard(id)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Whether an object is stored under `id`.
    pub fn contains(&self, id: ObjectId) -> bool {
        self.shard(id)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }

    /// Removes and returns the bytes under `id`.
    pub fn remove(&self, id: ObjectId) -> Option<Bytes> {
        let old = self
            .shard(id)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(old) = &old {
            self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
        old
    }

    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether the table holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total bytes held.
    pub fn bytes_held(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Removes and returns every object.
    pub fn drain(&self) -> Vec<(ObjectId, Bytes)> {
        let mut out = Vec::new();
        for s in &self.shards {
            let mut shard = s.write().unwrap_or_else(|e| e.into_inner());
            for (id, data) in shard.drain() {
                self.bytes.fetch_sub(data.len() as u64, Ordering::Relaxed);
                out.push((id, data));
            }
        }
        out
    }

    /// Drops every object.
    pub fn clear(&self) {
        for s in &self.shards {
            s.write().unwrap_or_else(|e| e.into_inner()).clear();
        }
        self.bytes.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_objects_and_bytes() {
        let t = ObjectTable::new();
        let (a, b) = (ObjectId::random(), ObjectId::random());
        t.insert(a, Bytes::from_static(b"hello"));
        t.insert(b, Bytes::from_static(b"xy"));
        assert_eq!((t.len(), t.bytes_held()), (2, 7));
        t.insert(a, Bytes::from_static(b"h"));
        assert_eq!((t.len(), t.bytes_held()), (2, 3));
        assert_eq!(t.remove(b), Some(Bytes::from_static(b"xy")));
        assert!(t.remove(b).is_none());
        assert_eq!((t.len(), t.bytes_held()), (1, 1));
        assert!(t.contains(a) && !t.contains(b));
        t.clear();
        assert!(t.is_empty());
    }
}
