//! Reused receive buffers, for every transport that receives or reads into
//! memory of its own (UCX now; libfabric and MPI next). A large message
//! lands in a buffer from this pool and reaches the caller as `Bytes` that
//! hand the buffer back when dropped, so the next message of that size
//! class lands in memory that is already faulted in (and already in the
//! transport's registration cache): a fresh 64 MiB buffer costs ~16k
//! first-touch page faults per message otherwise.
//!
//! Buffers are page aligned. `malloc` puts a large block 16 bytes past a
//! page boundary, and a copy from a page-aligned source (a UCX slab, a
//! registered region) into it runs slower: 64 MiB memcpy from shared memory
//! here takes 7.2 ms into a `malloc` block and 6.2 ms into an aligned one.
//!
//! Buffers of [`HUGE`] and more are mapped directly, aligned to 2 MiB and
//! marked `MADV_HUGEPAGE`: with transparent huge pages in `madvise` mode
//! (most distributions' default) their first touch faults 2 MiB at a time
//! instead of 4 KiB, as numpy does for its large arrays. Where THP is off
//! the advice is ignored and nothing else changes.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

/// Messages below this size use plain allocations.
pub const POOLED_MIN: usize = 64 << 10;
/// Idle bytes the pool keeps at most; beyond that, returned buffers are freed.
const IDLE_MAX: usize = 1 << 30;
/// Alignment of pooled buffers (a page); smaller ones get a cache line.
const PAGE: usize = 4096;
const LINE: usize = 64;
/// Buffers from this size up are mapped on their own, 2 MiB aligned, and
/// advised to use transparent huge pages.
pub const HUGE: usize = 2 << 20;

/// An owned, zeroed heap buffer aligned for fast copies.
pub struct Buf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Buf` owns its allocation like a `Box<[u8]>` does.
unsafe impl Send for Buf {}
// SAFETY: shared access only reads.
unsafe impl Sync for Buf {}

impl Buf {
    /// A zeroed buffer of exactly `len` bytes, or `None` if no such
    /// allocation is possible (a length from a peer is not trusted to fit).
    fn zeroed(len: usize) -> Option<Buf> {
        if len >= HUGE {
            return Some(Buf {
                ptr: huge::map(len)?,
                len,
            });
        }
        let layout = Self::layout(len)?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(Buf { ptr, len })
    }

    fn layout(len: usize) -> Option<Layout> {
        let align = if len >= POOLED_MIN { PAGE } else { LINE };
        Layout::from_size_align(len.max(1), align).ok()
    }

    /// Where the bytes go.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The buffer's length (its size class when pooled).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsRef<[u8]> for Buf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` zeroed-or-written bytes at `ptr`, owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if self.len >= HUGE {
            huge::unmap(self.ptr, self.len);
            return;
        }
        // The layout exists: `zeroed` allocated with it.
        if let Some(layout) = Self::layout(self.len) {
            // SAFETY: allocated in `zeroed` with this layout, freed once.
            unsafe { dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

/// Large buffers as their own anonymous mappings (zeroed by the kernel,
/// touched by nobody until used), 2 MiB aligned, with `MADV_HUGEPAGE`.
mod huge {
    use std::ptr::NonNull;

    use super::HUGE;

    /// The mapping's length for a buffer of `len` bytes.
    fn span(len: usize) -> Option<usize> {
        len.checked_next_multiple_of(HUGE)
    }

    pub(super) fn map(len: usize) -> Option<NonNull<u8>> {
        let span = span(len)?;
        if span > isize::MAX as usize - HUGE {
            return None;
        }
        // Map one huge page more, then trim to a 2 MiB aligned span.
        let over = span + HUGE;
        // SAFETY: a fresh private anonymous mapping; no memory of ours is
        // touched.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                over,
                libc::PROT_READ | libc::PROT_WRITE,
                // No MAP_NORESERVE: the kernel's overcommit check refuses a
                // length that cannot fit (lengths may come from peers).
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let aligned = start.next_multiple_of(HUGE);
        let (head, tail) = (aligned - start, over - (aligned - start) - span);
        // SAFETY: the head and tail are parts of the mapping just made,
        // outside the span handed out; the span is ours to advise.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + span) as *mut libc::c_void, tail);
            }
            // Advice only: where THP is off or unsupported it is ignored.
            libc::madvise(aligned as *mut libc::c_void, span, libc::MADV_HUGEPAGE);
        }
        NonNull::new(aligned as *mut u8)
    }

    pub(super) fn unmap(ptr: NonNull<u8>, len: usize) {
        if let Some(span) = span(len) {
            // SAFETY: `ptr..ptr+span` is a mapping `map` made for this
            // length, unmapped once (by the buffer's drop).
            unsafe { libc::munmap(ptr.as_ptr().cast(), span) };
        }
    }
}

