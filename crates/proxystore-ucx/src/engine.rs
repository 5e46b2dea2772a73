//! The UCX engine: a UCP context and worker behind one lock (see
//! `progress` for who progresses it), and the calls the socket layer makes:
//! client connections and their reply routes, the inline server, and the
//! one-sided memory calls (staging, registration, reads, releases).
//!
//! Messages are UCP active messages (see `am`): requests to the data
//! server, replies back to a client connection, releases of read
//! descriptors; one-sided reads are in `rma`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use proxystore_core::{Error, Result};
use proxystore_peer::rma::{Expose, Region, Registration};
use proxystore_peer::wire::Limits;
use ucx_sys as sys;

use crate::am::{am_send, set_handlers, Callbacks, Frames, Route, Routes, AM_REQUEST};
use crate::arena::{Arena, Context, UcpMemory};
use crate::progress::{run, InlineHandler, Shared, State};
use crate::worker::{address_and_efd, close_ep, init, mem_map};

/// The engine handle other threads hold.
pub(crate) struct Engine {
    shared: Arc<Shared>,
    address: Vec<u8>,
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

/// Memory registered in place for one-sided reads; unmapped when dropped
/// (under the engine lock while the engine lives).
struct MemReg {
    memh: sys::ucp_mem_h,
    context: Arc<Context>,
    shared: Weak<Shared>,
}

// SAFETY: the handle is only passed to UCX in `drop`, under the engine lock
// or after the engine (and so every other user of the context) is gone.
unsafe impl Send for MemReg {}
// SAFETY: as above; shared references never use the handle.
unsafe impl Sync for MemReg {}

impl Drop for MemReg {
    fn drop(&mut self) {
        let shared = self.shared.upgrade();
        let _guard = shared.as_ref().map(|s| s.lock());
        // SAFETY: mapped by this context, unmapped once; serialized with the
        // worker by the guard, or the engine is gone.
        unsafe { sys::ucp_mem_unmap(self.context.0, self.memh) };
    }
}

impl Engine {
    /// Creates the context (AM, RMA, wakeup) and worker and starts the
    /// background progress thread.
    pub(crate) fn start() -> Result<Arc<Engine>> {
        let routes: Arc<Routes> = Arc::default();
        // SAFETY: fresh handles from `init`; the AM handlers get a pointer
        // to the boxed Callbacks, which lives in State until after the
        // worker is destroyed.
        let (state, address, efd, arena) = unsafe {
            let (context, worker) = init()?;
            let context = Arc::new(Context(context));
            let arena = Arena::new(UcpMemory(Arc::clone(&context)));
            let callbacks = Box::new(Callbacks {
                worker,
                inbox: RefCell::new(Vec::new()),
                releases: RefCell::new(Vec::new()),
                max_request: std::cell::Cell::new(usize::MAX),
                // Raised by each client connection's limits.
                max_reply: std::cell::Cell::new(0),
                routes: Arc::clone(&routes),
            });
            let mut state = State::new(context, worker, callbacks, Arc::clone(&arena));
            let set_up =
                set_handlers(worker, &state.callbacks).and_then(|()| address_and_efd(worker));
            match set_up {
                Ok((address, efd)) => (state, address, efd, arena),
                Err(e) => {
                    state.teardown();
                    return Err(e);
                }
            }
        };
        let shared = Arc::new(Shared::new(state, efd));
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

    /// Answers requests with `handler` wherever the worker is progressed
    /// (once per engine). Requests with a frame over `max_frame` bytes are
    /// dropped unread.
    pub(crate) fn serve(&self, handler: InlineHandler, max_frame: u64) -> Result<()> {
        {
            let mut server = self.shared.server.lock().unwrap_or_else(|e| e.into_inner());
            if server.is_some() {
                return Err(Error::Config(
                    "this UCX worker already has a data server".into(),
                ));
            }
            *server = Some(handler);
        }
        self.shared
            .lock()
            .callbacks
            .max_request
            .set(usize::try_from(max_frame).unwrap_or(usize::MAX));
        self.shared.serving.store(true, Ordering::SeqCst);
        self.shared.wake();
        Ok(())
    }

    /// Releases of descriptors this worker hands out go to `exposures`,
    /// which the idle loop also sweeps.
    pub(crate) fn accept_releases(&self, exposures: Arc<dyn Expose>) {
        *self
            .shared
            .exposures
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(exposures);
    }

    /// Lets replies as large as `limits` allow arrive (the largest limits
    /// of this engine's clients count; one connector, one engine).
    pub(crate) fn allow_replies(&self, limits: &Limits) {
        let st = self.shared.lock();
        let max = st.callbacks.max_reply.get().max(frame_limit(limits));
        st.callbacks.max_reply.set(max);
    }

    /// Stops answering requests (they are dropped from now on) and lets go
    /// of the server's registrations.
    pub(crate) fn stop_serving(&self) {
        let server = self
            .shared
            .server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let exposures = self
            .shared
            .exposures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.shared.serving.store(false, Ordering::SeqCst);
        // Dropped here, outside every lock: registrations unmap under the
        // engine lock.
        drop((server, exposures));
    }

    /// Opens an endpoint to the worker at `address` (`peer` in errors);
    /// returns its id.
    pub(crate) fn connect(&self, address: &[u8], peer: &str) -> Result<u64> {
        let mut st = self.shared.lock();
        if st.closed {
            return Err(closed());
        }
        // SAFETY: under the lock, live worker.
        let ep = unsafe { crate::worker::connect_ep(st.worker, address, peer)? };
        let id = st.next_ep;
        st.next_ep += 1;
        st.eps.insert(id, ep);
        Ok(id)
    }

    /// A new connection id to `peer` whose replies (and send errors,
    /// naming `peer`) arrive on the returned receiver.
    pub(crate) fn open_route(&self, peer: &str) -> (u64, Receiver<Result<Frames>>) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = channel();
        let route = Route {
            tx,
            peer: peer.into(),
        };
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn, route);
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
        self.shared.wait(rx, timeout)
    }

