//! Who progresses the worker, and when. The worker sits behind one lock
//! (UCX's serialized mode): a thread waiting for its own reply or read
//! progresses it itself, with no thread hop on the data path (what MPI
//! libraries do); a background thread progresses it when no caller does,
//! answering requests, finishing sends and sweeping registrations, spinning
//! briefly and then sleeping on the worker's event fd. Requests and
//! releases a progress call delivers are handled after the lock is let go,
//! so a handler may call the engine (register memory) itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_peer::rma::Expose;
use ucx_sys as sys;

use crate::am::{am_send, Callbacks, Frames, ReplyTo, AM_REPLY};
use crate::arena::{Arena, Context, IDLE_MAX};
use crate::rma::Rma;
use crate::worker::{close_ep, Ep};

/// How long the background thread spins on an idle worker before sleeping.
const SPIN: Duration = Duration::from_micros(200);
/// How long a waiting caller keeps progressing the worker after the last
/// event before it hands progress back to the background thread and
/// blocks: short waits (a reply, a read) then never cross threads, long
/// ones (a dead peer) do not burn a core.
const CALLER_SPIN: Duration = Duration::from_micros(200);
/// Longest sleep of the background thread between checks of its stop flag
/// and registration sweeps.
pub(crate) const SLEEP_MAX: Duration = Duration::from_millis(100);
/// Free slabs are trimmed at most this often.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Answers one request (outside the engine lock; the reply is sent under it).
pub(crate) type InlineHandler = Arc<dyn Fn(Frames) -> Option<Frames> + Send + Sync>;

/// A raw worker handle for `ucp_worker_signal`, which UCX allows from any
/// thread.
#[derive(Clone, Copy)]
pub(crate) struct WorkerHandle(pub(crate) sys::ucp_worker_h);

// SAFETY: only `ucp_worker_signal` is called through it without the lock,
// and only while the worker is alive (`Engine::drop` destroys it after the
// progress thread has stopped).
unsafe impl Send for WorkerHandle {}
// SAFETY: as above; the handle is never dereferenced in Rust.
unsafe impl Sync for WorkerHandle {}

/// Everything that calls UCX; only touched under the lock.
pub(crate) struct State {
    /// Cleaned up when the arena's last slab is gone too.
    pub(crate) context: Arc<Context>,
    pub(crate) worker: sys::ucp_worker_h,
    pub(crate) callbacks: Box<Callbacks>,
    pub(crate) eps: HashMap<u64, Ep>,
    pub(crate) next_ep: u64,
    pub(crate) rma: Rma,
    pub(crate) arena: Arc<Arena>,
    last_trim: Instant,
    /// Set once the worker is destroyed.
    pub(crate) closed: bool,
}

// SAFETY: the raw UCX handles and the RefCell in Callbacks are only used by
// the thread holding the mutex around State; UCX's serialized mode allows
// any one thread at a time.
unsafe impl Send for State {}

/// What one progress call delivered, handled after the lock is let go.
#[derive(Default)]
pub(crate) struct Delivered {
    requests: Vec<(ReplyTo, Frames)>,
    releases: Vec<Bytes>,
}

impl State {
    pub(crate) fn new(
        context: Arc<Context>,
        worker: sys::ucp_worker_h,
        callbacks: Box<Callbacks>,
        arena: Arc<Arena>,
    ) -> Self {
        State {
            rma: Rma::new(worker),
            context,
            worker,
            callbacks,
            eps: HashMap::new(),
            next_ep: 1,
            arena,
            last_trim: Instant::now(),
            closed: false,
        }
    }

    /// Progresses the worker once; returns how many events there were and
    /// what arrived for the server.
    ///
    /// # Safety
    /// Call under the engine lock (this state's).
    pub(crate) unsafe fn progress(&mut self) -> (usize, Delivered) {
        if self.closed {
            return (0, Delivered::default());
        }
        // SAFETY: live worker, under the lock (the caller's contract).
        let events = unsafe { sys::ucp_worker_progress(self.worker) } as usize;
        let delivered = Delivered {
            requests: std::mem::take(&mut *self.callbacks.inbox.borrow_mut()),
            releases: std::mem::take(&mut *self.callbacks.releases.borrow_mut()),
        };
        let n = events + delivered.requests.len() + delivered.releases.len();
        (n, delivered)
    }

