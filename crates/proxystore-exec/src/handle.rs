//! A submitted task's handle: wait for it (blocking, bounded) or await it,
//! and get its result by value or as an owned proxy.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_core::{Error, Key, OwnedProxy, Result, Store};

use crate::task::TaskValue;

/// How a task's result came back.
#[derive(Debug)]
pub(crate) enum Done<R> {
    /// Moved from the task (same process).
    Value(R),
    /// Encoded inside the reply (another process).
    Bytes(Bytes),
    /// Put in the store by the task, under this key.
    Proxy(Key),
}

struct State<R> {
    outcome: Option<Result<Done<R>>>,
    waker: Option<Waker>,
    /// The handle is gone: a proxied result arriving now is evicted.
    abandoned: bool,
}

/// Where a task's outcome lands.
pub(crate) struct Slot<R> {
    state: Mutex<State<R>>,
    done: Condvar,
}

impl<R> Slot<R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(State {
                outcome: None,
                waker: None,
                abandoned: false,
            }),
            done: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the outcome and wakes the waiter; a proxied result nobody
    /// will take is evicted through `store`.
    pub(crate) fn complete(&self, outcome: Result<Done<R>>, store: &Store) {
        let mut state = self.lock();
        if state.abandoned {
            drop(state);
            if let Ok(Done::Proxy(f)) = outcome {
                evict_unwanted(store, f);
            }
            return;
        }
        state.outcome = Some(outcome);
        let waker = state.waker.take();
        drop(state);
        self.done.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

fn evict_unwanted(store: &Store, key: Key) {
    // Adopting and dropping evicts on the store's background reaper.
    if let Err(e) = store.adopt(store.proxy_from_key::<()>(key)) {
        tracing::warn!("a task result nobody waits for could not be evicted: {e}");
    }
}

/// A task's result: by value, or a proxy the caller owns (the object is
/// evicted when it is dropped).
#[derive(Debug)]
pub enum TaskOutput<R> {
    /// The result itself.
    Value(R),
    /// The result in the store.
    Proxy(OwnedProxy<R>),
}

impl<R: TaskValue> TaskOutput<R> {
    /// Whether the result came as a proxy.
    pub fn is_proxy(&self) -> bool {
        matches!(self, TaskOutput::Proxy(_))
    }

    /// The result, fetched if proxied (the object is then evicted).
    pub fn into_value(self) -> Result<R> {
        match self {
            TaskOutput::Value(v) => Ok(v),
            TaskOutput::Proxy(owned) => owned.into_inner(),
        }
    }
}

/// A submitted task. Wait for it with [`wait`](Self::wait) or `.await` it.
/// Dropping it unfinished abandons the result (a proxied one is evicted
/// when it arrives).
pub struct TaskHandle<R> {
    slot: Arc<Slot<R>>,
    store: Store,
    task: &'static str,
}

impl<R> TaskHandle<R> {
    pub(crate) fn new(slot: Arc<Slot<R>>, store: Store, task: &'static str) -> Self {
        TaskHandle { slot, store, task }
    }

    /// The task's name.
    pub fn task(&self) -> &'static str {
        self.task
    }

    /// Whether the task has finished.
    pub fn is_done(&self) -> bool {
        self.slot.lock().outcome.is_some()
    }
}

impl<R: TaskValue> TaskHandle<R> {
    /// Waits up to `timeout` for the result: [`Error::Timeout`] naming the
    /// task if it takes longer (the task still runs; its result is then
    /// abandoned), the task's own error if it failed.
    pub fn wait(self, timeout: Duration) -> Result<TaskOutput<R>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.slot.lock();
        loop {
            if let Some(outcome) = state.outcome.take() {
                drop(state);
                return self.output(outcome);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    connector: format!("task '{}'", self.task),
                    op: "waiting for the task's result",
                    after: timeout,
                });
            }
            state = self
                .slot
                .done
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn output(&self, outcome: Result<Done<R>>) -> Result<TaskOutput<R>> {
        Ok(match outcome? {
            Done::Value(v) => TaskOutput::Value(v),
            Done::Bytes(b) => TaskOutput::Value(self.store.decode(b)?),
            Done::Proxy(key) => {
                TaskOutput::Proxy(self.store.adopt(self.store.proxy_from_key(key))?)
            }
        })
    }
}

impl<R: TaskValue> Future for TaskHandle<R> {
    type Output = Result<TaskOutput<R>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.lock();
        match state.outcome.take() {
            Some(outcome) => {
                drop(state);
                Poll::Ready(self.output(outcome))
            }
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<R> Drop for TaskHandle<R> {
    fn drop(&mut self) {
        let mut state = self.slot.lock();
        state.abandoned = true;
        if let Some(Ok(Done::Proxy(f))) = state.outcome.take() {
            drop(state);
            evict_unwanted(&self.store, f);
        }
    }
}

impl<R> std::fmt::Debug for TaskHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("task", &self.task)
            .field("done", &self.is_done())
            .finish()
    }
}
