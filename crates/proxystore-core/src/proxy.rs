//! `Proxy<T>`: a small, serializable reference to an object in a store that
//! fetches and decodes the object on first use.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use once_cell::sync::OnceCell;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::key::Key;
use crate::store::{get_or_create_store, Store, StoreConfig};

/// Everything needed to resolve a proxy in any process: the store's config,
/// the key, and how to resolve.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProxyFactory {
    /// Store the object is in (name, connector config, codec).
    pub store: StoreConfig,
    /// The object's key.
    pub key: Key,
    /// Evict the object after the first resolution.
    #[serde(default)]
    pub evict: bool,
    /// Wait up to this many milliseconds for the object to appear (futures).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

impl ProxyFactory {
    /// A factory for `key` in the store described by `store`.
    pub fn new(store: StoreConfig, key: Key) -> Self {
        ProxyFactory {
            store,
            key,
            evict: false,
            wait_ms: None,
        }
    }

    /// Sets whether resolution evicts the object.
    pub fn evict_on_resolve(mut self, evict: bool) -> Self {
        self.evict = evict;
        self
    }

    /// Makes resolution wait up to `timeout` for the object to be set.
    pub fn wait_for(mut self, timeout: Duration) -> Self {
        self.wait_ms = Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// The store to resolve through: the registered store of that name, or
    /// one built from the config (and registered for the next proxies).
    pub fn store(&self) -> Result<Store> {
        get_or_create_store(&self.store)
    }

    /// Fetches and decodes the object.
    pub fn resolve<T: DeserializeOwned + 'static>(&self) -> Result<T> {
        let store = self.store()?;
        let data = match self.wait_ms {
            None => store.get_existing_bytes(&self.key)?,
            Some(ms) => crate::wait::poll_until_set(&store, &self.key, Duration::from_millis(ms))?,
        };
        let value = store.decode(data)?;
        if self.evict {
            store.evict(&self.key)?;
        }
        Ok(value)
    }
}

// Proxy constructors live here, not in store.rs, so the store module does
// not depend on the proxy module (which depends on the store).
impl Store {
    /// The factory a proxy of `key` in this store carries.
    pub(crate) fn factory(&self, key: Key) -> ProxyFactory {
        ProxyFactory::new(self.config(), key)
    }

    /// Puts `value` and returns a proxy of it.
    pub fn proxy<T: Serialize + 'static>(&self, value: &T) -> Result<Proxy<T>> {
        let key = self.put(value)?;
        Ok(Proxy::from_factory(self.factory(key)))
    }

    /// Puts `value` telling the connector `hints` (a `MultiConnector`
    /// routes by their tags) and returns a proxy of it.
    pub fn proxy_with_hints<T: Serialize + 'static>(
        &self,
        value: &T,
        hints: &crate::PutHints,
    ) -> Result<Proxy<T>> {
        let data = self.codec().encode(value)?;
        let key = self.put_bytes_with_hints(data, hints)?;
        Ok(Proxy::from_factory(self.factory(key)))
    }

    /// Puts `value` and returns a proxy that evicts the object after its
    /// first resolution (for objects read exactly once).
    pub fn proxy_evict_on_resolve<T: Serialize + 'static>(&self, value: &T) -> Result<Proxy<T>> {
        let key = self.put(value)?;
        Ok(Proxy::from_factory(
            self.factory(key).evict_on_resolve(true),
        ))
    }

    /// Puts several values in one batch and returns their proxies.
    pub fn proxy_batch<T: Serialize + 'static>(&self, values: &[T]) -> Result<Vec<Proxy<T>>> {
        let keys = self.put_batch(values)?;
        Ok(keys
            .into_iter()
            .map(|k| Proxy::from_factory(self.factory(k)))
            .collect())
    }

    /// A proxy of an object already in the store.
    pub fn proxy_from_key<T>(&self, key: Key) -> Proxy<T> {
        Proxy::from_factory(self.factory(key))
    }
}

/// A lazily resolved reference to a `T` in a store.
///
/// A proxy is tiny (store config + key) and serializes as its factory, so it
/// can be sent to another process and resolved there. The first use
/// ([`Deref`], [`resolve`](Self::resolve), [`resolve_async`](Self::resolve_async))
/// fetches and decodes the object once; later uses are free.
///
/// `Deref` panics if the object cannot be fetched (the message names store
/// and key); use [`resolve`](Self::resolve) to get the error instead.
pub struct Proxy<T> {
    factory: ProxyFactory,
    target: OnceCell<T>,
    _marker: PhantomData<fn() -> T>,
}

impl<T> Proxy<T> {
    /// An unresolved proxy built from a factory.
    pub fn from_factory(factory: ProxyFactory) -> Self {
        Proxy {
            factory,
            target: OnceCell::new(),
            _marker: PhantomData,
        }
    }

    /// The proxy's factory.
    pub fn factory(&self) -> &ProxyFactory {
        &self.factory
    }

    /// The object's key.
    pub fn key(&self) -> &Key {
        &self.factory.key
    }

    /// Whether the object has been fetched into this proxy.
    pub fn is_resolved(&self) -> bool {
        self.target.get().is_some()
    }
}

impl<T: DeserializeOwned + 'static> Proxy<T> {
    /// Fetches the object if that has not happened yet and returns it.
    pub fn resolve(&self) -> Result<&T> {
        self.target.get_or_try_init(|| self.factory.resolve())
    }

    /// The object, fetched if needed, moved out of the proxy.
    pub fn into_inner(self) -> Result<T> {
        match self.target.into_inner() {
            Some(value) => Ok(value),
            None => self.factory.resolve(),
        }
    }

    /// Resolves from async code without blocking the runtime: the fetch runs
    /// on a bounded blocking pool (tokio's with the `tokio` feature inside a
    /// runtime, else the process's shared pool of at most
    /// [`BLOCKING_THREADS`](crate::BLOCKING_THREADS) threads; more fetches
    /// queue) and this future waits for it. A future's proxy waits between
    /// polls without holding a pool thread.
    pub async fn resolve_async(&self) -> Result<&T>
    where
        T: Send,
    {
        if let Some(value) = self.target.get() {
            return Ok(value);
        }
        let value = self.factory.resolve_async::<T>().await?;
        // If another resolution won the race, keep its value.
        let _ = self.target.set(value);
        Ok(self.target.get().expect("target was just set"))
    }
}

impl<T: DeserializeOwned + 'static> Deref for Proxy<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self.resolve() {
            Ok(value) => value,
            Err(e) => panic!(
                "failed to resolve proxy of key {} in store '{}': {e}",
                self.factory.key, self.factory.store.name
            ),
        }
    }
}

impl<T: Clone> Clone for Proxy<T> {
    fn clone(&self) -> Self {
        Proxy {
            factory: self.factory.clone(),
            target: self.target.clone(),
            _marker: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Proxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("store", &self.factory.store.name)
            .field("key", &self.factory.key)
            .field("resolved", &self.is_resolved())
            .finish()
    }
}

impl<T> Serialize for Proxy<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.factory.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Proxy<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        ProxyFactory::deserialize(d).map(Proxy::from_factory)
    }
}
