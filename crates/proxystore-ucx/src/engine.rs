//! The UCX engine: one thread that owns a UCP context and worker and does
//! every UCX call, so the worker runs in UCX's cheapest (single-thread)
//! mode. Other threads talk to it through a command channel and wake it
//! with `ucp_worker_signal`; between commands it progresses the worker,
//! spinning briefly and then sleeping on the worker's event fd.
//!
//! Messages are UCP active messages (see `am`): id [`AM_REQUEST`] carries
//! requests to the data server, id [`AM_REPLY`] replies back to a client
//! connection; one-sided reads are in `rma`.

use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_core::{Error, Result};
use ucx_sys as sys;

use crate::am::{am_send, on_message, AmCallback};

/// AM id of requests to a data server.
pub(crate) const AM_REQUEST: u32 = 1;
/// AM id of replies to a client connection.
pub(crate) const AM_REPLY: u32 = 2;

/// How long the engine spins on an idle worker before sleeping.
const SPIN: Duration = Duration::from_micros(50);

/// A message as the peer layer sees it.
pub(crate) type Frames = Vec<Bytes>;

/// Where a request came from: the endpoint to answer on and the client's
/// connection id.
pub struct ReplyTo {
    pub(crate) ep: Ep,
    pub(crate) conn: u64,
}

/// A UCP endpoint handle, only ever used on the engine thread.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Ep(pub(crate) sys::ucp_ep_h);

// SAFETY: the handle is an opaque pointer that other threads only carry
// back to the engine thread, which alone passes it to UCX.
unsafe impl Send for Ep {}

/// A raw worker handle for `ucp_worker_signal`, which UCX allows from any
/// thread.
#[derive(Clone, Copy)]
struct WorkerHandle(sys::ucp_worker_h);

// SAFETY: only `ucp_worker_signal` is called through it from other threads,
// and only while the engine (which destroys the worker last) is alive.
unsafe impl Send for WorkerHandle {}
// SAFETY: as above; the handle is never dereferenced in Rust.
unsafe impl Sync for WorkerHandle {}

enum Command {
    Expose {
        data: Bytes,
        done: Sender<Option<Bytes>>,
    },
    Read {
        owner: Vec<u8>,
        desc: Bytes,
        done: Sender<Result<Bytes>>,
    },
    Connect {
        address: Vec<u8>,
        done: Sender<Result<u64>>,
    },
    Send {
        ep: u64,
        conn: u64,
        frames: Frames,
        done: Sender<Result<()>>,
    },
    Reply {
        to: ReplyTo,
        frames: Frames,
    },
    Close {
        ep: u64,
    },
    Shutdown,
}

/// What the AM callbacks need; owned by the engine thread, alive until the
/// worker is destroyed.
pub(crate) struct Callbacks {
    pub(crate) worker: sys::ucp_worker_h,
    pub(crate) requests: Sender<(ReplyTo, Frames)>,
    pub(crate) routes: Arc<Mutex<HashMap<u64, Sender<Frames>>>>,
}

/// The engine handle other threads hold.
pub(crate) struct Engine {
    commands: Mutex<Sender<Command>>,
    worker: WorkerHandle,
    address: Vec<u8>,
    requests: Mutex<Option<Receiver<(ReplyTo, Frames)>>>,
    routes: Arc<Mutex<HashMap<u64, Sender<Frames>>>>,
    next_conn: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) fn status_error(what: &str, status: sys::ucs_status_t) -> Error {
    // SAFETY: ucs_status_string returns a static C string for any status.
    let text = unsafe { std::ffi::CStr::from_ptr(sys::ucs_status_string(status)) };
    let reason = format!("{what}: {}", text.to_string_lossy());
    if status == sys::ucs_status_t_UCS_ERR_UNREACHABLE
        || status == sys::ucs_status_t_UCS_ERR_CONNECTION_RESET
        || status == sys::ucs_status_t_UCS_ERR_ENDPOINT_TIMEOUT
        || status == sys::ucs_status_t_UCS_ERR_CANCELED
    {
        return Error::PeerUnreachable {
            address: "ucx peer".into(),
            reason,
        };
    }
    Error::Transport {
        connector: "ucx".into(),
        source: reason.into(),
    }
}

/// `UCS_PTR_IS_ERR`: status pointers are small negative numbers.
pub(crate) fn ptr_status(p: sys::ucs_status_ptr_t) -> Option<sys::ucs_status_t> {
    let v = p as isize;
    (v < 0 && v >= sys::ucs_status_t_UCS_ERR_LAST as isize).then_some(v as sys::ucs_status_t)
}

