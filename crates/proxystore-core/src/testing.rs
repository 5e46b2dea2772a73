//! The connector conformance suite (feature `testing`).
//!
//! Every connector crate runs it from its tests with
//! [`conformance_tests!`](crate::conformance_tests), which expands to one
//! `#[test]` per case so a failure names the case and the connector. Each
//! case is also a plain function taking the connector under test.

use std::sync::Arc;

mod corpus;
pub mod faults;
mod observed;
mod pod;
mod python;
pub mod spawned;
pub use corpus::{replay_fuzz_corpus, MIN_CORPUS_FILES};
pub use observed::ObservedLocal;
pub use pod::{
    pod_array_bad_length_is_typed_error, pod_array_misaligned_is_copied_once, pod_array_round_trip,
    Aligned16,
};
pub use python::python_proxystore;

use bytes::Bytes;

use crate::connector::{connector_from_config, Connector};
use crate::error::Error;
use crate::key::Key;
use crate::store::{unregister_store, Store};
use crate::Proxy;

/// Expands to one `#[test]` per conformance case, each on a fresh connector
/// made by evaluating `$make` (an expression of a type implementing
/// `Connector`).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            put_get_round_trip,
            put_parts_round_trip,
            get_missing_is_none,
            exists_follows_put_and_evict,
            evict_is_idempotent,
            batch_round_trip,
            empty_value,
            large_value,
            concurrent_threads,
            key_text_round_trip,
            config_rebuilds_connector,
            use_after_close_fails,
            deferrable_keys,
            capabilities_hold,
            proxy_resolves_from_config,
            pod_array_round_trip,
            pod_array_misaligned_is_copied_once,
            pod_array_bad_length_is_typed_error,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let connector: ::std::sync::Arc<dyn $crate::Connector> =
                    ::std::sync::Arc::new($make);
                $crate::testing::$case(connector);
            }
        )*
    };
}

/// A conformance case: takes the connector under test.
pub type Case = fn(Arc<dyn Connector>);

/// Every case [`conformance_tests!`] runs, by name, for harnesses that
/// cannot give each its own `#[test]` (cases run inside an MPI rank).
/// Kept in step with the macro's list.
pub const CASES: &[(&str, Case)] = &[
    ("put_get_round_trip", put_get_round_trip),
    ("put_parts_round_trip", put_parts_round_trip),
    ("get_missing_is_none", get_missing_is_none),
    ("exists_follows_put_and_evict", exists_follows_put_and_evict),
    ("evict_is_idempotent", evict_is_idempotent),
    ("batch_round_trip", batch_round_trip),
    ("empty_value", empty_value),
    ("large_value", large_value),
    ("concurrent_threads", concurrent_threads),
    ("key_text_round_trip", key_text_round_trip),
    ("config_rebuilds_connector", config_rebuilds_connector),
    ("use_after_close_fails", use_after_close_fails),
    ("deferrable_keys", deferrable_keys),
    ("capabilities_hold", capabilities_hold),
    ("proxy_resolves_from_config", proxy_resolves_from_config),
    ("pod_array_round_trip", pod_array_round_trip),
    (
        "pod_array_misaligned_is_copied_once",
        pod_array_misaligned_is_copied_once,
    ),
    (
        "pod_array_bad_length_is_typed_error",
        pod_array_bad_length_is_typed_error,
    ),
];

/// A connector that keeps a guard (say a temporary directory) alive as
/// long as it lives, so conformance cases clean up after themselves.
#[derive(Debug)]
pub struct WithGuard<C, G> {
    connector: C,
    _guard: G,
}

impl<C, G> WithGuard<C, G> {
    /// Wraps `connector`, dropping `guard` after it.
    pub fn new(connector: C, guard: G) -> Self {
        WithGuard {
            connector,
            _guard: guard,
        }
    }
}

