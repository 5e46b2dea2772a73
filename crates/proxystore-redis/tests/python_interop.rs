//! `Codec::Python` against Python ProxyStore 1.1 itself, through one Redis
//! server: a Rust `Store` (uuid keys, no prefix) puts a `Vec<f64>`, bytes
//! and a str that Python's `RedisConnector` + `deserialize` read as a numpy
//! array, bytes and a str; Python's `serialize` + `put` of the same kinds
//! are read by the Rust `Store`. Skipped, with the reason printed, where
//! redis-server or Python ProxyStore with numpy is missing
//! (`ci/install-deps.sh` installs all three).

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::sync::Arc;

use proxystore_core::testing::python_proxystore;
use proxystore_core::{Bytes, Codec, Connector, Key, NdArray, ObjectId, Store};
use proxystore_redis::server::{available, LocalRedisServer};
use proxystore_redis::{KeyFormat, RedisConfig, RedisConnector};

/// Runs `script` against a Python `RedisConnector` `c` on `server`.
fn python(script: &str, server: &LocalRedisServer) -> Option<String> {
    let url = server.url();
    let (host, port) = url.trim_start_matches("redis://").rsplit_once(':').unwrap();
    let prelude = "from proxystore.connectors.redis import RedisConnector, RedisKey\n\
                   c = RedisConnector(sys.argv[1], int(sys.argv[2]))\n";
    python_proxystore(&format!("{prelude}{script}"), &[host, port])
}

/// A Python-codec store over a connector with Python's key form, and the
/// connector (for the Redis key of a Rust key).
fn store(server: &LocalRedisServer) -> (Store, Arc<RedisConnector>) {
    let mut config = RedisConfig::new(server.url());
    config.prefix = String::new();
    config.key_format = KeyFormat::Uuid;
    let connector = Arc::new(RedisConnector::with_config(config).unwrap());
    let store = Store::builder(
        "python-interop",
        Arc::clone(&connector) as Arc<dyn Connector>,
    )
    .codec(Codec::Python)
    .cache_size(0)
    .build();
    (store, connector)
}

#[test]
fn python_proxystore_reads_what_rust_writes_and_the_reverse() {
    if !available() {
        eprintln!("SKIP: redis-server not installed (ci/install-deps.sh installs it)");
        return;
    }
    let server = LocalRedisServer::start().unwrap();
    let (store, redis) = store(&server);

    // Rust writes; Python reads.
    let values: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.5).collect();
    let k_array = store.put(&values).unwrap();
    let k_bytes = store.put(&Bytes::from_static(b"\x00raw\xff")).unwrap();
    let k_str = store.put(&"héllo from rust".to_string()).unwrap();
    let uuid = |k: &Key| redis.redis_key(k);
    let script = format!(
        "
a = deserialize(c.get(RedisKey(redis_key='{}')))
assert isinstance(a, numpy.ndarray) and a.dtype == numpy.float64, type(a)
print(a.shape[0], float(a.sum()))
b = deserialize(c.get(RedisKey(redis_key='{}')))
print(b == b'\\x00raw\\xff')
print(deserialize(c.get(RedisKey(redis_key='{}'))))
",
        uuid(&k_array),
        uuid(&k_bytes),
        uuid(&k_str)
    );
    let Some(out) = python(&script, &server) else {
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    let expected_sum: f64 = values.iter().sum();
    assert_eq!(lines[0], format!("1000 {expected_sum:?}"));
    assert_eq!(lines[1], "True");
    assert_eq!(lines[2], "héllo from rust");

    // Python writes; Rust reads.
    let Some(out) = python(
        "
print(c.put(serialize(numpy.arange(12, dtype=numpy.int32).reshape(3, 4))).redis_key)
print(c.put(serialize(numpy.linspace(0.0, 1.0, 5))).redis_key)
print(c.put(serialize(b'from python')).redis_key)
print(c.put(serialize('strängé')).redis_key)
print(c.put(serialize({'a': 1})).redis_key)
",
        &server,
    ) else {
        return;
    };
    let keys: Vec<Key> = out
        .lines()
        .map(|uuid| Key::new(ObjectId::parse_uuid(uuid).unwrap()))
        .collect();
    let grid: NdArray<i32> = store.get(&keys[0]).unwrap().unwrap();
    assert_eq!(grid.shape(), &[3, 4]);
    assert_eq!(grid.data(), (0..12).collect::<Vec<i32>>().as_slice());
    let line: Vec<f64> = store.get(&keys[1]).unwrap().unwrap();
    assert_eq!(line, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    let raw: Bytes = store.get(&keys[2]).unwrap().unwrap();
    assert_eq!(&raw[..], b"from python");
    let s: String = store.get(&keys[3]).unwrap().unwrap();
    assert_eq!(s, "strängé");
    // A pickled dict has no Rust form: a codec error naming pickle.
    let err = store.get::<Vec<f64>>(&keys[4]).unwrap_err();
    assert!(err.to_string().contains("pickle (PK)"), "{err}");
}
