//! The `shm` arena in one process: the reuse rule (a pinned block is never
//! reused, an evicted key never reads its block's next object), fallback to
//! files, configs, and keys whose location is malformed or hostile.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::{Arc, Mutex};

use proxystore_core::pattern::pattern;
use proxystore_core::{Bytes, Connector, ConnectorConfig, Error, Key};
use proxystore_file::{FileConfig, FileConnector};

fn shm_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("proxystore-test-")
        .tempdir_in("/dev/shm")
        .unwrap()
}

fn arena(dir: &tempfile::TempDir, bytes: usize) -> FileConnector {
    FileConnector::with_config(FileConfig {
        dir: dir.path().into(),
        arena_bytes: bytes,
        ..FileConfig::shm()
    })
    .unwrap()
}

/// The fields of an arena key's location: name, slot, generation, offset.
fn fields(key: &Key) -> (String, u64, u64, u64) {
    let loc = key.location().expect("an arena key");
    let parts: Vec<&str> = loc.strip_prefix("arena:").unwrap().split(':').collect();
    (
        parts[0].to_owned(),
        parts[1].parse().unwrap(),
        parts[2].parse().unwrap(),
        parts[3].parse().unwrap(),
    )
}

fn offset(key: &Key) -> u64 {
    fields(key).3
}

#[test]
fn a_pinned_block_is_not_reused_and_an_evicted_key_never_reads_its_successor() {
    let dir = shm_dir();
    let c = arena(&dir, 1 << 20); // 16 blocks of 64 KiB
    let size = 64 << 10;
    let original = pattern(size, 1);
    let key = c.put(original.clone()).unwrap();
    let view = c.get(&key).unwrap().unwrap();
    // A slice of the view holds the pin as well (Bytes shares its owner).
    let tail = view.slice(size - 100..);
    drop(view);
    c.evict(&key).unwrap();
    assert_eq!(c.get(&key).unwrap(), None);
    assert!(!c.exists(&key).unwrap());
    // Churn: objects of the same class put and evicted reuse a block, never
    // the pinned one.
    for i in 0..50 {
        let k = c.put(pattern(size, 100 + i)).unwrap();
        assert_ne!(offset(&k), offset(&key), "pinned block reused (churn {i})");
        c.evict(&k).unwrap();
    }
    // Fill the arena: every block but the pinned one is handed out, then
    // puts fall back to files.
    let mut live = Vec::new();
    loop {
        let k = c.put(pattern(size, 200 + live.len() as u64)).unwrap();
        if k.location().is_none() {
            break;
        }
        assert_ne!(offset(&k), offset(&key), "pinned block reused (fill)");
        live.push(k);
    }
    assert_eq!(live.len(), 15);
    assert!(tail == original.slice(size - 100..), "a held view changed");
    assert_eq!(c.get(&key).unwrap(), None);
    // Unpinned, the block is the only free one: the next put lands there.
    drop(tail);
    let next = c.put(pattern(size, 999)).unwrap();
    assert_eq!(offset(&next), offset(&key), "the freed block is reused");
    let (_, slot_old, gen_old, _) = fields(&key);
    let (_, slot_new, gen_new, _) = fields(&next);
    assert!(slot_old != slot_new || gen_new != gen_old);
    assert_eq!(c.get(&key).unwrap(), None, "stale key read the new object");
    assert!(!c.exists(&key).unwrap());
    c.evict(&key).unwrap(); // evicting the stale key leaves the new object
    assert_eq!(c.get(&next).unwrap(), Some(pattern(size, 999)));
    for (i, k) in live.iter().enumerate() {
        assert_eq!(c.get(k).unwrap(), Some(pattern(size, 200 + i as u64)));
    }
}