#[derive(Default)]
struct Pool {
    idle: HashMap<usize, Vec<Buf>>,
    idle_bytes: usize,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

/// A buffer for `len` bytes: from [`POOLED_MIN`] up its size class (a
/// power of two), reused if one is idle; below, exactly `len`. `None` when
/// memory for it cannot be had.
pub fn take(len: usize) -> Option<Buf> {
    if len < POOLED_MIN {
        return Buf::zeroed(len);
    }
    let class = len.checked_next_power_of_two()?;
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(buf) = p.idle.get_mut(&class).and_then(Vec::pop) {
        p.idle_bytes -= class;
        return Some(buf);
    }
    drop(p);
    Buf::zeroed(class)
}

fn give(buf: Buf) {
    let class = buf.len();
    if class < POOLED_MIN {
        return;
    }
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    if p.idle_bytes + class <= IDLE_MAX {
        p.idle_bytes += class;
        p.idle.entry(class).or_default().push(buf);
    }
}

/// Owns a buffer inside `Bytes`; returns pooled ones to the pool on drop.
struct Pooled(Option<Buf>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], Buf::as_ref)
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            give(buf);
        }
    }
}

/// The first `len` bytes of a buffer from [`take`], as `Bytes`.
pub fn into_bytes(buf: Buf, len: usize) -> Bytes {
    let len = len.min(buf.len());
    Bytes::from_owner(Pooled(Some(buf))).slice(0..len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_are_reused() {
        let len = (1 << 20) + 3;
        let mut buf = take(len).unwrap();
        assert_eq!(buf.len(), 2 << 20);
        let ptr = buf.as_mut_ptr();
        let bytes = into_bytes(buf, len);
        assert_eq!(bytes.len(), len);
        drop(bytes);
        let mut again = take(len).unwrap();
        assert_eq!(
            again.as_mut_ptr(),
            ptr,
            "an idle buffer of the class is reused"
        );
    }

    #[test]
    fn buffers_are_aligned_and_small_ones_exact() {
        let mut big = take(POOLED_MIN + 1).unwrap();
        assert_eq!(big.as_mut_ptr() as usize % PAGE, 0);
        let mut small = take(100).unwrap();
        assert_eq!(small.len(), 100);
        assert_eq!(small.as_mut_ptr() as usize % LINE, 0);
        assert!(small.as_ref().iter().all(|&b| b == 0));
        let bytes = into_bytes(small, 40);
        assert_eq!(bytes.len(), 40);
        assert_eq!(into_bytes(take(0).unwrap(), 0).len(), 0);
    }

    #[test]
    fn large_buffers_are_huge_page_aligned_zeroed_and_writable() {
        let len = (8 << 20) + 5;
        let mut buf = Buf::zeroed(len).unwrap();
        assert_eq!(buf.as_mut_ptr() as usize % HUGE, 0);
        assert!(buf.as_ref().iter().all(|&b| b == 0));
        // SAFETY: `len` bytes of the buffer.
        unsafe { std::ptr::write_bytes(buf.as_mut_ptr(), 7, len) };
        assert!(buf.as_ref().iter().all(|&b| b == 7));
        assert_eq!(buf.len(), len);
        let pooled = take(HUGE + 1).unwrap();
        assert_eq!(pooled.len(), 2 * HUGE);
    }

    #[test]
    fn impossible_lengths_are_refused_not_allocated() {
        assert!(take(usize::MAX).is_none());
        assert!(take((usize::MAX >> 1) + 2).is_none());
        assert!(take(isize::MAX as usize - 10).is_none());
    }
}
