//! A store over the file connector never serves an object after `evict`
//! returned, even when a `get` of it raced the eviction.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::Arc;

use proxystore_core::testing::get_evict_races;
use proxystore_core::Store;
use proxystore_file::FileConnector;

#[test]
fn get_racing_evict_leaves_no_stale_cache_entry_file() {
    let dir = tempfile::tempdir().unwrap();
    let connector = Arc::new(FileConnector::new(dir.path()).unwrap());
    let name = format!("file-race-{}", proxystore_core::ObjectId::random());
    let store = Store::builder(name, connector).cache_size(4096).build();
    let stale = get_evict_races(&store, 3000);
    assert_eq!(stale, 0, "{stale} of 3000 evicted objects still served");
}
