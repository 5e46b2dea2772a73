//! Window memory that objects are staged in at put.
//!
//! MPI implementations bound how many regions a dynamic window may have
//! attached (Open MPI 4.1: 32 for osc/ucx, `osc_rdma_max_attach` = 64 for
//! osc/rdma), so objects are not attached one by one: a few large chunks
//! are attached once ([`CHUNK_BYTES`] each, or one object's size if
//! larger; at most [`MAX_CHUNKS`]) and carved into the slabs of
//! `proxystore_peer::arena`, which reuses a slab once its object is gone.
//! Carved slabs are not given back to the chunk: staged memory is kept for
//! the next object of the same class until the job's connector state is
//! torn down. An object that finds no room stays where it is and unlisted
//! (its gets go to the owner as requests).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proxystore_peer::arena::{Mapped, SlabMemory};

use crate::window::Window;

/// Bytes attached per chunk (virtual: pages cost memory once written).
pub(crate) const CHUNK_BYTES: usize = 256 << 20;
/// Chunks per rank, leaving attach slots for the directory and the
/// application's own windows.
pub(crate) const MAX_CHUNKS: usize = 24;
const PAGE: usize = 4096;

struct Chunk {
    base: usize,
    len: usize,
    used: usize,
    /// Window address of `base`.
    addr: u64,
}

/// The attached chunks of one rank.
pub(crate) struct Chunks {
    window: Arc<dyn Window>,
    chunks: Mutex<Vec<Chunk>>,
}

impl std::fmt::Debug for Chunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunks")
            .field("attached", &self.lock().len())
            .finish()
    }
}

impl SlabMemory for Chunks {
    // Small objects are staged too: every listed object is read directly.
    const MIN_CLASS: usize = 64;
    type Handle = ();

    fn unmap(&self, _: ()) {
        // Carved slabs live as long as their chunk (see the module docs).
    }
}

impl Chunks {
    /// No chunk yet; they are attached to `window` as objects need them.
    pub(crate) fn new(window: Arc<dyn Window>) -> Self {
        Chunks {
            window,
            chunks: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Chunk>> {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slab of `class` bytes carved from a chunk, attaching a new one if
    /// none has room (and fewer than [`MAX_CHUNKS`] are attached).
    pub(crate) fn carve(&self, class: usize) -> Option<Mapped<()>> {
        let mut chunks = self.lock();
        let align = class.min(PAGE);
        let fits = |c: &Chunk| c.used.next_multiple_of(align) + class <= c.len;
        if !chunks.last().is_some_and(fits) {
            if chunks.len() >= MAX_CHUNKS {
                return None;
            }
            let chunk = self.attach_chunk(class.max(CHUNK_BYTES))?;
            chunks.push(chunk);
        }
        let chunk = chunks.last_mut()?;
        let at = chunk.used.next_multiple_of(align);
        chunk.used = at + class;
        Some(Mapped {
            base: chunk.base + at,
            remote_key: Bytes::new(),
            handle: (),
        })
    }

    fn attach_chunk(&self, len: usize) -> Option<Chunk> {
        // SAFETY: an anonymous private mapping with no address hint has no
        // preconditions; the result is checked against MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            tracing::debug!(len, "could not map a staging chunk");
            return None;
        }
        match self.window.attach(base.cast(), len) {
            Ok(addr) => Some(Chunk {
                base: base as usize,
                len,
                used: 0,
                addr,
            }),
            Err(e) => {
                tracing::debug!(error = %e, len, "could not attach a staging chunk");
                // SAFETY: mapped just above, never shared.
                unsafe { libc::munmap(base, len) };
                None
            }
        }
    }

    /// The window address of the `len` bytes at `ptr`, if they lie inside
    /// one attached chunk.
    pub(crate) fn addr_of(&self, ptr: usize, len: usize) -> Option<u64> {
        self.lock().iter().find_map(|c| {
            (ptr >= c.base && ptr + len <= c.base + c.len).then(|| c.addr + (ptr - c.base) as u64)
        })
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        // Every staged object holds the arena that holds this, so no object
        // lives in these chunks any more.
        for c in self.lock().drain(..) {
            if let Err(e) = self.window.detach(c.base as *mut u8) {
                tracing::debug!(error = %e, "could not detach a staging chunk");
            }
            // SAFETY: mapped in attach_chunk with this length; detached
            // above (or the window is already freed), and no object is
            // staged in it any more.
            unsafe { libc::munmap(c.base as *mut libc::c_void, c.len) };
        }
    }
}
