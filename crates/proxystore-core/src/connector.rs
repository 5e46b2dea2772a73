//! The `Connector` trait every transport implements, its configuration and
//! the process-wide table of factories that rebuilds connectors from
//! configurations. What each kind is beyond its factory (feature, flags,
//! server, bench setup) is in `crate::registry`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{OnceLock, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::key::Key;

/// What a connector can do, as data the store, the CLI and the conformance
/// suite read instead of guessing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// `put_batch`/`get_batch` are native (one round trip), not a loop.
    pub native_batch: bool,
    /// Implements [`DeferrableConnector`] (keys before data, `Store::future`).
    pub deferrable: bool,
    /// `get` is a one-sided read (RDMA, `ucp_get`, `MPI_Get`, mmap).
    pub one_sided_get: bool,
    /// Objects outlive the process that put them.
    pub survives_producer_exit: bool,
    /// Another process can rebuild the connector from its config and read.
    pub cross_process: bool,
    /// `get` reads this process's memory and never waits on I/O (the
    /// local connector), so async resolution of a small object may run
    /// inline instead of on the blocking pool.
    pub in_memory: bool,
}

impl Capabilities {
    /// No capabilities beyond the required operations.
    pub const fn none() -> Self {
        Capabilities {
            native_batch: false,
            deferrable: false,
            one_sided_get: false,
            survives_producer_exit: false,
            cross_process: false,
            in_memory: false,
        }
    }

    /// Sets `in_memory`.
    pub const fn with_in_memory(mut self, v: bool) -> Self {
        self.in_memory = v;
        self
    }

    /// Sets `native_batch`.
    pub const fn with_native_batch(mut self, v: bool) -> Self {
        self.native_batch = v;
        self
    }
    /// Sets `deferrable`.
    pub const fn with_deferrable(mut self, v: bool) -> Self {
        self.deferrable = v;
        self
    }
    /// Sets `one_sided_get`.
    pub const fn with_one_sided_get(mut self, v: bool) -> Self {
        self.one_sided_get = v;
        self
    }
    /// Sets `survives_producer_exit`.
    pub const fn with_survives_producer_exit(mut self, v: bool) -> Self {
        self.survives_producer_exit = v;
        self
    }
    /// Sets `cross_process`.
    pub const fn with_cross_process(mut self, v: bool) -> Self {
        self.cross_process = v;
        self
    }
}

/// The capabilities a connector has, comma separated (`none` if it has
/// only the required operations); what `proxystore bench` prints.
impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.native_batch, "native batch"),
            (self.deferrable, "deferrable keys"),
            (self.one_sided_get, "one-sided get"),
            (self.survives_producer_exit, "survives producer exit"),
            (self.cross_process, "cross-process"),
        ];
        let held: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        if held.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&held.join(", "))
        }
    }
}

/// A byte-level object store over one transport.
///
/// Object safe: stores hold `Arc<dyn Connector>` built at run time from a
/// [`ConnectorConfig`]. All methods take `&self` and are safe to call from many
/// threads at once. Every blocking wait inside an implementation is bounded
/// by a timeout.
pub trait Connector: Send + Sync + fmt::Debug {
    /// The connector's kind, as in its config (`local`, `file`, `zmq`, ...).
    fn kind(&self) -> &str;

    /// What this connector can do.
    fn capabilities(&self) -> Capabilities;

    /// Stores `data` and returns the key naming it.
    fn put(&self, data: Bytes) -> Result<Key>;

    /// Fetches the object named by `key`; `Ok(None)` if there is none.
    fn get(&self, key: &Key) -> Result<Option<Bytes>>;

    /// Whether an object exists under `key`.
    fn exists(&self, key: &Key) -> Result<bool>;

    /// Removes the object under `key`. Evicting a missing key is not an error.
    fn evict(&self, key: &Key) -> Result<()>;

    /// Stores the concatenation of `parts` (a header and a payload, say)
    /// and returns its key. The default joins them into one 64-byte-aligned
    /// buffer (one copy) and puts that; a connector that copies into its
    /// medium anyway (a file, a shared-memory arena) overrides it to copy
    /// each part once, straight into the medium.
    fn put_parts(&self, parts: &[&[u8]]) -> Result<Key> {
        self.put(crate::pod::concat_aligned(parts))
    }

    /// Stores `data`, told what the caller knows about it (`hints`); the
    /// default ignores the hints and puts. A connector that routes by them
    /// (`multi`) overrides it.
    fn put_hinted(&self, data: Bytes, hints: &PutHints) -> Result<Key> {
        let _ = hints;
        self.put(data)
    }

    /// Stores several objects. The default puts them one by one.
    fn put_batch(&self, data: Vec<Bytes>) -> Result<Vec<Key>> {
        data.into_iter().map(|d| self.put(d)).collect()
    }

    /// Fetches several objects, in order. The default gets them one by one.
    fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// The configuration from which any process can rebuild an equivalent
    /// connector with [`connector_from_config`].
    fn config(&self) -> ConnectorConfig;

