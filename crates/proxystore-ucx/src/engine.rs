//! The UCX engine: one thread that owns a UCP context and worker and does
//! every UCX call, so the worker runs in UCX's cheapest (single-thread)
//! mode. Other threads talk to it through a command channel and wake it
//! with `ucp_worker_signal`; between commands it progresses the worker,
//! spinning briefly and then sleeping on the worker's event fd.
//!
//! Messages are UCP active messages. Id [`AM_REQUEST`] carries requests to
//! the data server, id [`AM_REPLY`] replies back to a client connection.
//! The AM header is `[connection id u64][frame count u32][frame length u64
//! x n]`; the AM data is the frames back to back, sent as an iov straight
//! from their `Bytes` (no copy) and received into one buffer (eagerly or by
//! rendezvous, as UCX chooses) that the frames then slice.

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
    ep: Ep,
    conn: u64,
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
struct Callbacks {
    worker: sys::ucp_worker_h,
    requests: Sender<(ReplyTo, Frames)>,
    routes: Arc<Mutex<HashMap<u64, Sender<Frames>>>>,
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
            (AM_REQUEST, on_request as AmCallback),
            (AM_REPLY, on_reply as AmCallback),
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

/// What a send keeps alive until UCX is done with its buffers.
struct SendCtx {
    header: Vec<u8>,
    _frames: Frames,
    iov: Vec<sys::ucp_dt_iov_t>,
    done: Option<Sender<Result<()>>>,
}

/// `ucp_dt_make_contig(1)`: a contiguous buffer of bytes.
const CONTIG_BYTES: sys::ucp_datatype_t = ((1 as sys::ucp_datatype_t)
    << sys::ucp_dt_type_UCP_DATATYPE_SHIFT)
    | sys::ucp_dt_type_UCP_DATATYPE_CONTIG as sys::ucp_datatype_t;

/// Frame 0 (the peer head) rides in the AM header when at most this big,
/// so a reply's payload is the AM data alone and goes out contiguous: UCX
/// moves contiguous rendezvous data far faster than an iov.
const INLINE_HEAD_MAX: usize = 1024;

/// `[conn u64][frame count u32][flags u32][frame lengths u64 x n][frame 0
/// if inline]`; flag bit 0: frame 0 is inline (not in the AM data).
fn encode_header(conn: u64, frames: &Frames) -> (Vec<u8>, bool) {
    let inline = frames.first().is_some_and(|f| f.len() <= INLINE_HEAD_MAX);
    let mut h =
        Vec::with_capacity(16 + 8 * frames.len() + if inline { frames[0].len() } else { 0 });
    h.extend_from_slice(&conn.to_le_bytes());
    h.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    h.extend_from_slice(&u32::from(inline).to_le_bytes());
    for f in frames {
        h.extend_from_slice(&(f.len() as u64).to_le_bytes());
    }
    if inline {
        h.extend_from_slice(&frames[0]);
    }
    (h, inline)
}

/// A parsed header: connection id, frame lengths, and frame 0 when it came
/// inline (copied: the header is only valid during the callback).
struct Header {
    conn: u64,
    lens: Vec<usize>,
    inline: Option<Bytes>,
}

impl Header {
    /// Bytes the AM data must hold.
    fn data_len(&self) -> usize {
        let skip = usize::from(self.inline.is_some());
        self.lens.iter().skip(skip).sum()
    }
}

fn decode_header(h: &[u8]) -> Option<Header> {
    let conn = u64::from_le_bytes(h.get(0..8)?.try_into().ok()?);
    let n = u32::from_le_bytes(h.get(8..12)?.try_into().ok()?) as usize;
    let flags = u32::from_le_bytes(h.get(12..16)?.try_into().ok()?);
    let lens_end = 16usize.checked_add(n.checked_mul(8)?)?;
    let lens: Vec<usize> = (0..n)
        .map(|i| {
            u64::from_le_bytes(h[16 + 8 * i..24 + 8 * i].try_into().unwrap_or([0; 8])) as usize
        })
        .collect::<Vec<_>>();
    if h.len() < lens_end {
        return None;
    }
    let inline = if flags & 1 != 0 {
        let first = *lens.first()?;
        if h.len() != lens_end.checked_add(first)? {
            return None;
        }
        Some(Bytes::copy_from_slice(&h[lens_end..]))
    } else {
        if h.len() != lens_end {
            return None;
        }
        None
    };
    Some(Header { conn, lens, inline })
}

unsafe fn am_send(
    ep: Ep,
    id: u32,
    conn: u64,
    frames: Frames,
    want_reply: bool,
    done: Option<Sender<Result<()>>>,
) {
    let (header, inline) = encode_header(conn, &frames);
    let iov: Vec<sys::ucp_dt_iov_t> = frames
        .iter()
        .skip(usize::from(inline))
        .filter(|f| !f.is_empty())
        .map(|f| sys::ucp_dt_iov_t {
            buffer: f.as_ptr().cast_mut().cast(),
            length: f.len(),
        })
        .collect();
    let ctx = Box::into_raw(Box::new(SendCtx {
        header,
        _frames: frames,
        iov,
        done,
    }));
    // SAFETY: `ctx` stays allocated until UCX reports completion (callback)
    // or returns without a request (reclaimed below); the header and iov it
    // owns are what UCX reads.
    unsafe {
        let c = &*ctx;
        // One buffer (the usual reply: a payload) goes out contiguous, which
        // UCX's rendezvous handles zero-copy; several go as an iov.
        let (buffer, count, datatype): (*const c_void, usize, sys::ucp_datatype_t) =
            match c.iov.as_slice() {
                [] => (ptr::null(), 0, CONTIG_BYTES),
                [one] => (one.buffer.cast_const(), one.length, CONTIG_BYTES),
                many => (
                    many.as_ptr().cast(),
                    many.len(),
                    sys::ucp_dt_type_UCP_DATATYPE_IOV as sys::ucp_datatype_t,
                ),
            };
        let mut param = sys::ucp_request_param_t {
            op_attr_mask: sys::ucp_op_attr_t_UCP_OP_ATTR_FIELD_CALLBACK
                | sys::ucp_op_attr_t_UCP_OP_ATTR_FIELD_USER_DATA
                | sys::ucp_op_attr_t_UCP_OP_ATTR_FIELD_DATATYPE
                | sys::ucp_op_attr_t_UCP_OP_ATTR_FIELD_FLAGS,
            flags: if want_reply {
                sys::ucp_send_am_flags_UCP_AM_SEND_FLAG_REPLY
            } else {
                0
            },
            user_data: ctx.cast(),
            datatype,
            ..Default::default()
        };
        param.cb.send = Some(on_send_done);
        let st = sys::ucp_am_send_nbx(
            ep.0,
            id,
            c.header.as_ptr().cast(),
            c.header.len(),
            buffer,
            count,
            &param,
        );
        if st.is_null() {
            finish(*Box::from_raw(ctx), Ok(()));
        } else if let Some(status) = ptr_status(st) {
            finish(
                *Box::from_raw(ctx),
                Err(status_error("ucp_am_send_nbx", status)),
            );
        }
    }
}

fn finish(ctx: SendCtx, result: Result<()>) {
    if let Some(done) = ctx.done {
        let _ = done.send(result);
    }
}

unsafe extern "C" fn on_send_done(
    request: *mut c_void,
    status: sys::ucs_status_t,
    user_data: *mut c_void,
) {
    // SAFETY: `user_data` is the SendCtx leaked in `am_send` for exactly
    // this request; `request` is UCX's and is freed once.
    unsafe {
        let ctx = Box::from_raw(user_data.cast::<SendCtx>());
        let result = if status == sys::ucs_status_t_UCS_OK {
            Ok(())
        } else {
            Err(status_error("active message send", status))
        };
        finish(*ctx, result);
        sys::ucp_request_free(request);
    }
}

type AmCallback = unsafe extern "C" fn(
    *mut c_void,
    *const c_void,
    usize,
    *mut c_void,
    usize,
    *const sys::ucp_am_recv_param_t,
) -> sys::ucs_status_t;

/// A message being received by rendezvous.
struct RecvCtx {
    buf: Vec<u8>,
    kind: u32,
    head: Header,
    reply_ep: Ep,
    callbacks: *const Callbacks,
}

unsafe extern "C" fn on_request(
    arg: *mut c_void,
    header: *const c_void,
    header_len: usize,
    data: *mut c_void,
    len: usize,
    param: *const sys::ucp_am_recv_param_t,
) -> sys::ucs_status_t {
    // SAFETY: UCX passes back our Callbacks pointer and valid header/data
    // for the duration of the call.
    unsafe { on_am(AM_REQUEST, arg, header, header_len, data, len, param) }
}

unsafe extern "C" fn on_reply(
    arg: *mut c_void,
    header: *const c_void,
    header_len: usize,
    data: *mut c_void,
    len: usize,
    param: *const sys::ucp_am_recv_param_t,
) -> sys::ucs_status_t {
    // SAFETY: as in `on_request`.
    unsafe { on_am(AM_REPLY, arg, header, header_len, data, len, param) }
}

unsafe fn on_am(
    kind: u32,
    arg: *mut c_void,
    header: *const c_void,
    header_len: usize,
    data: *mut c_void,
    len: usize,
    param: *const sys::ucp_am_recv_param_t,
) -> sys::ucs_status_t {
    // SAFETY: pointers come from UCX for this call; `arg` is the
    // engine's Callbacks, alive until the worker is destroyed.
    unsafe {
        let callbacks = arg.cast::<Callbacks>().cast_const();
        let header = std::slice::from_raw_parts(header.cast::<u8>(), header_len);
        let Some(head) = decode_header(header) else {
            return sys::ucs_status_t_UCS_OK; // not ours: drop it
        };
        if head.data_len() != len {
            return sys::ucs_status_t_UCS_OK;
        }
        let p = &*param;
        let reply_ep =
            if p.recv_attr & sys::ucp_am_recv_attr_t_UCP_AM_RECV_ATTR_FIELD_REPLY_EP as u64 != 0 {
                p.reply_ep
            } else {
                ptr::null_mut()
            };
        let rndv = p.recv_attr & sys::ucp_am_recv_attr_t_UCP_AM_RECV_ATTR_FLAG_RNDV as u64 != 0;
        if !rndv {
            let buf = if len == 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(data.cast::<u8>(), len).to_vec()
            };
            deliver(&*callbacks, kind, head, Ep(reply_ep), buf);
            return sys::ucs_status_t_UCS_OK;
        }
        let ctx = Box::into_raw(Box::new(RecvCtx {
            buf: vec![0u8; len],
            kind,
            head,
            reply_ep: Ep(reply_ep),
            callbacks,
        }));
        let mut rparam = sys::ucp_request_param_t {
            op_attr_mask: sys::ucp_op_attr_t_UCP_OP_ATTR_FIELD_CALLBACK
                | sys::ucp_op_attr_t_UCP_OP_ATTR_FIELD_USER_DATA,
            user_data: ctx.cast(),
            ..Default::default()
        };
        rparam.cb.recv_am = Some(on_rndv_done);
        let st = sys::ucp_am_recv_data_nbx(
            (*callbacks).worker,
            data,
            (*ctx).buf.as_mut_ptr().cast(),
            len,
            &rparam,
        );
        if st.is_null() {
            let ctx = Box::from_raw(ctx);
            deliver(&*ctx.callbacks, ctx.kind, ctx.head, ctx.reply_ep, ctx.buf);
        } else if ptr_status(st).is_some() {
            drop(Box::from_raw(ctx));
        }
        sys::ucs_status_t_UCS_OK
    }
}

