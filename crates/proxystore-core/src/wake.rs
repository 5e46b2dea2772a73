//! Wakes the waiters of a future's key the moment it is set in the same
//! process, so in-process waiting costs no polling delay; waiters in other
//! processes still poll the connector (see `proxy::poll_until_set`).
//!
//! A process-wide table maps (store name, key) to a signal while someone
//! waits on it. `Store::set_bytes` bumps the signal's generation and wakes
//! blocked threads and async tasks alike. A spurious wake (two unrelated
//! stores sharing a name) costs one extra poll, nothing else.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::key::Key;

type TableKey = (String, Key);

fn table() -> MutexGuard<'static, HashMap<TableKey, Weak<Signal>>> {
    static TABLE: OnceLock<Mutex<HashMap<TableKey, Weak<Signal>>>> = OnceLock::new();
    TABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct State {
    generation: u64,
    wakers: Vec<Waker>,
}

#[derive(Default)]
struct Signal {
    state: Mutex<State>,
    changed: Condvar,
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Interest in one key: while it lives, a set of the key in this process
/// wakes it.
pub(crate) struct Watch {
    signal: Arc<Signal>,
    seen: u64,
    entry: TableKey,
}

/// Starts watching `key` of the store named `store`.
pub(crate) fn watch(store: &str, key: &Key) -> Watch {
    let entry = (store.to_owned(), key.clone());
    let mut table = table();
    let signal = match table.get(&entry).and_then(Weak::upgrade) {
        Some(s) => s,
        None => {
            let s = Arc::new(Signal::default());
            table.insert(entry.clone(), Arc::downgrade(&s));
            s
        }
    };
    drop(table);
    let seen = signal.lock().generation;
    Watch {
        signal,
        seen,
        entry,
    }
}

/// Tells the watchers of `key` in store `store` that it was set. Cheap when
/// nobody watches: one lookup.
pub(crate) fn notify(store: &str, key: &Key) {
    let signal = {
        let table = table();
        if table.is_empty() {
            return;
        }
        table
            .get(&(store.to_owned(), key.clone()))
            .and_then(Weak::upgrade)
    };
    let Some(signal) = signal else { return };
    let wakers = {
        let mut state = signal.lock();
        state.generation += 1;
        std::mem::take(&mut state.wakers)
    };
    signal.changed.notify_all();
    for w in wakers {
        w.wake();
    }
}

impl Watch {
    /// Blocks up to `timeout` or until the key is set; true if it was set
    /// since the last wait.
    pub(crate) fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.signal.lock();
        loop {
            if state.generation != self.seen {
                self.seen = state.generation;
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .signal
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The async form of [`wait`](Self::wait): resolves at `until` or when
    /// the key is set, whichever is first, with the value `wait` returns.
    pub(crate) fn pause(&mut self, until: Instant) -> Pause<'_> {
        Pause {
            watch: self,
            until,
            timer: None,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut table = table();
        // Only the table's weak reference and ours: the last watcher leaves.
        if Arc::strong_count(&self.signal) == 1 {
            table.remove(&self.entry);
        }
    }
}

/// Future of [`Watch::pause`].
pub(crate) struct Pause<'a> {
    watch: &'a mut Watch,
    until: Instant,
    /// The waker the timer wakes at `until`, once scheduled.
    timer: Option<Arc<Mutex<Waker>>>,
}

impl Future for Pause<'_> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = &mut *self;
        {
            let mut state = this.watch.signal.lock();
            if state.generation != this.watch.seen {
                this.watch.seen = state.generation;
                return Poll::Ready(true);
            }
            if Instant::now() >= this.until {
                return Poll::Ready(false);
            }
            if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                state.wakers.push(cx.waker().clone());
            }
        }
        match &this.timer {
            Some(slot) => {
                let mut w = slot.lock().unwrap_or_else(|e| e.into_inner());
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
            }
            None => {
                let slot = Arc::new(Mutex::new(cx.waker().clone()));
                let theirs = Arc::clone(&slot);
                let scheduled = crate::timer::schedule(
                    this.until,
                    Box::new(move || {
                        theirs
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .wake_by_ref();
                        None
                    }),
                );
                if scheduled.is_err() {
                    // No timer thread: end the pause now (the caller polls
                    // again) rather than wait for a wake that never comes.
                    return Poll::Ready(false);
                }
                this.timer = Some(slot);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key() -> Key {
        Key::random()
    }

    #[test]
    fn a_set_wakes_a_blocked_waiter_at_once() {
        let k = key();
        let mut w = watch("wake-test", &k);
        let k2 = k.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            notify("wake-test", &k2);
        });
        let start = Instant::now();
        assert!(w.wait(Duration::from_secs(10)));
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        // Consumed: the next wait times out.
        assert!(!w.wait(Duration::from_millis(5)));
    }

    #[test]
    fn other_keys_and_stores_do_not_wake() {
        let k = key();
        let mut w = watch("wake-a", &k);
        notify("wake-b", &k);
        notify("wake-a", &key());
        assert!(!w.wait(Duration::from_millis(10)));
    }

    #[test]
    fn the_last_watcher_leaves_the_table() {
        let k = key();
        let a = watch("wake-leave", &k);
        let b = watch("wake-leave", &k);
        let entry = ("wake-leave".to_owned(), k.clone());
        drop(a);
        assert!(table().contains_key(&entry));
        drop(b);
        assert!(!table().contains_key(&entry));
    }

    #[test]
    fn an_async_pause_ends_on_set_or_at_its_deadline() {
        let k = key();
        let mut w = watch("wake-async", &k);
        let start = Instant::now();
        let set = pollster::block_on(w.pause(start + Duration::from_millis(30)));
        assert!(!set && start.elapsed() >= Duration::from_millis(30));
        let k2 = k.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            notify("wake-async", &k2);
        });
        let set = pollster::block_on(w.pause(Instant::now() + Duration::from_secs(10)));
        assert!(set);
        t.join().unwrap();
    }
}
