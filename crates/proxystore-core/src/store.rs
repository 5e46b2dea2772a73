//! `Store`: a named connector plus codec, cache, metrics and tracing, and the
//! process-wide store registry.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::field::Empty;

use crate::cache::{ObjectCache, DEFAULT_CACHE_BYTES};
use crate::codec::Codec;
use crate::connector::{connector_from_config, Connector, ConnectorConfig, PutHints};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::metrics::{Metrics, MetricsSnapshot, Op};
use crate::reaper::{Outstanding, Reaper};

/// How long [`Store::close`] waits for the store's pending background
/// evictions before it closes the connector anyway.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything another process needs to rebuild an equivalent store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Store name (the registry key).
    pub name: String,
    /// The connector's configuration.
    pub connector: ConnectorConfig,
    /// Codec for typed values.
    pub codec: Codec,
    /// LRU cache size in objects (0 = off).
    pub cache_size: usize,
}

#[derive(Debug)]
struct Inner {
    name: String,
    connector: Arc<dyn Connector>,
    codec: Codec,
    cache_size: usize,
    cache: Option<ObjectCache>,
    metrics: Metrics,
    /// Evictions handed to the reaper and not finished yet.
    pending: Outstanding,
}

/// A named store: puts values through a connector and hands out proxies.
///
/// Cloning is cheap (a reference count); clones share connector, cache and
/// metrics.
///
/// # Cache
///
/// Each store keeps a private LRU cache of the objects it read, bounded by
/// entries ([`StoreBuilder::cache_size`], default 16) and by bytes
/// ([`StoreBuilder::cache_bytes`], default 256 MiB; larger objects are not
/// cached). Objects are immutable under their key, so a cached copy is never
/// out of date while the object exists. What the cache does and does not see:
///
/// - This store's [`evict`](Store::evict) removes the object from the cache
///   and the connector; once it returns, this store (and its clones) neither
///   serves the object nor says it [`exists`](Store::exists), even if a
///   `get` of it ran at the same time.
/// - Another store's evict (another process, or a second `Store` over the
///   same objects in this process) is not seen: a store that already caches
///   the object keeps serving it, and `exists` answers `true` from the
///   cache, until the entry is pushed out. This is Python ProxyStore's
///   behaviour too. Proxies resolved in one process share the registered
///   store of that name (see [`get_or_create_store`]), hence its cache.
/// - Build with `cache_size(0)` for a store that always asks the connector.
///
/// # Evictions on drop
///
/// Owned proxies and scopes that are dropped evict in the background (see
/// [`OwnedProxy`](crate::OwnedProxy)); [`flush_evictions`](Store::flush_evictions)
/// waits for them and [`close`](Store::close) flushes before closing.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Builds a [`Store`] with non-default settings.
#[derive(Debug)]
pub struct StoreBuilder {
    name: String,
    connector: Arc<dyn Connector>,
    codec: Codec,
    cache_size: usize,
    cache_bytes: usize,
}

impl StoreBuilder {
    /// Sets the codec (default [`Codec::Bincode`]).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Sets the LRU cache size in objects; 0 turns the cache off (default 16).
    pub fn cache_size(mut self, entries: usize) -> Self {
        self.cache_size = entries;
        self
    }

    /// Sets the cache's bound in bytes (default [`DEFAULT_CACHE_BYTES`],
    /// 256 MiB); 0 turns the cache off. The least recently used objects
    /// leave the cache until both this and the entry bound hold, and an
    /// object larger than this bound is never cached.
    ///
    /// This bound is a setting of this process: it is not part of
    /// [`StoreConfig`], so a store rebuilt from a config elsewhere uses the
    /// default.
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Builds the store (not registered; see [`register_store`]).
    pub fn build(self) -> Store {
        let cache = ObjectCache::new(self.cache_size, self.cache_bytes);
        Store {
            inner: Arc::new(Inner {
                name: self.name,
                connector: self.connector,
                codec: self.codec,
                cache_size: self.cache_size,
                cache,
                metrics: Metrics::default(),
                pending: Outstanding::new(),
            }),
        }
    }
}

impl Store {
    /// A store with default settings over `connector`.
    pub fn new(name: impl Into<String>, connector: impl Connector + 'static) -> Store {
        Store::builder(name, Arc::new(connector)).build()
    }

