//! The UCX engine: a UCP context and worker behind one lock. Whoever holds
//! the lock may call UCX (the worker runs in serialized mode), so a thread
//! waiting for its own reply or read progresses the worker itself, with no
//! thread hop on the data path (what MPI libraries do). A background thread
//! progresses the worker when no caller does: it answers requests, finishes
//! sends and sweeps registrations, spinning briefly and then sleeping on the
//! worker's event fd.
//!
//! Messages are UCP active messages (see `am`): id [`AM_REQUEST`] carries
//! requests to the data server, id [`AM_REPLY`] replies back to a client
//! connection; one-sided reads are in `rma`. Requests are answered by the
//! installed [`InlineHandler`] right where progress delivered them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_core::{Error, Result};
use proxystore_peer::wire::Limits;
use ucx_sys as sys;

use crate::am::{am_send, on_message, AmCallback};
use crate::arena::{Arena, Context};
use crate::rma::Rma;
use crate::worker::{close_ep, connect_ep, init, status_error, Ep};

/// AM id of requests to a data server.
pub(crate) const AM_REQUEST: u32 = 1;
/// AM id of replies to a client connection.
pub(crate) const AM_REPLY: u32 = 2;
/// AM id of a reader's release of a one-sided read descriptor.
pub(crate) const AM_RELEASE: u32 = 3;

/// How long the background thread spins on an idle worker before sleeping.
const SPIN: Duration = Duration::from_micros(200);
/// How long a waiting caller keeps progressing the worker after the last
/// event before it hands progress back to the background thread and
/// blocks: short waits (a reply, a read) then never cross threads, long
/// ones (a dead peer) do not burn a core.
const CALLER_SPIN: Duration = Duration::from_micros(200);
/// Longest sleep of the background thread between checks of its stop flag
/// and registration sweeps.
const SLEEP_MAX: Duration = Duration::from_millis(100);

/// A message as the peer layer sees it.
pub(crate) type Frames = Vec<Bytes>;

/// Answers one request on the thread that progressed it; the second
/// argument registers a stored object for one-sided reads.
pub(crate) type InlineHandler =
    Box<dyn Fn(Frames, &mut dyn FnMut(&Bytes) -> Option<Bytes>) -> Option<Frames> + Send>;

/// Where replies for one client connection go (errors of its sends too).
pub(crate) type Routes = Mutex<HashMap<u64, Sender<Result<Frames>>>>;

/// Where a request came from: the endpoint to answer on and the client's
/// connection id.
pub struct ReplyTo {
    pub(crate) ep: Ep,
    pub(crate) conn: u64,
}

/// A raw worker handle for `ucp_worker_signal`, which UCX allows from any
/// thread.
#[derive(Clone, Copy)]
struct WorkerHandle(sys::ucp_worker_h);

// SAFETY: only `ucp_worker_signal` is called through it without the lock,
// and only while the worker is alive (`Engine::drop` destroys it after the
// progress thread has stopped).
unsafe impl Send for WorkerHandle {}
// SAFETY: as above; the handle is never dereferenced in Rust.
unsafe impl Sync for WorkerHandle {}

/// What the AM callbacks need. They run inside `ucp_worker_progress`, so
/// always under the engine lock; alive until the worker is destroyed.
pub(crate) struct Callbacks {
    pub(crate) worker: sys::ucp_worker_h,
    /// Requests delivered during the current progress call.
    pub(crate) inbox: RefCell<Vec<(ReplyTo, Frames)>>,
    /// Releases of read descriptors, from readers.
    pub(crate) releases: RefCell<Vec<Bytes>>,
    /// Requests with a larger frame are dropped before they are received.
    pub(crate) max_request: Cell<usize>,
    /// Replies (and one-sided reads) larger than this are refused before
    /// anything is allocated: the largest frame a client's limits allow.
    pub(crate) max_reply: Cell<usize>,
    pub(crate) routes: Arc<Routes>,
}

/// Everything that calls UCX; only touched under the lock.
struct State {
    /// Cleaned up when the arena's last slab is gone too.
    _context: Arc<Context>,
    worker: sys::ucp_worker_h,
    callbacks: Box<Callbacks>,
    eps: HashMap<u64, Ep>,
    next_ep: u64,
    rma: Rma,
    /// Answers requests where they are progressed; else they go to
    /// `requests` (a server loop over [`Engine::take_requests`]).
    server: Option<InlineHandler>,
    requests: Sender<(ReplyTo, Frames)>,
    /// Set once the worker is destroyed.
    closed: bool,
}

// SAFETY: the raw UCX handles and the RefCell in Callbacks are only used by
// the thread holding the mutex around State; UCX's serialized mode allows
// any one thread at a time.
unsafe impl Send for State {}