    /// `data` copied into registered memory (see `arena`), or `None`.
    pub(crate) fn stage(&self, data: &Bytes) -> Option<Bytes> {
        self.arena.stage(data, |class| {
            let st = self.shared.lock();
            if st.closed {
                return None;
            }
            // SAFETY: under the lock.
            unsafe { self.arena.memory().map(class) }
        })
    }

    /// Registers `data` for one-sided reads: a staged object's slab is
    /// registered already; other memory is mapped in place.
    pub(crate) fn register(&self, data: &Bytes) -> Result<Registration> {
        if let Some(rkey) = self.arena.remote_key_of(data) {
            return Ok(Registration {
                remote_key: rkey,
                cheap: true,
                keep: Box::new(()),
            });
        }
        let st = self.shared.lock();
        if st.closed {
            return Err(closed());
        }
        // SAFETY: under the lock; the caller (the peer exposures) keeps
        // `data` alive as long as the registration.
        let mapped =
            unsafe { mem_map(st.context.0, Some(data.as_ptr()), data.len()) }.ok_or_else(|| {
                Error::Transport {
                    connector: "ucx".into(),
                    source: format!("ucp_mem_map of {} bytes failed", data.len()).into(),
                }
            })?;
        Ok(Registration {
            remote_key: Bytes::from(mapped.rkey),
            cheap: false,
            keep: Box::new(MemReg {
                memh: mapped.memh,
                context: Arc::clone(&st.context),
                shared: Arc::downgrade(&self.shared),
            }),
        })
    }

    /// Reads `region` from the worker at `owner` (`peer` in errors),
    /// one-sided.
    pub(crate) fn read(
        &self,
        owner: &[u8],
        peer: &str,
        region: Region,
        timeout: Duration,
    ) -> Result<Bytes> {
        let (done, rx) = channel();
        {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(closed());
            }
            st.rma.read(owner, peer, region, done);
        }
        self.wait(&rx, timeout).unwrap_or(Err(Error::Timeout {
            connector: "ucx".into(),
            op: "one-sided read",
            after: timeout,
        }))
    }

    /// Sends a release to the worker at `owner` and pushes it out now: the
    /// owner reuses the object's slab once it is released and evicted.
    pub(crate) fn send_release(&self, owner: &[u8], peer: &str, release: Bytes) {
        let mut st = self.shared.lock();
        if st.closed {
            return;
        }
        if let Err(e) = st.rma.send_release(owner, peer, release) {
            tracing::debug!(error = %e, "could not send a one-sided read release");
        }
        self.shared.progress(st);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_serving();
        self.shared.stop.store(true, Ordering::Release);
        // SAFETY: the worker is alive until the teardown below.
        unsafe { sys::ucp_worker_signal(self.shared.worker.0) };
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if t.thread().id() == std::thread::current().id() {
                // The last handle went on the progress thread itself (a
                // request handler it was running held the connector that
                // owned this engine). A thread cannot join itself, and the
                // worker is still in use further up this stack: the thread
                // tears it down when its loop ends (it sees `stop`).
                self.shared.teardown_on_exit.store(true, Ordering::Release);
                return;
            }
            t.thread().unpark();
            let _ = t.join();
        }
        // SAFETY: the progress thread has exited; we hold the lock.
        unsafe { self.shared.lock().teardown() };
    }
}
