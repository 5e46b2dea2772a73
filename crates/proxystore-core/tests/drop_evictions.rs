//! Drops never wait on the network: owned proxies and scopes hand their
//! evictions to the process's reaper thread, which does them afterwards,
//! and logs the ones that fail.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use proxystore_core::{
    Bytes, Capabilities, Connector, ConnectorConfig, Error, Key, LeaseLifetime, Lifetime,
    LocalConnector, ScopeLifetime, Store,
};

const SLOW: Duration = Duration::from_secs(2);
const QUICK: Duration = Duration::from_millis(200);

/// A local connector whose `evict` takes [`SLOW`] (a far server), or fails.
#[derive(Debug)]
struct SlowEvict {
    inner: LocalConnector,
    fail: bool,
}

impl Connector for SlowEvict {
    fn kind(&self) -> &str {
        "local"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn put(&self, data: Bytes) -> proxystore_core::Result<Key> {
        self.inner.put(data)
    }
    fn get(&self, key: &Key) -> proxystore_core::Result<Option<Bytes>> {
        self.inner.get(key)
    }
    fn exists(&self, key: &Key) -> proxystore_core::Result<bool> {
        self.inner.exists(key)
    }
    fn evict(&self, key: &Key) -> proxystore_core::Result<()> {
        if self.fail {
            return Err(Error::PeerUnreachable {
                address: "10.0.0.1:5555".into(),
                reason: "no route to host".into(),
            });
        }
        std::thread::sleep(SLOW);
        self.inner.evict(key)
    }
    fn config(&self) -> ConnectorConfig {
        self.inner.config()
    }
    fn close(&self) -> proxystore_core::Result<()> {
        self.inner.close()
    }
}

fn store(fail: bool) -> (Store, ConnectorConfig) {
    let connector = SlowEvict {
        inner: LocalConnector::new(),
        fail,
    };
    let config = connector.config();
    let name = format!("drop-{}", proxystore_core::ObjectId::random());
    let store = Store::builder(name, Arc::new(connector)).build();
    (store, config)
}

#[test]
fn dropping_an_owned_proxy_returns_at_once_and_evicts_afterwards() {
    let (s, _) = store(false);
    let owned = s.owned_proxy(&vec![1u32; 100]).unwrap();
    let key = owned.key().clone();
    let start = Instant::now();
    drop(owned);
    assert!(start.elapsed() < QUICK, "drop took {:?}", start.elapsed());
    assert!(matches!(
        s.flush_evictions(Duration::from_millis(10)),
        Err(Error::Timeout { .. })
    ));
    s.flush_evictions(Duration::from_secs(30)).unwrap();
    assert!(start.elapsed() >= SLOW, "the eviction really ran");
    assert!(!s.exists(&key).unwrap());
}

#[test]
fn dropping_a_scope_returns_at_once_and_evicts_afterwards() {
    let (s, _) = store(false);
    let scope = ScopeLifetime::new();
    let a = s.proxy_with_lifetime(&1u8, &scope).unwrap();
    let b = s.proxy_with_lifetime(&2u8, &scope).unwrap();
    let start = Instant::now();
    drop(scope);
    assert!(start.elapsed() < QUICK, "drop took {:?}", start.elapsed());
    s.flush_evictions(Duration::from_secs(30)).unwrap();
    assert!(!s.exists(a.key()).unwrap() && !s.exists(b.key()).unwrap());
}

#[test]
fn close_flushes_pending_evictions_first() {
    let (s, config) = store(false);
    let owned = s.owned_proxy(&7u64).unwrap();
    let key = owned.key().clone();
    drop(owned);
    s.close().unwrap();
    // The store's connector is closed; a second handle on the same table
    // shows the object went before the close.
    let other = LocalConnector::from_config(&config).unwrap();
    assert!(!other.exists(&key).unwrap());
}

#[test]
#[cfg(target_os = "linux")]
fn many_leases_share_one_timer_thread() {
    let (s, _) = store(false);
    let leases: Vec<LeaseLifetime> = (0..50)
        .map(|_| LeaseLifetime::new(Duration::from_secs(600)).unwrap())
        .collect();
    // A new thread names itself once it runs, so look until it has.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut timers = timer_threads();
    while timers == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        timers = timer_threads();
    }
    assert_eq!(timers, 1, "one timer thread for {} leases", leases.len());
    let p = s.proxy_with_lifetime(&3u8, &leases[0]).unwrap();
    leases[0].close().unwrap();
    assert!(!s.exists(p.key()).unwrap(), "close evicts at once");
}

/// Threads of this process named like the lease timer (names are cut to
/// 15 bytes in /proc).
#[cfg(target_os = "linux")]
fn timer_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).unwrap_or_default().trim() == "proxystore-time"
        })
        .count()
}

/// Every WARN event's fields, as text.
fn warnings() -> &'static Arc<Mutex<Vec<String>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let _ = tracing::subscriber::set_global_default(Capture(Arc::clone(&log)));
        log
    })
}

struct Capture(Arc<Mutex<Vec<String>>>);
struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_failed_background_eviction_is_logged_with_store_key_and_error() {
    let log = warnings();
    let (s, _) = store(true);
    let owned = s.owned_proxy(&5u8).unwrap();
    let key = owned.key().to_string();
    drop(owned);
    s.flush_evictions(Duration::from_secs(30)).unwrap();
    let log = log.lock().unwrap();
    assert!(
        log.iter()
            .any(|w| w.contains(s.name()) && w.contains(&key) && w.contains("no route to host")),
        "no warning names store, key and error: {log:?}"
    );
}
