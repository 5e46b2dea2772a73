//! Active messages on the engine thread: sending a message as header +
//! contiguous or iov data, and receiving one (eager or rendezvous) into the
//! frames the peer layer reads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proxystore_core::Result;
use proxystore_peer::pool;
use ucx_sys as sys;

use crate::worker::{peer_error, ptr_status, status_error, Ep};

/// AM id of requests to a data server.
pub(crate) const AM_REQUEST: u32 = 1;
/// AM id of replies to a client connection.
pub(crate) const AM_REPLY: u32 = 2;
/// AM id of a reader's release of a one-sided read descriptor.
pub(crate) const AM_RELEASE: u32 = 3;

pub(crate) use proxystore_peer::Frames;

/// Where replies for one client connection go (errors of its sends too).
pub(crate) type Routes = Mutex<HashMap<u64, Route>>;

/// Where one client connection's replies, and errors of its sends, go;
/// with the peer's address (abbreviated) that errors name.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) tx: Sender<Result<Frames>>,
    pub(crate) peer: Arc<str>,
}

/// Where a request came from: the endpoint to answer on and the client's
/// connection id.
pub(crate) struct ReplyTo {
    pub(crate) ep: Ep,
    pub(crate) conn: u64,
}

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

/// Installs the AM receive callbacks for requests, replies and releases.
///
/// # Safety
/// `worker` is live and used under the engine lock; `callbacks` outlives it.
pub(crate) unsafe fn set_handlers(worker: sys::ucp_worker_h, callbacks: &Callbacks) -> Result<()> {
    let arg = (callbacks as *const Callbacks).cast_mut().cast::<c_void>();
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
        // SAFETY: the caller's contract; `param` is fully initialized.
        let st = unsafe { sys::ucp_worker_set_am_recv_handler(worker, &param) };
        if st != sys::ucs_status_t_UCS_OK {
            return Err(status_error("ucp_worker_set_am_recv_handler", st));
        }
    }
    Ok(())
}

/// Where a failed send reports: the route of the connection waiting for
/// the reply.
pub(crate) type OnError = Option<Route>;

/// What a send keeps alive until UCX is done with its buffers.
struct SendCtx {
    header: Vec<u8>,
    _frames: Frames,
    iov: Vec<sys::ucp_dt_iov_t>,
    on_error: OnError,
}

/// A release message is 24 bytes; anything much larger is not one.
const RELEASE_MAX: usize = 64;

/// `ucp_dt_make_contig(1)`: a contiguous buffer of bytes.
const CONTIG_BYTES: sys::ucp_datatype_t = ((1 as sys::ucp_datatype_t)
    << sys::ucp_dt_type_UCP_DATATYPE_SHIFT)
    | sys::ucp_dt_type_UCP_DATATYPE_CONTIG as sys::ucp_datatype_t;

/// Frame 0 (the peer head) rides in the AM header when at most this big,
/// so a reply's payload is the AM data alone and goes out contiguous: UCX
/// moves contiguous rendezvous data far faster than an iov.
pub(crate) const INLINE_HEAD_MAX: usize = 1024;

/// `[conn u64][frame count u32][flags u32][frame lengths u64 x n][frame 0
/// if inline]`; flag bit 0: frame 0 is inline (not in the AM data).
pub(crate) fn encode_header(conn: u64, frames: &Frames) -> (Vec<u8>, bool) {
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
pub(crate) struct Header {
    pub(crate) conn: u64,
    pub(crate) lens: Vec<usize>,
    pub(crate) inline: Option<Bytes>,
}

impl Header {
    /// Bytes the AM data must hold (`None`: lengths that overflow, which no
    /// message can match).
    pub(crate) fn data_len(&self) -> Option<usize> {
        let skip = usize::from(self.inline.is_some());
        self.lens
            .iter()
            .skip(skip)
            .try_fold(0usize, |sum, &l| sum.checked_add(l))
    }
}

/// Parses a header from a peer; `None` for anything malformed. The header
/// is untrusted: lengths are checked before anything is indexed or sized
/// by them.
pub(crate) fn decode_header(h: &[u8]) -> Option<Header> {
    let conn = u64::from_le_bytes(h.get(0..8)?.try_into().ok()?);
    let n = u32::from_le_bytes(h.get(8..12)?.try_into().ok()?) as usize;
    let flags = u32::from_le_bytes(h.get(12..16)?.try_into().ok()?);
    let lens_end = 16usize.checked_add(n.checked_mul(8)?)?;
    let len_bytes = h.get(16..lens_end)?;
    let lens: Vec<usize> = len_bytes
        .chunks_exact(8)
        .map(|c| {
            let v = u64::from_le_bytes(c.try_into().unwrap_or([0xff; 8]));
            usize::try_from(v).unwrap_or(usize::MAX)
        })
        .collect();
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

/// Sends `frames` as active message `id` on `ep` (frame 0 in the header
/// when small, the rest as contiguous or iov data), keeping them alive
/// until UCX is done; a failure goes to `on_error`.
///
/// # Safety
/// `ep` is a live endpoint of the engine's worker, used under the engine
/// lock.
pub(crate) unsafe fn am_send(
    ep: Ep,
    id: u32,
    conn: u64,
    frames: Frames,
    want_reply: bool,
    on_error: OnError,
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
        on_error,
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
            drop(Box::from_raw(ctx));
        } else if let Some(status) = ptr_status(st) {
            failed(*Box::from_raw(ctx), "ucp_am_send_nbx", status);
        }
    }
}

