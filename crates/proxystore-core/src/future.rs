//! `StoreFuture<T>`: a value a producer sets later and consumers wait on.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::proxy::{Proxy, ProxyFactory};
use crate::store::Store;
use crate::wait::poll_until_set;

impl Store {
    /// A future: a key whose value a producer sets later (with
    /// [`StoreFuture::set`]) and consumers wait on. Needs a connector that
    /// can name keys before their data exists.
    pub fn future<T>(&self) -> Result<StoreFuture<T>> {
        let key = self
            .deferrable("future (needs a deferrable connector)")?
            .new_key()?;
        Ok(StoreFuture::new(self.factory(key)))
    }
}

/// A handle to a key whose value is set later. Serializable, so the producer
/// and the consumers can be in different processes.
pub struct StoreFuture<T> {
    factory: ProxyFactory,
    _marker: PhantomData<fn() -> T>,
}

impl<T> StoreFuture<T> {
    pub(crate) fn new(factory: ProxyFactory) -> Self {
        StoreFuture {
            factory,
            _marker: PhantomData,
        }
    }

    /// The key the value will be set under.
    pub fn key(&self) -> &crate::Key {
        &self.factory.key
    }

    /// Whether the value has been set.
    pub fn done(&self) -> Result<bool> {
        self.factory.store()?.exists(&self.factory.key)
    }

    /// A proxy whose resolution waits up to `timeout` for the value.
    pub fn proxy(&self, timeout: Duration) -> Proxy<T> {
        Proxy::from_factory(self.factory.clone().wait_for(timeout))
    }
}

impl<T: Serialize + 'static> StoreFuture<T> {
    /// Sets the value (once).
    pub fn set(&self, value: &T) -> Result<()> {
        let store = self.factory.store()?;
        let data = store.codec().encode(value)?;
        store.set_bytes(&self.factory.key, data)
    }
}

impl<T: DeserializeOwned + 'static> StoreFuture<T> {
    /// Waits up to `timeout` for the value; [`crate::Error::Timeout`] if it
    /// is not set by then.
    pub fn result(&self, timeout: Duration) -> Result<T> {
        let store = self.factory.store()?;
        let data = poll_until_set(&store, &self.factory.key, timeout)?;
        store.decode(data)
    }
}

impl<T: DeserializeOwned + Send + 'static> StoreFuture<T> {
    /// [`result`](Self::result) from async code: waits up to `timeout`
    /// without holding a thread between polls, and wakes at once when the
    /// value is set in this process.
    pub async fn result_async(&self, timeout: Duration) -> Result<T> {
        self.factory.clone().wait_for(timeout).resolve_async().await
    }
}

impl<T> fmt::Debug for StoreFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreFuture")
            .field("store", &self.factory.store.name)
            .field("key", &self.factory.key)
            .finish()
    }
}

impl<T> Clone for StoreFuture<T> {
    fn clone(&self) -> Self {
        StoreFuture::new(self.factory.clone())
    }
}

impl<T> Serialize for StoreFuture<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.factory.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for StoreFuture<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        ProxyFactory::deserialize(d).map(StoreFuture::new)
    }
}