    /// Unmaps free slabs beyond the arena's bound, at most once a second.
    fn trim(&mut self) {
        if self.closed || self.last_trim.elapsed() < TRIM_EVERY {
            return;
        }
        self.last_trim = Instant::now();
        // Under the lock (we hold `&mut State`), as unmapping needs.
        self.arena.trim(IDLE_MAX);
    }

    /// Releases every UCX resource; idempotent.
    ///
    /// # Safety
    /// Call under the lock, after the progress thread has stopped.
    pub(crate) unsafe fn teardown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // SAFETY: handles of this state, released once, in UCX's order.
        unsafe {
            self.rma.shutdown();
            for (_, ep) in self.eps.drain() {
                close_ep(ep);
            }
            // Let the closes and any last sends finish.
            let deadline = Instant::now() + Duration::from_millis(200);
            while Instant::now() < deadline && sys::ucp_worker_progress(self.worker) > 0 {}
            sys::ucp_worker_destroy(self.worker);
        }
    }
}

/// What the engine thread and handles share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) worker: WorkerHandle,
    pub(crate) efd: i32,
    callers: AtomicUsize,
    /// Threads blocked on a completion only the background thread can
    /// bring (they stopped progressing themselves).
    waiting: AtomicUsize,
    /// Whether this worker answers requests (then it must be progressed
    /// even when no one waits).
    pub(crate) serving: AtomicBool,
    pub(crate) stop: AtomicBool,
    /// Set when the engine was dropped on the progress thread itself: the
    /// thread tears the worker down when its loop ends.
    pub(crate) teardown_on_exit: AtomicBool,
    pub(crate) thread: OnceLock<Thread>,
    /// Answers requests; requests arriving without one are dropped.
    pub(crate) server: Mutex<Option<InlineHandler>>,
    /// Where releases of descriptors this worker handed out go.
    pub(crate) exposures: Mutex<Option<Arc<dyn Expose>>>,
}

