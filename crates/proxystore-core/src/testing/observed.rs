//! A local connector that records what is done to it, for tests of code
//! built on connectors (stores, executors, farms): which keys were put and
//! are still there, how many gets ran and on which thread, and an optional
//! delay that makes every get behave like one over a network.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use crate::connector::{Capabilities, Connector, ConnectorConfig, DeferrableConnector};
use crate::error::Result;
use crate::key::Key;
use crate::local::LocalConnector;

/// A [`LocalConnector`] that records puts, evictions and gets.
#[derive(Debug, Default)]
pub struct ObservedLocal {
    inner: LocalConnector,
    puts: Mutex<Vec<Key>>,
    live: Mutex<HashSet<Key>>,
    gets: AtomicUsize,
    get_threads: Mutex<Vec<String>>,
    get_delay: Option<Duration>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ObservedLocal {
    /// An empty connector.
    pub fn new() -> Self {
        Self::default()
    }

    /// One whose gets each sleep `delay` first, as a network would; it no
    /// longer claims `in_memory`, so async resolution hops to the pool.
    pub fn with_get_delay(delay: Duration) -> Self {
        ObservedLocal {
            get_delay: Some(delay),
            ..Self::default()
        }
    }

    /// Every key put (or set), in order, evicted ones included.
    pub fn puts(&self) -> Vec<Key> {
        lock(&self.puts).clone()
    }

    /// Keys put (or set) and not evicted since.
    pub fn live(&self) -> HashSet<Key> {
        lock(&self.live).clone()
    }

    /// How many gets ran.
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::Relaxed)
    }

    /// The name of the thread each get ran on, in order.
    pub fn get_threads(&self) -> Vec<String> {
        lock(&self.get_threads).clone()
    }

    fn stored(&self, key: &Key) {
        lock(&self.puts).push(key.clone());
        lock(&self.live).insert(key.clone());
    }
}

impl Connector for ObservedLocal {
    fn kind(&self) -> &str {
        self.inner.kind()
    }
    fn capabilities(&self) -> Capabilities {
        let caps = self.inner.capabilities();
        caps.with_in_memory(caps.in_memory && self.get_delay.is_none())
    }
    fn put(&self, data: Bytes) -> Result<Key> {
        let key = self.inner.put(data)?;
        self.stored(&key);
        Ok(key)
    }
    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let name = std::thread::current().name().unwrap_or("").to_owned();
        lock(&self.get_threads).push(name);
        if let Some(delay) = self.get_delay {
            std::thread::sleep(delay);
        }
        self.inner.get(key)
    }
    fn exists(&self, key: &Key) -> Result<bool> {
        self.inner.exists(key)
    }
    fn evict(&self, key: &Key) -> Result<()> {
        lock(&self.live).remove(key);
        self.inner.evict(key)
    }
    fn config(&self) -> ConnectorConfig {
        self.inner.config()
    }
    fn close(&self) -> Result<()> {
        self.inner.close()
    }
    fn as_deferrable(&self) -> Option<&dyn DeferrableConnector> {
        Some(self)
    }
}

impl DeferrableConnector for ObservedLocal {
    fn new_key(&self) -> Result<Key> {
        self.inner.new_key()
    }
    fn set(&self, key: &Key, data: Bytes) -> Result<()> {
        self.inner.set(key, data)?;
        self.stored(key);
        Ok(())
    }
}