impl<C: Connector, G: Send + Sync + std::fmt::Debug> Connector for WithGuard<C, G> {
    fn kind(&self) -> &str {
        self.connector.kind()
    }
    fn capabilities(&self) -> crate::Capabilities {
        self.connector.capabilities()
    }
    fn put(&self, data: Bytes) -> crate::Result<Key> {
        self.connector.put(data)
    }
    fn put_parts(&self, parts: &[&[u8]]) -> crate::Result<Key> {
        self.connector.put_parts(parts)
    }
    fn get(&self, key: &Key) -> crate::Result<Option<Bytes>> {
        self.connector.get(key)
    }
    fn exists(&self, key: &Key) -> crate::Result<bool> {
        self.connector.exists(key)
    }
    fn evict(&self, key: &Key) -> crate::Result<()> {
        self.connector.evict(key)
    }
    fn put_batch(&self, data: Vec<Bytes>) -> crate::Result<Vec<Key>> {
        self.connector.put_batch(data)
    }
    fn get_batch(&self, keys: &[Key]) -> crate::Result<Vec<Option<Bytes>>> {
        self.connector.get_batch(keys)
    }
    fn config(&self) -> crate::ConnectorConfig {
        self.connector.config()
    }
    fn close(&self) -> crate::Result<()> {
        self.connector.close()
    }
    fn as_deferrable(&self) -> Option<&dyn crate::DeferrableConnector> {
        self.connector.as_deferrable()
    }
    fn expire_after(&self, key: &Key, ttl: std::time::Duration) -> crate::Result<bool> {
        self.connector.expire_after(key, ttl)
    }
}

pub use crate::pattern::pattern;

/// What is put can be got back, byte for byte.
pub fn put_get_round_trip(c: Arc<dyn Connector>) {
    for (i, len) in [1usize, 100, 4096, 100_000].into_iter().enumerate() {
        let data = pattern(len, i as u64);
        let key = c.put(data.clone()).expect("put");
        assert_eq!(
            c.get(&key).expect("get").as_ref(),
            Some(&data),
            "{len} bytes"
        );
    }
}

/// `put_parts` stores the concatenation of its parts, empty ones included.
pub fn put_parts_round_trip(c: Arc<dyn Connector>) {
    let (a, b) = (pattern(64, 11), pattern(100_000, 12));
    let key = c.put_parts(&[&a, &[], &b]).expect("put_parts");
    let mut joined = a.to_vec();
    joined.extend_from_slice(&b);
    assert_eq!(c.get(&key).expect("get").as_deref(), Some(&joined[..]));
    let empty = c.put_parts(&[]).expect("put_parts of nothing");
    assert_eq!(c.get(&empty).expect("get empty").map(|d| d.len()), Some(0));
    c.evict(&key).expect("evict");
    c.evict(&empty).expect("evict empty");
}

/// A key that was never put reads as `None`, not an error.
pub fn get_missing_is_none(c: Arc<dyn Connector>) {
    let key = c.put(pattern(10, 1)).expect("put");
    c.evict(&key).expect("evict");
    assert_eq!(c.get(&key).expect("get evicted"), None);
    assert!(!c.exists(&key).expect("exists evicted"));
}

/// `exists` is true after put and false after evict.
pub fn exists_follows_put_and_evict(c: Arc<dyn Connector>) {
    let key = c.put(pattern(64, 2)).expect("put");
    assert!(c.exists(&key).expect("exists"));
    c.evict(&key).expect("evict");
    assert!(!c.exists(&key).expect("exists after evict"));
}

/// Evicting twice is fine.
pub fn evict_is_idempotent(c: Arc<dyn Connector>) {
    let key = c.put(pattern(64, 3)).expect("put");
    c.evict(&key).expect("first evict");
    c.evict(&key).expect("second evict");
}

/// Batch put and get keep order, and a missing key in a batch is `None`.
pub fn batch_round_trip(c: Arc<dyn Connector>) {
    let data: Vec<Bytes> = (0..20).map(|i| pattern(10 + i * 37, i as u64)).collect();
    let keys = c.put_batch(data.clone()).expect("put_batch");
    assert_eq!(keys.len(), data.len());
    c.evict(&keys[5]).expect("evict");
    let got = c.get_batch(&keys).expect("get_batch");
    for (i, (g, d)) in got.iter().zip(&data).enumerate() {
        if i == 5 {
            assert_eq!(g, &None);
        } else {
            assert_eq!(g.as_ref(), Some(d), "batch item {i}");
        }
    }
    assert!(c.get_batch(&[]).expect("empty get_batch").is_empty());
    assert!(c.put_batch(Vec::new()).expect("empty put_batch").is_empty());
}