impl Shared {
    pub(crate) fn new(state: State, efd: i32) -> Self {
        Shared {
            worker: WorkerHandle(state.worker),
            state: Mutex::new(state),
            efd,
            callers: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            serving: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            teardown_on_exit: AtomicBool::new(false),
            thread: OnceLock::new(),
            server: Mutex::new(None),
            exposures: Mutex::new(None),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Progresses the worker once under `guard`, lets the lock go and
    /// handles what arrived; returns how many events there were.
    pub(crate) fn progress(&self, mut guard: MutexGuard<'_, State>) -> usize {
        // SAFETY: under the lock: we hold its guard.
        let (events, delivered) = unsafe { guard.progress() };
        drop(guard);
        if !delivered.requests.is_empty() || !delivered.releases.is_empty() {
            self.handle(delivered);
        }
        events
    }

    /// Answers requests and passes releases on, outside the lock.
    fn handle(&self, delivered: Delivered) {
        if !delivered.releases.is_empty() {
            if let Some(e) = self.exposures() {
                for r in &delivered.releases {
                    e.release(r);
                }
            }
        }
        if delivered.requests.is_empty() {
            return;
        }
        let Some(handler) = self
            .server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return;
        };
        let replies: Vec<(ReplyTo, Frames)> = delivered
            .requests
            .into_iter()
            .filter_map(|(to, frames)| handler(frames).map(|reply| (to, reply)))
            .collect();
        if replies.is_empty() {
            return;
        }
        let st = self.lock();
        if st.closed {
            return;
        }
        for (to, reply) in replies {
            // SAFETY: the endpoint UCX gave with the request, under the
            // lock. It outlives the unlocked stretch since the request
            // arrived: UCX keeps the endpoints it makes for remote peers
            // until they are closed, and this engine never closes them (it
            // closes only its own, at teardown, which sets `closed`).
            unsafe { am_send(to.ep, AM_REPLY, to.conn, reply, false, None) };
        }
    }

    fn exposures(&self) -> Option<Arc<dyn Expose>> {
        self.exposures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Lets go of stale registrations and trims free slabs.
    fn sweep(&self) {
        if let Some(e) = self.exposures() {
            e.sweep();
        }
        self.lock().trim();
    }

    /// Whether the background thread must progress the worker now (else it
    /// naps: a worker that only makes requests is progressed by its callers).
    fn needs_progress(&self) -> bool {
        self.serving.load(Ordering::SeqCst) || self.waiting.load(Ordering::SeqCst) > 0
    }

    pub(crate) fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// The next message on `rx` within `timeout`, progressing the worker
    /// on this thread while the wait is short.
    pub(crate) fn wait<T>(&self, rx: &Receiver<T>, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        {
            let caller = Caller::enter(self);
            let mut last_event = Instant::now();
            loop {
                if let Ok(v) = rx.try_recv() {
                    return Some(v);
                }
                let now = Instant::now();
                if now >= deadline {
                    return None;
                }
                if now - last_event > CALLER_SPIN {
                    self.waiting.fetch_add(1, Ordering::SeqCst);
                    drop(caller);
                    self.wake();
                    break;
                }
                let guard = match self.state.try_lock() {
                    Ok(g) => Some(g),
                    Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                    Err(TryLockError::WouldBlock) => None,
                };
                match guard {
                    Some(st) => {
                        if self.progress(st) > 0 {
                            last_event = Instant::now();
                        }
                    }
                    None => std::hint::spin_loop(),
                }
            }
        }
        // Long wait: the background thread progresses, we sleep.
        let got = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        got
    }
}

/// Marks a thread as progressing the worker itself; the background thread
/// stays out of the way meanwhile and resumes when the last caller leaves.
struct Caller<'a>(&'a Shared);

impl<'a> Caller<'a> {
    fn enter(shared: &'a Shared) -> Self {
        shared.callers.fetch_add(1, Ordering::SeqCst);
        Caller(shared)
    }
}

impl Drop for Caller<'_> {
    fn drop(&mut self) {
        if self.0.callers.fetch_sub(1, Ordering::SeqCst) == 1 && self.0.needs_progress() {
            self.0.wake();
        }
    }
}

/// The background progress thread.
pub(crate) fn run(shared: &Shared) {
    let mut idle_since: Option<Instant> = None;
    while !shared.stop.load(Ordering::Acquire) {
        if shared.callers.load(Ordering::SeqCst) > 0 {
            std::thread::park_timeout(SLEEP_MAX);
            // Callers just left and will likely be back: one pass, then
            // sleep rather than spin beside them.
            idle_since = Instant::now().checked_sub(SPIN);
            continue;
        }
        if shared.progress(shared.lock()) > 0 {
            idle_since = None;
            continue;
        }
        if !shared.needs_progress() {
            shared.sweep();
            std::thread::park_timeout(SLEEP_MAX);
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() < SPIN {
            std::hint::spin_loop();
            continue;
        }
        // Arm under the lock, sleep without it until network activity, a
        // signal, or the next sweep; arm says BUSY when events are pending.
        shared.sweep();
        let armed = {
            let st = shared.lock();
            // SAFETY: under the lock, live worker.
            !st.closed && unsafe { sys::ucp_worker_arm(st.worker) } == sys::ucs_status_t_UCS_OK
        };
        if armed {
            let mut fd = libc::pollfd {
                fd: shared.efd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; the efd lives as long as the worker.
            unsafe { libc::poll(&mut fd, 1, SLEEP_MAX.as_millis() as libc::c_int) };
        }
    }
    if shared.teardown_on_exit.load(Ordering::Acquire) {
        // SAFETY: the engine is gone (it was dropped on this thread, see
        // `Engine::drop`), so no other thread uses the worker, and this
        // thread's own use of it ended with the loop.
        unsafe { shared.lock().teardown() };
    }
}
