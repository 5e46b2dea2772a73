//! Registered object memory. With one-sided reads on, an object put in
//! this process is copied into a slab that UCX allocated and registered
//! (`ucp_mem_map` with `UCP_MEM_MAP_ALLOCATE`): shared-memory transports
//! then map the slab straight into a reader, whose `ucp_get` is a plain
//! memcpy instead of a cross-process CMA copy (1 MiB: ~40 us against
//! 120-180 us measured here), and RDMA transports find it registered.
//! Classes, reuse and trimming are `proxystore_peer::arena`'s.

use std::sync::Arc;

use proxystore_peer::arena::{self, Mapped, SlabMemory};
use ucx_sys as sys;

use crate::worker::mem_map;

/// Free slab bytes kept at most; beyond that, trims unmap them.
pub(crate) const IDLE_MAX: usize = 1 << 30;

/// The slabs of one engine.
pub(crate) type Arena = arena::Arena<UcpMemory>;

/// A UCP context, cleaned up when the last holder (engine state, arena)
/// drops.
pub(crate) struct Context(pub(crate) sys::ucp_context_h);

// SAFETY: an opaque handle; every call through it is serialized by the
// engine lock, or happens after the engine is gone (final unmaps, cleanup).
unsafe impl Send for Context {}
// SAFETY: as above.
unsafe impl Sync for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the last user is gone; the workers were destroyed first.
        unsafe { sys::ucp_cleanup(self.0) };
    }
}

/// Slabs UCX allocates and registers in a context.
pub(crate) struct UcpMemory(pub(crate) Arc<Context>);

/// A mapped slab's UCX memory handle.
pub(crate) struct MemH(sys::ucp_mem_h);

// SAFETY: only passed to UCX under the engine lock (trims) or after the
// engine is gone (the arena's drop).
unsafe impl Send for MemH {}

impl UcpMemory {
    /// Maps a new slab of `class` bytes, or `None` if UCX could not.
    ///
    /// # Safety
    /// Call under the engine lock.
    pub(crate) unsafe fn map(&self, class: usize) -> Option<Mapped<MemH>> {
        // SAFETY: under the engine lock (the caller's); UCX allocates.
        let mapped = unsafe { mem_map(self.0 .0, None, class)? };
        Some(Mapped {
            base: mapped.address,
            remote_key: mapped.rkey.into(),
            handle: MemH(mapped.memh),
        })
    }
}

impl SlabMemory for UcpMemory {
    type Handle = MemH;

    /// Called by trims under the engine lock, or by the arena's drop once
    /// the engine (which held the arena) is gone.
    fn unmap(&self, handle: MemH) {
        // SAFETY: a free slab of this context (no Bytes points into it),
        // unmapped once.
        unsafe { sys::ucp_mem_unmap(self.0 .0, handle.0) };
    }
}
