//! One-sided reads (under the engine lock): stored objects are registered with
//! UCX on first remote request and described by `[address u64][length
//! u64][packed rkey]`; a reader unpacks the rkey once per owner endpoint and
//! `ucp_get`s the bytes into its own buffer. A registration keeps a clone
//! of the object's `Bytes`, so the memory stays valid for [`GRACE`] after
//! its last use even if the object is evicted meanwhile: a reader that got
//! a descriptor never reads freed memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxystore_core::{Error, Result};
use ucx_sys as sys;

use crate::am::am_send;
use crate::arena::Arena;
use crate::engine::AM_RELEASE;
use crate::worker::{close_ep, connect_ep, mem_map, ptr_status, status_error, Ep};

/// How long a registration outlives its last use.
pub(crate) const GRACE: Duration = Duration::from_secs(60);
/// Longest wait for one read, whatever the store's timeout: half of
/// [`GRACE`], so a read that completes read memory the owner still held
/// (the owner pins before it replies; the reader's budget starts earlier).
pub(crate) const READ_MAX: Duration = Duration::from_secs(30);
/// Cached unpacked rkeys before the cache is flushed.
const RKEY_CACHE: usize = 4096;

struct Registration {
    /// `None` for objects in arena slabs, which stay mapped with the slab.
    memh: Option<sys::ucp_mem_h>,
    desc: Bytes,
    _data: Bytes,
    last_used: Instant,
    /// Descriptors handed out whose reads have not been released yet.
    pins: u32,
    /// Proves a release comes from a reader that was given a descriptor.
    token: u64,
}

/// Unpinned registrations of memory mapped for the occasion stay this long
/// (a repeated get of the same object reuses the mapping).
const IDLE_UNPINNED: Duration = Duration::from_secs(5);

/// Releases of finished reads waiting to be sent: `(owner endpoint,
/// [address u64][length u64][token u64])`.
type Releases = RefCell<Vec<(Ep, Bytes)>>;

/// The one-sided state of an engine; used under the engine lock.
pub(crate) struct Rma {
    context: sys::ucp_context_h,
    worker: sys::ucp_worker_h,
    registered: HashMap<(usize, usize), Registration>,
    eps: HashMap<Vec<u8>, Ep>,
    /// Unpacked rkeys by (endpoint, packed rkey); looked up with a slice
    /// of the descriptor, so a cached rkey costs no allocation per read.
    rkeys: HashMap<(usize, Bytes), sys::ucp_rkey_h>,
    arena: Arc<Arena>,
    releases: Box<Releases>,
    last_sweep: Instant,
}

struct ReadCtx {
    buf: crate::pool::Buf,
    len: usize,
    done: Sender<Result<Bytes>>,
    owner: Ep,
    release: Bytes,
    releases: *const Releases,
}

