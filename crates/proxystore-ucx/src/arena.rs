//! Registered object memory. With one-sided reads on, an object put in
//! this process is copied into a slab that UCX allocated and registered
//! (`ucp_mem_map` with `UCP_MEM_MAP_ALLOCATE`): shared-memory transports
//! then map the slab straight into a reader, whose `ucp_get` is a plain
//! memcpy instead of a cross-process CMA copy (1 MiB: ~40 us against
//! 120-180 us measured here), and RDMA transports find it registered.
//!
//! Slabs come in power-of-two classes from 64 KiB, are mapped once and
//! reused: an object's slab goes back to the free list when the last
//! `Bytes` of the object drops (the table's, a reader registration's).

use std::collections::HashMap;
use std::ptr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ucx_sys as sys;

use crate::worker::mem_map;
use proxystore_peer::pool::POOLED_MIN;

/// Free slab bytes kept at most; beyond that, sweeps unmap them.
const IDLE_MAX: usize = 1 << 30;

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

/// The slab class of an object of `len` bytes.
fn class_of(len: usize) -> Option<usize> {
    len.max(POOLED_MIN).checked_next_power_of_two()
}

/// One mapped slab.
pub(crate) struct Slab {
    base: usize,
    class: usize,
    memh: sys::ucp_mem_h,
}

// SAFETY: the memory handle is only passed to UCX under the engine lock or
// after the engine is gone.
unsafe impl Send for Slab {}

#[derive(Default)]
struct Slabs {
    free: HashMap<usize, Vec<Slab>>,
    free_bytes: usize,
    /// Packed rkey of every mapped slab, by base address.
    rkeys: HashMap<usize, Bytes>,
}

/// The slabs of one engine.
pub(crate) struct Arena {
    context: Arc<Context>,
    slabs: Mutex<Slabs>,
}

impl Arena {
    pub(crate) fn new(context: Arc<Context>) -> Arc<Arena> {
        Arc::new(Arena {
            context,
            slabs: Mutex::new(Slabs::default()),
        })
    }

    fn slabs(&self) -> std::sync::MutexGuard<'_, Slabs> {
        self.slabs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free slab for `len` bytes, if one is idle.
    pub(crate) fn take(&self, len: usize) -> Option<Slab> {
        let class = class_of(len)?;
        let mut slabs = self.slabs();
        let slab = slabs.free.get_mut(&class).and_then(Vec::pop)?;
        slabs.free_bytes -= class;
        Some(slab)
    }

    /// `data` copied into `slab` (outside the engine lock: the copy of a
    /// large object must not stall progress).
    pub(crate) fn fill(self: &Arc<Self>, slab: Slab, data: &[u8]) -> Bytes {
        let len = data.len().min(slab.class);
        // SAFETY: the slab is `class` bytes of mapped memory that nothing
        // else uses until it is given back.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), slab.base as *mut u8, len) };
        Bytes::from_owner(Staged {
            slab: Some(slab),
            arena: Arc::clone(self),
        })
        .slice(0..len)
    }

    /// The packed rkey of the slab `data` starts, if it is staged.
    pub(crate) fn rkey_of(&self, data: &Bytes) -> Option<Bytes> {
        self.slabs().rkeys.get(&(data.as_ptr() as usize)).cloned()
    }

    /// Maps a new slab for `len` bytes, or `None` if UCX could not.
    ///
    /// # Safety
    /// Call under the engine lock.
    pub(crate) unsafe fn map(&self, len: usize) -> Option<Slab> {
        let class = class_of(len)?;
        // SAFETY: under the engine lock (the caller's); UCX allocates.
        let mapped = unsafe { mem_map(self.context.0, None, class)? };
        self.slabs()
            .rkeys
            .insert(mapped.address, Bytes::from(mapped.rkey));
        Some(Slab {
            base: mapped.address,
            class,
            memh: mapped.memh,
        })
    }

    /// Unmaps free slabs beyond [`IDLE_MAX`].
    ///
    /// # Safety
    /// Call under the engine lock.
    pub(crate) unsafe fn trim(&self) {
        let mut slabs = self.slabs();
        while slabs.free_bytes > IDLE_MAX {
            let Some(class) = slabs
                .free
                .iter()
                .find(|(_, v)| !v.is_empty())
                .map(|(c, _)| *c)
            else {
                break;
            };
            if let Some(slab) = slabs.free.get_mut(&class).and_then(Vec::pop) {
                slabs.free_bytes -= slab.class;
                slabs.rkeys.remove(&slab.base);
                // SAFETY: a free slab (no Bytes points into it), unmapped once.
                unsafe { sys::ucp_mem_unmap(self.context.0, slab.memh) };
            }
        }
    }

    fn give_back(&self, slab: Slab) {
        let mut slabs = self.slabs();
        slabs.free_bytes += slab.class;
        slabs.free.entry(slab.class).or_default().push(slab);
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // Every Staged holds the arena, so all slabs are free by now.
        let slabs = std::mem::take(&mut *self.slabs());
        for slab in slabs.free.into_values().flatten() {
            // SAFETY: the engine is gone (it held the arena); free slabs
            // are unmapped once, before the context is cleaned up.
            unsafe { sys::ucp_mem_unmap(self.context.0, slab.memh) };
        }
    }
}

/// Owns a slab inside `Bytes`; gives it back to the arena on drop.
struct Staged {
    slab: Option<Slab>,
    arena: Arc<Arena>,
}

impl AsRef<[u8]> for Staged {
    fn as_ref(&self) -> &[u8] {
        match &self.slab {
            // SAFETY: the slab stays mapped while this owner holds it.
            Some(s) => unsafe { std::slice::from_raw_parts(s.base as *const u8, s.class) },
            None => &[],
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(slab) = self.slab.take() {
            self.arena.give_back(slab);
        }
    }
}