/// Tells the connection waiting for the reply that its request was not sent.
fn failed(ctx: SendCtx, what: &str, status: sys::ucs_status_t) {
    if let Some(route) = ctx.on_error {
        let _ = route.tx.send(Err(peer_error(what, status, &route.peer)));
    }
}

/// Completion of a send started by [`am_send`].
///
/// # Safety
/// Called by UCX only, with the request and the `SendCtx` of that send.
unsafe extern "C" fn on_send_done(
    request: *mut c_void,
    status: sys::ucs_status_t,
    user_data: *mut c_void,
) {
    // SAFETY: `user_data` is the SendCtx leaked in `am_send` for exactly
    // this request; `request` is UCX's and is freed once.
    unsafe {
        let ctx = Box::from_raw(user_data.cast::<SendCtx>());
        if status != sys::ucs_status_t_UCS_OK {
            failed(*ctx, "active message send", status);
        }
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
    buf: pool::Buf,
    len: usize,
    kind: u32,
    head: Header,
    reply_ep: Ep,
    callbacks: *const Callbacks,
}

/// The AM receive callback for messages of id `KIND` (registered once per
/// id: `AM_REQUEST`, `AM_REPLY`, `AM_RELEASE`).
///
/// # Safety
/// Called by UCX only, inside progress (under the engine lock), with `arg`
/// the engine's `Callbacks` and header/data valid for the call.
unsafe extern "C" fn on_message<const KIND: u32>(
    arg: *mut c_void,
    header: *const c_void,
    header_len: usize,
    data: *mut c_void,
    len: usize,
    param: *const sys::ucp_am_recv_param_t,
) -> sys::ucs_status_t {
    // SAFETY: UCX passes back our Callbacks pointer and valid header/data
    // for the duration of the call.
    unsafe { on_am(KIND, arg, header, header_len, data, len, param) }
}

/// # Safety
/// As [`on_message`].
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
        let p = &*param;
        let rndv = p.recv_attr & sys::ucp_am_recv_attr_t_UCP_AM_RECV_ATTR_FLAG_RNDV as u64 != 0;
        let limit = match kind {
            AM_REQUEST => (*callbacks).max_request.get(),
            AM_RELEASE => RELEASE_MAX,
            _ => (*callbacks).max_reply.get(),
        };
        let too_big = head.lens.iter().copied().find(|&l| l > limit);
        let reply_ep =
            if p.recv_attr & sys::ucp_am_recv_attr_t_UCP_AM_RECV_ATTR_FIELD_REPLY_EP as u64 != 0 {
                p.reply_ep
            } else {
                ptr::null_mut()
            };
        if head.data_len() != Some(len) || too_big.is_some() {
            // Not a message we accept: drop it unread (for a rendezvous,
            // returning without ucp_am_recv_data_nbx tells UCX to complete
            // the sender and free the descriptor); whoever waits for it
            // hears why.
            match (kind, too_big, head.inline) {
                (AM_REPLY, Some(size), _) => refuse_reply(&*callbacks, head.conn, size, limit),
                // The head alone goes to the server's handler, which answers
                // an oversized request with an error naming it.
                (AM_REQUEST, Some(_), Some(request_head)) if !reply_ep.is_null() => {
                    (*callbacks).inbox.borrow_mut().push((
                        ReplyTo {
                            ep: Ep(reply_ep),
                            conn: head.conn,
                        },
                        vec![request_head],
                    ));
                }
                _ => {}
            }
            return sys::ucs_status_t_UCS_OK;
        }
        if !rndv {
            let buf = if len == 0 {
                Bytes::new()
            } else {
                Bytes::copy_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len))
            };
            deliver(&*callbacks, kind, head, Ep(reply_ep), buf);
            return sys::ucs_status_t_UCS_OK;
        }
        let Some(buf) = pool::take(len) else {
            // No memory for it: refused like an oversized message.
            if kind == AM_REPLY {
                refuse_reply(&*callbacks, head.conn, len, limit);
            }
            return sys::ucs_status_t_UCS_OK;
        };
        let ctx = Box::into_raw(Box::new(RecvCtx {
            buf,
            len,
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
            let data = received(ctx.buf, ctx.len);
            deliver(&*ctx.callbacks, ctx.kind, ctx.head, ctx.reply_ep, data);
        } else if ptr_status(st).is_some() {
            drop(Box::from_raw(ctx));
        }
        sys::ucs_status_t_UCS_OK
    }
}