    /// A builder for a store over `connector`.
    pub fn builder(name: impl Into<String>, connector: Arc<dyn Connector>) -> StoreBuilder {
        StoreBuilder {
            name: name.into(),
            connector,
            codec: Codec::default(),
            cache_size: 16,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }

    /// Builds a store from a config, rebuilding its connector.
    pub fn from_config(config: &StoreConfig) -> Result<Store> {
        let connector: Arc<dyn Connector> = Arc::from(connector_from_config(&config.connector)?);
        Ok(Store::builder(config.name.clone(), connector)
            .codec(config.codec)
            .cache_size(config.cache_size)
            .build())
    }

    /// The store's config.
    pub fn config(&self) -> StoreConfig {
        StoreConfig {
            name: self.inner.name.clone(),
            connector: self.inner.connector.config(),
            codec: self.inner.codec,
            cache_size: self.inner.cache_size,
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The store's connector.
    pub fn connector(&self) -> &Arc<dyn Connector> {
        &self.inner.connector
    }

    /// The store's codec.
    pub fn codec(&self) -> Codec {
        self.inner.codec
    }

    /// Decodes bytes got from this store's connector with its codec,
    /// counting typed views that had to be realigned in its metrics.
    pub fn decode<T: DeserializeOwned + 'static>(&self, data: Bytes) -> Result<T> {
        let (value, realigned) = self.inner.codec.decode_counting_realigned(data)?;
        self.inner.metrics.record_realigned(realigned);
        Ok(value)
    }

    /// A copy of the store's metrics.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// Runs one instrumented operation: a tracing span (store, connector, op,
    /// key, bytes) and a metrics record. `f` returns its result and the
    /// number of bytes it moved.
    fn instrumented<R>(
        &self,
        op: Op,
        key: Option<&Key>,
        f: impl FnOnce(&tracing::Span) -> Result<(R, u64)>,
    ) -> Result<R> {
        let span = tracing::debug_span!(
            "store",
            store = %self.inner.name,
            connector = self.inner.connector.kind(),
            op = op.name(),
            key = Empty,
            bytes = Empty,
        );
        if let Some(k) = key {
            span.record("key", tracing::field::display(k));
        }
        let _guard = span.enter();
        let start = Instant::now();
        let (value, bytes) = f(&span)?;
        self.inner.metrics.record(op, start.elapsed(), bytes);
        span.record("bytes", bytes);
        Ok(value)
    }

    /// Encodes `value` with the store's codec and puts it.
    pub fn put<T: Serialize + 'static>(&self, value: &T) -> Result<Key> {
        let data = self.inner.codec.encode(value)?;
        self.put_bytes(data)
    }

    /// Puts `values` as a [`PodArray`](crate::PodArray) (read back with
    /// `get::<PodArray<T>>` or as a `Vec<T>`), copying them once: the
    /// connector gets the array's header and the values as two parts
    /// ([`Connector::put_parts`]), so `file` and `shm` (and its arena) copy
    /// the values straight into the file or arena, and other connectors
    /// into one buffer they keep.
    pub fn put_slice<T: bytemuck::Pod>(&self, values: &[T]) -> Result<Key> {
        let header = crate::pod::header_for::<T>(values.len());
        let payload: &[u8] = bytemuck::cast_slice(values);
        self.instrumented(Op::Put, None, |span| {
            let key = self.inner.connector.put_parts(&[&header, payload])?;
            span.record("key", tracing::field::display(&key));
            Ok((key, (header.len() + payload.len()) as u64))
        })
    }

    /// Puts raw bytes (no encoding, no copy for `Bytes` or `Vec<u8>`).
    pub fn put_bytes(&self, data: impl Into<Bytes>) -> Result<Key> {
        self.put_bytes_with_hints(data, &PutHints::default())
    }

    /// Puts raw bytes, telling the connector `hints` (a `MultiConnector`
    /// routes by their tags; other connectors ignore them).
    pub fn put_bytes_with_hints(&self, data: impl Into<Bytes>, hints: &PutHints) -> Result<Key> {
        let data = data.into();
        self.instrumented(Op::Put, None, |span| {
            let len = data.len() as u64;
            let key = self.inner.connector.put_hinted(data, hints)?;
            span.record("key", tracing::field::display(&key));
            Ok((key, len))
        })
    }

    /// Gets and decodes the value under `key`; `Ok(None)` if there is none.
    pub fn get<T: DeserializeOwned + 'static>(&self, key: &Key) -> Result<Option<T>> {
        self.get_bytes(key)?.map(|b| self.decode(b)).transpose()
    }

