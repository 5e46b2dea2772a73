//! Who reads the completion queue. The endpoint sits behind one lock: a
//! thread waiting for a message reads the CQ itself (no thread hop on the
//! data path), a background thread reads it otherwise, spinning briefly
//! and then sleeping: on the CQ's wait descriptor where the provider has
//! one (woken by traffic), else for at most 1 ms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use proxystore_core::Result;

use crate::fabric::{timeout, Waiter};
use crate::mr::{Arena, IDLE_MAX};
use crate::state::{Routes, State};
use crate::Message;

/// How long the background thread spins on an idle CQ before sleeping.
const SPIN: Duration = Duration::from_micros(200);
/// How long a waiting caller reads the CQ itself before leaving it to the
/// background thread (long waits then do not burn a core).
const CALLER_SPIN: Duration = Duration::from_micros(500);
/// Longest sleep of the background thread.
const SLEEP_MAX: Duration = Duration::from_millis(1);

/// What the background thread and the engine handles share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) routes: Routes,
    /// Largest announced message this engine accepts.
    pub(crate) limit: AtomicU64,
    callers: AtomicUsize,
    pub(crate) stop: AtomicBool,
    pub(crate) thread: OnceLock<Thread>,
    /// Slabs objects are staged in (trimmed by the background thread).
    pub(crate) arena: Arc<Arena>,
    /// Where the background thread sleeps when idle, if the provider gave
    /// a wait descriptor (else it parks).
    waiter: Option<Waiter>,
}

impl Shared {
    pub(crate) fn new(state: State, limit: u64, arena: Arc<Arena>) -> Self {
        Shared {
            waiter: state.fabric.waiter(),
            arena,
            state: Mutex::new(state),
            routes: Mutex::new(HashMap::new()),
            limit: AtomicU64::new(limit),
            callers: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the CQ once under `st`.
    pub(crate) fn progress(&self, st: &mut State) -> usize {
        st.progress(&self.routes, self.limit.load(Ordering::Relaxed))
    }

    /// The next message on `rx` within `after`, reading the CQ on this
    /// thread while the wait is short.
    pub(crate) fn wait(&self, rx: &Receiver<Result<Message>>, after: Duration) -> Result<Message> {
        let deadline = Instant::now() + after;
        self.callers.fetch_add(1, Ordering::SeqCst);
        let mut last_event = Instant::now();
        // Operations in flight when this thread last read the CQ (`None`:
        // it never did).
        let mut busy = None;
        let got = loop {
            if let Ok(m) = rx.try_recv() {
                break Some(m);
            }
            let now = Instant::now();
            if now >= deadline || now - last_event > CALLER_SPIN {
                break None;
            }
            let guard = match self.state.try_lock() {
                Ok(g) => Some(g),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            match guard {
                Some(mut st) => {
                    if self.progress(&mut st) > 0 {
                        last_event = Instant::now();
                    }
                    busy = Some(st.busy);
                }
                None => std::hint::spin_loop(),
            }
        };
        self.callers.fetch_sub(1, Ordering::SeqCst);
        match got {
            // With nothing in flight, not waking the background thread
            // saves a futex call and a context switch per message (1 KiB
            // gets over shm: 20 -> 8 us); it looks again within SLEEP_MAX.
            Some(m) if busy == Some(0) => m,
            Some(m) => {
                if let Some(t) = self.thread.get() {
                    t.unpark();
                }
                m
            }
            // Long wait: the background thread reads the CQ, we sleep.
            None => {
                if let Some(t) = self.thread.get() {
                    t.unpark();
                }
                rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .unwrap_or_else(|_| Err(timeout("wait for a message", after)))
            }
        }
    }
}

/// Stale registrations are swept and free slabs trimmed at most this often.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// Lets go of stale descriptors' registrations and of free slabs beyond
/// the arena's bound (outside the engine lock: closing a registration
/// needs none).
fn housekeeping(shared: &Shared) {
    let releases = shared.lock().releases.clone();
    if let Some(exposures) = releases {
        exposures.sweep();
    }
    shared.arena.trim(IDLE_MAX);
}

/// The background progress thread: runs until `stop`.
pub(crate) fn run(shared: &Shared) {
    let mut idle_since: Option<Instant> = None;
    let mut last_housekeeping = Instant::now();
    while !shared.stop.load(Ordering::Acquire) {
        if last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
            housekeeping(shared);
            last_housekeeping = Instant::now();
        }
        if shared.callers.load(Ordering::SeqCst) > 0 {
            std::thread::park_timeout(SLEEP_MAX);
            continue;
        }
        let events = {
            let mut st = shared.lock();
            shared.progress(&mut st)
        };
        if events > 0 {
            idle_since = None;
            continue;
        }
        // Not longer while transfers are in flight: tried (5 ms), and on 2
        // cores a third spinning thread made whole runs of 1 MiB gets over
        // tcp 2.3 ms instead of 0.35 ms.
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() < SPIN {
            std::hint::spin_loop();
        } else if let Some(waiter) = &shared.waiter {
            // Wakes on traffic: transfers that need this endpoint's
            // progress (rendezvous, emulated reads) do not wait a timer.
            waiter.sleep(SLEEP_MAX);
        } else {
            std::thread::park_timeout(SLEEP_MAX);
        }
    }
}