/// What the engine thread and handles share.
struct Shared {
    state: Mutex<State>,
    worker: WorkerHandle,
    efd: i32,
    callers: AtomicUsize,
    /// Threads blocked on a completion only the background thread can
    /// bring (they stopped progressing themselves).
    waiting: AtomicUsize,
    /// Whether this worker answers requests (then it must be progressed
    /// even when no one waits).
    serving: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
}

/// The engine handle other threads hold.
pub(crate) struct Engine {
    shared: Arc<Shared>,
    address: Vec<u8>,
    requests: Mutex<Option<Receiver<(ReplyTo, Frames)>>>,
    routes: Arc<Routes>,
    arena: Arc<Arena>,
    next_conn: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn frame_limit(limits: &Limits) -> usize {
    usize::try_from(limits.max_frame()).unwrap_or(usize::MAX)
}

fn closed() -> Error {
    Error::Closed {
        connector: "ucx".into(),
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the background thread must progress the worker now (else it
    /// naps: a worker that only makes requests is progressed by its callers).
    fn needs_progress(&self) -> bool {
        self.serving.load(Ordering::SeqCst) || self.waiting.load(Ordering::SeqCst) > 0
    }

    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
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

impl Engine {
    /// Creates the context (AM, RMA, wakeup) and worker and starts the
    /// background progress thread.
    pub(crate) fn start() -> Result<Arc<Engine>> {
        let routes: Arc<Routes> = Arc::default();
        let (req_tx, req_rx) = channel();
        // SAFETY: fresh handles from `init`; the AM handlers get a pointer
        // to the boxed Callbacks, which lives in State until after the
        // worker is destroyed.
        let (state, address, efd, arena) = unsafe {
            let (context, worker) = init()?;
            let context = Arc::new(Context(context));
            let arena = Arena::new(Arc::clone(&context));
            let callbacks = Box::new(Callbacks {
                worker,
                inbox: RefCell::new(Vec::new()),
                releases: RefCell::new(Vec::new()),
                max_request: Cell::new(usize::MAX),
                // Raised by each client connection's limits.
                max_reply: Cell::new(0),
                routes: Arc::clone(&routes),
            });
            let mut state = State {
                rma: Rma::new(context.0, worker, Arc::clone(&arena)),
                _context: context,
                worker,
                callbacks,
                eps: HashMap::new(),
                next_ep: 1,
                server: None,
                requests: req_tx,
                closed: false,
            };
            match state.setup() {
                Ok((address, efd)) => (state, address, efd, arena),
                Err(e) => {
                    state.teardown();
                    return Err(e);
                }
            }
        };
        let worker = WorkerHandle(state.worker);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            worker,
            efd,
            callers: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            serving: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("proxystore-ucx".into())
            .spawn(move || run(&thread_shared))
            .map_err(|e| {
                // SAFETY: no other user of the state exists yet.
                unsafe { shared.lock().teardown() };
                Error::io("spawning the UCX progress thread", e)
            })?;
        let _ = shared.thread.set(thread.thread().clone());
        Ok(Arc::new(Engine {
            shared,
            address,
            requests: Mutex::new(Some(req_rx)),
            routes,
            arena,
            next_conn: AtomicU64::new(1),
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// This worker's UCP address.
    pub(crate) fn address(&self) -> &[u8] {
        &self.address
    }

    /// The stream of incoming requests, for a server loop of its own
    /// (once; not after [`Engine::serve`]).
    pub(crate) fn take_requests(&self) -> Option<Receiver<(ReplyTo, Frames)>> {
        let taken = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if taken.is_some() {
            self.shared.serving.store(true, Ordering::SeqCst);
            self.shared.wake();
        }
        taken
    }

    /// Answers requests with `handler` wherever the worker is progressed
    /// (once; not after [`Engine::take_requests`]). Requests with a frame
    /// over `max_frame` bytes are dropped unread.
    pub(crate) fn serve(&self, handler: InlineHandler, max_frame: u64) -> Result<()> {
        if self.take_requests().is_none() {
            return Err(Error::Config(
                "this UCX worker already has a data server".into(),
            ));
        }
        let mut st = self.shared.lock();
        st.server = Some(handler);
        st.callbacks
            .max_request
            .set(usize::try_from(max_frame).unwrap_or(usize::MAX));
        Ok(())
    }

    /// Lets replies as large as `limits` allow arrive (the largest limits
    /// of this engine's clients count; one connector, one engine).
    pub(crate) fn allow_replies(&self, limits: &Limits) {
        let st = self.shared.lock();
        let max = st.callbacks.max_reply.get().max(frame_limit(limits));
        st.callbacks.max_reply.set(max);
    }

    /// Stops answering requests (they are dropped from now on).
    pub(crate) fn stop_serving(&self) {
        self.shared.lock().server = None;
        self.shared.serving.store(false, Ordering::SeqCst);
    }

    /// Opens an endpoint to the worker at `address`; returns its id.
    pub(crate) fn connect(&self, address: &[u8]) -> Result<u64> {
        let mut st = self.shared.lock();
        if st.closed {
            return Err(closed());
        }
        // SAFETY: under the lock, live worker.
        let ep = unsafe { st.create_ep_any(address)? };
        let id = st.next_ep;
        st.next_ep += 1;
        st.eps.insert(id, ep);
        Ok(id)
    }

    /// A new connection id whose replies (and send errors) arrive on the
    /// returned receiver.
    pub(crate) fn open_route(&self) -> (u64, Receiver<Result<Frames>>) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = channel();
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn, tx);
        (conn, rx)
    }

    /// Forgets a connection and closes its endpoint.
    pub(crate) fn close(&self, ep: u64, conn: u64) {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn);
        let mut st = self.shared.lock();
        if let Some(ep) = st.eps.remove(&ep) {
            if !st.closed {
                // SAFETY: a live endpoint of the live worker, under the lock.
                unsafe { close_ep(ep) };
            }
        }
    }

    /// Starts sending a request on `ep` for connection `conn`; the frames
    /// are kept alive until UCX is done with them, and a failure arrives as
    /// an error on the connection's route.
    pub(crate) fn send(&self, ep: u64, conn: u64, frames: Frames) -> Result<()> {
        let route = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&conn)
            .cloned();
        let st = self.shared.lock();
        let ep = match st.eps.get(&ep) {
            Some(&ep) if !st.closed => ep,
            _ => return Err(closed()),
        };
        // SAFETY: a live endpoint, under the lock.
        unsafe { am_send(ep, AM_REQUEST, conn, frames, true, route) };
        Ok(())
    }

    /// The next message on `rx` within `timeout`, progressing the worker
    /// on this thread while the wait is short.
    pub(crate) fn wait<T>(&self, rx: &Receiver<T>, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        {
            let caller = Caller::enter(&self.shared);
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
                    self.shared.waiting.fetch_add(1, Ordering::SeqCst);
                    drop(caller);
                    self.shared.wake();
                    break;
                }
                let guard = match self.shared.state.try_lock() {
                    Ok(g) => Some(g),
                    Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                    Err(TryLockError::WouldBlock) => None,
                };
                match guard {
                    Some(mut st) => {
                        // SAFETY: under the lock.
                        if unsafe { st.progress() } > 0 {
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
        self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
        got
    }

    /// A one-sided read descriptor for `data` (registered on first use), or
    /// `None` if UCX could not register it.
    pub(crate) fn expose(&self, data: Bytes) -> Option<Bytes> {
        let mut st = self.shared.lock();
        if st.closed {
            return None;
        }
        st.rma.expose(data)
    }

    /// `data` copied into registered memory (see `arena`), or `None`.
    pub(crate) fn stage(&self, data: &Bytes) -> Option<Bytes> {
        let slab = match self.arena.take(data.len()) {
            Some(slab) => slab,
            None => {
                let st = self.shared.lock();
                if st.closed {
                    return None;
                }
                // SAFETY: under the lock.
                unsafe { self.arena.map(data.len())? }
            }
        };
        Some(self.arena.fill(slab, data))
    }

    /// Reads what `desc` describes from the worker at `owner`, one-sided.
    pub(crate) fn read(&self, owner: Vec<u8>, desc: Bytes, timeout: Duration) -> Result<Bytes> {
        let (done, rx) = channel();
        {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(closed());
            }
            let max = st.callbacks.max_reply.get();
            st.rma.read(owner, desc, max, done);
        }
        let out = self.wait(&rx, timeout).unwrap_or(Err(Error::Timeout {
            connector: "ucx".into(),
            op: "one-sided read",
            after: timeout,
        }));
        // Send the read's release now, not at the next progress: the owner
        // reuses the object's slab once it is released and evicted.
        if let Ok(mut st) = self.shared.state.try_lock() {
            // SAFETY: under the lock.
            unsafe { st.progress() };
        }
        out
    }

    /// Answers a request taken from [`Engine::take_requests`].
    pub(crate) fn reply(&self, to: ReplyTo, frames: Frames) -> Result<()> {
        let st = self.shared.lock();
        if st.closed {
            return Err(closed());
        }
        // SAFETY: the endpoint UCX gave with the request, under the lock.
        unsafe { am_send(to.ep, AM_REPLY, to.conn, frames, false, None) };
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // SAFETY: the worker is alive until the teardown below.
        unsafe { sys::ucp_worker_signal(self.shared.worker.0) };
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.thread().unpark();
            let _ = t.join();
        }
        // SAFETY: the progress thread has exited; we hold the lock.
        unsafe { self.shared.lock().teardown() };
    }
}

/// The background progress thread.
fn run(shared: &Shared) {
    let mut idle_since: Option<Instant> = None;
    while !shared.stop.load(Ordering::Acquire) {
        if shared.callers.load(Ordering::SeqCst) > 0 {
            std::thread::park_timeout(SLEEP_MAX);
            // Callers just left and will likely be back: one pass, then
            // sleep rather than spin beside them.
            idle_since = Instant::now().checked_sub(SPIN);
            continue;
        }
        // SAFETY: under the lock.
        if unsafe { shared.lock().progress() } > 0 {
            idle_since = None;
            continue;
        }
        if !shared.needs_progress() {
            shared.lock().rma.sweep();
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
        let armed = {
            let mut st = shared.lock();
            st.rma.sweep();
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
}

impl State {
    /// Registers the AM handlers; returns the worker address and event fd.
    unsafe fn setup(&mut self) -> Result<(Vec<u8>, i32)> {
        let arg = (&*self.callbacks as *const Callbacks)
            .cast_mut()
            .cast::<c_void>();
        // SAFETY: live worker; `arg` outlives it (see Engine::start).
        unsafe {
            for (id, cb) in [
                (AM_REQUEST, on_message::<AM_REQUEST> as AmCallback),
                (AM_REPLY, on_message::<AM_REPLY> as AmCallback),
                (AM_RELEASE, on_message::<AM_RELEASE> as AmCallback),
            ] {
                let param = sys::ucp_am_handler_param_t {
                    field_mask: (sys::ucp_am_handler_param_field_UCP_AM_HANDLER_PARAM_FIELD_ID
                        | sys::ucp_am_handler_param_field_UCP_AM_HANDLER_PARAM_FIELD_CB
                        | sys::ucp_am_handler_param_field_UCP_AM_HANDLER_PARAM_FIELD_ARG)
                        as u64,
                    id,
                    flags: 0,
                    cb: Some(cb),
                    arg,
                };
                let st = sys::ucp_worker_set_am_recv_handler(self.worker, &param);
                if st != sys::ucs_status_t_UCS_OK {
                    return Err(status_error("ucp_worker_set_am_recv_handler", st));
                }
            }
            let mut efd = -1;
            let st = sys::ucp_worker_get_efd(self.worker, &mut efd);
            if st != sys::ucs_status_t_UCS_OK {
                return Err(status_error("ucp_worker_get_efd", st));
            }
            let mut addr_ptr: *mut sys::ucp_address_t = ptr::null_mut();
            let mut addr_len = 0usize;
            let st = sys::ucp_worker_get_address(self.worker, &mut addr_ptr, &mut addr_len);
            if st != sys::ucs_status_t_UCS_OK {
                return Err(status_error("ucp_worker_get_address", st));
            }
            let address = std::slice::from_raw_parts(addr_ptr.cast::<u8>(), addr_len).to_vec();
            sys::ucp_worker_release_address(self.worker, addr_ptr);
            Ok((address, efd))
        }
    }

    /// Progresses the worker once and answers the requests it delivered;
    /// returns how many events there were.
    unsafe fn progress(&mut self) -> usize {
        if self.closed {
            return 0;
        }
        // SAFETY: live worker, under the lock (the caller's contract).
        let mut events = unsafe { sys::ucp_worker_progress(self.worker) } as usize;
        let releases = std::mem::take(&mut *self.callbacks.releases.borrow_mut());
        for msg in &releases {
            self.rma.release(msg);
        }
        self.rma.send_releases();
        let inbox = std::mem::take(&mut *self.callbacks.inbox.borrow_mut());
        events += inbox.len() + releases.len();
        for (to, frames) in inbox {
            match &self.server {
                Some(handler) => {
                    let rma = &mut self.rma;
                    if let Some(reply) = handler(frames, &mut |d| rma.expose(d.clone())) {
                        // SAFETY: the endpoint UCX gave with the request.
                        unsafe { am_send(to.ep, AM_REPLY, to.conn, reply, false, None) };
                    }
                }
                None => {
                    let _ = self.requests.send((to, frames));
                }
            }
        }
        events
    }

    /// An endpoint with peer-failure detection, or without it where the
    /// transports refuse it (shared memory in UCX 1.13): request timeouts
    /// still bound every wait.
    unsafe fn create_ep_any(&mut self, address: &[u8]) -> Result<Ep> {
        // SAFETY: live worker, under the lock.
        unsafe { connect_ep(self.worker, address) }
    }

    /// Releases every UCX resource; idempotent.
    unsafe fn teardown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.server = None;
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
