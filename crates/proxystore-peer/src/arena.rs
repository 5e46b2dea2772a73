//! Registered slabs that objects are staged in at put, for every transport
//! that reads one-sided (UCX, libfabric). With a staged object a get
//! registers nothing: the slab was registered when it was mapped, so a
//! descriptor costs a table lookup, and shared-memory transports may map the
//! slab straight into a reader.
//!
//! Slabs come in power-of-two classes from [`SlabMemory::MIN_CLASS`]
//! bytes ([`POOLED_MIN`] unless the transport says otherwise), are mapped
//! once by the transport and reused: an object's slab goes back to the free
//! list when the last `Bytes` of the object drops (the object table's, a
//! reader registration's). [`Arena::trim`] gives free slabs beyond a bound
//! back to the transport.

use std::collections::HashMap;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::pool::POOLED_MIN;

/// A transport's slab memory: what unmaps a slab (mapping is a closure
/// given to [`Arena::stage`], so it may run under the transport's lock).
pub trait SlabMemory: Send + Sync + 'static {
    /// The smallest slab class: objects are staged in slabs of at least
    /// this many bytes.
    const MIN_CLASS: usize = POOLED_MIN;

    /// What keeps one slab mapped and registered.
    type Handle: Send + 'static;

    /// Unregisters and frees a slab that no `Bytes` points into any more.
    fn unmap(&self, handle: Self::Handle);
}

/// A slab the transport just mapped and registered.
#[derive(Debug)]
pub struct Mapped<H> {
    /// Its first byte.
    pub base: usize,
    /// What a reader needs to read it (a descriptor's remote key).
    pub remote_key: Bytes,
    /// Given back to [`SlabMemory::unmap`] when the slab goes.
    pub handle: H,
}

/// The slab class (size) of an object of `len` bytes in slabs of `M`.
pub fn class_of<M: SlabMemory>(len: usize) -> Option<usize> {
    len.max(M::MIN_CLASS).checked_next_power_of_two()
}

struct Slab<H> {
    base: usize,
    class: usize,
    handle: H,
}

struct Slabs<H> {
    free: HashMap<usize, Vec<Slab<H>>>,
    free_bytes: usize,
    /// Remote key of every mapped slab, by base address.
    remote_keys: HashMap<usize, Bytes>,
    mapped: usize,
}

/// The slabs of one transport endpoint.
pub struct Arena<M: SlabMemory> {
    memory: M,
    slabs: Mutex<Slabs<M::Handle>>,
}

impl<M: SlabMemory> std::fmt::Debug for Arena<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slabs = self.slabs();
        f.debug_struct("Arena")
            .field("mapped", &slabs.mapped)
            .field("free_bytes", &slabs.free_bytes)
            .finish()
    }
}

impl<M: SlabMemory> Arena<M> {
    /// An empty arena over `memory`.
    pub fn new(memory: M) -> Arc<Self> {
        Arc::new(Arena {
            memory,
            slabs: Mutex::new(Slabs {
                free: HashMap::new(),
                free_bytes: 0,
                remote_keys: HashMap::new(),
                mapped: 0,
            }),
        })
    }

    /// The transport's memory.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    fn slabs(&self) -> MutexGuard<'_, Slabs<M::Handle>> {
        self.slabs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `data` copied into a slab: a free one of its class, else one `map`
    /// maps now (given the class; `None` if it could not). The copy runs
    /// outside every lock: copying a large object must not stall the
    /// transport.
    pub fn stage(
        self: &Arc<Self>,
        data: &[u8],
        map: impl FnOnce(usize) -> Option<Mapped<M::Handle>>,
    ) -> Option<Bytes> {
        let class = class_of::<M>(data.len())?;
        let reused = {
            let mut slabs = self.slabs();
            let slab = slabs.free.get_mut(&class).and_then(Vec::pop);
            if slab.is_some() {
                slabs.free_bytes -= class;
            }
            slab
        };
        let slab = match reused {
            Some(slab) => slab,
            None => {
                let m = map(class)?;
                let mut slabs = self.slabs();
                slabs.remote_keys.insert(m.base, m.remote_key);
                slabs.mapped += 1;
                Slab {
                    base: m.base,
                    class,
                    handle: m.handle,
                }
            }
        };
        // SAFETY: the slab is `class` >= data.len() bytes of mapped memory
        // that nothing else uses until it is given back.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), slab.base as *mut u8, data.len()) };
        let len = data.len();
        Some(
            Bytes::from_owner(Staged {
                slab: Some(slab),
                arena: Arc::clone(self),
            })
            .slice(0..len),
        )
    }

