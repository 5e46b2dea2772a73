//! Lifetimes: bind keys to a span of time or scope that evicts them all when
//! it ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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
        // Checked under the lock so a key is never added after `take` ran.
        if self.done.load(Ordering::Acquire) {
            return Err(Error::LifetimeEnded);
        }
        keys.push((store.clone(), key));
        Ok(())
    }

    fn done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Ends the lifetime and returns the keys that were bound.
    fn take(&self) -> Vec<(Store, Key)> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        self.done.store(true, Ordering::Release);
        std::mem::take(&mut *keys)
    }

    /// Ends the lifetime and evicts every key now; reports the first error
    /// after trying them all.
    fn evict_all(&self) -> Result<()> {
        evict_now(self.take())
    }

    /// Ends the lifetime and hands every key to the background reaper
    /// (failures are logged there), for code that must not block.
    fn evict_all_in_background(&self) {
        for (store, key) in self.take() {
            store.evict_in_background(key);
        }
    }
}

/// Evicts `keys` now; reports the first error after trying them all.
fn evict_now(keys: Vec<(Store, Key)>) -> Result<()> {
    let mut first_error = None;
    for (store, key) in keys {
        if let Err(e) = store.evict(&key) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Evicts its keys when closed or dropped: a lexical scope for objects.
///
/// [`close`](Lifetime::close) evicts at once and reports errors. Dropping
/// hands the evictions to the process's background reaper thread, so the
/// drop never waits on the network; failures are logged, and
/// [`Store::flush_evictions`] waits for them.
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
        self.bound.done()
    }
    fn close(&self) -> Result<()> {
        self.bound.evict_all()
    }
}

impl Drop for ScopeLifetime {
    fn drop(&mut self) {
        self.bound.evict_all_in_background();
    }
}

/// The process-wide lifetime: keys bound to it live until it is closed
/// explicitly (typically at the end of `main`), never earlier.
///
/// It is a [`ScopeLifetime`] that is never dropped, so the two share one
/// implementation.
#[derive(Debug)]
pub struct StaticLifetime {
    scope: ScopeLifetime,
}

impl StaticLifetime {
    /// The one static lifetime of this process.
    pub fn global() -> &'static StaticLifetime {
        static GLOBAL: OnceLock<StaticLifetime> = OnceLock::new();
        GLOBAL.get_or_init(|| StaticLifetime {
            scope: ScopeLifetime::new(),
        })
    }
}

impl Lifetime for StaticLifetime {
    fn add_key(&self, store: &Store, key: Key) -> Result<()> {
        self.scope.add_key(store, key)
    }
    fn done(&self) -> bool {
        self.scope.done()
    }
    fn close(&self) -> Result<()> {
        self.scope.close()
    }
}

#[derive(Debug)]
struct LeaseState {
    bound: Bound,
    /// Locked while the deadline is read and the lease ended, so an
    /// `extend` either lands before expiry or fails.
    deadline: Mutex<Instant>,
}

impl LeaseState {
    /// Run by the timer at the deadline: ends the lease unless it was
    /// extended (then returns the new deadline).
    fn expire(&self) -> Option<Instant> {
        let deadline = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        if self.bound.done() {
            return None;
        }
        if Instant::now() < *deadline {
            return Some(*deadline);
        }
        let keys = self.bound.take();
        drop(deadline);
        // The timer thread serves every lease; evictions go to the reaper.
        for (store, key) in keys {
            store.evict_in_background(key);
        }
        None
    }
}

/// Evicts its keys at a deadline unless extended. One timer thread per
/// process watches every lease's deadline; at expiry the evictions go to
/// the background reaper ([`Store::flush_evictions`] waits for them).
/// Dropping the handle does not end the lease.
#[derive(Debug, Clone)]
pub struct LeaseLifetime {
    state: Arc<LeaseState>,
}

impl LeaseLifetime {
    /// A lease that ends `duration` from now. Fails only if the process's
    /// timer thread cannot be started.
    pub fn new(duration: Duration) -> Result<Self> {
        let deadline = Instant::now() + duration;
        let state = Arc::new(LeaseState {
            bound: Bound::default(),
            deadline: Mutex::new(deadline),
        });
        let timer_state = Arc::clone(&state);
        crate::timer::schedule(deadline, Box::new(move || timer_state.expire()))
            .map_err(|e| Error::io("starting the lease timer thread", e))?;
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
        // The timer finds the later deadline when the old one comes.
        *deadline += by;
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

impl Lifetime for LeaseLifetime {
    fn add_key(&self, store: &Store, key: Key) -> Result<()> {
        self.state.bound.add(store, key.clone())?;
        // Where the backend can expire objects itself (Redis), it does so at
        // the same deadline, so the object goes even if this process dies.
        store.connector().expire_after(&key, self.remaining())?;
        Ok(())
    }
    fn done(&self) -> bool {
        self.state.bound.done()
    }
    fn close(&self) -> Result<()> {
        // Ended under the deadline lock, like expiry, so the two never both
        // take the keys; evicted after it, so the timer never waits on us.
        let keys = {
            let _deadline = self
                .state
                .deadline
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.state.bound.take()
        };
        evict_now(keys)
    }
}
