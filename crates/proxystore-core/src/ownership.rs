//! Ownership of stored objects, the Rust way: an [`OwnedProxy`] evicts its
//! object when dropped; a [`RefProxy`] borrows it and can neither evict it
//! nor outlive the owner.
//!
//! Python ProxyStore relies on the garbage collector for this; here it is
//! deterministic (the eviction is issued when the owner's scope ends, and
//! runs on the process's background reaper so the drop never blocks) and
//! checked by the borrow checker.

use std::fmt;
use std::ops::Deref;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

use crate::error::{Error, Result};
use crate::key::Key;
use crate::proxy::{Proxy, ProxyFactory};
use crate::store::Store;

impl Store {
    /// Puts `value` and returns a proxy that owns it: the object is evicted
    /// when the proxy is dropped.
    pub fn owned_proxy<T: Serialize + 'static>(&self, value: &T) -> Result<OwnedProxy<T>> {
        let key = self.put(value)?;
        Ok(OwnedProxy::new(self.clone(), self.factory(key)))
    }

    /// Takes ownership of `proxy`, a proxy of an object in this store that
    /// reached this process (a task's result, a released owner): the object
    /// is evicted when the returned owner is dropped. Whatever the proxy
    /// already resolved is kept. A proxy of another store (its name or its
    /// connector's kind differ) is [`Error::Config`]: evicting it through
    /// this store would miss the object.
    pub fn adopt<T>(&self, proxy: Proxy<T>) -> Result<OwnedProxy<T>> {
        let theirs = &proxy.factory().store;
        if theirs.name != self.name() || theirs.connector.kind != self.connector().kind() {
            return Err(Error::Config(format!(
                "store '{}' ({}) cannot adopt a proxy of store '{}' ({}): adopt it with the store it names",
                self.name(),
                self.connector().kind(),
                theirs.name,
                theirs.connector.kind
            )));
        }
        Ok(OwnedProxy {
            store: self.clone(),
            proxy: Some(proxy),
        })
    }
}

/// A proxy that owns its object: dropping it evicts the object.
///
/// The eviction on drop runs on the process's background reaper thread, so
/// a drop returns at once however slow the connector is; a failed eviction
/// is logged. [`Store::flush_evictions`] waits for pending evictions, and
/// [`Store::close`] flushes before closing.
///
/// It is not `Clone`, because copying can fail: [`try_clone`](Self::try_clone)
/// copies the object under a new key and returns a second owner. It is not
/// `Serialize` either; send a [`borrow`](Self::borrow) (the owner stays
/// responsible) or [`release`](Self::release) it first (nobody is).
pub struct OwnedProxy<T> {
    store: Store,
    proxy: Option<Proxy<T>>,
}

impl<T> OwnedProxy<T> {
    pub(crate) fn new(store: Store, factory: ProxyFactory) -> Self {
        OwnedProxy {
            store,
            proxy: Some(Proxy::from_factory(factory)),
        }
    }

    fn proxy(&self) -> &Proxy<T> {
        self.proxy.as_ref().expect("only taken by release or drop")
    }

    /// The object's key.
    pub fn key(&self) -> &Key {
        self.proxy().key()
    }

    /// Whether the object has been fetched into this owner.
    pub fn is_resolved(&self) -> bool {
        self.proxy().is_resolved()
    }

    /// A borrowed reference, usable (and serializable) while `self` lives.
    pub fn borrow(&self) -> RefProxy<'_, T> {
        RefProxy { owner: self }
    }

    /// Gives up ownership: the object is no longer evicted on drop.
    pub fn release(mut self) -> Proxy<T> {
        self.proxy.take().expect("only taken by release or drop")
    }

    /// Evicts the object now and reports any error (drop only logs them).
    pub fn evict(mut self) -> Result<()> {
        let proxy = self.proxy.take().expect("only taken by release or drop");
        self.store.evict(proxy.key())
    }
}

impl<T: DeserializeOwned + 'static> OwnedProxy<T> {
    /// Fetches the object if needed and returns it.
    pub fn resolve(&self) -> Result<&T> {
        self.proxy().resolve()
    }

    /// The object moved out of the store: fetched if needed, then evicted
    /// on the background reaper, as a drop does.
    pub fn into_inner(mut self) -> Result<T> {
        let proxy = self.proxy.take().expect("only taken by release or drop");
        let key = proxy.key().clone();
        let value = proxy.into_inner();
        self.store.evict_in_background(key);
        value
    }

    /// Copies the object under a new key and returns the owner of the copy.
    /// The bytes are copied as stored, without decoding.
    pub fn try_clone(&self) -> Result<Self> {
        let key = self.key();
        let data = self.store.get_existing_bytes(key)?;
        let new_key = self.store.put_bytes(data)?;
        let mut factory = self.proxy().factory().clone();
        factory.key = new_key;
        Ok(OwnedProxy::new(self.store.clone(), factory))
    }
}

// Dropping never waits on the network (drops happen anywhere, async tasks
// included): the eviction goes to the process's reaper thread. Use
// `evict` to evict now and see the error, `Store::flush_evictions` to wait.
impl<T> Drop for OwnedProxy<T> {
    fn drop(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            self.store.evict_in_background(proxy.key().clone());
        }
    }
}

impl<T: DeserializeOwned + 'static> Deref for OwnedProxy<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.proxy()
    }
}

impl<T> fmt::Debug for OwnedProxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedProxy")
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// A borrowed reference to an [`OwnedProxy`]'s object. It cannot evict the
/// object and cannot outlive its owner. It serializes as a plain proxy, for
/// a consumer that reads the object while the owner keeps it alive.
pub struct RefProxy<'a, T> {
    owner: &'a OwnedProxy<T>,
}

impl<T> RefProxy<'_, T> {
    /// The object's key.
    pub fn key(&self) -> &Key {
        self.owner.key()
    }
}

impl<T: DeserializeOwned + 'static> Deref for RefProxy<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.owner
    }
}

impl<T> Clone for RefProxy<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for RefProxy<'_, T> {}

impl<T> fmt::Debug for RefProxy<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefProxy").field("key", self.key()).finish()
    }
}

impl<T> Serialize for RefProxy<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.owner.proxy().serialize(s)
    }
}