    /// The object's bytes if they can be had without waiting on I/O (a
    /// cache hit, an in-memory connector); `None` when a get would block.
    pub(crate) fn get_bytes_without_io(&self, key: &Key) -> Option<Result<Option<Bytes>>> {
        let in_memory = self.inner.connector.capabilities().in_memory;
        if !in_memory {
            // Through `get_bytes` so the hit is counted as any other.
            self.inner.cache.as_ref()?.get(key).ok()?;
        }
        Some(self.get_bytes(key))
    }

    /// [`get_bytes`](Self::get_bytes) of an object that must exist: a
    /// missing one is [`Error::NotFound`] naming this store and the key.
    pub(crate) fn get_existing_bytes(&self, key: &Key) -> Result<Bytes> {
        self.get_bytes(key)?.ok_or_else(|| Error::NotFound {
            store: self.name().to_owned(),
            key: key.to_string(),
        })
    }

    /// Gets the raw bytes under `key`, through the cache.
    pub fn get_bytes(&self, key: &Key) -> Result<Option<Bytes>> {
        self.instrumented(Op::Get, Some(key), |_| {
            let ticket = match self.inner.cache.as_ref().map(|c| c.get(key)) {
                Some(Ok(hit)) => {
                    let len = hit.len() as u64;
                    return Ok((Some(hit), len));
                }
                Some(Err(ticket)) => Some(ticket),
                None => None,
            };
            let data = self.inner.connector.get(key)?;
            if let (Some(cache), Some(ticket), Some(d)) = (&self.inner.cache, ticket, &data) {
                // Refused if an evict of this key ran since the miss: the
                // bytes may be of an object that is gone by now.
                cache.insert(key, d, ticket);
            }
            let len = data.as_ref().map_or(0, |d| d.len() as u64);
            Ok((data, len))
        })
    }

    /// Whether an object exists under `key`.
    pub fn exists(&self, key: &Key) -> Result<bool> {
        self.instrumented(Op::Exists, Some(key), |_| {
            if let Some(cache) = &self.inner.cache {
                if cache.contains(key) {
                    return Ok((true, 0));
                }
            }
            Ok((self.inner.connector.exists(key)?, 0))
        })
    }

    /// Evicts the object under `key` from the cache and the connector.
    pub fn evict(&self, key: &Key) -> Result<()> {
        self.instrumented(Op::Evict, Some(key), |_| {
            if let Some(cache) = &self.inner.cache {
                cache.invalidate(key);
            }
            let result = self.inner.connector.evict(key);
            // Again after the connector: a get that read the object before
            // it went may have cached it meanwhile, or may be about to (its
            // ticket is now stale).
            if let Some(cache) = &self.inner.cache {
                cache.invalidate(key);
            }
            result?;
            Ok(((), 0))
        })
    }

