//! Plain UCP calls the engine makes under its lock: context and worker
//! creation, endpoints, and UCX status codes as errors.

use std::ffi::c_void;
use std::ptr;

use proxystore_core::{Error, Result};
use ucx_sys as sys;

/// A UCP endpoint handle, only ever used under the engine lock.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Ep(pub(crate) sys::ucp_ep_h);

// SAFETY: the handle is an opaque pointer that is only passed to UCX by
// the holder of the engine lock.
unsafe impl Send for Ep {}

fn status_text(what: &str, status: sys::ucs_status_t) -> String {
    // SAFETY: ucs_status_string returns a static C string for any status.
    let text = unsafe { std::ffi::CStr::from_ptr(sys::ucs_status_string(status)) };
    format!("{what}: {}", text.to_string_lossy())
}

/// A failed local UCX call (context, worker, memory) as an error.
pub(crate) fn status_error(what: &str, status: sys::ucs_status_t) -> Error {
    Error::Transport {
        connector: "ucx".into(),
        source: status_text(what, status).into(),
    }
}

/// A failed operation with the peer at `peer` (its address as keys show
/// it, abbreviated): statuses that mean the peer is gone become
/// [`Error::PeerUnreachable`] naming it.
pub(crate) fn peer_error(what: &str, status: sys::ucs_status_t, peer: &str) -> Error {
    let reason = status_text(what, status);
    if status == sys::ucs_status_t_UCS_ERR_UNREACHABLE
        || status == sys::ucs_status_t_UCS_ERR_CONNECTION_RESET
        || status == sys::ucs_status_t_UCS_ERR_ENDPOINT_TIMEOUT
        || status == sys::ucs_status_t_UCS_ERR_CANCELED
    {
        return Error::PeerUnreachable {
            address: peer.into(),
            reason,
        };
    }
    Error::Transport {
        connector: "ucx".into(),
        source: format!("peer {peer}: {reason}").into(),
    }
}

/// `UCS_PTR_IS_ERR`: status pointers are small negative numbers.
pub(crate) fn ptr_status(p: sys::ucs_status_ptr_t) -> Option<sys::ucs_status_t> {
    let v = p as isize;
    (v < 0 && v >= sys::ucs_status_t_UCS_ERR_LAST as isize).then_some(v as sys::ucs_status_t)
}

/// Creates the context (AM, RMA, wakeup) and a worker in serialized mode
/// (any thread, one at a time: the engine lock).
///
/// # Safety
/// The caller owns the returned handles: it destroys the worker, then
/// cleans up the context, once each.
pub(crate) unsafe fn init() -> Result<(sys::ucp_context_h, sys::ucp_worker_h)> {
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
            thread_mode: sys::ucs_thread_mode_t_UCS_THREAD_MODE_SERIALIZED,
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

/// An endpoint to the worker `address` (`peer` in errors). With
/// [`peer_errors`] on, UCX reports a dead peer as soon as the transport
/// notices (where it can: shared memory in UCX 1.13 refuses it, and then
/// the endpoint is made without it); off, request timeouts bound every wait.
///
/// # Safety
/// `worker` is live and used under the engine lock.
pub(crate) unsafe fn connect_ep(
    worker: sys::ucp_worker_h,
    address: &[u8],
    peer: &str,
) -> Result<Ep> {
    // SAFETY: the caller's: live worker, under the lock.
    unsafe {
        if peer_errors() {
            create_ep(worker, address, true, peer)
                .or_else(|_| create_ep(worker, address, false, peer))
        } else {
            create_ep(worker, address, false, peer)
        }
    }
}

/// Peer-failure detection on endpoints (UCX's `ERR_HANDLING_MODE_PEER`):
/// on unless `PROXYSTORE_UCX_PEER_ERRORS=off`. Without it UCX 1.13.1 can
/// abort the whole process when a peer it was still connecting to dies
/// (an assertion in `ucp_request_send_state_ff`, 2 of 6 runs of the
/// silent-owner fault test), and a rendezvous receive from an owner killed
/// mid-transfer never completes. The price: over tcp UCX 1.13 gives up
/// zero-copy rendezvous and copies every received fragment once more
/// (measured: 64 MiB two-process get 19-25 ms with it, 15-18 ms without);
/// `off` buys that back where peers are known not to die.
pub(crate) fn peer_errors() -> bool {
    std::env::var("PROXYSTORE_UCX_PEER_ERRORS").as_deref() != Ok("off")
}

/// # Safety
/// As [`connect_ep`].
unsafe fn create_ep(
    worker: sys::ucp_worker_h,
    address: &[u8],
    peer_errors: bool,
    peer: &str,
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
        Err(peer_error("ucp_ep_create", st, peer))
    }
}