/// Completion of a rendezvous receive started in [`on_am`].
///
/// # Safety
/// Called by UCX only, with the request and the `RecvCtx` of that receive.
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
            let data = received(ctx.buf, ctx.len);
            deliver(&*ctx.callbacks, ctx.kind, ctx.head, ctx.reply_ep, data);
        }
        sys::ucp_request_free(request);
    }
}

fn refuse_reply(callbacks: &Callbacks, conn: u64, size: usize, limit: usize) {
    if let Some(tx) = callbacks
        .routes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&conn)
        .map(|r| &r.tx)
    {
        let _ = tx.send(Err(proxystore_core::Error::TooLarge {
            what: "reply",
            size: size as u64,
            limit: limit as u64,
        }));
    }
}

/// A filled receive buffer as `Bytes` (pooled ones go back when dropped).
fn received(buf: pool::Buf, len: usize) -> Bytes {
    pool::into_bytes(buf, len)
}

/// The frames of a message: the inline head, if any, then `all` (the AM
/// data, [`Header::data_len`] bytes) cut at the header's lengths.
pub(crate) fn split_frames(head: Header, all: &Bytes) -> Frames {
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
    frames
}

/// Hands a complete message to the engine's inbox (requests) or to its
/// connection's route (replies).
fn deliver(callbacks: &Callbacks, kind: u32, head: Header, reply_ep: Ep, all: Bytes) {
    let conn = head.conn;
    let frames = split_frames(head, &all);
    if kind == AM_RELEASE {
        callbacks.releases.borrow_mut().extend(frames);
    } else if kind == AM_REQUEST {
        if !reply_ep.0.is_null() {
            callbacks
                .inbox
                .borrow_mut()
                .push((ReplyTo { ep: reply_ep, conn }, frames));
        }
    } else if let Some(tx) = callbacks
        .routes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&conn)
        .map(|r| &r.tx)
    {
        let _ = tx.send(Ok(frames));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(lens: &[usize]) -> Frames {
        lens.iter().map(|&n| Bytes::from(vec![7u8; n])).collect()
    }

    #[test]
    fn headers_round_trip_with_and_without_inline_heads() {
        for (lens, inline) in [
            (vec![10, 5000], true),
            (vec![4000, 3], false),
            (vec![], false),
        ] {
            let f = frames(&lens);
            let (h, was_inline) = encode_header(42, &f);
            assert_eq!(was_inline, inline);
            let head = decode_header(&h).unwrap();
            assert_eq!(head.conn, 42);
            assert_eq!(head.lens, lens);
            assert_eq!(head.inline.is_some(), inline);
            let data: usize = lens.iter().skip(usize::from(inline)).sum();
            assert_eq!(head.data_len(), Some(data));
        }
    }

    #[test]
    fn malformed_headers_are_refused_without_panicking() {
        let (h, _) = encode_header(1, &frames(&[8, 100]));
        for cut in 0..h.len() {
            assert!(decode_header(&h[..cut]).is_none(), "cut at {cut}");
        }
        // A frame count far beyond the header's bytes: nothing is sized by it.
        let mut huge = h.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_header(&huge).is_none());
        // Lengths whose sum overflows match no message.
        let mut over = Vec::new();
        over.extend_from_slice(&1u64.to_le_bytes());
        over.extend_from_slice(&2u32.to_le_bytes());
        over.extend_from_slice(&0u32.to_le_bytes());
        over.extend_from_slice(&u64::MAX.to_le_bytes());
        over.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(decode_header(&over).unwrap().data_len(), None);
    }

    proptest! {
        #[test]
        fn random_headers_never_panic(h in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(head) = decode_header(&h) {
                let _ = head.data_len();
            }
        }
    }
}