    /// The remote key of the slab `data` starts, if `data` is staged.
    pub fn remote_key_of(&self, data: &Bytes) -> Option<Bytes> {
        self.slabs()
            .remote_keys
            .get(&(data.as_ptr() as usize))
            .cloned()
    }

    /// How many slabs are mapped (free or holding an object).
    pub fn mapped(&self) -> usize {
        self.slabs().mapped
    }

    /// Unmaps free slabs until at most `keep` free bytes are left (the
    /// transport calls it where unmapping is allowed, e.g. under its lock).
    pub fn trim(&self, keep: usize) {
        let mut gone = Vec::new();
        {
            let mut slabs = self.slabs();
            while slabs.free_bytes > keep {
                let Some(slab) = slabs.free.values_mut().find_map(Vec::pop) else {
                    break;
                };
                slabs.free_bytes -= slab.class;
                slabs.remote_keys.remove(&slab.base);
                slabs.mapped -= 1;
                gone.push(slab.handle);
            }
        }
        for handle in gone {
            self.memory.unmap(handle);
        }
    }

    fn give_back(&self, slab: Slab<M::Handle>) {
        let mut slabs = self.slabs();
        slabs.free_bytes += slab.class;
        slabs.free.entry(slab.class).or_default().push(slab);
    }
}

impl<M: SlabMemory> Drop for Arena<M> {
    fn drop(&mut self) {
        // Every Staged holds the arena, so all slabs are free by now.
        let free = std::mem::take(&mut self.slabs().free);
        for slab in free.into_values().flatten() {
            self.memory.unmap(slab.handle);
        }
    }
}

/// Owns a slab inside `Bytes`; gives it back to the arena on drop.
struct Staged<M: SlabMemory> {
    slab: Option<Slab<M::Handle>>,
    arena: Arc<Arena<M>>,
}

impl<M: SlabMemory> AsRef<[u8]> for Staged<M> {
    fn as_ref(&self) -> &[u8] {
        match &self.slab {
            // SAFETY: the slab stays mapped while this owner holds it.
            Some(s) => unsafe { std::slice::from_raw_parts(s.base as *const u8, s.class) },
            None => &[],
        }
    }
}

impl<M: SlabMemory> Drop for Staged<M> {
    fn drop(&mut self) {
        if let Some(slab) = self.slab.take() {
            self.arena.give_back(slab);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::pool::{self, Buf};

    /// Slabs from the buffer pool; counts unmaps.
    #[derive(Default)]
    struct Heap {
        unmapped: AtomicUsize,
    }

    impl SlabMemory for Heap {
        type Handle = Buf;
        fn unmap(&self, _: Buf) {
            self.unmapped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn map(class: usize) -> Option<Mapped<Buf>> {
        let mut buf = pool::take(class)?;
        Some(Mapped {
            base: buf.as_mut_ptr() as usize,
            remote_key: Bytes::from(vec![class as u8]),
            handle: buf,
        })
    }

    #[test]
    fn slabs_are_reused_after_their_object_drops_and_trimmed_beyond_the_bound() {
        let arena = Arena::new(Heap::default());
        let data = vec![7u8; 100 << 10];
        let a = arena.stage(&data, map).unwrap();
        assert_eq!(&a[..], &data[..]);
        assert!(arena.remote_key_of(&a).is_some());
        assert!(arena.remote_key_of(&a.slice(1..)).is_none());
        let base = a.as_ptr();
        drop(a);
        // Same class: the freed slab, not a new mapping.
        let b = arena
            .stage(&data[..70 << 10], |_| panic!("mapped again"))
            .unwrap();
        assert_eq!(b.as_ptr(), base);
        assert_eq!(b.len(), 70 << 10);
        let c = arena.stage(&data, map).unwrap();
        assert_eq!(arena.mapped(), 2);
        drop((b, c));
        arena.trim(128 << 10);
        assert_eq!(arena.mapped(), 1);
        assert_eq!(arena.memory().unmapped.load(Ordering::Relaxed), 1);
        // A transport that cannot map: not staged.
        assert!(arena.stage(&vec![0u8; 1 << 20], |_| None).is_none());
    }
}