/// A peer failed: its pending operations complete with errors (which the
/// callers see); the endpoint is closed when its connection is dropped.
///
/// # Safety
/// Called by UCX only; it reads none of its pointer arguments.
unsafe extern "C" fn on_ep_error(_arg: *mut c_void, _ep: sys::ucp_ep_h, status: sys::ucs_status_t) {
    tracing::debug!(status, "ucx endpoint failed");
}

/// Closes `ep` (forced: pending operations are cancelled).
///
/// # Safety
/// `ep` is a live endpoint of the engine's worker, used under the engine
/// lock, and is not used again.
pub(crate) unsafe fn close_ep(ep: Ep) {
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

/// Memory mapped for one-sided access: its handle, where it is, and the
/// packed rkey a peer needs to read it.
pub(crate) struct Mapped {
    pub(crate) memh: sys::ucp_mem_h,
    pub(crate) address: usize,
    pub(crate) rkey: Vec<u8>,
}

/// Maps `length` bytes with UCX: `existing` memory is registered in place;
/// without it UCX allocates (shared memory a peer's transport can map, where
/// there is one). On failure nothing stays mapped.
///
/// # Safety
/// `context` is live and used under the engine lock; `existing` points to
/// `length` bytes that outlive the mapping.
pub(crate) unsafe fn mem_map(
    context: sys::ucp_context_h,
    existing: Option<*const u8>,
    length: usize,
) -> Option<Mapped> {
    let mut params = sys::ucp_mem_map_params_t {
        field_mask: (sys::ucp_mem_map_params_field_UCP_MEM_MAP_PARAM_FIELD_ADDRESS
            | sys::ucp_mem_map_params_field_UCP_MEM_MAP_PARAM_FIELD_LENGTH)
            as u64,
        address: existing.map_or(ptr::null_mut(), |p| p.cast_mut().cast()),
        length,
        ..Default::default()
    };
    if existing.is_none() {
        params.field_mask |= sys::ucp_mem_map_params_field_UCP_MEM_MAP_PARAM_FIELD_FLAGS as u64;
        params.flags = sys::UCP_MEM_MAP_ALLOCATE;
    }
    let mut memh: sys::ucp_mem_h = ptr::null_mut();
    // SAFETY: the caller's contract; every failure below unmaps again.
    unsafe {
        let st = sys::ucp_mem_map(context, &params, &mut memh);
        if st != sys::ucs_status_t_UCS_OK {
            tracing::debug!(status = st, length, "ucp_mem_map failed");
            return None;
        }
        let mut attr = sys::ucp_mem_attr_t {
            field_mask: (sys::ucp_mem_attr_field_UCP_MEM_ATTR_FIELD_ADDRESS
                | sys::ucp_mem_attr_field_UCP_MEM_ATTR_FIELD_LENGTH) as u64,
            ..Default::default()
        };
        let mut rkey_ptr: *mut c_void = ptr::null_mut();
        let mut rkey_len = 0usize;
        if sys::ucp_mem_query(memh, &mut attr) != sys::ucs_status_t_UCS_OK
            || attr.address.is_null()
            || attr.length < length
            || sys::ucp_rkey_pack(context, memh, &mut rkey_ptr, &mut rkey_len)
                != sys::ucs_status_t_UCS_OK
        {
            sys::ucp_mem_unmap(context, memh);
            return None;
        }
        let rkey = std::slice::from_raw_parts(rkey_ptr.cast::<u8>(), rkey_len).to_vec();
        sys::ucp_rkey_buffer_release(rkey_ptr);
        Some(Mapped {
            memh,
            address: attr.address as usize,
            rkey,
        })
    }
}

/// The worker's address (what peers connect to) and its event fd.
///
/// # Safety
/// `worker` is live and used under the engine lock.
pub(crate) unsafe fn address_and_efd(worker: sys::ucp_worker_h) -> Result<(Vec<u8>, i32)> {
    // SAFETY: the caller's contract; the address is copied and released.
    unsafe {
        let mut efd = -1;
        let st = sys::ucp_worker_get_efd(worker, &mut efd);
        if st != sys::ucs_status_t_UCS_OK {
            return Err(status_error("ucp_worker_get_efd", st));
        }
        let mut addr_ptr: *mut sys::ucp_address_t = ptr::null_mut();
        let mut addr_len = 0usize;
        let st = sys::ucp_worker_get_address(worker, &mut addr_ptr, &mut addr_len);
        if st != sys::ucs_status_t_UCS_OK {
            return Err(status_error("ucp_worker_get_address", st));
        }
        let address = std::slice::from_raw_parts(addr_ptr.cast::<u8>(), addr_len).to_vec();
        sys::ucp_worker_release_address(worker, addr_ptr);
        Ok((address, efd))
    }
}
