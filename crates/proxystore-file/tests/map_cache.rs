//! The mappings an `shm` (or `file`) connector keeps of objects it read:
//! reused for the same file, never for an evicted or replaced one.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use proxystore_core::{Bytes, Connector, ConnectorConfig};
use proxystore_file::{FileConfig, FileConnector, DEFAULT_SHM_MAP_CACHE_BYTES};

const MIB: usize = 1 << 20;

/// A connector of `kind` on `dir` keeping `cache` bytes of mappings.
fn connector(kind: &str, dir: &std::path::Path, cache: usize) -> FileConnector {
    FileConnector::with_config(FileConfig {
        kind: kind.into(),
        map_cache_bytes: cache,
        ..FileConfig::new(dir)
    })
    .unwrap()
}

fn object(len: usize, fill: u8) -> Bytes {
    Bytes::from(vec![fill; len])
}

#[test]
fn a_second_read_of_an_object_reuses_its_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let writer = connector("shm", dir.path(), 0);
    let reader = connector("shm", dir.path(), 8 * MIB);
    let key = writer.put(object(2 * MIB, 3)).unwrap();
    let first = reader.get(&key).unwrap().unwrap();
    let second = reader.get(&key).unwrap().unwrap();
    assert_eq!(first.as_ptr(), second.as_ptr(), "the same mapping");
    assert!(second.iter().all(|&b| b == 3));
    // Without the cache each read maps the file afresh.
    let uncached = connector("shm", dir.path(), 0);
    let a = uncached.get(&key).unwrap().unwrap();
    let b = uncached.get(&key).unwrap().unwrap();
    assert_ne!(a.as_ptr(), b.as_ptr());
    assert!(a == b);
}

#[test]
fn an_object_evicted_by_another_connector_is_not_served_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let writer = connector("shm", dir.path(), 0);
    let reader = connector("shm", dir.path(), 8 * MIB);
    let key = writer.put(object(2 * MIB, 4)).unwrap();
    assert!(reader.get(&key).unwrap().is_some());
    writer.evict(&key).unwrap();
    assert!(reader.get(&key).unwrap().is_none());
    assert!(!reader.exists(&key).unwrap());
}

#[test]
fn a_key_set_again_after_evict_reads_its_new_bytes() {
    // Same key, same length, new bytes: only the file's identity tells the
    // two apart. On ext4 (tempdir) and on tmpfs.
    let tmp = tempfile::tempdir().unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    for (kind, dir) in [("file", tmp.path()), ("shm", shm.path())] {
        let writer = connector(kind, dir, 0);
        let reader = connector(kind, dir, 8 * MIB);
        let deferrable = writer.as_deferrable().unwrap();
        let key = deferrable.new_key().unwrap();
        deferrable.set(&key, object(MIB, 1)).unwrap();
        let old = reader.get(&key).unwrap().unwrap();
        assert!(old.iter().all(|&b| b == 1));
        writer.evict(&key).unwrap();
        deferrable.set(&key, object(MIB, 2)).unwrap();
        let new = reader.get(&key).unwrap().unwrap();
        assert!(
            new.iter().all(|&b| b == 2),
            "{kind}: read the replaced object"
        );
        assert!(
            old.iter().all(|&b| b == 1),
            "{kind}: a held view keeps its bytes"
        );
    }
}

#[test]
fn evict_and_close_let_the_mappings_go() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector("shm", dir.path(), 8 * MIB);
    let key = c.put(object(2 * MIB, 5)).unwrap();
    let view = c.get(&key).unwrap().unwrap().slice(0..1);
    c.evict(&key).unwrap();
    assert_eq!(view[0], 5, "a view taken before evict stays valid");
    assert!(c.get(&key).unwrap().is_none());
    let again = c.put(object(2 * MIB, 6)).unwrap();
    assert!(c.get(&again).unwrap().is_some());
    c.close().unwrap();
    assert!(c.get(&again).is_err(), "closed");
}

#[test]
fn the_cache_size_is_an_option_and_round_trips_through_configs() {
    let dir = tempfile::tempdir().unwrap();
    // The kinds' defaults are not written, so default configs keep their keys.
    let shm = connector("shm", dir.path(), DEFAULT_SHM_MAP_CACHE_BYTES);
    assert_eq!(shm.config().get("map_cache_bytes"), None);
    let file = connector("file", dir.path(), 0);
    assert_eq!(file.config().get("map_cache_bytes"), None);
    let parsed = FileConfig::from_connector_config(
        &ConnectorConfig::new("file").with("dir", dir.path().display()),
    )
    .unwrap();
    assert_eq!(parsed.map_cache_bytes, 0);
    let parsed = FileConfig::from_connector_config(&ConnectorConfig::new("shm")).unwrap();
    assert_eq!(parsed.map_cache_bytes, DEFAULT_SHM_MAP_CACHE_BYTES);
    // A set size is written and read back.
    let custom = connector("shm", dir.path(), 3 * MIB);
    let config = custom.config();
    assert_eq!(config.get("map_cache_bytes"), Some("3145728"));
    let parsed = FileConfig::from_connector_config(&config).unwrap();
    assert_eq!(parsed.map_cache_bytes, 3 * MIB);
    let off = connector("shm", dir.path(), 0);
    assert_eq!(
        FileConfig::from_connector_config(&off.config())
            .unwrap()
            .map_cache_bytes,
        0
    );
    let bad = ConnectorConfig::new("shm").with("map_cache_bytes", "lots");
    assert!(FileConfig::from_connector_config(&bad).is_err());
}
