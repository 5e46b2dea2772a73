//! An in-process stand-in for a Redis server at the command layer: the same
//! SET/GET/MGET/EXISTS/DEL/PEXPIRE semantics (including expiry) on a shared
//! map, so the connector's own code runs in tests without a server. URLs
//! `mock://<name>` name one shared map per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_core::{Error, Result};

use crate::layer::CommandLayer;

type Map = HashMap<String, (Bytes, Option<Instant>)>;

/// The mock command layer: one named in-process keyspace.
#[derive(Debug)]
pub struct MockRedis {
    map: Arc<Mutex<Map>>,
    down: Arc<Mutex<bool>>,
}

type Servers = HashMap<String, (Arc<Mutex<Map>>, Arc<Mutex<bool>>)>;

fn servers() -> &'static Mutex<Servers> {
    static SERVERS: OnceLock<Mutex<Servers>> = OnceLock::new();
    SERVERS.get_or_init(Default::default)
}

impl MockRedis {
    /// The keyspace named by `url` (`mock://name`), created on first use.
    pub fn open(url: &str) -> Result<Self> {
        let name = url.strip_prefix("mock://").ok_or_else(|| {
            Error::Config(format!("mock redis url '{url}' must start with mock://"))
        })?;
        let mut all = servers().lock().unwrap_or_else(|e| e.into_inner());
        let (map, down) = all.entry(name.to_string()).or_default().clone();
        Ok(MockRedis { map, down })
    }

    /// Makes every later command on this keyspace fail as if the server
    /// died (`true`) or serve again (`false`).
    pub fn set_down(url: &str, down: bool) -> Result<()> {
        *MockRedis::open(url)?
            .down
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = down;
        Ok(())
    }

    fn live(&self) -> Result<std::sync::MutexGuard<'_, Map>> {
        if *self.down.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(Error::PeerUnreachable {
                address: "mock redis".into(),
                reason: "server is down".into(),
            });
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, expiry)| expiry.is_none_or(|t| t > now));
        Ok(map)
    }
}

impl CommandLayer for MockRedis {
    fn set(&self, items: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        let mut map = self.live()?;
        let expiry = ttl.map(|t| Instant::now() + t);
        for (key, data) in items {
            map.insert(key, (data, expiry));
        }
        Ok(())
    }

    fn get(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let map = self.live()?;
        // A real server sends a copy; so does the mock.
        Ok(keys
            .iter()
            .map(|k| map.get(k).map(|(d, _)| Bytes::copy_from_slice(d)))
            .collect())
    }

    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.live()?.contains_key(key))
    }

    fn del(&self, keys: &[String]) -> Result<()> {
        let mut map = self.live()?;
        for k in keys {
            map.remove(k);
        }
        Ok(())
    }

    fn pexpire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let mut map = self.live()?;
        Ok(map
            .get_mut(key)
            .map(|(_, expiry)| *expiry = Some(Instant::now() + ttl))
            .is_some())
    }

    fn close(&self) {}
}
