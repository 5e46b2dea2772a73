//! The store cache: byte bound, and no stale object after a get races an
//! evict.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::Arc;

use proxystore_core::testing::get_evict_races;
use proxystore_core::{LocalConnector, Store};

fn cached_store() -> Store {
    let name = format!("cache-{}", proxystore_core::ObjectId::random());
    Store::builder(name, Arc::new(LocalConnector::new()))
        .cache_size(4096)
        .build()
}

#[test]
fn get_racing_evict_leaves_no_stale_cache_entry_local() {
    let store = cached_store();
    let stale = get_evict_races(&store, 5000);
    assert_eq!(stale, 0, "{stale} of 5000 evicted objects still served");
}

#[test]
fn cache_is_bounded_by_bytes_and_skips_oversized_objects() {
    let connector = Arc::new(LocalConnector::new());
    let name = format!("cache-bytes-{}", proxystore_core::ObjectId::random());
    let store = Store::builder(name, connector.clone())
        .cache_size(100)
        .cache_bytes(10_000)
        .build();
    let small: Vec<_> = (0..3)
        .map(|_| store.put_bytes(vec![1u8; 4_000]).unwrap())
        .collect();
    let big = store.put_bytes(vec![2u8; 10_001]).unwrap();
    for k in small.iter().chain([&big]) {
        store.get_bytes(k).unwrap().unwrap();
    }
    // Remove everything behind the store's back: only what is cached is
    // still served.
    for k in small.iter().chain([&big]) {
        proxystore_core::Connector::evict(&*connector, k).unwrap();
    }
    let served: Vec<bool> = small
        .iter()
        .map(|k| store.get_bytes(k).unwrap().is_some())
        .collect();
    assert_eq!(
        served,
        vec![false, true, true],
        "two 4 kB objects fit in 10 kB, the least recently used went"
    );
    assert!(
        store.get_bytes(&big).unwrap().is_none(),
        "an object over the byte bound is not cached"
    );
}

#[test]
fn default_byte_bound_is_256_mib() {
    assert_eq!(proxystore_core::DEFAULT_CACHE_BYTES, 256 << 20);
}