#[test]
fn views_never_change_under_concurrent_reuse() {
    let dir = shm_dir();
    let c = Arc::new(arena(&dir, 1 << 20));
    let size = 20_000;
    let recent: Arc<Mutex<Vec<(Key, u64)>>> = Arc::default();
    let writer = {
        let (c, recent) = (Arc::clone(&c), Arc::clone(&recent));
        std::thread::spawn(move || {
            for seed in 0..3000u64 {
                let key = c.put(pattern(size, seed)).unwrap();
                let mut r = recent.lock().unwrap();
                r.push((key, seed));
                if r.len() > 4 {
                    let (old, _) = r.remove(0);
                    c.evict(&old).unwrap();
                }
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (c, recent) = (Arc::clone(&c), Arc::clone(&recent));
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for i in 0..3000 {
                    let Some((key, seed)) = recent.lock().unwrap().first().cloned() else {
                        continue;
                    };
                    if let Some(b) = c.get(&key).unwrap() {
                        assert!(
                            b == pattern(size, seed),
                            "a view of {key} is not its object"
                        );
                        held.push((b, seed));
                    }
                    if i % 16 == 0 {
                        for (b, seed) in held.drain(..) {
                            assert!(b == pattern(size, seed), "a held view changed");
                        }
                    }
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn a_full_arena_falls_back_to_files_and_takes_puts_again_after_evicts() {
    let dir = shm_dir();
    let c = arena(&dir, 1 << 20); // 64 slots
    let keys: Vec<(Key, Bytes)> = (0..100u64)
        .map(|i| {
            let data = pattern(1000, i);
            (c.put(data.clone()).unwrap(), data)
        })
        .collect();
    let in_arena = keys.iter().filter(|(k, _)| k.location().is_some()).count();
    assert_eq!(in_arena, 64, "one object per slot, then files");
    for (k, data) in &keys {
        assert_eq!(c.get(k).unwrap().as_ref(), Some(data));
        assert!(c.exists(k).unwrap());
    }
    for (k, _) in &keys {
        c.evict(k).unwrap();
        assert_eq!(c.get(k).unwrap(), None);
    }
    let again = c.put(pattern(1000, 7)).unwrap();
    assert!(again.location().is_some(), "freed slots take puts again");
    // Larger than a quarter of the arena: a file, transparently.
    let big = pattern((256 << 10) + 1, 8);
    let k = c.put(big.clone()).unwrap();
    assert!(k.location().is_none());
    assert_eq!(c.get(&k).unwrap(), Some(big));
    // A quarter exactly still fits.
    let quarter = c.put(pattern(256 << 10, 9)).unwrap();
    assert!(quarter.location().is_some());
    // Bytes run out before slots: four 256 KiB blocks, then files.
    let more: Vec<Key> = (0..4)
        .map(|i| c.put(pattern(256 << 10, i)).unwrap())
        .collect();
    assert!(more.iter().any(|k| k.location().is_none()));
}

#[test]
fn arena_objects_are_aligned_for_typed_views() {
    let dir = shm_dir();
    let c = arena(&dir, 1 << 20);
    for len in [1usize, 63, 100, 1000, 5000, 20_000, 100_000] {
        let k = c.put(pattern(len, 3)).unwrap();
        let b = c.get(&k).unwrap().unwrap();
        assert_eq!(b.as_ptr() as usize % 64, 0, "{len} bytes");
        if len >= 16 << 10 {
            assert_eq!(b.as_ptr() as usize % 4096, 0, "{len} bytes");
        }
    }
}

#[test]
fn a_slice_is_copied_once_into_the_arena_and_read_as_a_view() {
    let dir = shm_dir();
    let store = proxystore_core::Store::builder("arena-slice", Arc::new(arena(&dir, 4 << 20)))
        .cache_size(0)
        .build();
    let values: Vec<f64> = (0..100_000).map(|i| f64::from(i) * 0.25).collect();
    let key = store.put_slice(&values).unwrap();
    assert!(key.location().is_some(), "the array went to a file: {key}");
    let raw = store.get_bytes(&key).unwrap().unwrap();
    let view: proxystore_core::PodArray<f64> = store.get(&key).unwrap().unwrap();
    assert_eq!(&view[..], &values[..]);
    // The view's elements are the arena's bytes, 64 bytes into the block.
    assert_eq!(view.as_ptr().cast::<u8>(), raw[64..].as_ptr());
    assert_eq!(store.metrics().realigned, 0);
    proxystore_core::unregister_store("arena-slice");
}

#[test]
fn arena_options_go_through_configs() {
    let dir = shm_dir();
    let c = arena(&dir, 1 << 20);
    let config = c.config();
    assert_eq!(config.kind, "shm");
    assert_eq!(config.get("arena_bytes"), Some("1048576"));
    assert_eq!(
        FileConfig::from_connector_config(&config)
            .unwrap()
            .arena_bytes,
        1 << 20
    );
    assert!(!c.capabilities().survives_producer_exit);
    // Off by default, and not written then.
    let plain = FileConfig::shm().to_connector_config();
    assert_eq!(plain.get("arena_bytes"), None);
    // The shm-arena name is shm with the default arena.
    let named = ConnectorConfig::new("shm-arena").with("dir", dir.path().display());
    let parsed = FileConfig::from_connector_config(&named).unwrap();
    assert_eq!(parsed.kind, "shm");
    assert_eq!(parsed.arena_bytes, proxystore_file::DEFAULT_ARENA_BYTES);
    for bad in [
        ConnectorConfig::new("file")
            .with("dir", dir.path().display())
            .with("arena_bytes", 1 << 20),
        ConnectorConfig::new("shm")
            .with("dir", dir.path().display())
            .with("arena_bytes", 1000),
        ConnectorConfig::new("shm")
            .with("dir", dir.path().display())
            .with("arena_bytes", "lots"),
    ] {
        let made = FileConfig::from_connector_config(&bad).and_then(FileConnector::with_config);
        assert!(matches!(made, Err(Error::Config(_))), "{bad:?}");
    }
}

/// The text of `key` with its location replaced.
fn relocated(key: &Key, location: &str) -> Key {
    let text = key.to_string();
    let (head, _) = text.split_once('@').unwrap();
    format!("{head}@{location}").parse().unwrap()
}

#[test]
fn malformed_or_hostile_locations_are_typed_errors() {
    let dir = shm_dir();
    let c = arena(&dir, 1 << 20);
    let data = pattern(5000, 4);
    let key = c.put(data.clone()).unwrap();
    let other = c.put(pattern(5000, 5)).unwrap();
    let (name, slot, gen, off) = fields(&key);
    let invalid = [
        "tcp://10.0.0.1:5555".to_owned(),
        "arena:".to_owned(),
        format!("arena:{name}:{slot}:{gen}"),
        format!("arena:{name}:{slot}:{gen}:{off}:9"),
        format!("arena:../../etc/passwd:{slot}:{gen}:{off}"),
        format!("arena:{name}/x:{slot}:{gen}:{off}"),
        format!("arena:{name}:x:{gen}:{off}"),
        format!("arena:{name}:{slot}:-1:{off}"),
        format!("arena:{name}:{slot}:0:{off}"),
        format!("arena:{name}:{slot}:{gen}:+{off}"),
        format!("arena:{name}:{slot}:{gen}:99999999999999999999999"),
        // Beyond the slot table.
        format!("arena:{name}:4000000:{gen}:{off}"),
        // Inside the header, past the end, wrapping around.
        format!("arena:{name}:{slot}:{gen}:0"),
        format!("arena:{name}:{slot}:{gen}:{}", u64::MAX - 10),
        format!("arena:{name}:{slot}:{gen}:{}", 1u64 << 40),
        // In range, but not where the slot's object is.
        format!("arena:{name}:{slot}:{gen}:{}", off + 64),
    ];
    for loc in &invalid {
        let bad = relocated(&key, loc);
        for (op, result) in [
            ("get", c.get(&bad).map(|_| ())),
            ("exists", c.exists(&bad).map(|_| ())),
            ("evict", c.evict(&bad)),
        ] {
            assert!(
                matches!(result, Err(Error::InvalidKey { .. })),
                "{op} {loc}: {result:?}"
            );
        }
    }
    // Another object's id, or another length, at the right place.
    let wrong_id: Key = format!("{}.5000@{}", other.id(), key.location().unwrap())
        .parse()
        .unwrap();
    let wrong_len: Key = format!("{}.4999@{}", key.id(), key.location().unwrap())
        .parse()
        .unwrap();
    let no_size: Key = format!("{}@{}", key.id(), key.location().unwrap())
        .parse()
        .unwrap();
    for bad in [&wrong_id, &wrong_len, &no_size] {
        assert!(matches!(c.get(bad), Err(Error::InvalidKey { .. })), "{bad}");
        assert!(
            matches!(c.evict(bad), Err(Error::InvalidKey { .. })),
            "{bad}"
        );
    }
    // Well formed but naming nothing: absent, not an error.
    let stale = relocated(&key, &format!("arena:{name}:{slot}:{}:{off}", gen + 1));
    assert_eq!(c.get(&stale).unwrap(), None);
    assert!(!c.exists(&stale).unwrap());
    c.evict(&stale).unwrap();
    let nowhere = relocated(&key, &format!("arena:1-2-0badf00d:{slot}:{gen}:{off}"));
    assert_eq!(c.get(&nowhere).unwrap(), None);
    assert!(!c.exists(&nowhere).unwrap());
    c.evict(&nowhere).unwrap();
    // None of that touched the object.
    assert_eq!(c.get(&key).unwrap(), Some(data));
}

#[test]
fn a_truncated_or_foreign_arena_file_is_an_error_not_a_crash() {
    let dir = shm_dir();
    let c = arena(&dir, 1 << 20);
    let key = c.put(pattern(5000, 6)).unwrap();
    let (name, slot, gen, off) = fields(&key);
    let arenas = dir.path().join("arenas");
    let real = std::fs::read(arenas.join(format!("{name}.arena"))).unwrap();
    let cases: [(&str, Vec<u8>); 3] = [
        ("1-1-00000001", vec![0u8; 100]),
        ("1-1-00000002", vec![7u8; 3 * 4096]),
        // A real header over a file cut short: no read past its end.
        ("1-1-00000003", real[..3 * 4096].to_vec()),
    ];
    for (fake, bytes) in cases {
        std::fs::write(arenas.join(format!("{fake}.arena")), bytes).unwrap();
        let bad = relocated(&key, &format!("arena:{fake}:{slot}:{gen}:{off}"));
        assert!(matches!(c.get(&bad), Err(Error::Io { .. })), "{fake}");
        assert!(matches!(c.exists(&bad), Err(Error::Io { .. })), "{fake}");
    }
}