impl Engine {
    /// Starts the engine thread: context, worker, AM handlers.
    pub(crate) fn start() -> Result<Arc<Engine>> {
        let (cmd_tx, cmd_rx) = channel();
        let (req_tx, req_rx) = channel();
        let routes: Arc<Mutex<HashMap<u64, Sender<Frames>>>> = Arc::default();
        let (ready_tx, ready_rx) = channel::<Result<(WorkerHandle, Vec<u8>)>>();
        let thread_routes = Arc::clone(&routes);
        let thread = std::thread::Builder::new()
            .name("proxystore-ucx".into())
            .spawn(move || run(cmd_rx, req_tx, thread_routes, ready_tx))
            .map_err(|e| Error::io("spawning the UCX engine thread", e))?;
        let (worker, address) = ready_rx.recv().map_err(|_| Error::Transport {
            connector: "ucx".into(),
            source: "UCX engine died at start".into(),
        })??;
        Ok(Arc::new(Engine {
            commands: Mutex::new(cmd_tx),
            worker,
            address,
            requests: Mutex::new(Some(req_rx)),
            routes,
            next_conn: AtomicU64::new(1),
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// This worker's UCP address.
    pub(crate) fn address(&self) -> &[u8] {
        &self.address
    }

    /// The stream of incoming requests (once: for the data server).
    pub(crate) fn take_requests(&self) -> Option<Receiver<(ReplyTo, Frames)>> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn submit(&self, cmd: Command) -> Result<()> {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(cmd)
            .map_err(|_| Error::Closed {
                connector: "ucx".into(),
            })?;
        // SAFETY: the worker outlives every Engine handle (destroyed by the
        // engine thread after Shutdown, which only Drop sends).
        unsafe { sys::ucp_worker_signal(self.worker.0) };
        Ok(())
    }

    /// Opens an endpoint to the worker at `address`; returns its id.
    pub(crate) fn connect(&self, address: Vec<u8>, timeout: Duration) -> Result<u64> {
        let (done, rx) = channel();
        self.submit(Command::Connect { address, done })?;
        rx.recv_timeout(timeout).map_err(|_| Error::Timeout {
            connector: "ucx".into(),
            op: "connect",
            after: timeout,
        })?
    }

    /// A new connection id whose replies arrive on the returned receiver.
    pub(crate) fn open_route(&self) -> (u64, Receiver<Frames>) {
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
        let _ = self.submit(Command::Close { ep });
    }

    /// Sends a request on `ep` for connection `conn`, waiting for local
    /// completion (the buffers are free again) at most `timeout`.
    pub(crate) fn send(&self, ep: u64, conn: u64, frames: Frames, timeout: Duration) -> Result<()> {
        let (done, rx) = channel();
        self.submit(Command::Send {
            ep,
            conn,
            frames,
            done,
        })?;
        rx.recv_timeout(timeout).map_err(|_| Error::Timeout {
            connector: "ucx".into(),
            op: "send",
            after: timeout,
        })?
    }

    /// A one-sided read descriptor for `data` (registered on first use), or
    /// `None` if UCX could not register it.
    pub(crate) fn expose(&self, data: Bytes, timeout: Duration) -> Option<Bytes> {
        let (done, rx) = channel();
        self.submit(Command::Expose { data, done }).ok()?;
        rx.recv_timeout(timeout).ok().flatten()
    }

    /// Reads what `desc` describes from the worker at `owner`, one-sided.
    pub(crate) fn read(&self, owner: Vec<u8>, desc: Bytes, timeout: Duration) -> Result<Bytes> {
        let (done, rx) = channel();
        self.submit(Command::Read { owner, desc, done })?;
        rx.recv_timeout(timeout).map_err(|_| Error::Timeout {
            connector: "ucx".into(),
            op: "one-sided read",
            after: timeout,
        })?
    }

    /// Answers a request.
    pub(crate) fn reply(&self, to: ReplyTo, frames: Frames) -> Result<()> {
        self.submit(Command::Reply { to, frames })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.submit(Command::Shutdown);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// The engine thread.
fn run(
    commands: Receiver<Command>,
    requests: Sender<(ReplyTo, Frames)>,
    routes: Arc<Mutex<HashMap<u64, Sender<Frames>>>>,
    ready: Sender<Result<(WorkerHandle, Vec<u8>)>>,
) {
    // SAFETY: every UCX call below happens on this thread, on handles this
    // thread created, in the order UCX documents (init, worker, handlers,
    // progress, close endpoints, destroy worker, cleanup).
    unsafe {
        let (context, worker) = match init() {
            Ok(cw) => cw,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let callbacks = Box::new(Callbacks {
            worker,
            requests,
            routes,
        });
        let arg = (&*callbacks as *const Callbacks)
            .cast_mut()
            .cast::<c_void>();
        for (id, cb) in [
            (AM_REQUEST, on_message::<AM_REQUEST> as AmCallback),
            (AM_REPLY, on_message::<AM_REPLY> as AmCallback),
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
            let st = sys::ucp_worker_set_am_recv_handler(worker, &param);
            if st != sys::ucs_status_t_UCS_OK {
                let _ = ready.send(Err(status_error("ucp_worker_set_am_recv_handler", st)));
                sys::ucp_worker_destroy(worker);
                sys::ucp_cleanup(context);
                return;
            }
        }
        let mut addr_ptr: *mut sys::ucp_address_t = ptr::null_mut();
        let mut addr_len = 0usize;
        let st = sys::ucp_worker_get_address(worker, &mut addr_ptr, &mut addr_len);
        if st != sys::ucs_status_t_UCS_OK {
            let _ = ready.send(Err(status_error("ucp_worker_get_address", st)));
            sys::ucp_worker_destroy(worker);
            sys::ucp_cleanup(context);
            return;
        }
        let address = std::slice::from_raw_parts(addr_ptr.cast::<u8>(), addr_len).to_vec();
        sys::ucp_worker_release_address(worker, addr_ptr);
        let _ = ready.send(Ok((WorkerHandle(worker), address)));

        let mut rma = crate::rma::Rma::new(context, worker);
        let mut eps: HashMap<u64, Ep> = HashMap::new();
        let mut next_ep = 1u64;
        let mut idle_since: Option<Instant> = None;
        'outer: loop {
            loop {
                match commands.try_recv() {
                    Ok(Command::Shutdown) | Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        break 'outer
                    }
                    Ok(Command::Expose { data, done }) => {
                        let _ = done.send(rma.expose(data));
                    }
                    Ok(Command::Read { owner, desc, done }) => {
                        idle_since = None;
                        rma.read(owner, desc, done);
                    }
                    Ok(cmd) => {
                        idle_since = None;
                        handle(worker, cmd, &mut eps, &mut next_ep);
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                }
            }
            if sys::ucp_worker_progress(worker) > 0 {
                idle_since = None;
                continue;
            }
            rma.sweep();
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < SPIN {
                continue;
            }
            // Sleep until network activity or a command's signal; arm says
            // BUSY when events are already pending.
            if sys::ucp_worker_arm(worker) == sys::ucs_status_t_UCS_OK {
                sys::ucp_worker_wait(worker);
            }
        }
        rma.shutdown();
        for (_, ep) in eps.drain() {
            close_ep(worker, ep);
        }
        // Let the closes and any last sends finish.
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline && sys::ucp_worker_progress(worker) > 0 {}
        sys::ucp_worker_destroy(worker);
        drop(callbacks);
        sys::ucp_cleanup(context);
    }
}

/// Creates the context (AM, RMA, wakeup) and a single-threaded worker.
unsafe fn init() -> Result<(sys::ucp_context_h, sys::ucp_worker_h)> {
    // SAFETY: plain UCX setup calls with initialized parameter
    // structs; failures release what was created.
    unsafe {
        let mut config: *mut sys::ucp_config_t = ptr::null_mut();
        let st = sys::ucp_config_read(ptr::null(), ptr::null(), &mut config);
        if st != sys::ucs_status_t_UCS_OK {
            return Err(status_error(
                "ucp_config_read (check UCX_* environment variables)",
                st,
            ));
        }
        let params = sys::ucp_params_t {
            field_mask: sys::ucp_params_field_UCP_PARAM_FIELD_FEATURES as u64,
            features: (sys::ucp_feature_UCP_FEATURE_AM
                | sys::ucp_feature_UCP_FEATURE_RMA
                | sys::ucp_feature_UCP_FEATURE_WAKEUP) as u64,
            ..Default::default()
        };
        let mut context: sys::ucp_context_h = ptr::null_mut();
        let st = sys::ucp_init_version(
            sys::UCP_API_MAJOR,
            sys::UCP_API_MINOR,
            &params,
            config,
            &mut context,
        );
        sys::ucp_config_release(config);
        if st != sys::ucs_status_t_UCS_OK {
            return Err(status_error("ucp_init", st));
        }
        let wparams = sys::ucp_worker_params_t {
            field_mask: sys::ucp_worker_params_field_UCP_WORKER_PARAM_FIELD_THREAD_MODE as u64,
            thread_mode: sys::ucs_thread_mode_t_UCS_THREAD_MODE_SINGLE,
            ..Default::default()
        };
        let mut worker: sys::ucp_worker_h = ptr::null_mut();
        let st = sys::ucp_worker_create(context, &wparams, &mut worker);
        if st != sys::ucs_status_t_UCS_OK {
            sys::ucp_cleanup(context);
            return Err(status_error("ucp_worker_create", st));
        }
        Ok((context, worker))
    }
}

/// Runs one command on the engine thread.
unsafe fn handle(
    worker: sys::ucp_worker_h,
    cmd: Command,
    eps: &mut HashMap<u64, Ep>,
    next_ep: &mut u64,
) {
    // SAFETY: called only on the engine thread with its live
    // worker; endpoint handles come from `eps`, which this thread owns.
    unsafe {
        match cmd {
            Command::Connect { address, done } => {
                // Peer failure detection first; transports without it (shared
                // memory in UCX 1.13) refuse, and then the endpoint is made
                // without it: request timeouts still bound every wait.
                let result = create_ep(worker, &address, true)
                    .or_else(|_| create_ep(worker, &address, false));
                let _ = done.send(result.map(|ep| {
                    let id = *next_ep;
                    *next_ep += 1;
                    eps.insert(id, ep);
                    id
                }));
            }
            Command::Send {
                ep,
                conn,
                frames,
                done,
            } => match eps.get(&ep) {
                Some(&ep) => am_send(ep, AM_REQUEST, conn, frames, true, Some(done)),
                None => {
                    let _ = done.send(Err(Error::Closed {
                        connector: "ucx".into(),
                    }));
                }
            },
            Command::Reply { to, frames } => am_send(to.ep, AM_REPLY, to.conn, frames, false, None),
            Command::Close { ep } => {
                if let Some(ep) = eps.remove(&ep) {
                    close_ep(worker, ep);
                }
            }
            Command::Shutdown | Command::Expose { .. } | Command::Read { .. } => {}
        }
    }
}

pub(crate) unsafe fn create_ep(
    worker: sys::ucp_worker_h,
    address: &[u8],
    peer_errors: bool,
) -> Result<Ep> {
    let mut field_mask = sys::ucp_ep_params_field_UCP_EP_PARAM_FIELD_REMOTE_ADDRESS as u64;
    if peer_errors {
        field_mask |= (sys::ucp_ep_params_field_UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE
            | sys::ucp_ep_params_field_UCP_EP_PARAM_FIELD_ERR_HANDLER) as u64;
    }
    let params = sys::ucp_ep_params_t {
        field_mask,
        address: address.as_ptr().cast(),
        err_mode: sys::ucp_err_handling_mode_t_UCP_ERR_HANDLING_MODE_PEER,
        err_handler: sys::ucp_err_handler_t {
            cb: Some(on_ep_error),
            arg: ptr::null_mut(),
        },
        ..Default::default()
    };
    let mut ep: sys::ucp_ep_h = ptr::null_mut();
    // SAFETY: `address` is a worker address blob that outlives the call;
    // `worker` is this thread's live worker.
    let st = unsafe { sys::ucp_ep_create(worker, &params, &mut ep) };
    if st == sys::ucs_status_t_UCS_OK {
        Ok(Ep(ep))
    } else {
        Err(status_error("ucp_ep_create", st))
    }
}

/// A peer failed: its pending operations complete with errors (which the
/// callers see); the endpoint is closed when its connection is dropped.
unsafe extern "C" fn on_ep_error(_arg: *mut c_void, _ep: sys::ucp_ep_h, status: sys::ucs_status_t) {
    tracing::debug!(status, "ucx endpoint failed");
}

pub(crate) unsafe fn close_ep(_worker: sys::ucp_worker_h, ep: Ep) {
    let param = sys::ucp_request_param_t {
        op_attr_mask: sys::ucp_op_attr_t_UCP_OP_ATTR_FIELD_FLAGS,
        flags: sys::ucp_ep_close_flags_t_UCP_EP_CLOSE_FLAG_FORCE,
        ..Default::default()
    };
    // SAFETY: `ep` is a live endpoint of this thread's worker; a returned
    // request may be freed at once (UCX releases it on completion).
    unsafe {
        let req = sys::ucp_ep_close_nbx(ep.0, &param);
        if !req.is_null() && ptr_status(req).is_none() {
            sys::ucp_request_free(req);
        }
    }
}
