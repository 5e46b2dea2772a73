//! One-sided reads (under the engine lock): stored objects are registered with
//! UCX on first remote request and described by `[address u64][length
//! u64][packed rkey]`; a reader unpacks the rkey once per owner endpoint and
//! `ucp_get`s the bytes into its own buffer. A registration keeps a clone
//! of the object's `Bytes`, so the memory stays valid for [`GRACE`] after
//! its last use even if the object is evicted meanwhile: a reader that got
//! a descriptor never reads freed memory.

use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_core::{Error, Result};
use ucx_sys as sys;

use crate::engine::{close_ep, connect_ep, ptr_status, status_error, Ep};

/// How long a registration outlives its last use.
pub(crate) const GRACE: Duration = Duration::from_secs(60);
/// Cached unpacked rkeys before the cache is flushed.
const RKEY_CACHE: usize = 4096;

struct Registration {
    memh: sys::ucp_mem_h,
    desc: Bytes,
    _data: Bytes,
    last_used: Instant,
}

/// The one-sided state of an engine; used under the engine lock.
pub(crate) struct Rma {
    context: sys::ucp_context_h,
    worker: sys::ucp_worker_h,
    registered: HashMap<(usize, usize), Registration>,
    eps: HashMap<Vec<u8>, Ep>,
    rkeys: HashMap<(usize, Vec<u8>), sys::ucp_rkey_h>,
    last_sweep: Instant,
}

struct ReadCtx {
    buf: Box<[u8]>,
    len: usize,
    done: Sender<Result<Bytes>>,
}

impl Rma {
    pub(crate) fn new(context: sys::ucp_context_h, worker: sys::ucp_worker_h) -> Self {
        Rma {
            context,
            worker,
            registered: HashMap::new(),
            eps: HashMap::new(),
            rkeys: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }

    /// A descriptor for `data`, registering it on first use.
    pub(crate) fn expose(&mut self, data: Bytes) -> Option<Bytes> {
        let key = (data.as_ptr() as usize, data.len());
        if let Some(r) = self.registered.get_mut(&key) {
            r.last_used = Instant::now();
            return Some(r.desc.clone());
        }
        let params = sys::ucp_mem_map_params_t {
            field_mask: (sys::ucp_mem_map_params_field_UCP_MEM_MAP_PARAM_FIELD_ADDRESS
                | sys::ucp_mem_map_params_field_UCP_MEM_MAP_PARAM_FIELD_LENGTH)
                as u64,
            address: data.as_ptr().cast_mut().cast(),
            length: data.len(),
            ..Default::default()
        };
        let mut memh: sys::ucp_mem_h = ptr::null_mut();
        // SAFETY: maps existing memory that `data` (kept in the registration)
        // owns; context is this engine's.
        let st = unsafe { sys::ucp_mem_map(self.context, &params, &mut memh) };
        if st != sys::ucs_status_t_UCS_OK {
            tracing::debug!(status = st, "ucp_mem_map failed; sending inline");
            return None;
        }
        let mut rkey_ptr: *mut c_void = ptr::null_mut();
        let mut rkey_len = 0usize;
        // SAFETY: packs the rkey of the memh just created; the buffer is
        // copied, then released to UCX.
        let desc = unsafe {
            let st = sys::ucp_rkey_pack(self.context, memh, &mut rkey_ptr, &mut rkey_len);
            if st != sys::ucs_status_t_UCS_OK {
                sys::ucp_mem_unmap(self.context, memh);
                return None;
            }
            let mut desc = Vec::with_capacity(16 + rkey_len);
            desc.extend_from_slice(&(data.as_ptr() as u64).to_le_bytes());
            desc.extend_from_slice(&(data.len() as u64).to_le_bytes());
            desc.extend_from_slice(std::slice::from_raw_parts(rkey_ptr.cast::<u8>(), rkey_len));
            sys::ucp_rkey_buffer_release(rkey_ptr);
            Bytes::from(desc)
        };
        self.registered.insert(
            key,
            Registration {
                memh,
                desc: desc.clone(),
                _data: data,
                last_used: Instant::now(),
            },
        );
        Some(desc)
    }

    /// Starts a one-sided read of what `desc` describes at the worker
    /// `owner`; `done` gets the bytes.
    pub(crate) fn read(&mut self, owner: Vec<u8>, desc: Bytes, done: Sender<Result<Bytes>>) {
        let fail = |e: Error| {
            let _ = done.send(Err(e));
        };
        if desc.len() < 16 {
            return fail(Error::Transport {
                connector: "ucx".into(),
                source: "remote descriptor too short".into(),
            });
        }
        let addr = u64::from_le_bytes(desc[0..8].try_into().unwrap_or([0; 8]));
        let len = u64::from_le_bytes(desc[8..16].try_into().unwrap_or([0; 8])) as usize;
        let rkey_buf = desc[16..].to_vec();
        let ep = match self.eps.get(&owner) {
            Some(&ep) => ep,
            None => {
                // SAFETY: under the engine lock, live worker.
                let made = unsafe { connect_ep(self.worker, &owner) };
                match made {
                    Ok(ep) => {
                        self.eps.insert(owner, ep);
                        ep
                    }
                    Err(e) => return fail(e),
                }
            }
        };
        if self.rkeys.len() >= RKEY_CACHE {
            self.flush_rkeys();
        }
        let rkey = match self.rkeys.get(&(ep.0 as usize, rkey_buf.clone())) {
            Some(&r) => r,
            None => {
                let mut rkey: sys::ucp_rkey_h = ptr::null_mut();
                // SAFETY: unpacks a buffer produced by ucp_rkey_pack on the owner.
                let st =
                    unsafe { sys::ucp_ep_rkey_unpack(ep.0, rkey_buf.as_ptr().cast(), &mut rkey) };
                if st != sys::ucs_status_t_UCS_OK {
                    return fail(status_error("ucp_ep_rkey_unpack", st));
                }
                self.rkeys.insert((ep.0 as usize, rkey_buf), rkey);
                rkey
            }
        };
        let ctx = Box::into_raw(Box::new(ReadCtx {
            buf: crate::pool::take(len.max(1)),
            len,
            done,
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
                addr,
                rkey,
                &param,
            );
            if st.is_null() {
                let ctx = Box::from_raw(ctx);
                let _ = ctx.done.send(Ok(crate::pool::into_bytes(ctx.buf, ctx.len)));
            } else if let Some(status) = ptr_status(st) {
                let ctx = Box::from_raw(ctx);
                let _ = ctx.done.send(Err(status_error("ucp_get_nbx", status)));
            }
        }
    }

    /// Unregisters what has not been used for [`GRACE`]; cheap to call often.
    pub(crate) fn sweep(&mut self) {
        if self.last_sweep.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = Instant::now();
        let context = self.context;
        self.registered.retain(|_, r| {
            let keep = r.last_used.elapsed() < GRACE;
            if !keep {
                // SAFETY: the memh was created by this context and is dropped here once.
                unsafe { sys::ucp_mem_unmap(context, r.memh) };
            }
            keep
        });
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
        for (_, r) in self.registered.drain() {
            // SAFETY: as in `sweep`.
            unsafe { sys::ucp_mem_unmap(self.context, r.memh) };
        }
    }
}

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
            Ok(crate::pool::into_bytes(ctx.buf, ctx.len))
        } else {
            Err(status_error("one-sided read", status))
        };
        let _ = ctx.done.send(result);
        sys::ucp_request_free(request);
    }
}