/// A zero-length object is stored and is distinct from a missing one.
pub fn empty_value(c: Arc<dyn Connector>) {
    let key = c.put(Bytes::new()).expect("put empty");
    assert!(c.exists(&key).expect("exists"));
    assert_eq!(c.get(&key).expect("get").map(|b| b.len()), Some(0));
}

/// A 64 MiB object round-trips.
pub fn large_value(c: Arc<dyn Connector>) {
    let data = pattern(64 << 20, 7);
    let key = c.put(data.clone()).expect("put 64 MiB");
    let back = c.get(&key).expect("get 64 MiB").expect("present");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "64 MiB object differs");
    c.evict(&key).expect("evict");
}

/// Many threads putting, getting and evicting at once see their own data.
pub fn concurrent_threads(c: Arc<dyn Connector>) {
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for i in 0..32u64 {
                    let data = pattern(100 + (i as usize) * 13, t * 1000 + i);
                    let key = c.put(data.clone()).expect("put");
                    assert_eq!(c.get(&key).expect("get"), Some(data));
                    if i % 2 == 0 {
                        c.evict(&key).expect("evict");
                        assert!(!c.exists(&key).expect("exists"));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker thread panicked");
    }
}

/// A key survives its text form: printed, parsed back, it still reads.
pub fn key_text_round_trip(c: Arc<dyn Connector>) {
    let data = pattern(333, 9);
    let key = c.put(data.clone()).expect("put");
    let parsed: Key = key.to_string().parse().expect("parse key text");
    assert_eq!(parsed, key);
    assert_eq!(c.get(&parsed).expect("get by parsed key"), Some(data));
}

/// The config survives serde, and a connector rebuilt from it reads the
/// first one's data (and the other way round).
pub fn config_rebuilds_connector(c: Arc<dyn Connector>) {
    let config = c.config();
    assert_eq!(config.kind, c.kind());
    let json = serde_json_like(&config);
    assert_eq!(json, config, "config changed through serde");
    // Large enough that transports with one-sided reads use them (peer
    // connectors answer objects of 64 KiB and more with a descriptor).
    let data = pattern(100_000, 11);
    let key = c.put(data.clone()).expect("put");
    let other = connector_from_config(&config).expect("rebuild from config");
    assert_eq!(other.get(&key).expect("get through rebuilt"), Some(data));
    let back = other.put(pattern(10, 12)).expect("put through rebuilt");
    assert!(c.exists(&back).expect("original sees rebuilt's put"));
}

fn serde_json_like(config: &crate::ConnectorConfig) -> crate::ConnectorConfig {
    // bincode is what proxies travel in between processes; round-trip
    // through it (non-self-describing, the stricter case).
    let bytes = bincode::serialize(config).expect("encode config");
    bincode::deserialize(&bytes).expect("decode config")
}

/// After `close`, operations fail with `Error::Closed`; closing twice is fine.
pub fn use_after_close_fails(c: Arc<dyn Connector>) {
    let key = c.put(pattern(10, 13)).expect("put");
    c.close().expect("close");
    c.close().expect("second close");
    assert!(
        matches!(c.put(pattern(10, 14)), Err(Error::Closed { .. })),
        "put after close"
    );
    assert!(
        matches!(c.get(&key), Err(Error::Closed { .. })),
        "get after close"
    );
    assert!(
        matches!(c.exists(&key), Err(Error::Closed { .. })),
        "exists after close"
    );
    assert!(
        matches!(c.evict(&key), Err(Error::Closed { .. })),
        "evict after close"
    );
}

/// Deferrable connectors hand out keys before data; the capability flag
/// and `as_deferrable` agree.
pub fn deferrable_keys(c: Arc<dyn Connector>) {
    let caps = c.capabilities();
    let Some(d) = c.as_deferrable() else {
        assert!(
            !caps.deferrable,
            "capabilities say deferrable but as_deferrable is None"
        );
        return;
    };
    assert!(
        caps.deferrable,
        "as_deferrable is Some but capabilities say not deferrable"
    );
    let key = d.new_key().expect("new_key");
    assert!(!c.exists(&key).expect("exists before set"));
    assert_eq!(c.get(&key).expect("get before set"), None);
    let data = pattern(500, 15);
    d.set(&key, data.clone()).expect("set");
    assert_eq!(c.get(&key).expect("get after set"), Some(data));
}

/// What `capabilities()` claims holds where a test in one process can see
/// it: a connector that says objects survive their producer serves them
/// from a connector rebuilt from its config after the producer closed; one
/// that says it is cross-process rebuilds from its config at all.
pub fn capabilities_hold(c: Arc<dyn Connector>) {
    let caps = c.capabilities();
    if caps.survives_producer_exit {
        assert!(
            caps.cross_process,
            "surviving the producer implies cross-process"
        );
    }
    if !caps.cross_process {
        return;
    }
    let data = pattern(1000, 17);
    let key = c.put(data.clone()).expect("put");
    let other = connector_from_config(&c.config()).expect("rebuild from config");
    if caps.survives_producer_exit {
        c.close().expect("close the producer");
        assert_eq!(
            other.get(&key).expect("get after the producer closed"),
            Some(data),
            "capabilities say objects survive their producer"
        );
    } else {
        assert_eq!(other.get(&key).expect("get"), Some(data));
    }
}

/// A proxy serialized, then resolved with no registered store, rebuilds the
/// connector from its config and reads the object.
pub fn proxy_resolves_from_config(c: Arc<dyn Connector>) {
    let name = format!("conformance-{}", crate::ObjectId::random());
    let store = Store::builder(name.clone(), c).cache_size(0).build();
    let value: Vec<f64> = (0..1000).map(f64::from).collect();
    let proxy = store.proxy(&value).expect("proxy");
    let wire = bincode::serialize(&proxy).expect("serialize proxy");
    assert!(
        unregister_store(&name).is_none(),
        "store was not registered"
    );
    let received: Proxy<Vec<f64>> = bincode::deserialize(&wire).expect("deserialize proxy");
    assert!(!received.is_resolved());
    assert_eq!(received.resolve().expect("resolve"), &value);
    unregister_store(&name);
}

/// Races one `get` against one `evict` of the same key on `store`, `races`
/// times (two threads meeting at a spin barrier before every key), and
/// returns how many evicted keys the store still reports afterwards (a
/// stale cache entry). A correct store returns 0. The store needs a cache
/// for the race to matter.
pub fn get_evict_races(store: &Store, races: usize) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let keys: Vec<Key> = (0..races)
        .map(|i| {
            store
                .put_bytes(pattern(64, i as u64))
                .expect("put a race object")
        })
        .collect();
    let arrived = AtomicUsize::new(0);
    // Both threads arrive before key `i` is raced; spinning (not a Barrier)
    // keeps the two operations within a few hundred nanoseconds.
    let meet = |i: usize| {
        arrived.fetch_add(1, Ordering::AcqRel);
        let mut spins = 0u32;
        while arrived.load(Ordering::Acquire) < 2 * (i + 1) {
            spins += 1;
            if spins % 1024 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            for (i, key) in keys.iter().enumerate() {
                meet(i);
                let _ = store.get_bytes(key).expect("racing get");
            }
        });
        s.spawn(|| {
            for (i, key) in keys.iter().enumerate() {
                meet(i);
                store.evict(key).expect("racing evict");
            }
        });
    });
    keys.iter()
        .filter(|k| {
            store.exists(k).expect("exists after race")
                || store.get_bytes(k).expect("get after race").is_some()
        })
        .count()
}

