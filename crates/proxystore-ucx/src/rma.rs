//! One-sided reads' UCP calls (under the engine lock): a reader unpacks an
//! owner's rkey once per owner endpoint and `ucp_get`s the bytes into a
//! pooled buffer; a finished read's release goes back to the owner as an
//! active message. Descriptors, pins, releases and deadlines are
//! `proxystore_peer::rma`'s.

use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;
use std::sync::mpsc::Sender;

use bytes::Bytes;
use proxystore_core::{Error, Result};
use proxystore_peer::pool;
use proxystore_peer::rma::Region;
use ucx_sys as sys;

use crate::am::{am_send, AM_RELEASE};
use crate::worker::{close_ep, connect_ep, peer_error, ptr_status, Ep};

/// Cached unpacked rkeys before the cache is flushed.
const RKEY_CACHE: usize = 4096;

/// The reader's one-sided state of an engine; used under the engine lock.
pub(crate) struct Rma {
    worker: sys::ucp_worker_h,
    /// Endpoints to owners, by worker address.
    eps: HashMap<Vec<u8>, Ep>,
    /// Unpacked rkeys by (endpoint, packed rkey); looked up with a slice
    /// of the descriptor, so a cached rkey costs no allocation per read.
    rkeys: HashMap<(usize, Bytes), sys::ucp_rkey_h>,
}

struct ReadCtx {
    buf: pool::Buf,
    len: usize,
    done: Sender<Result<Bytes>>,
    /// The owner's address, for errors.
    peer: Box<str>,
}

impl Rma {
    pub(crate) fn new(worker: sys::ucp_worker_h) -> Self {
        Rma {
            worker,
            eps: HashMap::new(),
            rkeys: HashMap::new(),
        }
    }

    /// The endpoint to the worker at `owner`, connected on first use.
    fn ep(&mut self, owner: &[u8], peer: &str) -> Result<Ep> {
        if let Some(&ep) = self.eps.get(owner) {
            return Ok(ep);
        }
        // SAFETY: under the engine lock, live worker.
        let ep = unsafe { connect_ep(self.worker, owner, peer)? };
        self.eps.insert(owner.to_vec(), ep);
        Ok(ep)
    }

    /// Sends `release` to the worker at `owner`.
    pub(crate) fn send_release(&mut self, owner: &[u8], peer: &str, release: Bytes) -> Result<()> {
        let ep = self.ep(owner, peer)?;
        // SAFETY: an endpoint in `eps` (closed only at shutdown), under the
        // engine lock.
        unsafe { am_send(ep, AM_RELEASE, 0, vec![release], false, None) };
        Ok(())
    }

    /// Starts a one-sided read of `region` at the worker `owner`; `done`
    /// gets the bytes.
    pub(crate) fn read(
        &mut self,
        owner: &[u8],
        peer: &str,
        region: Region,
        done: Sender<Result<Bytes>>,
    ) {
        let fail = |e: Error| {
            let _ = done.send(Err(e));
        };
        let ep = match self.ep(owner, peer) {
            Ok(ep) => ep,
            Err(e) => return fail(e),
        };
        if self.rkeys.len() >= RKEY_CACHE {
            self.flush_rkeys();
        }
        let cached = self
            .rkeys
            .get(&(ep.0 as usize, region.remote_key.clone()))
            .copied();
        let rkey = match cached {
            Some(r) => r,
            None => {
                let mut rkey: sys::ucp_rkey_h = ptr::null_mut();
                // SAFETY: unpacks a buffer produced by ucp_rkey_pack on the owner.
                let st = unsafe {
                    sys::ucp_ep_rkey_unpack(ep.0, region.remote_key.as_ptr().cast(), &mut rkey)
                };
                if st != sys::ucs_status_t_UCS_OK {
                    return fail(peer_error("ucp_ep_rkey_unpack", st, peer));
                }
                // Owned copy: the cache must not keep the reply's buffer alive.
                self.rkeys.insert(
                    (ep.0 as usize, Bytes::copy_from_slice(&region.remote_key)),
                    rkey,
                );
                rkey
            }
        };
        let len = region.len;
        let Some(buf) = pool::take(len) else {
            return fail(Error::TooLarge {
                what: "one-sided read (no memory for it)",
                size: len as u64,
                limit: isize::MAX as u64,
            });
        };
        let ctx = Box::into_raw(Box::new(ReadCtx {
            buf,
            len,
            done,
            peer: peer.into(),
        }));
        let mut param = sys::ucp_request_param_t {
            op_attr_mask: sys::ucp_op_attr_t_UCP_OP_ATTR_FIELD_CALLBACK
                | sys::ucp_op_attr_t_UCP_OP_ATTR_FIELD_USER_DATA,
            user_data: ctx.cast(),
            ..Default::default()
        };
        param.cb.send = Some(on_read_done);
        // SAFETY: `ctx` owns the destination buffer until completion (the
        // callback, or the immediate paths below, reclaim it).
        unsafe {
            let st = sys::ucp_get_nbx(
                ep.0,
                (*ctx).buf.as_mut_ptr().cast(),
                len,
                region.addr,
                rkey,
                &param,
            );
            if st.is_null() {
                finish_read(*Box::from_raw(ctx), Ok(()));
            } else if let Some(status) = ptr_status(st) {
                let ctx = *Box::from_raw(ctx);
                let e = peer_error("ucp_get_nbx", status, &ctx.peer);
                finish_read(ctx, Err(e));
            }
        }
    }

    fn flush_rkeys(&mut self) {
        for (_, rkey) in self.rkeys.drain() {
            // SAFETY: each rkey was unpacked once and is destroyed once.
            unsafe { sys::ucp_rkey_destroy(rkey) };
        }
    }

    /// Releases everything; call before the worker is destroyed.
    pub(crate) fn shutdown(&mut self) {
        self.flush_rkeys();
        for (_, ep) in self.eps.drain() {
            // SAFETY: endpoints of this worker, closed once.
            unsafe { close_ep(ep) };
        }
    }
}

/// Hands the bytes (or the error) to the reader.
fn finish_read(ctx: ReadCtx, result: Result<()>) {
    let out = result.map(|()| pool::into_bytes(ctx.buf, ctx.len));
    let _ = ctx.done.send(out);
}

/// Completion of a read started by [`Rma::read`].
///
/// # Safety
/// Called by UCX only, with the request and the `ReadCtx` of that read.
unsafe extern "C" fn on_read_done(
    request: *mut c_void,
    status: sys::ucs_status_t,
    user_data: *mut c_void,
) {
    // SAFETY: `user_data` is the ReadCtx leaked for this read; the request
    // is freed once.
    unsafe {
        let ctx = Box::from_raw(user_data.cast::<ReadCtx>());
        let result = if status == sys::ucs_status_t_UCS_OK {
            Ok(())
        } else {
            Err(peer_error("one-sided read", status, &ctx.peer))
        };
        finish_read(*ctx, result);
        sys::ucp_request_free(request);
    }
}