    /// Releases the connector's resources. Later operations on this handle
    /// fail with [`Error::Closed`]. Closing twice is not an error.
    fn close(&self) -> Result<()>;

    /// This connector as a [`DeferrableConnector`], if it is one.
    fn as_deferrable(&self) -> Option<&dyn DeferrableConnector> {
        None
    }

    /// Asks the backend to remove the object under `key` by itself once
    /// `ttl` has passed (Redis TTLs), so it expires even if no process of
    /// ours is left to evict it. `Ok(false)`: the connector has no such
    /// mechanism (the default), and the caller must evict by itself.
    fn expire_after(&self, key: &Key, ttl: std::time::Duration) -> Result<bool> {
        let _ = (key, ttl);
        Ok(false)
    }
}

/// What a put's caller says about the object, for connectors that route
/// by it (`MultiConnector`'s policies); others ignore it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutHints {
    /// Every one of these must be among the chosen policy's `subset_tags`.
    pub subset_tags: Vec<String>,
    /// These must include every one of the chosen policy's `superset_tags`.
    pub superset_tags: Vec<String>,
}

impl PutHints {
    /// Hints with these subset tags.
    pub fn subset(tags: &[&str]) -> Self {
        PutHints {
            subset_tags: tags.iter().map(|t| t.to_string()).collect(),
            superset_tags: Vec::new(),
        }
    }

    /// Hints with these superset tags.
    pub fn superset(tags: &[&str]) -> Self {
        PutHints {
            subset_tags: Vec::new(),
            superset_tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }
}

/// A connector that can name a key before its data exists (needed by
/// `Store::future`).
pub trait DeferrableConnector: Connector {
    /// A key under which data will be set later.
    fn new_key(&self) -> Result<Key>;

    /// Stores `data` under a key from [`new_key`](Self::new_key).
    fn set(&self, key: &Key, data: Bytes) -> Result<()>;
}

/// A serializable description of a connector: its kind and string options.
///
/// Options are strings so the config encodes in any serde format, including
/// non-self-describing binary ones used to ship proxies between processes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnectorConfig {
    /// Connector kind (`local`, `file`, ...).
    pub kind: String,
    /// Connector-specific options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl ConnectorConfig {
    /// A config of `kind` with no options.
    pub fn new(kind: impl Into<String>) -> Self {
        ConnectorConfig {
            kind: kind.into(),
            options: BTreeMap::new(),
        }
    }

    /// Adds an option.
    pub fn with(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.options.insert(name.into(), value.to_string());
        self
    }

    /// An option's text, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    /// A required option's text.
    pub fn require(&self, name: &str) -> Result<&str> {
        self.get(name).ok_or_else(|| {
            Error::Config(format!(
                "{} connector config lacks option '{name}'",
                self.kind
            ))
        })
    }

    /// An option parsed as `T`, if set.
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<Option<T>>
    where
        T::Err: fmt::Display,
    {
        self.get(name)
            .map(|v| {
                v.parse::<T>().map_err(|e| {
                    Error::Config(format!("{} connector option {name}='{v}': {e}", self.kind))
                })
            })
            .transpose()
    }
}

/// Builds a connector from its configuration.
pub type ConnectorFactory = fn(&ConnectorConfig) -> Result<Box<dyn Connector>>;

fn factories() -> &'static RwLock<HashMap<String, ConnectorFactory>> {
    static FACTORIES: OnceLock<RwLock<HashMap<String, ConnectorFactory>>> = OnceLock::new();
    FACTORIES.get_or_init(Default::default)
}

/// Registers (or replaces) the factory for connector `kind` in this process.
///
/// Every connector registers its kind when it is constructed (the built-in
/// `local` one too), so a process resolves proxies of the kinds it built;
/// `proxystore::register_connectors()` registers every compiled-in connector
/// so a process that only receives proxies can resolve them. Connector
/// crates register through `crate::registry::register`, which also records
/// their descriptor.
pub fn register_connector(kind: &str, factory: ConnectorFactory) {
    let mut map = factories().write().unwrap_or_else(|e| e.into_inner());
    map.insert(kind.to_owned(), factory);
}

/// The connector kinds registered in this process, sorted.
pub fn registered_connectors() -> Vec<String> {
    let map = factories().read().unwrap_or_else(|e| e.into_inner());
    let mut kinds: Vec<String> = map.keys().cloned().collect();
    kinds.sort();
    kinds
}

/// Builds a connector from a configuration, through the factory registered
/// for its kind.
pub fn connector_from_config(config: &ConnectorConfig) -> Result<Box<dyn Connector>> {
    let factory = {
        let map = factories().read().unwrap_or_else(|e| e.into_inner());
        map.get(&config.kind).copied()
    };
    match factory {
        Some(f) => f(config),
        None => Err(Error::UnknownConnector {
            kind: config.kind.clone(),
            known: registered_connectors().join(", "),
        }),
    }
}
