//! The store from async code. `Connector` stays synchronous (every
//! transport here is blocking or progress-driven); these methods run the
//! blocking calls on a bounded pool and await them, so an async runtime's
//! threads never block on the network and a burst of calls never starts a
//! thread each. With the `tokio` feature and a tokio runtime current, the
//! pool is tokio's blocking pool; otherwise the process's shared pool
//! ([`BLOCKING_THREADS`](crate::BLOCKING_THREADS) threads at most).

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::key::Key;
use crate::proxy::ProxyFactory;
use crate::store::Store;
use crate::wait::poll_until_set_async;

/// Runs `f` on a blocking pool and waits for it without blocking.
pub(crate) async fn run_blocking<R, F>(f: F) -> Result<R>
where
    R: Send + 'static,
    F: FnOnce() -> Result<R> + Send + 'static,
{
    #[cfg(feature = "tokio")]
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        return match handle.spawn_blocking(f).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::Transport {
                connector: "tokio blocking pool".to_owned(),
                source: Box::new(e),
            }),
        };
    }
    crate::blocking::spawn_blocking(f)
        .map_err(|e| Error::io("starting a blocking-pool thread", e))?
        .await
}

impl Store {
    /// [`put`](Self::put) from async code: encodes and puts `value` on the
    /// blocking pool.
    pub async fn put_async<T: Serialize + Send + 'static>(&self, value: T) -> Result<Key> {
        let store = self.clone();
        run_blocking(move || store.put(&value)).await
    }

    /// [`put_bytes`](Self::put_bytes) from async code.
    pub async fn put_bytes_async(&self, data: impl Into<Bytes>) -> Result<Key> {
        let store = self.clone();
        let data = data.into();
        run_blocking(move || store.put_bytes(data)).await
    }

    /// [`get`](Self::get) from async code: fetches and decodes on the
    /// blocking pool.
    pub async fn get_async<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &Key,
    ) -> Result<Option<T>> {
        let store = self.clone();
        let key = key.clone();
        run_blocking(move || store.get(&key)).await
    }

    /// [`get_bytes`](Self::get_bytes) from async code.
    pub async fn get_bytes_async(&self, key: &Key) -> Result<Option<Bytes>> {
        let store = self.clone();
        let key = key.clone();
        run_blocking(move || store.get_bytes(&key)).await
    }
}

/// Largest object an async resolution decodes on the caller's thread when
/// its bytes are at hand (decoding more would hold an executor thread).
pub const INLINE_DECODE_MAX: usize = 64 << 10;

/// How much of a resolution can happen on the caller's thread.
enum Inline<T> {
    /// All of it.
    Value(T),
    /// The bytes are here; decoding them is long, so it goes to the pool.
    Decode(Store, Bytes),
    /// The fetch goes to the pool, with the store when it is open here
    /// (the job then neither clones the factory nor looks the store up).
    Pool(Option<Store>),
}

impl ProxyFactory {
    /// Resolves on this thread what waits on nothing: the store is already
    /// open here, the bytes come from memory (a cache hit, an in-memory
    /// connector), there is no eviction to send, and decoding is short.
    fn resolve_inline<T: DeserializeOwned + 'static>(&self) -> Result<Inline<T>> {
        if self.evict {
            return Ok(Inline::Pool(None));
        }
        // As `resolve` does: the registered store of that name.
        let Some(store) = crate::store::get_store(&self.store.name) else {
            return Ok(Inline::Pool(None));
        };
        match store.get_bytes_without_io(&self.key) {
            Some(Ok(Some(data))) if data.len() <= INLINE_DECODE_MAX => {
                store.decode(data).map(Inline::Value)
            }
            Some(Ok(Some(data))) => Ok(Inline::Decode(store, data)),
            Some(Err(e)) => Err(e),
            _ => Ok(Inline::Pool(Some(store))),
        }
    }

    /// [`resolve`](Self::resolve) from async code. A plain proxy's fetch
    /// runs on the blocking pool, except what waits on nothing: a small
    /// object (at most [`INLINE_DECODE_MAX`] bytes) from the store's cache
    /// or an in-memory connector is decoded on the caller's thread. A
    /// future's proxy waits between polls without holding a pool thread.
    pub async fn resolve_async<T: DeserializeOwned + Send + 'static>(&self) -> Result<T> {
        let Some(ms) = self.wait_ms else {
            return match self.resolve_inline()? {
                Inline::Value(value) => Ok(value),
                Inline::Decode(store, data) => run_blocking(move || store.decode(data)).await,
                Inline::Pool(Some(store)) => {
                    let key = self.key.clone();
                    run_blocking(move || store.decode(store.get_existing_bytes(&key)?)).await
                }
                Inline::Pool(None) => {
                    let factory = self.clone();
                    run_blocking(move || factory.resolve()).await
                }
            };
        };
        let store = self.store()?;
        let data = poll_until_set_async(&store, &self.key, Duration::from_millis(ms)).await?;
        let (key, evict) = (self.key.clone(), self.evict);
        run_blocking(move || {
            let value = store.decode(data)?;
            if evict {
                store.evict(&key)?;
            }
            Ok(value)
        })
        .await
    }
}