unsafe extern "C" fn on_rndv_done(
    request: *mut c_void,
    status: sys::ucs_status_t,
    _len: usize,
    user_data: *mut c_void,
) {
    // SAFETY: `user_data` is the RecvCtx leaked for this receive.
    unsafe {
        let ctx = Box::from_raw(user_data.cast::<RecvCtx>());
        if status == sys::ucs_status_t_UCS_OK {
            deliver(&*ctx.callbacks, ctx.kind, ctx.head, ctx.reply_ep, ctx.buf);
        }
        sys::ucp_request_free(request);
    }
}

/// Hands a complete message to the data server or to its connection.
fn deliver(callbacks: &Callbacks, kind: u32, head: Header, reply_ep: Ep, buf: Vec<u8>) {
    let conn = head.conn;
    let all = Bytes::from(buf);
    let mut frames = Vec::with_capacity(head.lens.len());
    let mut lens = head.lens.iter();
    if let Some(first) = head.inline {
        lens.next();
        frames.push(first);
    }
    let mut at = 0;
    for &l in lens {
        frames.push(all.slice(at..at + l));
        at += l;
    }
    if kind == AM_REQUEST {
        if !reply_ep.0.is_null() {
            let _ = callbacks
                .requests
                .send((ReplyTo { ep: reply_ep, conn }, frames));
        }
    } else if let Some(tx) = callbacks
        .routes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&conn)
    {
        let _ = tx.send(frames);
    }
}