/// Environment variable that tells a re-executed test binary which child
/// role to play (see [`child_command`]).
pub const CHILD_ROLE: &str = "PROXYSTORE_TEST_CHILD_ROLE";

/// A command running this test binary again, executing only the test named
/// `entry` with [`CHILD_ROLE`] set to `role`: how tests get a second OS
/// process that links the same code. The entry test returns at once when
/// [`child_role`] is `None`.
pub fn child_command(entry: &str, role: &str) -> std::process::Command {
    let exe = std::env::current_exe().expect("current test executable");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--exact", entry, "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE, role);
    cmd
}

/// The role this process was started with by [`child_command`], if any.
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ROLE).ok()
}

/// The value a child printed as a `NAME=value` line (libtest may prefix it).
pub fn output_field<'a>(stdout: &'a str, name: &str) -> &'a str {
    let tag = format!("{name}=");
    stdout
        .lines()
        .find_map(|l| l.split_once(tag.as_str()).map(|(_, v)| v.trim()))
        .unwrap_or_else(|| panic!("child did not print {name}: {stdout}"))
}

/// Runs a child to completion and returns its stdout; panics with both
/// streams if it failed.
pub fn run_child(mut cmd: std::process::Command) -> String {
    let out = cmd.output().expect("spawn child process");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Spawns a child and reads its stdout until it prints `NAME=value`;
/// returns the still-running child and the value. Panics if the child
/// exits first.
pub fn spawn_child_until(
    mut cmd: std::process::Command,
    name: &str,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn child process");
    let stdout = child.stdout.take().expect("piped stdout");
    let tag = format!("{name}=");
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("read child stdout");
        if let Some((_, value)) = line.split_once(tag.as_str()) {
            return (child, value.trim().to_string());
        }
    }
    let status = child.wait().expect("wait for child");
    panic!("child exited ({status}) without printing {name}");
}