/// `[address u64][length u64][token u64][packed rkey]`.
fn descriptor(addr: usize, len: usize, token: u64, rkey: &[u8]) -> Bytes {
    let mut desc = Vec::with_capacity(24 + rkey.len());
    desc.extend_from_slice(&(addr as u64).to_le_bytes());
    desc.extend_from_slice(&(len as u64).to_le_bytes());
    desc.extend_from_slice(&token.to_le_bytes());
    desc.extend_from_slice(rkey);
    Bytes::from(desc)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

impl Rma {
    pub(crate) fn new(
        context: sys::ucp_context_h,
        worker: sys::ucp_worker_h,
        arena: Arc<Arena>,
    ) -> Self {
        Rma {
            context,
            worker,
            registered: HashMap::new(),
            eps: HashMap::new(),
            rkeys: HashMap::new(),
            arena,
            releases: Box::default(),
            last_sweep: Instant::now(),
        }
    }

    /// A descriptor for `data`, registering it on first use; pinned until
    /// the reader releases it (or [`GRACE`] passes).
    pub(crate) fn expose(&mut self, data: Bytes) -> Option<Bytes> {
        let key = (data.as_ptr() as usize, data.len());
        if let Some(r) = self.registered.get_mut(&key) {
            r.last_used = Instant::now();
            r.pins += 1;
            return Some(r.desc.clone());
        }
        let token = proxystore_core::ObjectId::random().as_u128() as u64;
        let (memh, desc) = match self.arena.rkey_of(&data) {
            Some(rkey) => (None, descriptor(key.0, key.1, token, &rkey)),
            None => {
                // SAFETY: under the engine lock; the registration keeps
                // `data` (so the mapped memory) alive until it is unmapped.
                let m = unsafe { mem_map(self.context, Some(data.as_ptr()), data.len())? };
                (Some(m.memh), descriptor(key.0, key.1, token, &m.rkey))
            }
        };
        self.registered.insert(
            key,
            Registration {
                memh,
                desc: desc.clone(),
                _data: data,
                last_used: Instant::now(),
                pins: 1,
                token,
            },
        );
        Some(desc)
    }

    /// A reader finished with a descriptor (`[address][length][token]`):
    /// unpin it; an arena object is let go at once, so its slab is reused
    /// as soon as the object is evicted.
    pub(crate) fn release(&mut self, msg: &[u8]) {
        let key = (le_u64(msg, 0) as usize, le_u64(msg, 8) as usize);
        let token = le_u64(msg, 16);
        let Some(r) = self.registered.get_mut(&key) else {
            return;
        };
        if r.token != token || r.pins == 0 {
            return; // stale or forged: ignore
        }
        r.pins -= 1;
        if r.pins == 0 && r.memh.is_none() {
            self.registered.remove(&key);
        }
    }

    /// Sends the releases of reads finished since the last call.
    pub(crate) fn send_releases(&mut self) {
        let pending = std::mem::take(&mut *self.releases.borrow_mut());
        for (ep, msg) in pending {
            // SAFETY: an endpoint in `eps` (closed only at shutdown), under
            // the engine lock.
            unsafe { am_send(ep, AM_RELEASE, 0, vec![msg], false, None) };
        }
    }

    /// Starts a one-sided read of what `desc` describes at the worker
    /// `owner`; `done` gets the bytes.
    pub(crate) fn read(
        &mut self,
        owner: Vec<u8>,
        desc: Bytes,
        max_len: usize,
        done: Sender<Result<Bytes>>,
    ) {
        let fail = |e: Error| {
            let _ = done.send(Err(e));
        };
        if desc.len() < 24 {
            return fail(Error::Transport {
                connector: "ucx".into(),
                source: "remote descriptor too short".into(),
            });
        }
        let addr = le_u64(&desc, 0);
        let len = le_u64(&desc, 8) as usize;
        let rkey_buf = desc.slice(24..);
        if len > max_len {
            return fail(Error::TooLarge {
                what: "one-sided read",
                size: len as u64,
                limit: max_len as u64,
            });
        }
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
                // Owned copy: the cache must not keep the reply's buffer alive.
                self.rkeys
                    .insert((ep.0 as usize, Bytes::copy_from_slice(&rkey_buf)), rkey);
                rkey
            }
        };
        let Some(buf) = crate::pool::take(len) else {
            return fail(Error::TooLarge {
                what: "one-sided read (no memory for it)",
                size: len as u64,
                limit: max_len as u64,
            });
        };
        let ctx = Box::into_raw(Box::new(ReadCtx {
            buf,
            len,
            done,
            owner: ep,
            release: desc.slice(0..24),
            releases: &*self.releases,
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
                finish_read(*Box::from_raw(ctx), Ok(()));
            } else if let Some(status) = ptr_status(st) {
                finish_read(
                    *Box::from_raw(ctx),
                    Err(status_error("ucp_get_nbx", status)),
                );
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
            let idle = r.last_used.elapsed();
            let keep = idle < GRACE && (r.pins > 0 || idle < IDLE_UNPINNED);
            if let (false, Some(memh)) = (keep, r.memh) {
                // SAFETY: the memh was created by this context and is dropped here once.
                unsafe { sys::ucp_mem_unmap(context, memh) };
            }
            keep
        });
        // SAFETY: under the engine lock (this state's).
        unsafe { self.arena.trim() };
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
            if let Some(memh) = r.memh {
                // SAFETY: as in `sweep`.
                unsafe { sys::ucp_mem_unmap(self.context, memh) };
            }
        }
    }
}

/// Hands the bytes (or the error) to the reader and queues the release.
fn finish_read(ctx: ReadCtx, result: Result<()>) {
    // SAFETY: `releases` is boxed in the Rma that started the read, which
    // outlives its requests; only used under the engine lock.
    unsafe { (*ctx.releases).borrow_mut().push((ctx.owner, ctx.release)) };
    let out = result.map(|()| crate::pool::into_bytes(ctx.buf, ctx.len));
    let _ = ctx.done.send(out);
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
            Ok(())
        } else {
            Err(status_error("one-sided read", status))
        };
        finish_read(*ctx, result);
        sys::ucp_request_free(request);
    }
}
