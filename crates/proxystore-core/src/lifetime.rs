//! Lifetimes: bind keys to a span of time or scope that evicts them all when
//! it ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::key::Key;
use crate::proxy::Proxy;
use crate::store::Store;

impl Store {
    /// Puts `value`, binds its key to `lifetime` (which evicts it when the
    /// lifetime ends) and returns a proxy of it.
    pub fn proxy_with_lifetime<T: serde::Serialize + 'static>(
        &self,
        value: &T,
        lifetime: &dyn Lifetime,
    ) -> Result<Proxy<T>> {
        if lifetime.done() {
            return Err(Error::LifetimeEnded);
        }
        let key = self.put(value)?;
        if let Err(e) = lifetime.add_key(self, key.clone()) {
            let _ = self.evict(&key);
            return Err(e);
        }
        Ok(Proxy::from_factory(self.factory(key)))
    }
}

/// Something that keys can be bound to and that evicts them when it ends.
pub trait Lifetime: Send + Sync {
    /// Binds `key` of `store`; it is evicted when the lifetime ends.
    fn add_key(&self, store: &Store, key: Key) -> Result<()>;
    /// Whether the lifetime has ended.
    fn done(&self) -> bool;
    /// Ends the lifetime now, evicting every bound key. Idempotent.
    fn close(&self) -> Result<()>;
}

/// Keys bound to one lifetime.
#[derive(Debug, Default)]
struct Bound {
    keys: Mutex<Vec<(Store, Key)>>,
    done: AtomicBool,
}

impl Bound {
    fn add(&self, store: &Store, key: Key) -> Result<()> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock so a key is never added after evict_all ran.
        if self.done.load(Ordering::Acquire) {
            return Err(Error::LifetimeEnded);
        }
        keys.push((store.clone(), key));
        Ok(())
    }

    /// Evicts every key; reports the first error after trying them all.
    fn evict_all(&self) -> Result<()> {
        let keys = {
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            self.done.store(true, Ordering::Release);
            std::mem::take(&mut *keys)
        };
        let mut first_error = None;
        for (store, key) in keys {
            if let Err(e) = store.evict(&key) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Evicts its keys when closed or dropped: a lexical scope for objects.
#[derive(Debug, Default)]
pub struct ScopeLifetime {
    bound: Bound,
}

impl ScopeLifetime {
    /// A new, open scope.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Lifetime for ScopeLifetime {
    fn add_key(&self, store: &Store, key: Key) -> Result<()> {
        self.bound.add(store, key)
    }
    fn done(&self) -> bool {
        self.bound.done.load(Ordering::Acquire)
    }
    fn close(&self) -> Result<()> {
        self.bound.evict_all()
    }
}

impl Drop for ScopeLifetime {
    fn drop(&mut self) {
        if let Err(e) = self.bound.evict_all() {
            tracing::warn!(error = %e, "scope lifetime could not evict all its keys");
        }
    }
}

#[derive(Debug)]
struct LeaseState {
    bound: Bound,
    deadline: Mutex<Instant>,
    changed: Condvar,
}

/// Evicts its keys at a deadline unless extended. A background thread
/// watches the deadline; dropping the handle does not end the lease.
#[derive(Debug, Clone)]
pub struct LeaseLifetime {
    state: Arc<LeaseState>,
}

impl LeaseLifetime {
    /// A lease that ends `duration` from now.
    pub fn new(duration: Duration) -> Result<Self> {
        let state = Arc::new(LeaseState {
            bound: Bound::default(),
            deadline: Mutex::new(Instant::now() + duration),
            changed: Condvar::new(),
        });
        let watcher = Arc::clone(&state);
        std::thread::Builder::new()
            .name("proxystore-lease".into())
            .spawn(move || watch_lease(&watcher))
            .map_err(|e| Error::io("spawning a lease watcher thread", e))?;
        Ok(LeaseLifetime { state })
    }

    /// Moves the deadline `by` later. Fails if the lease already ended.
    pub fn extend(&self, by: Duration) -> Result<()> {
        let mut deadline = self
            .state
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.done() {
            return Err(Error::LifetimeEnded);
        }
        *deadline += by;
        self.state.changed.notify_all();
        let ttl = deadline.saturating_duration_since(Instant::now());
        drop(deadline);
        let keys = self
            .state
            .bound
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (store, key) in keys {
            store.connector().expire_after(&key, ttl)?;
        }
        Ok(())
    }

    /// Time left before the lease ends (zero once ended).
    pub fn remaining(&self) -> Duration {
        let deadline = *self
            .state
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.done() {
            return Duration::ZERO;
        }
        deadline.saturating_duration_since(Instant::now())
    }
}

fn watch_lease(state: &LeaseState) {
    let mut deadline = state.deadline.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if state.bound.done.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        if now >= *deadline {
            drop(deadline);
            if let Err(e) = state.bound.evict_all() {
                tracing::warn!(error = %e, "lease lifetime could not evict all its keys");
            }
            return;
        }
        let wait = *deadline - now;
        deadline = state
            .changed
            .wait_timeout(deadline, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

impl Lifetime for LeaseLifetime {
    fn add_key(&self, store: &Store, key: Key) -> Result<()> {
        self.state.bound.add(store, key.clone())?;
        // Where the backend can expire objects itself (Redis), it does so at
        // the same deadline, so the object goes even if this process dies.
        store.connector().expire_after(&key, self.remaining())?;
        Ok(())
    }
    fn done(&self) -> bool {
        self.state.bound.done.load(Ordering::Acquire)
    }
    fn close(&self) -> Result<()> {
        let result = self.state.bound.evict_all();
        let _guard = self
            .state
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.state.changed.notify_all();
        result
    }
}

/// The process-wide lifetime: keys bound to it live until it is closed
/// explicitly (typically at the end of `main`), never earlier.
#[derive(Debug)]
pub struct StaticLifetime {
    bound: Bound,
}

impl StaticLifetime {
    /// The one static lifetime of this process.
    pub fn global() -> &'static StaticLifetime {
        static GLOBAL: OnceLock<StaticLifetime> = OnceLock::new();
        GLOBAL.get_or_init(|| StaticLifetime {
            bound: Bound::default(),
        })
    }
}

impl Lifetime for StaticLifetime {
    fn add_key(&self, store: &Store, key: Key) -> Result<()> {
        self.bound.add(store, key)
    }
    fn done(&self) -> bool {
        self.bound.done.load(Ordering::Acquire)
    }
    fn close(&self) -> Result<()> {
        self.bound.evict_all()
    }
}