    /// Encodes and puts several values in one connector batch.
    pub fn put_batch<T: Serialize + 'static>(&self, values: &[T]) -> Result<Vec<Key>> {
        let data = values
            .iter()
            .map(|v| self.inner.codec.encode(v))
            .collect::<Result<Vec<Bytes>>>()?;
        self.instrumented(Op::PutBatch, None, |_| {
            let len = data.iter().map(|d| d.len() as u64).sum();
            Ok((self.inner.connector.put_batch(data)?, len))
        })
    }

    /// Gets and decodes several values in one connector batch.
    pub fn get_batch<T: DeserializeOwned + 'static>(&self, keys: &[Key]) -> Result<Vec<Option<T>>> {
        let data = self.instrumented(Op::GetBatch, None, |_| {
            let data = self.inner.connector.get_batch(keys)?;
            let len = data.iter().flatten().map(|d| d.len() as u64).sum();
            Ok((data, len))
        })?;
        data.into_iter()
            .map(|d| d.map(|b| self.decode(b)).transpose())
            .collect()
    }

    /// The connector as a deferrable one, or `Unsupported` naming `op`.
    pub(crate) fn deferrable(&self, op: &'static str) -> Result<&dyn crate::DeferrableConnector> {
        self.inner
            .connector
            .as_deferrable()
            .ok_or_else(|| Error::Unsupported {
                connector: self.inner.connector.kind().to_owned(),
                op,
            })
    }

    /// Stores `data` under a key from the connector's `new_key`.
    pub(crate) fn set_bytes(&self, key: &Key, data: Bytes) -> Result<()> {
        let connector = self.deferrable("set")?;
        self.instrumented(Op::Put, Some(key), |_| {
            let len = data.len() as u64;
            connector.set(key, data)?;
            Ok(((), len))
        })?;
        crate::wake::notify(self.name(), key);
        Ok(())
    }

    /// Evicts `key` on the process's reaper thread, for `Drop` code that
    /// must not wait on the network. A failure is logged (warn, with store,
    /// key and error). If the reaper's queue is full, evicts inline (with a
    /// warning) rather than drop the eviction or grow the queue.
    pub(crate) fn evict_in_background(&self, key: Key) {
        self.inner.pending.add();
        all_pending().add();
        let store = self.clone();
        let job = Box::new(move || {
            // Counted done even if the connector panics.
            let _done = Finished(&store);
            if let Err(e) = store.evict(&key) {
                tracing::warn!(store = store.name(), key = %key, error = %e,
                    "background eviction failed");
            }
        });
        if let Err(job) = Reaper::global().submit(job) {
            tracing::warn!(
                store = self.name(),
                "eviction queue full or reaper unavailable; evicting inline"
            );
            job();
        }
    }

    /// Waits up to `timeout` until every eviction this store handed to the
    /// background reaper (from dropped [`OwnedProxy`](crate::OwnedProxy)s,
    /// [`ScopeLifetime`](crate::ScopeLifetime)s and expired leases) has
    /// finished; [`Error::Timeout`] if some are still running then.
    pub fn flush_evictions(&self, timeout: Duration) -> Result<()> {
        if self.inner.pending.wait_idle(timeout) {
            Ok(())
        } else {
            Err(Error::Timeout {
                connector: self.inner.connector.kind().to_owned(),
                op: "flush pending evictions",
                after: timeout,
            })
        }
    }

    /// Closes the connector after flushing the store's pending background
    /// evictions (for up to [`CLOSE_FLUSH_TIMEOUT`]; evictions still
    /// pending then fail with [`Error::Closed`], and are logged). Later
    /// operations fail with [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        if let Err(e) = self.flush_evictions(CLOSE_FLUSH_TIMEOUT) {
            tracing::warn!(store = self.name(), error = %e,
                "closing with background evictions still pending");
        }
        if let Some(cache) = &self.inner.cache {
            cache.clear();
        }
        self.inner.connector.close()
    }
}

/// Marks one background eviction of a store finished when dropped.
struct Finished<'a>(&'a Store);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.inner.pending.done();
        all_pending().done();
    }
}

fn all_pending() -> &'static Outstanding {
    static ALL: Outstanding = Outstanding::new();
    &ALL
}

/// Waits up to `timeout` until every background eviction of every store in
/// this process has finished (call it before the process exits, so objects
/// of dropped owners are gone); [`Error::Timeout`] if some are still running.
pub fn flush_all_evictions(timeout: Duration) -> Result<()> {
    if all_pending().wait_idle(timeout) {
        Ok(())
    } else {
        Err(Error::Timeout {
            connector: "all stores".into(),
            op: "flush pending evictions",
            after: timeout,
        })
    }
}

fn registry() -> &'static RwLock<HashMap<String, Store>> {
    static REGISTRY: OnceLock<RwLock<HashMap<String, Store>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Registers `store` under its name so proxies resolved in this process use
/// it (and its connections and cache) instead of building a new one.
pub fn register_store(store: &Store) -> Result<()> {
    let mut map = registry().write().unwrap_or_else(|e| e.into_inner());
    if map.contains_key(store.name()) {
        return Err(Error::StoreExists(store.name().to_owned()));
    }
    map.insert(store.name().to_owned(), store.clone());
    Ok(())
}

/// The registered store named `name`.
pub fn get_store(name: &str) -> Option<Store> {
    registry()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned()
}

/// Removes the store named `name` from the registry and returns it.
pub fn unregister_store(name: &str) -> Option<Store> {
    registry()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(name)
}

/// The registered store of `config.name`, or a new one built from `config`
/// and registered.
pub fn get_or_create_store(config: &StoreConfig) -> Result<Store> {
    if let Some(store) = get_store(&config.name) {
        return Ok(store);
    }
    let store = Store::from_config(config)?;
    let mut map = registry().write().unwrap_or_else(|e| e.into_inner());
    // Another thread may have registered it while we built ours.
    Ok(map.entry(config.name.clone()).or_insert(store).clone())
}