/// The objects an owner child serves ([`serve_as_owner`]): one above the
/// one-sided threshold of the network connectors (3 MiB), one small.
pub fn owner_objects() -> Vec<Bytes> {
    vec![pattern(3 << 20, 7), pattern(100, 8)]
}

/// A child role: puts [`owner_objects`] into `c`, prints their keys as
/// `OWNER_KEYS=k1 k2` and serves them until the parent kills this process
/// (60 s at most).
pub fn serve_as_owner(c: &dyn Connector) {
    let keys: Vec<String> = owner_objects()
        .into_iter()
        .map(|data| c.put(data).expect("owner put").to_string())
        .collect();
    println!("OWNER_KEYS={}", keys.join(" "));
    std::thread::sleep(std::time::Duration::from_secs(60));
}

/// The keys a parent passed a child in `KEYS` (space separated; as
/// [`serve_as_owner`] prints them).
pub fn keys_from_env() -> Vec<Key> {
    std::env::var("KEYS")
        .expect("KEYS in the child's environment")
        .split(' ')
        .map(|k| k.parse().expect("a key in KEYS"))
        .collect()
}

/// Kills `owner` (a child serving [`owner_objects`]) after `reader` got
/// `key` from it, then checks that the next get fails as a vanished owner
/// should: [`Error::PeerUnreachable`] naming an address that starts with
/// `scheme`, or [`Error::Timeout`], within `limit`.
pub fn get_from_killed_owner_fails(
    reader: &dyn Connector,
    key: &Key,
    mut owner: std::process::Child,
    scheme: &str,
    limit: std::time::Duration,
) {
    let first = reader.get(key).expect("get while the owner lives");
    assert_eq!(first.map(|b| b.len()), Some(3 << 20));
    owner.kill().expect("kill the owner");
    owner.wait().expect("reap the owner");
    let started = std::time::Instant::now();
    let err = reader.get(key).expect_err("a get from a killed owner");
    assert!(
        matches!(err, Error::PeerUnreachable { .. } | Error::Timeout { .. }),
        "{err}"
    );
    if let Error::PeerUnreachable { address, .. } = &err {
        assert!(address.starts_with(scheme), "names the owner: {err}");
    }
    assert!(
        started.elapsed() < limit,
        "took {:?}: {err}",
        started.elapsed()
    );
}

/// With objects staged in registered slabs: evicts `key` (put in `owner`
/// at `slab`, already read by `reader`), then puts, reads and evicts
/// objects of its size until one lands at `slab` again (`true`) or 2 s
/// pass (`false`). Releases reach owners asynchronously, hence the loop.
pub fn staged_slab_is_reused(
    owner: &dyn Connector,
    reader: &dyn Connector,
    key: &Key,
    slab: *const u8,
) -> bool {
    let size = key.size().expect("a sized key") as usize;
    owner.evict(key).expect("evict");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let next = owner.put(pattern(size, 4)).expect("put");
        let at = owner.get(&next).expect("get").expect("present").as_ptr();
        assert_eq!(reader.get(&next).expect("read"), Some(pattern(size, 4)));
        owner.evict(&next).expect("evict");
        if at == slab {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
