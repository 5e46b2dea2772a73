//! In-process connector: objects live in this process's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;

use crate::connector::{
    register_connector, Capabilities, Connector, ConnectorConfig, DeferrableConnector,
};
use crate::error::{Error, Result};
use crate::key::{Key, ObjectId};
use crate::support::ClosedFlag;
use crate::table::ObjectTable;

type Table = ObjectTable;

/// Live tables in this process by instance number, so a connector rebuilt
/// from a config (e.g. by a proxy) shares the original's objects.
fn instances() -> &'static Mutex<HashMap<u64, Weak<Table>>> {
    static INSTANCES: OnceLock<Mutex<HashMap<u64, Weak<Table>>>> = OnceLock::new();
    INSTANCES.get_or_init(Default::default)
}

/// Stores objects in this process's memory. `put` and `get` move no bytes:
/// the table holds the caller's [`Bytes`] and hands out clones of it.
///
/// Its config names this process and table; rebuilt in the same process it
/// shares the objects, rebuilt in another it is a configuration error.
#[derive(Debug)]
pub struct LocalConnector {
    table: Arc<Table>,
    instance: u64,
    closed: ClosedFlag,
}

impl Default for LocalConnector {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalConnector {
    /// A connector with a new, empty object table. Registers the `local`
    /// kind, so configs of this connector rebuild in this process.
    pub fn new() -> Self {
        static REGISTER: std::sync::Once = std::sync::Once::new();
        REGISTER.call_once(|| register_connector("local", Self::from_config_boxed));
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let instance = NEXT.fetch_add(1, Ordering::Relaxed);
        let table = Arc::new(Table::new());
        let mut map = instances().lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, t| t.strong_count() > 0);
        map.insert(instance, Arc::downgrade(&table));
        LocalConnector {
            table,
            instance,
            closed: ClosedFlag::new(),
        }
    }

    /// Rebuilds a connector from its config (same process only).
    pub fn from_config(config: &ConnectorConfig) -> Result<Self> {
        let pid: u32 = config.parse("pid")?.ok_or_else(|| missing("pid"))?;
        let instance: u64 = config
            .parse("instance")?
            .ok_or_else(|| missing("instance"))?;
        if pid != std::process::id() {
            return Err(Error::Config(format!(
                "local connector data lives in process {pid}; it cannot be reached from process {}",
                std::process::id()
            )));
        }
        let map = instances().lock().unwrap_or_else(|e| e.into_inner());
        let table = map.get(&instance).and_then(Weak::upgrade).ok_or_else(|| {
            Error::Config(format!(
                "local connector instance {instance} no longer exists"
            ))
        })?;
        Ok(LocalConnector {
            table,
            instance,
            closed: ClosedFlag::new(),
        })
    }

    pub(crate) fn from_config_boxed(config: &ConnectorConfig) -> Result<Box<dyn Connector>> {
        Ok(Box::new(Self::from_config(config)?))
    }

    fn check_open(&self) -> Result<()> {
        self.closed.check("local")
    }

    fn insert(&self, id: ObjectId, data: Bytes) {
        self.table.insert(id, data);
    }
}

fn missing(option: &str) -> Error {
    Error::Config(format!("local connector config lacks option '{option}'"))
}

impl Connector for LocalConnector {
    fn kind(&self) -> &str {
        "local"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_deferrable(true)
            .with_in_memory(true)
    }

    fn put(&self, data: Bytes) -> Result<Key> {
        self.check_open()?;
        let key = Key::random();
        self.insert(key.id(), data);
        Ok(key)
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.check_open()?;
        Ok(self.table.get(key.id()))
    }

    fn exists(&self, key: &Key) -> Result<bool> {
        self.check_open()?;
        Ok(self.table.contains(key.id()))
    }

    fn evict(&self, key: &Key) -> Result<()> {
        self.check_open()?;
        self.table.remove(key.id());
        Ok(())
    }

    fn config(&self) -> ConnectorConfig {
        ConnectorConfig::new("local")
            .with("pid", std::process::id())
            .with("instance", self.instance)
    }

    fn close(&self) -> Result<()> {
        self.closed.close();
        Ok(())
    }

    fn as_deferrable(&self) -> Option<&dyn DeferrableConnector> {
        Some(self)
    }
}

impl DeferrableConnector for LocalConnector {
    fn new_key(&self) -> Result<Key> {
        self.closed.new_key("local")
    }

    fn set(&self, key: &Key, data: Bytes) -> Result<()> {
        self.check_open()?;
        self.insert(key.id(), data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::conformance_tests!(LocalConnector::new());

    #[test]
    fn config_from_another_process_is_refused() {
        let c = LocalConnector::new();
        let mut cfg = c.config();
        cfg.options
            .insert("pid".into(), (std::process::id() + 1).to_string());
        assert!(matches!(
            LocalConnector::from_config(&cfg),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn put_and_get_move_no_bytes() {
        let c = LocalConnector::new();
        let data = Bytes::from(vec![7u8; 4096]);
        let key = c.put(data.clone()).unwrap();
        let back = c.get(&key).unwrap().unwrap();
        assert_eq!(back.as_ptr(), data.as_ptr());
    }
}
